"""The HTTP API: Postmark's paths and shapes at the root, one error translator, no module state.

`create_app(services)` returns an ASGI application. Routes raise ApiError (or let StoreError
through); `_translate` is the one place that turns an exception into `{ErrorCode, Message}`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from posthouse.server.api import endpoints, feedback, openapi
from posthouse.server.api import templates as template_routes
from posthouse.server.api.limits import RequestLimits
from posthouse.server.api.payloads import error_response, json_response
from posthouse.server.api.routing import Router
from posthouse.server.errors import ApiError, StoreError, StoreFullError

log = logging.getLogger("posthouse.api")


@dataclass
class ApiState:
    """What the routes need, injected by the composition root (cli.py)."""

    accounts: Any
    sending: Any
    history: Any
    ready: Callable[[], bool] = lambda: True
    bounces: Any = None
    suppressions: Any = None
    webhooks: Any = None
    templates: Any = None
    bulk: Any = None
    limits: RequestLimits | None = None  # body budget and test-token limits (api.limits); defaults when None


def _translate(exc: Exception) -> Response:
    """The one translator from exceptions to Postmark's error envelope (docs/postmark-api.md §1.2)."""
    if isinstance(exc, ApiError):
        return error_response(exc.http_status, exc.error_code, exc.message)
    if isinstance(exc, StoreFullError):
        log.error("store full: %s", exc)
        return error_response(503, 100, "The server cannot store mail right now (storage full). Retry later.")
    if isinstance(exc, StoreError):
        log.error("store failure: %s", exc)
        return error_response(500, 101, "An internal error occurred; nothing was stored. Retry later.")
    log.exception("unexpected error in a request", exc_info=exc)
    return error_response(500, 101, "An unexpected internal error occurred.")


class ApiApp:
    """The ASGI application: route, call, translate errors."""

    def __init__(self, state: ApiState) -> None:
        self.state = state
        self.limits = state.limits or RequestLimits()
        self.router = Router()
        endpoints.register(self.router, state)
        feedback.register(self.router, state)  # each group only when its service is given
        if state.templates is not None:
            template_routes.register(self.router, state)
        self.router.add("GET", "/healthz", self._health)
        self.router.add("GET", "/openapi.json", self._openapi)
        self._openapi_body: bytes | None = None

    async def _openapi(self, request: Request) -> Response:
        if self._openapi_body is None:  # built once, on first request: it is the same for the process's life
            from importlib.metadata import PackageNotFoundError, version

            try:
                release = version("posthouse")
            except PackageNotFoundError:
                release = "0"
            self._openapi_body = msgspec.json.encode(openapi.document(release))
        return Response(self._openapi_body, media_type="application/json")

    async def _health(self, request: Request) -> Response:
        if self.state.ready():
            return json_response({"status": "ok"})
        return json_response({"status": "starting"}, 503)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        handler, path_params, path_known = self.router.match(scope["method"], scope["path"])
        if handler is None:
            if path_known:
                response = error_response(405, 0, f"Method {scope['method']} is not allowed on {scope['path']}.")
            else:
                response = error_response(404, 0, f"No endpoint at {scope['path']}.")
        else:
            try:
                async with self.limits.admit(scope, receive) as metered:
                    response = await handler(Request(scope, metered), **path_params)
            except Exception as exc:  # noqa: BLE001 — every failure becomes one JSON error, logged in _translate
                response = _translate(exc)
        await response(scope, receive, send)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(state: ApiState) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    return ApiApp(state)
