"""The webhook poster: one signed HTTP POST of one event to one target, its outcome as a value.

This is the only module that posts webhooks over HTTP (httpx). A post goes:

1. check the target again (URL and custom headers, `targets`): it was checked when saved, but the
   rules or `allowed_networks` may have changed since; a failure is REFUSED and nothing is sent;
2. resolve the host and check every address (`targets.resolve_and_check`);
3. connect to a checked address itself, not to the name: the request URL carries the address,
   `Host` carries the name, and TLS uses the name for SNI and certificate checks (httpx's
   `sni_hostname` request extension). If the first address refuses the connection the next is
   tried, as any client does. No second DNS lookup happens, so DNS rebinding cannot redirect us;
4. send the body with Content-Type, User-Agent, the Standard Webhooks headers, HTTP Basic auth
   and the custom headers; classify the status; keep at most EXCERPT_BYTES of a non-2xx answer's
   body and nothing of a 2xx one's (below).

The excerpt is readable by whoever holds the server token (the delivery log), so it is kept short and
only where it explains a failure: a webhook aimed at a service the operator allowed (a private
network, loopback) must not become a way to read that service's pages.

Every way the exchange can fail is translated in one place, `_translate`: a 4xx/5xx answer is a
value, never an exception (docs/architecture.md §5).

Postmark differences, on purpose: Postmark follows up to 10 redirects (docs/postmark-api.md §7.2); we
follow none, since a redirect could point anywhere, including at addresses we refuse. A 3xx is
therefore retried like any other non-2xx answer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.cookiejar
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import cast

import httpx

from posthouse.server.webhooks.signing import signature_headers
from posthouse.server.webhooks.targets import (
    Network,
    Resolver,
    WebhookHeaderError,
    WebhookUrlError,
    resolve_and_check,
    system_resolver,
    validate_webhook_headers,
    validate_webhook_url,
)

__all__ = [
    "EXCERPT_BYTES",
    "PostOutcome",
    "PostResult",
    "PostTarget",
    "WebhookPoster",
    "classify_status",
]

# Of a non-2xx answer's body, this much is read and kept for the delivery log (enough for an error message);
# the rest is never read, so a receiver cannot make us buffer more, however long (or endless) its answer.
EXCERPT_BYTES = 256
# Postmark stops retrying when the receiver answers 403 (docs/postmark-api.md §7.2, stated for inbound
# hooks); 410 Gone says the endpoint was removed on purpose, so retrying for 10 hours helps nobody.
_STOP_STATUSES = frozenset({403, 410})
# Kept-alive connections (WebhookPoster): per host name, how many idle ones and for how long; how many
# host names keep a pool. Idle sockets are bounded by their product (256).
_KEEPALIVE_PER_HOST = 4
_KEEPALIVE_SECONDS = 1.5  # below common servers' idle timeouts (gunicorn 2 s, Node.js 5 s)
_MAX_HOSTS = 64
_DRAIN_SECONDS = 0.5


class PostOutcome(StrEnum):
    """What the caller should do next with the event."""

    DELIVERED = "delivered"  # a 2xx answer: done
    RETRY = "retry"  # another status, a timeout or a connection failure: try again later
    STOP = "stop"  # 403 or 410: the receiver does not want it; do not retry
    REFUSED = "refused"  # the target failed validation (SSRF rules, bad headers); nothing was sent


@dataclass(frozen=True, slots=True)
class PostTarget:
    """Where and how to post: a webhook's URL, signing secret, HttpAuth and HttpHeaders."""

    url: str
    secret: str
    basic_auth: tuple[str, str] | None = None
    headers: Sequence[tuple[str, str]] = ()


@dataclass(frozen=True, slots=True)
class PostResult:
    """One attempt, as recorded in the delivery log."""

    outcome: PostOutcome
    status_code: int | None  # None when no answer arrived
    response_excerpt: str  # a non-2xx answer's first EXCERPT_BYTES bytes (UTF-8, errors replaced); "" for 2xx
    duration_ms: float
    error: str | None  # why it was not delivered, in words; None when delivered


def classify_status(status_code: int) -> PostOutcome:
    """2xx is delivered (Postmark: any 2xx for outbound event webhooks); 403 and 410 stop; else retry."""
    if 200 <= status_code < 300:
        return PostOutcome.DELIVERED
    if status_code in _STOP_STATUSES:
        return PostOutcome.STOP
    return PostOutcome.RETRY


