"""/console: the web console (gateway/console/), static files over the REST API. The files need
no key; every data call the page makes carries the one the user signs in with. The page is
served under a Content-Security-Policy that allows scripts from this origin only (no inline
script), and every value from the API is put into the page as text (console.js)."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

log = logging.getLogger(__name__)

CONSOLE = Path(__file__).resolve().parents[2] / "console"

# Scripts and everything else from this origin only. Styles may also be inline: cytoscape.js
# injects the one rule its container needs; no value from the API is ever styled.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class _ConsoleFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_HEADERS)
        return response


def install(app: FastAPI) -> None:
    """Serve the console at /console/ (and send /console there: its files are found relative
    to the page, so it works under whatever path prefix an ingress adds)."""
    if not (CONSOLE / "vendor" / "cytoscape.min.js").exists():
        # The API works without them; the console's graph view does not.
        log.error(
            "the console's front-end libraries are missing from %s: run "
            "scripts/console-assets.py (make install and the gateway image do)",
            CONSOLE / "vendor",
        )

    @app.get("/console", include_in_schema=False)
    async def console_root() -> RedirectResponse:
        return RedirectResponse("console/", status_code=308)

    app.mount("/console/", _ConsoleFiles(directory=CONSOLE, html=True), name="console")
