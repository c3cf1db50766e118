#!/usr/bin/env python3
"""The console's third-party front-end files, from the npm registry, pinned by version and by
the registry's own integrity hash (SRI sha512), into services/amem/gateway/console/vendor/.
They are not committed: `make install` and the gateway image fetch them. The tarball is cached
under ~/.cache/amem/npm, so a second run reads no network. Standard library only (the image's
build stage has no Node.js). NPM_CONFIG_REGISTRY points at another registry."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

# name, version, integrity (`npm view <name>@<version> dist.integrity`), files to take.
PACKAGES = [
    (
        "cytoscape",
        "3.35.0",
        "sha512-sMvBIXiGMnhkCaWz2R06FwF/27MNlS+Tqvi17foO9UhnUg3XGZccKjxsvEqQFAQYMSSZmN5SxYzUYlQ0DOJJ3g==",
        {
            "package/dist/cytoscape.min.js": "cytoscape.min.js",
            "package/LICENSE": "cytoscape.LICENSE",
        },
    ),
]

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "services" / "amem" / "gateway" / "console" / "vendor"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "amem" / "npm"


def _matches(data: bytes, integrity: str) -> bool:
    algorithm, _, expected = integrity.partition("-")
    return base64.b64encode(hashlib.new(algorithm, data).digest()).decode() == expected


def tarball(name: str, version: str, integrity: str) -> bytes:
    cached = CACHE / f"{name}-{version}.tgz"
    if cached.exists():
        data = cached.read_bytes()
        if _matches(data, integrity):
            return data
        cached.unlink()  # cut short or damaged: fetched again
    registry = os.environ.get("NPM_CONFIG_REGISTRY", "https://registry.npmjs.org").rstrip("/")
    url = f"{registry}/{name}/-/{name}-{version}.tgz"
    with urllib.request.urlopen(url, timeout=60) as response:
        data = response.read()
    if not _matches(data, integrity):
        sys.exit(f"console-assets: {url} does not match its pinned integrity {integrity}")
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(cached)  # whole, or not there
    return data


def main() -> None:
    VENDOR.mkdir(parents=True, exist_ok=True)
    for name, version, integrity, files in PACKAGES:
        stamp = VENDOR / f".{name}-{version}"
        if stamp.exists() and all((VENDOR / out).exists() for out in files.values()):
            continue
        with tarfile.open(fileobj=io.BytesIO(tarball(name, version, integrity))) as tar:
            for member, out in files.items():
                source = tar.extractfile(member)
                if source is None:
                    sys.exit(f"console-assets: {name}@{version} has no {member}")
                with (VENDOR / out).open("wb") as target:
                    shutil.copyfileobj(source, target)
        for old in VENDOR.glob(f".{name}-*"):
            old.unlink()
        stamp.touch()


if __name__ == "__main__":
    main()
