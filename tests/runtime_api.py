"""A minimal local Lambda Runtime API (the HTTP endpoints awslambdaric talks to), for tests.

Serves queued events on ``GET /2018-06-01/runtime/invocation/next`` with the ``Lambda-Runtime-*``
headers, and records what the runtime client posts to ``.../invocation/{id}/response``,
``.../invocation/{id}/error`` and ``/2018-06-01/runtime/init/error``.  When the queue is empty,
``next`` blocks (as Lambda does while the sandbox is frozen) until the server is closed.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:media-worker"


@dataclass
class Posted:
    kind: str  # response | error | init-error
    request_id: str | None
    body: Any
    headers: dict[str, str]


@dataclass
class RuntimeApi:
    """Run with ``with RuntimeApi() as api:``; ``api.address`` goes into AWS_LAMBDA_RUNTIME_API."""

    timeout_ms: int = 120_000
    events: queue.Queue[tuple[str, Any]] = field(default_factory=queue.Queue)
    posted: queue.Queue[Posted] = field(default_factory=queue.Queue)
    _closing: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    return self._reply(404, b'{"errorMessage": "unknown path"}')
                while not api._closing.is_set():
                    try:
                        request_id, event = api.events.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    deadline = int(time.time() * 1000) + api.timeout_ms
                    headers = {
                        "Lambda-Runtime-Aws-Request-Id": request_id,
                        "Lambda-Runtime-Deadline-Ms": str(deadline),
                        "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                        "Lambda-Runtime-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0",
                    }
                    return self._reply(200, json.dumps(event).encode(), headers)
                return self._reply(500, b'{"errorMessage": "shutting down"}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                parts = self.path.removeprefix(PREFIX).strip("/").split("/")
                if parts == ["init", "error"]:
                    api.posted.put(Posted("init-error", None, body, dict(self.headers)))
                elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                    api.posted.put(Posted(parts[2], parts[1], body, dict(self.headers)))
                else:
                    return self._reply(404, b'{"errorMessage": "unknown path"}')
                return self._reply(202, b'{"status": "OK"}')

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def invoke(self, event: Any) -> str:
        """Queue an event; returns its request id."""
        request_id = str(uuid.uuid4())
        self.events.put((request_id, event))
        return request_id

    def wait(self, timeout: float) -> Posted:
        return self.posted.get(timeout=timeout)

    def __enter__(self) -> RuntimeApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()