class _RefuseAllCookies(http.cookiejar.DefaultCookiePolicy):
    """httpx keeps a cookie jar per client; one receiver's cookies must never reach another's."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False


def _basic_auth(username: str, password: str) -> str:
    """RFC 7617 Basic credentials, UTF-8 encoded (§2.1 charset="UTF-8")."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _translate(exc: Exception, total_timeout: float) -> tuple[PostOutcome, str]:
    """The one place where a failed exchange becomes an outcome and an explanation."""
    match exc:
        case WebhookUrlError() | WebhookHeaderError():
            return PostOutcome.REFUSED, str(exc)
        case httpx.InvalidURL() | httpx.UnsupportedProtocol():
            # httpx parses some URLs more strictly than urlsplit ("http://010.0.0.1/").
            return PostOutcome.REFUSED, f"webhook URL is malformed: {exc}"
        case httpx.ConnectTimeout():
            return PostOutcome.RETRY, "timed out connecting to the webhook receiver"
        case httpx.TimeoutException() | TimeoutError():
            return PostOutcome.RETRY, f"the webhook receiver did not answer within {total_timeout:g} s"
        case httpx.ConnectError():
            return PostOutcome.RETRY, f"could not connect to the webhook receiver: {exc}"
        case socket.gaierror():
            return PostOutcome.RETRY, f"could not resolve the webhook host: {exc}"
        case _:
            # Any other transport failure (reset, protocol error, TLS alert): worth another try.
            return PostOutcome.RETRY, f"{type(exc).__name__}: {exc}"


async def _drain_short_body(response: httpx.Response) -> None:
    """Read a 2xx answer's body when it says it is short, so that its connection can carry the next post
    (an unread body ends the connection); never longer than `_DRAIN_SECONDS`, and never a reason to fail:
    the post was delivered when the status came."""
    length = response.headers.get("content-length", "")
    if not (length.isdigit() and int(length) <= EXCERPT_BYTES):
        return
    with contextlib.suppress(httpx.HTTPError, TimeoutError):
        async with asyncio.timeout(_DRAIN_SECONDS):
            await response.aread()


