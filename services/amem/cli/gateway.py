"""The commands that talk to a running gateway: `amem mcp` (its MCP tools over stdio) and
`amem keys` (the admin API)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys


def _mcp(args: argparse.Namespace) -> int:
    """amem's MCP tools over stdio, proxying to the gateway at --url with AMEM_API_KEY. Only
    the protocol goes to stdout; logs go to stderr."""
    import logging

    from amem.client import AsyncClient
    from amem.mcp import create_mcp, fixed_client

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    if not os.environ.get("AMEM_API_KEY"):
        print("amem: set AMEM_API_KEY to the API key the tools should use", file=sys.stderr)
        return 2
    server = create_mcp(fixed_client(lambda: AsyncClient(args.url)))
    asyncio.run(server.run_stdio_async())
    return 0


def _keys(args: argparse.Namespace) -> int:
    """The admin API, over HTTP, with the admin key from AMEM_ADMIN_KEY."""
    import httpx

    admin_key = os.environ.get("AMEM_ADMIN_KEY")
    if not admin_key:
        print("amem: set AMEM_ADMIN_KEY to an admin key", file=sys.stderr)
        return 2
    base = args.url.rstrip("/") + "/v1/admin/keys"
    headers = {"Authorization": f"Bearer {admin_key}"}
    if args.action == "create":
        body = {"tenant": args.tenant, "name": args.name or ""}
        if args.expires_in:
            body["expires_in_s"] = args.expires_in
        request = ("POST", base, body, None)
    elif args.action == "list":
        params = {"include_revoked": str(args.all).lower()}
        if args.tenant:
            params["tenant"] = args.tenant
        request = ("GET", base, None, params)
    elif args.action == "rotate":
        request = ("POST", f"{base}/{args.key_id}:rotate", {"grace_s": args.grace}, None)
    else:
        request = ("DELETE", f"{base}/{args.key_id}", None, None)
    method, url, body, params = request
    try:
        r = httpx.request(method, url, json=body, params=params, headers=headers, timeout=30)
    except httpx.TransportError as exc:
        print(f"amem: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    if r.status_code >= 400:
        print(f"amem: {r.status_code} {r.json().get('message', r.text)}", file=sys.stderr)
        return 1
    data = r.json()
    if args.action == "list":
        for key in data["keys"]:
            if key["revoked_at"]:
                ends = f"revoked {key['revoked_at']}"
            elif key["expires_at"]:
                ends = f"expires {key['expires_at']}"
            else:
                ends = "no expiry"
            print(f"{key['id']}  {key['tenant']}  {key['name'] or '-'}  {ends}")
    elif "key" in data:
        print(f"{data['id']} for tenant {data['tenant']}; the key, shown once:", file=sys.stderr)
        print(data["key"])
    else:
        print(f"{data['id']} revoked")
    return 0
