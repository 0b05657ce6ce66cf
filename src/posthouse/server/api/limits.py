"""Limits on what one HTTP request may cost before anyone knows who sent it: request bodies, the test token.

The threat: reading and validating a body costs memory and CPU in proportion to its size (a 50 MB
batch decodes to several times that in objects), and `POSTMARK_API_TEST` needs no account at all
(docs/postmark-api.md §1.1). Sixteen 45 MB test-token batches at once took a server from 180 MB to
843 MB and `/healthz` to 13 s. So:

- every request body is metered against one process-wide byte budget (`BodyBudget`) while it is read
  and handled; a request that finds no room waits briefly, in order of arrival, then hears 503;
- a body that stops arriving is cut off after the body timeout (408) instead of holding its task;
- requests carrying the test token get a much smaller body limit (413) and a small number of places
  (429 beyond): the token is for checking that a client library builds valid requests, not for load;
- with `api_rate_limit_per_token`, each token (server, account or test) makes that many requests per second
  on average (a token bucket, `services/rate_limits.py`); past it 429 with `Retry-After`. It is counted
  before the token is looked up, so a flood of made-up tokens is refused as cheaply as a real one's.

`RequestLimits.admit` wraps one request; routes read the body as before (`payloads.read_body`) and
every refusal is an ApiError, turned into `{ErrorCode, Message}` by the app's one translator.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.types import Message, Receive, Scope

from posthouse.server.errors import ApiError
from posthouse.server.services.rate_limits import RateLimiter
from posthouse.server.services.sending import TEST_TOKEN

__all__ = ["BodyBudget", "LimitSettings", "RequestLimits"]

_TOKEN_HEADER = b"x-postmark-server-token"
_TOKEN_HEADERS = (_TOKEN_HEADER, b"x-postmark-account-token")


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """Mirrors the `http_body_*` and `test_token_*` settings."""

    body_budget: int = 128 * 1024 * 1024
    body_wait: float = 5.0
    body_timeout: float = 30.0
    test_token_max_body: int = 1024 * 1024
    test_token_concurrency: int = 4
    requests_per_token: int = 0  # `api_rate_limit_per_token`; 0: no limit
    requests_burst: int = 0  # `api_rate_limit_burst`; 0: one second's worth


class BodyBudget:
    """Bytes of request bodies that may be held at once; waiters are served in order of arrival.

    In order, so a large body is not starved by a stream of small ones: a request asking for more
    than is free waits, and everyone behind it waits too, until it fits or gives up.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.available = capacity
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    async def acquire(self, size: int, timeout: float) -> int:
        """Take `size` bytes (at most the whole budget) within `timeout` seconds; the bytes taken.
        Raises TimeoutError when there was no room in time (nothing is taken then)."""
        size = min(size, self.capacity)
        if size <= 0:
            return 0
        if not self._waiters and self.available >= size:
            self.available -= size
            return size
        waiter = (size, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter[1]), timeout)
        except BaseException:
            if waiter[1].done() and not waiter[1].cancelled():
                self.release(size)  # granted just as the wait ended: give it back
            else:
                waiter[1].cancel()
                self._waiters.remove(waiter)
                self._grant()  # a large waiter leaving may let smaller ones behind it in
            raise
        return size

    def release(self, size: int) -> None:
        self.available += size
        self._grant()

    def _grant(self) -> None:
        while self._waiters and self._waiters[0][0] <= self.available:
            size, future = self._waiters.popleft()
            if not future.done():
                self.available -= size
                future.set_result(None)


class _Metered:
    """A request's `receive`: counts body bytes against the budget (and the test token's cap), and
    gives up on a body that stops arriving."""

    def __init__(self, limits: RequestLimits, receive: Receive, scope: Scope, cap: int | None) -> None:
        self._limits = limits
        self._receive = receive
        self._cap = cap
        self._declared = _content_length(scope)
        self.held = 0
        self._received = 0
        self._complete = False

    async def __call__(self) -> Message:
        limits = self._limits
        settings = limits.settings
        if self._complete:
            return await self._receive()  # after the body only a disconnect can come; nothing to meter
        if self.held == 0 and self._declared:
            await self._take(self._declared)  # the whole declared body at once: one wait, not one per chunk
        try:
            async with asyncio.timeout(settings.body_timeout):
                message = await self._receive()
        except TimeoutError:
            raise ApiError(402, f"The request body stopped arriving: nothing came for {settings.body_timeout:g} s.",
                           408) from None
        if message["type"] != "http.request":
            return message
        self._received += len(message.get("body", b""))
        if self._cap is not None and self._received > self._cap:
            raise _test_token_too_large(self._cap)
        if self._received > self.held:
            await self._take(self._received - self.held)
        self._complete = not message.get("more_body", False)
        return message

    async def _take(self, size: int) -> None:
        budget = self._limits.budget
        if self.held >= budget.capacity:
            return  # a body larger than the whole budget holds all of it; it cannot hold more
        try:
            self.held += await budget.acquire(size, self._limits.settings.body_wait)
        except TimeoutError:
            raise ApiError(100, "The server is busy reading other large requests; retry in a few seconds.",
                           503) from None


class RequestLimits:
    """The limits shared by every request of one process."""

    def __init__(self, settings: LimitSettings | None = None) -> None:
        self.settings = settings or LimitSettings()
        self.budget = BodyBudget(self.settings.body_budget)
        self.test_token_requests = 0  # in flight now
        self.per_token = RateLimiter(self.settings.requests_per_token, self.settings.requests_burst) \
            if self.settings.requests_per_token > 0 else None

    @contextlib.asynccontextmanager
    async def admit(self, scope: Scope, receive: Receive) -> AsyncIterator[Receive]:
        """Hold a place for one request; yields the `receive` its handler must read the body through.
        Raises ApiError (429, 413) when the request may not start."""
        settings = self.settings
        if self.per_token is not None:
            token = _token(scope)
            if token is not None:
                self.per_token.check(token, 1, f"a token may make {self.per_token.rate:g} requests per second")
        is_test = _server_token(scope) == TEST_TOKEN.encode()
        if is_test:
            if self.test_token_requests >= settings.test_token_concurrency:
                raise ApiError(429, f"Too many requests with the test token {TEST_TOKEN} at once (at most "
                                    f"{settings.test_token_concurrency}); retry shortly.", 429)
            declared = _content_length(scope)
            if declared is not None and declared > settings.test_token_max_body:
                raise _test_token_too_large(settings.test_token_max_body)
            self.test_token_requests += 1
        metered = _Metered(self, receive, scope, settings.test_token_max_body if is_test else None)
        try:
            yield metered
        finally:
            if metered.held:
                self.budget.release(metered.held)
            if is_test:
                self.test_token_requests -= 1


def _test_token_too_large(cap: int) -> ApiError:
    return ApiError(300, f"Requests with the test token {TEST_TOKEN} may be at most {cap // 1024} KB; use a server "
                         "token for larger ones.", 413)


def _server_token(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == _TOKEN_HEADER:  # ASGI servers give header names in lower case
            return bytes(value)
    return None


def _token(scope: Scope) -> bytes | None:
    """The digest of the request's token (server or account), the key of its rate limit: a digest, so that
    the buckets hold neither secrets nor header-sized keys."""
    for name, value in scope.get("headers", ()):
        if name in _TOKEN_HEADERS:
            return hashlib.sha256(bytes(value).strip()).digest()
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
