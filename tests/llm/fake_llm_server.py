"""A local HTTP server, started inside the test process, that speaks just enough of the OpenAI
chat-completions and Anthropic messages protocols for the real SDKs to talk to it.

Each test scripts the answers (status, body, headers, delay) and reads back what was asked.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"


@dataclass
class Scripted:
    """One scripted answer: `text` becomes a protocol-shaped success; `body` is sent raw."""

    status: int = 200
    text: str | None = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    usage: tuple[int, int] | None = (120, 45)


class FakeLLMServer:
    def __init__(self) -> None:
        self.script: deque[Scripted] = deque()
        self.default = Scripted(text="{}")
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.script.clear()
            self.requests.clear()

    def queue(self, *answers: Scripted) -> None:
        self.script.extend(answers)

    def count(self, path: str | None = None) -> int:
        return sum(1 for request in self.requests if path is None or request["path"] == path)

    def _next(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> Scripted:
        with self._lock:
            self.requests.append({"path": path, "headers": headers, "body": body})
            return self.script.popleft() if self.script else self.default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:  # keep pytest output clean
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                body = json.loads(raw) if raw else {}
                answer = server._next(self.path, {k.lower(): v for k, v in self.headers.items()},
                                      body)
                if answer.delay_s:
                    time.sleep(answer.delay_s)
                payload = answer.body if answer.body is not None else _protocol_body(
                    self.path, answer, body)
                try:
                    self.send_response(answer.status)
                    self.send_header("content-type", "application/json")
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to answer

        return Handler


def _protocol_body(path: str, answer: Scripted, request: dict[str, Any]) -> bytes:
    if answer.status >= 400:
        return json.dumps({"error": {"type": "fake_error", "message": f"HTTP {answer.status}"}}
                          ).encode()
    model = request.get("model", "fake-model")
    if path == ANTHROPIC_PATH:
        body: dict[str, Any] = {
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": answer.text or ""}],
            "stop_reason": "end_turn", "stop_sequence": None}
        if answer.usage:
            body["usage"] = {"input_tokens": answer.usage[0], "output_tokens": answer.usage[1]}
        return json.dumps(body).encode()
    body = {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": answer.text or ""}}]}
    if answer.usage:
        body["usage"] = {"prompt_tokens": answer.usage[0], "completion_tokens": answer.usage[1],
                         "total_tokens": sum(answer.usage)}
    return json.dumps(body).encode()
