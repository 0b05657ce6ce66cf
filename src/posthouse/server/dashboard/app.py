"""The dashboard as an ASGI application: the guard every request passes, its routes, and its error pages.

`create_dashboard(state)` returns the application the API mounts at `/ui/` (and `/`, which leads there).
Before any route runs, the guard (`DashboardApp.__call__`) resumes the session the cookie names. Without
one, a GET is sent to the sign-in page and any other method is refused (401); with one, a request that is
not a GET must carry the session's CSRF token (403 without). Only the sign-in page and static files are
reachable without a session, so a page added later is protected without doing anything. The guard also
reads every form body (bounded) once, for the CSRF check and for the route. Every response carries a
Content-Security-Policy that allows only the dashboard's own scripts and styles, and a `Server-Timing`
header (`app;dur=` milliseconds from the request's arrival to its response; bench/dashboard.py reads it).
"""

from __future__ import annotations

import logging
import re
import time
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Router
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from posthouse.server.dashboard.rendering import render
from posthouse.server.dashboard.routes import activity, auth, inbox, messages
from posthouse.server.dashboard.routes import bounces as bounce_pages
from posthouse.server.dashboard.routes import domains as domain_pages
from posthouse.server.dashboard.routes import inbound as inbound_pages
from posthouse.server.dashboard.routes import servers as server_pages
from posthouse.server.dashboard.routes import stats as stats_pages
from posthouse.server.dashboard.routes import streams as stream_pages
from posthouse.server.dashboard.routes import suppressions as suppression_pages
from posthouse.server.dashboard.routes import templates as template_pages
from posthouse.server.dashboard.routes import webhooks as webhook_pages
from posthouse.server.dashboard.sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    MAX_FORM_BYTES,
    SESSION_COOKIE,
    STATE_KEY,
    FormError,
    parse_form,
)
from posthouse.server.dashboard.state import DashboardState
from posthouse.server.errors import ApiError, NotFoundError, StoreError
from posthouse.server.services.operators import csrf_matches

log = logging.getLogger("posthouse.dashboard")

PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
_SAFE_METHODS = ("GET", "HEAD")
_PUBLIC = ("/ui/login", "/ui/login/token", "/ui/static/")


# The template editor posts bodies as large as the API takes (5 MB each, services/templates.py), form-encoded.
EDITOR_FORM_BYTES = 24 * 1024 * 1024
_EDITOR_PATH = re.compile(r"/ui/servers/[0-9]+/templates/[^/]+(/html)?")


def _form_limit(path: str) -> int:
    return EDITOR_FORM_BYTES if _EDITOR_PATH.fullmatch(path) else MAX_FORM_BYTES


def _is_public(path: str) -> bool:
    return path in _PUBLIC[:2] or path.startswith(_PUBLIC[2])


class _BodyTooLarge(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


def _static_directory() -> Path:
    return Path(str(resources.files("posthouse.server.dashboard") / "static"))


class DashboardApp:
    """The guard, then the router; the routes are listed in `routes` (the authorization tests walk them)."""

    def __init__(self, state: DashboardState) -> None:
        self.state = state
        self.routes: list[BaseRoute] = [
            *auth.ROUTES, *activity.ROUTES, *messages.ROUTES, *inbox.ROUTES,
            *stats_pages.ROUTES, *suppression_pages.ROUTES, *bounce_pages.ROUTES,
            *inbound_pages.ROUTES,
            *template_pages.ROUTES, *server_pages.ROUTES, *stream_pages.ROUTES, *webhook_pages.ROUTES,
            *domain_pages.ROUTES,
            Mount("/ui/static", app=StaticFiles(directory=_static_directory()), name="static"),
        ]
        self.router = Router(routes=self.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        path: str = scope["path"]
        if path in ("/", "/ui"):
            await RedirectResponse("/ui/", 302)(scope, receive, send)
            return
        scope[STATE_KEY] = self.state
        scope.setdefault("state", {})
        request = Request(scope, receive)
        try:
            refusal, receive = await self._guard(request, scope, receive)
            if refusal is not None:
                await refusal(scope, receive, _with_headers(send, started))
                return
            await self.router(scope, receive, _with_headers(send, started))
        except Exception as exc:  # noqa: BLE001 — every failure is an error page; logged in _error_page
            await _error_page(request, exc)(scope, receive, _with_headers(send, started))

    async def _guard(self, request: Request, scope: Scope, receive: Receive) -> tuple[Response | None, Receive]:
        """(a refusal, or None to go on; the receive channel the route reads the body from)."""
        method = request.method
        form: dict[str, str] = {}
        if method not in _SAFE_METHODS:
            try:
                limit = _form_limit(request.url.path)
                if limit > MAX_FORM_BYTES and await self.state.operators.resume(
                        request.cookies.get(SESSION_COOKIE)) is None:
                    limit = MAX_FORM_BYTES  # a large body is read only for a signed-in operator
                body = await _read_body(receive, limit)
                form = parse_form(request.headers.get("content-type"), body)
            except _BodyTooLarge:
                return _message_page(request, 413, "That request is too large for the dashboard."), receive
            except FormError as exc:
                return _message_page(request, exc.status, exc.message), receive
            scope["state"]["dashboard_form"] = form
            receive = _replay(body)
        if _is_public(request.url.path):
            return None, receive
        session = await self.state.operators.resume(request.cookies.get(SESSION_COOKIE))
        if session is None:
            if method in _SAFE_METHODS:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", 303), receive
            return _message_page(request, 401, "Sign in first: this dashboard request needs a session."), receive
        if method not in _SAFE_METHODS and not csrf_matches(session, request.headers.get(CSRF_HEADER)
                                                            or form.get(CSRF_FIELD)):
            return _message_page(request, 403, "The request lacks this session's CSRF token (reload the page and "
                                               "try again)."), receive
        scope["state"]["dashboard_session"] = session
        return None, receive


def _with_headers(send: Send, started: float) -> Send:
    """Add the dashboard's security headers to a response that did not set its own, and its Server-Timing."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers: list[tuple[bytes, bytes]] = list(message.get("headers", []))
            present = {name.lower() for name, _ in headers}
            for name, value in ((b"content-security-policy", PAGE_POLICY.encode()), (b"x-frame-options", b"DENY"),
                                (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
                                (b"cache-control", b"no-store")):
                if name not in present:
                    headers.append((name, value))
            headers.append((b"server-timing", f"app;dur={(time.perf_counter() - started) * 1000:.2f}".encode()))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


def _message_page(request: Request, status: int, message: str) -> Response:
    return render(request, "error.html", {"status": status, "message": message}, status=status)


def _error_page(request: Request, exc: Exception) -> Response:
    if isinstance(exc, NotFoundError):
        return _message_page(request, 404, exc.message)
    if isinstance(exc, ApiError):
        return _message_page(request, 400, exc.message)
    if isinstance(exc, StoreError):
        log.error("dashboard: store failure: %s", exc)
        return _message_page(request, 503, "The database failed; try again in a moment.")
    log.exception("dashboard: unexpected error", exc_info=exc)
    return _message_page(request, 500, "Something went wrong on the server; it has been logged.")


def create_dashboard(state: DashboardState) -> Any:
    return DashboardApp(state)

