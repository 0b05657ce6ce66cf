"""Support for the SDK's tests.

- `Tenant`: a Posthouse server of its own inside the shared server process (see conftest.py).
- `Flavour`: async or sync clients for one test body.
- `FlakyProxy(upstream, script)`: an HTTP peer on loopback, in its own threads (so sync clients may block
  on it), that answers requests by script, one step per request, then forwards the rest to `upstream` (the
  real server): "drop" closes the connection without an answer, "503" answers 503, "hang" never answers.
  Records every request's method, path, headers and body in `requests`.
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import httpx

import posthouse
from support import ServerProcess

__all__ = ["FlakyProxy", "Flavour", "RecordedRequest", "Tenant"]


@dataclass
class Tenant:
    """A Posthouse server of its own inside the shared process: its token, and the process around it."""

    process: ServerProcess
    id: int
    name: str
    token: str

    @property
    def base_url(self) -> str:
        return self.process.base_url

    @property
    def account_token(self) -> str:
        assert self.process.account_token is not None
        return self.process.account_token

    def get(self, path: str, **params: Any) -> Any:
        headers = {"X-Postmark-Server-Token": self.token, "Accept": "application/json"}
        response = httpx.get(self.base_url + path, params=params, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()


class Flavour:
    """Async or sync: makes the matching clients, and `await flavour(value)` resolves either kind of result,
    so one test body covers both client families against the same server."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.is_async = name == "async"

    def server_client(self, token: str | None, base_url: str, **options: Any) -> Any:
        kind = posthouse.ServerClient if self.is_async else posthouse.sync.ServerClient
        return kind(token, base_url=base_url, **options)

    def account_client(self, token: str | None, base_url: str, **options: Any) -> Any:
        kind = posthouse.AccountClient if self.is_async else posthouse.sync.AccountClient
        return kind(token, base_url=base_url, **options)

    async def __call__(self, value: Any) -> Any:
        return await value if inspect.isawaitable(value) else value

    async def close(self, client: Any) -> None:
        if self.is_async:
            await client.aclose()
        else:
            client.close()

    def __repr__(self) -> str:
        return self.name


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FlakyProxy:
    def __init__(self, upstream: str | None = None, script: list[str] | None = None) -> None:
        self.upstream = upstream
        self.script = list(script or [])
        self.requests: list[RecordedRequest] = []
        self._released = threading.Event()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy.requests.append(
                        RecordedRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    step = proxy.script.pop(0) if proxy.script else "forward"
                if step == "drop":
                    self.close_connection = True
                    return
                if step == "hang":
                    proxy._released.wait(30)
                    self.close_connection = True
                    return
                if step == "503":
                    self._answer(503, b'{"ErrorCode": 100, "Message": "Maintenance"}', "application/json")
                    return
                assert proxy.upstream is not None, "nothing to forward to"
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                with httpx.Client(base_url=proxy.upstream, timeout=10) as client:
                    answer = client.request(self.command, self.path, content=body, headers=headers)
                self._answer(answer.status_code, answer.content, answer.headers.get("content-type", ""))

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FlakyProxy:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