class WebhookPoster:
    """Posts webhook events; one instance per process, shared by all dispatch tasks.

    Connections are kept alive for a few seconds, in one pool per host name: httpx keys its pool by the
    address we connect to (step 3), so one pool shared by every host would reuse a TLS session made
    for one name to post another name's events to the same address. Within a name's own pool a
    connection is reused only when the name resolves, and passes the checks, to the same address
    again. The pools of the `_MAX_HOSTS` names posted to last are kept; an older one is closed once
    no post can still be using it.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 5.0,
        total_timeout: float = 10.0,
        allowed_networks: Sequence[Network] = (),
        resolver: Resolver = system_resolver,
        verify: ssl.SSLContext | bool = True,
        user_agent: str = "Posthouse",
        max_connections: int = 100,
    ) -> None:
        self._total_timeout = total_timeout
        self._connect_timeout = connect_timeout
        self._allowed_networks = tuple(allowed_networks)
        self._resolver = resolver
        self._verify = verify
        self._user_agent = user_agent
        self._max_connections = max_connections
        self._clients: OrderedDict[tuple[str, str, int], httpx.AsyncClient] = OrderedDict()
        self._retired: dict[asyncio.Task[None], httpx.AsyncClient] = {}

    def _client_for(self, scheme: str, host: str, port: int) -> httpx.AsyncClient:
        """The pool of one host name (see the class), made at its first post."""
        key = (scheme, host, port)
        client = self._clients.get(key)
        if client is not None:
            self._clients.move_to_end(key)
            return client
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(self._total_timeout, connect=self._connect_timeout),
            limits=httpx.Limits(max_connections=self._max_connections, max_keepalive_connections=_KEEPALIVE_PER_HOST,
                                keepalive_expiry=_KEEPALIVE_SECONDS),
            follow_redirects=False,
            # No proxies, .netrc credentials or CA bundles from the environment: a proxy would
            # connect to the name itself and defeat the address checks.
            trust_env=False,
            verify=self._verify,
            cookies=http.cookiejar.CookieJar(policy=_RefuseAllCookies()),
            # Identity encoding: the read limit applies to what the receiver sent, not to what a
            # few kilobytes of gzip expand to. Custom headers cannot change this (targets).
            headers={"User-Agent": self._user_agent, "Accept-Encoding": "identity"},
        )
        self._clients[key] = client
        if len(self._clients) > _MAX_HOSTS:
            _, oldest = self._clients.popitem(last=False)
            self._retire(oldest)
        return client

    def _retire(self, client: httpx.AsyncClient) -> None:
        """Close a pool no longer kept once every post that may be using it has ended (each is bounded by
        the total timeout)."""
        async def close_later() -> None:
            await asyncio.sleep(self._total_timeout + 1)
            await client.aclose()

        task = asyncio.get_running_loop().create_task(close_later())
        self._retired[task] = client
        task.add_done_callback(lambda done: self._retired.pop(done, None))

    async def aclose(self) -> None:
        for task in self._retired:
            task.cancel()
        clients = [*self._clients.values(), *self._retired.values()]
        self._clients.clear()
        self._retired.clear()
        for client in clients:
            await client.aclose()

    async def __aenter__(self) -> WebhookPoster:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def post(self, target: PostTarget, event_id: str, body: bytes, *, now_s: int) -> PostResult:
        """POST `body` to `target`, signed with `event_id` (stable across retries) and `now_s`.

        Never raises for anything the receiver or the network does; the whole attempt, DNS
        included, is bounded by the total timeout.
        """
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._total_timeout):
                status_code, excerpt = await self._exchange(target, event_id, body, now_s)
        except (WebhookUrlError, WebhookHeaderError, httpx.InvalidURL, httpx.HTTPError, OSError, TimeoutError) as exc:
            outcome, reason = _translate(exc, self._total_timeout)
            return PostResult(outcome, None, "", _elapsed_ms(started), reason)
        outcome = classify_status(status_code)
        error = None if outcome is PostOutcome.DELIVERED else f"the webhook receiver answered HTTP {status_code}"
        return PostResult(outcome, status_code, excerpt, _elapsed_ms(started), error)

    async def _exchange(self, target: PostTarget, event_id: str, body: bytes, now_s: int) -> tuple[int, str]:
        # The URL as checked (normalised: a row saved before normalisation is posted in its checked form).
        checked = validate_webhook_url(target.url, allowed_networks=self._allowed_networks)
        custom = validate_webhook_headers(target.headers, has_basic_auth=target.basic_auth is not None)
        # Check the host as httpx parsed it, since that is the parse the request is built from:
        # two URL parsers that disagree about the host are a classic SSRF bypass.
        url = httpx.URL(checked)
        host = url.raw_host.decode("ascii")  # IDNA-encoded, no brackets
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = await resolve_and_check(host, port, self._allowed_networks, resolver=self._resolver)

        headers = [
            *custom,
            ("Host", url.netloc.decode("ascii")),
            ("Content-Type", "application/json"),
            *signature_headers(target.secret, event_id, now_s, body).items(),
        ]
        if target.basic_auth is not None:
            headers.append(("Authorization", _basic_auth(*target.basic_auth)))

        client = self._client_for(url.scheme, host, port)
        failure: httpx.TransportError | None = None
        for address in addresses:
            request = client.build_request(
                "POST", url.copy_with(host=address), content=body, headers=headers, extensions={"sni_hostname": host}
            )
            try:
                return await self._send(client, request)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                failure = exc  # nothing was sent; the next address may answer
            except httpx.RemoteProtocolError:
                # Closed without an answer: most often a kept-alive connection the receiver closed as we
                # reused it (the pool drops it). Once more at once (the event's id is the same, so a
                # receiver that did get the first can tell); a second failure is the attempt's outcome.
                return await self._send(client, request)
        assert failure is not None  # resolve_and_check returns at least one address
        raise failure

    async def _send(self, client: httpx.AsyncClient, request: httpx.Request) -> tuple[int, str]:
        response = await client.send(request, stream=True)
        received = bytearray()
        try:
            if classify_status(response.status_code) is PostOutcome.DELIVERED:
                await _drain_short_body(response)
            else:
                # aiter_raw is an async generator; close it here rather than when it is collected.
                raw = cast(AsyncGenerator[bytes, None], response.aiter_raw())
                async with contextlib.aclosing(raw) as chunks:
                    async for chunk in chunks:
                        received += chunk[: EXCERPT_BYTES - len(received)]
                        if len(received) >= EXCERPT_BYTES:
                            break  # the rest is never read; closing the response drops the connection
        finally:
            await response.aclose()
        return response.status_code, received.decode("utf-8", "replace")


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
