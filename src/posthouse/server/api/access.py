"""Who may call a route: the access kinds a route table names, the one authentication step, and the
typed call each kind hands its handler (docs/postmark-api.md §1.1).

Handlers never read a token header: the app asks the route's access kind to `admit` the request, and
the handler receives what that produced (`ServerCall`, `SendCall`, `AccountCall`, `PublicCall`). A new
kind of caller (a dashboard session, the public tracking endpoints) is a new `Access` with a call type of
its own; the existing handlers do not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar

from starlette.requests import Request

from posthouse.server.api.state import ApiState
from posthouse.server.services.accounts import Server
from posthouse.server.services.sending import TEST_TOKEN

Call_co = TypeVar("Call_co", covariant=True)


@dataclass(frozen=True, slots=True)
class ServerCall:
    """A request made with a server's token: the handler acts for `server`."""

    request: Request
    state: ApiState
    server: Server


@dataclass(frozen=True, slots=True)
class SendCall:
    """A send made with a server's token, or with the test token: then `server` is None and the message
    is validated and answered, never stored (docs/postmark-api.md §1.1)."""

    request: Request
    state: ApiState
    server: Server | None


@dataclass(frozen=True, slots=True)
class AccountCall:
    """A request made with the account token: the handler acts across servers."""

    request: Request
    state: ApiState


@dataclass(frozen=True, slots=True)
class PublicCall:
    """A request that needs no token."""

    request: Request
    state: ApiState


class Access(Protocol[Call_co]):
    """What a route needs of its caller; `admit` raises `AuthenticationError` (401, ErrorCode 10) when
    the request does not have it."""

    @property
    def scheme(self) -> str | None:
        """The OpenAPI security scheme this kind asks for (`server`, `account`), None for no token."""
        ...

    async def admit(self, request: Request, state: ApiState) -> Call_co: ...


class _ServerToken:
    scheme = "server"

    async def admit(self, request: Request, state: ApiState) -> ServerCall:
        server = await state.accounts.authenticate_server(request.headers.get("x-postmark-server-token"))
        return ServerCall(request, state, server)


class _ServerOrTestToken:
    scheme = "server"

    async def admit(self, request: Request, state: ApiState) -> SendCall:
        token = request.headers.get("x-postmark-server-token")
        server = None if token == TEST_TOKEN else await state.accounts.authenticate_server(token)
        return SendCall(request, state, server)


class _AccountToken:
    scheme = "account"

    async def admit(self, request: Request, state: ApiState) -> AccountCall:
        await state.accounts.authenticate_account(request.headers.get("x-postmark-account-token"))
        return AccountCall(request, state)


class _Public:
    scheme = None

    async def admit(self, request: Request, state: ApiState) -> PublicCall:
        return PublicCall(request, state)


SERVER: Access[ServerCall] = _ServerToken()
SERVER_OR_TEST: Access[SendCall] = _ServerOrTestToken()
ACCOUNT: Access[AccountCall] = _AccountToken()
PUBLIC: Access[PublicCall] = _Public()
