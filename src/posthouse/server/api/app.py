"""The HTTP API: Postmark's paths and shapes at the root, one error translator, no module state.

`create_app(state)` returns an ASGI application whose router is assembled from the route tables of the
modules named by their resource (`sending.ROUTES`, `bounces.ROUTES`, …). For each request it finds the
route, lets the route's access kind authenticate it (`access.py`), and calls the handler with the call
that produced. Handlers raise ApiError (or let StoreError through); `_translate` is the one place that
turns an exception into `{ErrorCode, Message}`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from posthouse.server.api import (
    bounces,
    bulk,
    data_removals,
    domains,
    inbound,
    messages,
    openapi,
    senders,
    sending,
    servers,
    stats,
    streams,
    suppressions,
    templates,
    webhooks,
)
from posthouse.server.api.access import PUBLIC, PublicCall
from posthouse.server.api.observing import ROUTE_KEY, SERVER_KEY, RequestObserver
from posthouse.server.api.payloads import error_response, json_response
from posthouse.server.api.routing import Route, Router
from posthouse.server.api.state import ApiState
from posthouse.server.errors import ApiError, RateLimitedError, StoreError, StoreFullError

log = logging.getLogger("posthouse.api")

# The ErrorCode of "no endpoint answers this method and path" (404, and 405 for a known path). Not 0: Postmark
# uses 0 for success ("OK"), and a client reading the body alone would take the failure for a success. 404 is
# no Postmark ErrorCode (its 4xx codes are 400-403, 405, 406 and 409-413), and the clients turn it into a
# plain error: postmarker needs both keys (`data["ErrorCode"]`) and raises ClientError("[404] No endpoint at
# …", error_code=404); postmark-python maps only 10, 300, 405, 406 and 701 by code and otherwise goes by the
# HTTP status, so PostmarkAPIException(error_code=404, http_status=404); postmark.js chooses its error by HTTP
# status (PostmarkError for 404, UnknownError for 405) and keeps the code and message. The wrong-method
# answer uses the same code: 405 itself is Postmark's "Not allowed to send" (postmark-python raises
# ValidationException for it), which a wrong method is not.
NO_ENDPOINT = 404

# In matching order; within a table the order matters where a fixed segment could be taken for a parameter.
ROUTE_TABLES: tuple[tuple[Route, ...], ...] = (
    sending.ROUTES, bulk.ROUTES, messages.ROUTES, servers.ROUTES, streams.ROUTES, bounces.ROUTES,
    suppressions.ROUTES, webhooks.ROUTES, templates.ROUTES, stats.ROUTES, domains.ROUTES, senders.ROUTES,
    data_removals.ROUTES,
    inbound.ROUTES,
)


def _translate(exc: Exception) -> Response:
    """The one translator from exceptions to Postmark's error envelope (docs/postmark-api.md §1.2)."""
    if isinstance(exc, RateLimitedError):
        response = error_response(exc.http_status, exc.error_code, exc.message)
        response.headers["Retry-After"] = str(exc.retry_after)  # RFC 9110 §10.2.3, read by the SDK's retries
        return response
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
    """The ASGI application: route, authenticate, call, translate errors."""

    def __init__(self, state: ApiState, dashboard: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None
                 ) -> None:
        self.state = state
        self.dashboard = dashboard  # the web dashboard's ASGI app, served at `/` and `/ui/…` (issue 15)
        own = (Route("GET", "/healthz", self._health, PUBLIC), Route("GET", "/openapi.json", self._openapi, PUBLIC))
        self.router = Router(route for table in (*ROUTE_TABLES, own) for route in table)
        self._openapi_body: bytes | None = None
        self.observer = RequestObserver(state.metrics, state.metrics_endpoint)  # request id, log line, metrics

    async def _openapi(self, call: PublicCall) -> Response:
        if self._openapi_body is None:  # built once, on first request: it is the same for the process's life
            from importlib.metadata import PackageNotFoundError, version

            try:
                release = version("posthouse")
            except PackageNotFoundError:
                release = "0"
            self._openapi_body = msgspec.json.encode(openapi.document(release))
        return Response(self._openapi_body, media_type="application/json")

    async def _health(self, call: PublicCall) -> Response:
        if self.state.ready():
            return json_response({"status": "ok"})
        return json_response({"status": "starting"}, 503)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        await self.observer(scope, receive, send, self._dispatch)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.dashboard is not None and (scope["path"] in ("/", "/ui") or scope["path"].startswith("/ui/")):
            scope[ROUTE_KEY] = "/ui"  # one series for the dashboard's pages (api/observing.py)
            await self.dashboard(scope, receive, send)
            return
        route, path_params, path_known = self.router.match(scope["method"], scope["path"])
        if route is None:
            # ErrorCode 0 means success in Postmark's convention, so these carry NO_ENDPOINT instead (see there).
            if path_known:
                response = error_response(405, NO_ENDPOINT,
                                          f"Method {scope['method']} is not allowed on {scope['path']}.")
                response.headers["Allow"] = ", ".join(self.router.methods(scope["path"]))  # RFC 9110 §15.5.6
            else:
                response = error_response(404, NO_ENDPOINT, f"No endpoint at {scope['path']}.")
        else:
            scope[ROUTE_KEY] = route.path
            try:
                async with self.state.limits.admit(scope, receive) as metered:
                    call = await route.access.admit(Request(scope, metered), self.state)
                    server = getattr(call, "server", None)  # ServerCall and SendCall name one (the test token: None)
                    if server is not None:
                        scope[SERVER_KEY] = server.id
                    response = await route.handler(call, **path_params)
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


def create_app(state: ApiState, dashboard: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None
               ) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    return ApiApp(state, dashboard)
