"""The dashboard's session cookie, CSRF tokens and form bodies: what the guard (`app.py`) and the sign-in
routes share.

Cookies are HttpOnly (no script reads them) and SameSite=Lax (a cross-site form post carries none), Secure
when the request came over TLS or `dashboard_secure_cookies` says TLS ends at a proxy. Every request that is
not a GET carries a CSRF token: the session's (a hidden `csrf_token` field of each form, or the
`X-CSRF-Token` header htmx sends), or before sign-in the login form's own, matched against a cookie set with
the form (the double-submit pattern), so a sign-in cannot be forged into a victim's browser either.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from posthouse.server.dashboard.state import DashboardState
from posthouse.server.services.operators import MAX_SESSION_SECONDS, Session

SESSION_COOKIE = "posthouse_session"
LOGIN_COOKIE = "posthouse_login"  # the login form's CSRF token, before there is a session
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
MAX_FORM_BYTES = 64 * 1024  # the dashboard's forms are a few fields; anything longer is refused unread
MAX_FORM_FIELDS = 50
LOGIN_FORM_SECONDS = 3600
STATE_KEY = "posthouse.dashboard"  # the scope key holding the DashboardState


class FormError(Exception):
    """A request body the dashboard does not take: too large, or not a URL-encoded form."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def state_of(request: Request) -> DashboardState:
    state: DashboardState = request.scope[STATE_KEY]
    return state


def session_of(request: Request) -> Session:
    """The signed-in session of a request the guard let through (every route but sign-in and static)."""
    session: Session = request.scope["state"]["dashboard_session"]
    return session


def form_of(request: Request) -> dict[str, str]:
    """The request's form fields, read and checked by the guard (the first value of each name)."""
    form: dict[str, str] = request.scope["state"].get("dashboard_form", {})
    return form


def parse_form(content_type: str | None, body: bytes) -> dict[str, str]:
    if not body:
        return {}
    if (content_type or "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise FormError(415, "The dashboard takes forms as application/x-www-form-urlencoded.")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS,
                          strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise FormError(400, "The form could not be read.") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            raise FormError(400, "A form field holds a NUL character.")
        form.setdefault(name, value)
    return form


def is_secure(request: Request, state: DashboardState) -> bool:
    return state.secure_cookies or request.url.scheme == "https"


def set_session_cookie(response: Response, request: Request, session: Session) -> None:
    assert session.session_id is not None
    response.set_cookie(SESSION_COOKIE, session.session_id, max_age=MAX_SESSION_SECONDS, path="/ui",
                        secure=is_secure(request, state_of(request)), httponly=True, samesite="lax")


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/ui", secure=is_secure(request, state_of(request)), httponly=True,
                           samesite="lax")


def set_login_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(LOGIN_COOKIE, token, max_age=LOGIN_FORM_SECONDS, path="/ui/login",
                        secure=is_secure(request, state_of(request)), httponly=True, samesite="lax")


def clear_login_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(LOGIN_COOKIE, path="/ui/login", secure=is_secure(request, state_of(request)),
                           httponly=True, samesite="lax")


def safe_next(value: Any) -> str:
    """Where to go after sign-in: a dashboard path only (never another site: `//evil.example`, `/\\evil`)."""
    if isinstance(value, str) and value.startswith("/ui/") and "\\" not in value and not value.startswith("/ui//") \
            and all(c.isprintable() for c in value) and len(value) <= 2000:
        return value
    return "/ui/"
