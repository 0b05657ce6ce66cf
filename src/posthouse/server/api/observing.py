"""What the API records about each request: a request id, one log line and the HTTP metrics.

The request id is the client's `X-Request-Id` when it is a plausible id (1–128 characters of letters, digits
and `-_.:`; anything else could forge log fields), else a new random one; the answer carries it in
`X-Request-Id`, and every line logged while the request is handled has it (`logs.REQUEST_ID`). The log line
(`http request`: method, path, status, ms, server_id, request_id) is INFO, WARNING for a 5xx, DEBUG for
`/healthz` and `/metrics` (probes and scrapes every few seconds would drown the rest). The metrics are
labelled with the route template (`/messages/outbound/{messageid}/details`), never the path itself, so
the number of series stays that of the routes; a path no route knows counts as `unmatched`.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from posthouse.server.logs import REQUEST_ID, log_event
from posthouse.server.metrics import Metrics

log = logging.getLogger("posthouse.http")
_CLIENT_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_QUIET = frozenset({"/healthz", "/metrics"})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # others count as OTHER
# Set in the scope by the app (api/app.py) once known: the matched route's template and the server's id.
ROUTE_KEY = "posthouse.route"
SERVER_KEY = "posthouse.server_id"


def request_id_of(scope: Scope) -> str:
    for key, value in scope["headers"]:
        if key == b"x-request-id":
            if _CLIENT_ID.fullmatch(value):
                return bytes(value).decode("ascii")
            break
    return secrets.token_hex(8)


class RequestObserver:
    """Wraps the handling of one HTTP request (`app`), or hands `/metrics` to `metrics_endpoint`."""

    def __init__(self, metrics: Metrics | None = None, metrics_endpoint: ASGIApp | None = None) -> None:
        self.metrics = metrics
        self.metrics_endpoint = metrics_endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send,
                       app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        started = time.perf_counter()
        request_id = request_id_of(scope)
        reset = REQUEST_ID.set(request_id)
        status = 0
        id_header = (b"x-request-id", request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                if not any(key.lower() == b"x-request-id" for key, _ in headers):
                    headers.append(id_header)
                message = {**message, "headers": headers}
            await send(message)

        path = scope["path"]
        endpoint = self.metrics_endpoint if path.rstrip("/") == "/metrics" else None
        try:
            if endpoint is not None:
                scope[ROUTE_KEY] = "/metrics"
                await endpoint(scope, receive, send_with_id)
            else:
                await app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(reset)
            seconds = time.perf_counter() - started
            route = scope.get(ROUTE_KEY) or "unmatched"
            shown = status or 500  # no answer started: the handler failed or the client went away first
            method = scope["method"]
            if self.metrics is not None:
                self.metrics.observe_http(method if method in _METHODS else "OTHER", route, shown, seconds)
            level = logging.DEBUG if route in _QUIET else logging.WARNING if shown >= 500 else logging.INFO
            log_event(log, level, "http request", method=method, path=path, status=shown,
                      ms=round(seconds * 1000, 2), server_id=scope.get(SERVER_KEY), request_id=request_id)
