"""Limits on what a request may cost before the app has seen it, and a last line against an
unhandled error closing the connection.

- `BodySizeLimit` refuses bodies over a size with 413 before they are read into memory, and
  answers 408 when a body stalls (a Content-Length larger than what is sent used to hold a
  connection, and its task, open for good).
- `BoundedHeadProtocol` is uvicorn's httptools protocol with a cap on the request head: an 8 MB
  Authorization header was read whole, before the key check, by the unbounded parser.
- `CatchAll` answers an exception nothing else handled with the usual 500 error body and keeps
  the connection open: Starlette's outermost handler re-raises after answering, and uvicorn
  then closes the keep-alive connection.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)


class _Refused(HTTPException):
    """Raised from `receive`; FastAPI re-raises HTTPExceptions met while reading a body (others
    it turns into 400), so the app's handler answers in the usual error shape. The connection
    closes after it: the rest of the body is never read."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(status_code, detail, headers={"Connection": "close"})


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = orjson.dumps({"error": code, "message": message})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """Pure ASGI middleware: checks Content-Length up front, counts chunked bodies, and bounds
    the wait for each chunk."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"request body exceeds {self.max_bytes} bytes"
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _send_error(send, 413, "payload_too_large", too_large)
                return
        seen = 0
        started = False
        refused: _Refused | None = None

        async def guarded_receive() -> Message:
            nonlocal seen, refused
            try:
                async with asyncio.timeout(self.timeout_s):
                    message = await receive()
            except TimeoutError:
                refused = _Refused(408, f"request body stalled for {self.timeout_s:g}s")
                raise refused from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = _Refused(413, too_large)
                    raise refused
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded_receive, tracking_send)
        except _Refused as exc:
            if not started:
                code = "payload_too_large" if exc.status_code == 413 else "request_timeout"
                await _send_error(send, exc.status_code, code, exc.detail)


class CatchAll:
    """Pure ASGI middleware, innermost of the app's own: an unhandled exception becomes the
    usual 500 body, logged once, and the exception goes no further (see the module's doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # half a response is out: only closing the connection can say so
            body = orjson.dumps({"error": "internal", "message": "internal error"})
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request head (request line and headers) over
    `max_head_bytes` with 431 and closing the connection. Every byte received while a head is
    incomplete belongs to it, so counting them bounds what the parser holds, whatever the
    header sizes."""

    max_head_bytes = 64 * 1024

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self.max_head_bytes and self.transport:
            self._refuse_head()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0  # what follows is the next request's head

    def _refuse_head(self) -> None:
        body = orjson.dumps(
            {
                "error": "headers_too_large",
                "message": f"request line and headers exceed {self.max_head_bytes} bytes",
            }
        )
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()
        self._in_head = False


def bounded_head_protocol(max_head_bytes: int) -> type[BoundedHeadProtocol]:
    """The protocol class for uvicorn's `http` setting, with this cap."""
    return type("BoundedHeadProtocol", (BoundedHeadProtocol,), {"max_head_bytes": max_head_bytes})
