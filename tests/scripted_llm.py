"""A scripted OpenAI-compatible server: a FAKE, for fault injection and deterministic decisions.

It speaks just enough of `POST /v1/chat/completions` for the openai client. Each request is
answered by the test's `responder(request_json) -> Reply`, which can return a JSON answer, an
HTTP error (429 with Retry-After, 500), garbage, a truncated reply, or hang. Real LLM behaviour
is tested against llama-server in tests/llm (the real-LLM tier).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    content: str | None = None  # the assistant message (normally JSON)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    finish_reason: str = "stop"
    hang_s: float = 0.0  # sleep before answering (a timeout test)
    prompt_tokens: int = 100
    completion_tokens: int = 20


def answer(obj: Any) -> Reply:
    return Reply(content=json.dumps(obj))


Responder = Callable[[dict[str, Any]], Reply]


def step(request: dict[str, Any]) -> str:
    """ "Construction" or "Evolution": which A-MEM step a request is for."""
    return request["response_format"]["json_schema"]["name"]


def user_prompt(request: dict[str, Any]) -> str:
    return request["messages"][-1]["content"]


def _openai_body(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "scripted"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    }


def _ollama_body(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    # The documented non-streaming /api/chat response.
    return {
        "model": body.get("model", "scripted"),
        "created_at": "2026-11-24T00:00:00.000000Z",
        "message": {"role": "assistant", "content": reply.content},
        "done": True,
        "done_reason": reply.finish_reason,
        "total_duration": 1_000_000,
        "load_duration": 1_000,
        "prompt_eval_count": reply.prompt_tokens,
        "prompt_eval_duration": 1_000,
        "eval_count": reply.completion_tokens,
        "eval_duration": 1_000,
    }


class ScriptedLLM:
    """Serves `POST /v1/chat/completions` (OpenAI) and `POST /api/chat` (Ollama)."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with outer._lock:
                    outer.requests.append(body)
                    responder = outer.responder
                try:
                    reply = responder(body)
                except Exception as exc:  # a test's responder bug: visible, not a hang
                    reply = Reply(status=500, content=f"responder failed: {exc!r}")
                if reply.hang_s:
                    time.sleep(reply.hang_s)
                ollama = self.path.startswith("/api/")
                if reply.status != 200:
                    error = "scripted" if ollama else {"message": "scripted", "type": "scripted"}
                    payload = json.dumps({"error": error})
                else:
                    payload = json.dumps((_ollama_body if ollama else _openai_body)(body, reply))
                data = payload.encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a hang test)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.url = f"{self.base}/v1"  # the OpenAI base URL; Ollama's host is `base`
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def set(self, responder: Responder) -> None:
        with self._lock:
            self.responder = responder

    def count(self, name: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if step(r) == name)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
