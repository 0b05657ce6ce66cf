"""Signing in and out: the sign-in page (email and password, or the account token where allowed) and sign-out."""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from posthouse.server.dashboard.rendering import render
from posthouse.server.dashboard.sessions import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    clear_login_cookie,
    clear_session_cookie,
    form_of,
    safe_next,
    session_of,
    set_login_cookie,
    set_session_cookie,
    state_of,
)
from posthouse.server.errors import SignInError
from posthouse.server.services.operators import Session


async def _login_page(request: Request, *, next_path: str, error: str | None = None, email: str = "",
                      status: int = 200, retry_after: float | None = None) -> Response:
    state = state_of(request)
    token = secrets.token_urlsafe(32)
    context = {"csrf": token, "next": next_path, "error": error, "email": email,
               "token_login": await state.operators.token_login_allowed()}
    headers = {"Retry-After": str(int(retry_after) + 1)} if retry_after else None
    response = render(request, "login.html", context, status=status, headers=headers)
    set_login_cookie(response, request, token)
    return response


async def login_page(request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    if await state_of(request).operators.resume(request.cookies.get(SESSION_COOKIE)) is not None:
        return RedirectResponse(next_path, 303)
    return await _login_page(request, next_path=next_path)


def _login_form_valid(request: Request, form: dict[str, str]) -> bool:
    """The double-submit check: the form's token is the one set in the cookie with the form."""
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    given = form.get(CSRF_FIELD, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), given.encode())


def _signed_in(request: Request, session: Session, next_path: str) -> Response:
    response = RedirectResponse(next_path, 303)
    set_session_cookie(response, request, session)
    clear_login_cookie(response, request)
    return response


async def login(request: Request) -> Response:
    form = form_of(request)
    next_path = safe_next(form.get("next"))
    email = form.get("email", "")
    if not _login_form_valid(request, form):
        return await _login_page(request, next_path=next_path, email=email, status=403,
                                 error="The sign-in form had expired. Please sign in again.")
    try:
        session = await state_of(request).operators.sign_in(email, form.get("password", ""),
                                                            request.client.host if request.client else None)
    except SignInError as exc:
        return await _login_page(request, next_path=next_path, email=email, error=str(exc),
                                 status=429 if exc.retry_after else 401, retry_after=exc.retry_after)
    return _signed_in(request, session, next_path)


async def login_with_token(request: Request) -> Response:
    form = form_of(request)
    next_path = safe_next(form.get("next"))
    if not _login_form_valid(request, form):
        return await _login_page(request, next_path=next_path, status=403,
                                 error="The sign-in form had expired. Please sign in again.")
    try:
        session = await state_of(request).operators.sign_in_with_token(
            form.get("token", ""), request.client.host if request.client else None)
    except SignInError as exc:
        return await _login_page(request, next_path=next_path, error=str(exc),
                                 status=429 if exc.retry_after else 401, retry_after=exc.retry_after)
    return _signed_in(request, session, next_path)


async def logout(request: Request) -> Response:
    await state_of(request).operators.sign_out(session_of(request))
    response = RedirectResponse("/ui/login", 303)
    clear_session_cookie(response, request)
    return response


ROUTES = [
    Route("/ui/login", login_page, methods=["GET"]),
    Route("/ui/login", login, methods=["POST"]),
    Route("/ui/login/token", login_with_token, methods=["POST"]),
    Route("/ui/logout", logout, methods=["POST"]),
]
