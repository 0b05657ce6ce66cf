"""The webhook poster against a real HTTP receiver on loopback (port 0), which checks our signature
with the `standardwebhooks` package.

`Receiver` is a raw asyncio HTTP/1.1 server in the test's own event loop: it records every request
and answers from a script (a status, an endless body, a slow drip, or nothing at all), so each
failure mode the poster must survive can be produced exactly.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from ipaddress import ip_network

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from posthouse.server.webhooks import poster as poster_module
from posthouse.server.webhooks.poster import (
    EXCERPT_BYTES,
    PostOutcome,
    PostResult,
    PostTarget,
    WebhookPoster,
    classify_status,
)
from posthouse.server.webhooks.signing import new_secret
from support import async_wait_for, free_port

# The receivers here listen on loopback, which an operator must allow (webhook_allowed_networks).
LOOPBACK = [ip_network("127.0.0.0/8"), ip_network("::1/128")]
BODY = b'{"RecordType":"Delivery","MessageID":"883953f4-6105-42a2-a16a-77a8eac79483","Recipient":"john@example.com"}'
EVENT_ID = "evt_2f6c1c0e"


# --- The receiver ------------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    target: str
    header_list: list[tuple[str, str]]
    body: bytes

    @property
    def headers(self) -> dict[str, str]:
        """Lower-cased names; repeated headers joined with ", " (RFC 9110 §5.3)."""
        joined: dict[str, str] = {}
        for name, value in self.header_list:
            key = name.lower()
            joined[key] = f"{joined[key]}, {value}" if key in joined else value
        return joined


Respond = Callable[[Received, asyncio.StreamWriter], Awaitable[None]]


def answer(status: int, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()) -> Respond:
    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        head = [f"HTTP/1.1 {status} Scripted", f"Content-Length: {len(body)}", "Connection: close"]
        head += [f"{name}: {value}" for name, value in headers]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()

    return respond


async def hang(request: Received, writer: asyncio.StreamWriter) -> None:
    await asyncio.Event().wait()  # cancelled when the receiver closes


def endless(status: int = 200) -> Respond:
    """An answer whose body never ends: the poster must stop reading, not wait or buffer."""

    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(f"HTTP/1.1 {status} Scripted\r\nContent-Length: 1000000000000\r\n\r\n".encode())
        chunk = b"x" * 65536
        while True:
            writer.write(chunk)
            await writer.drain()

    return respond


def drip(status: int) -> Respond:
    """An answer whose body arrives one byte at a time, forever."""

    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(f"HTTP/1.1 {status} Scripted\r\nContent-Length: 1000000\r\n\r\n".encode())
        while True:
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.05)

    return respond


OK = answer(200, b'{"ok":true}')


def kept(status: int = 200, *, then_close: bool = False) -> Respond:
    """An answer without `Connection: close`: the connection may carry the next request. With
    `then_close`, the receiver closes it anyway right after answering, without saying so."""

    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(f"HTTP/1.1 {status} Scripted\r\nContent-Length: 2\r\n\r\nok".encode())
        await writer.drain()
        if then_close:
            raise ConnectionResetError  # the receiver's finally closes the socket

    return respond


class Receiver:
    """An HTTP/1.1 receiver on 127.0.0.1, port 0; one request per connection unless `keep_alive`, then
    requests are read from a connection until the poster closes it. `connections` counts them."""

    def __init__(self, respond: Respond = OK, *, tls: ssl.SSLContext | None = None, keep_alive: bool = False) -> None:
        self.respond = respond
        self.tls = tls
        self.keep_alive = keep_alive
        self.connections = 0
        self.requests: list[Received] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    def url(self, host: str = "127.0.0.1", path: str = "/hook") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                header_list = []
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        header_list.append((name, value.strip()))
                request = Received(method, target, header_list, b"")
                request.body = await reader.readexactly(int(request.headers.get("content-length", "0")))
                self.requests.append(request)
                await self.respond(request, writer)
                if not self.keep_alive:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass  # the poster hung up (what several tests are about) or failed its TLS check
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()


def verified(received: Received, secret: str) -> object:
    """The body as the receiver's standardwebhooks library accepts it (raises if it does not)."""
    return Webhook(secret).verify(received.body, received.headers)


def fixed_resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


class Poster:
    """A WebhookPoster for one test, closed afterwards; loopback allowed unless `allowed_networks` says."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("allowed_networks", LOOPBACK)
        self.poster = WebhookPoster(**kwargs)  # type: ignore[arg-type]

    async def __aenter__(self) -> WebhookPoster:
        return self.poster

    async def __aexit__(self, *exc: object) -> None:
        await self.poster.aclose()


async def post(poster: WebhookPoster, url: str, secret: str = "", **target: object) -> PostResult:
    secret = secret or new_secret()
    return await poster.post(PostTarget(url, secret, **target), EVENT_ID, BODY, now_s=int(time.time()))  # type: ignore[arg-type]


# --- Delivered, signed -------------------------------------------------------------------------


async def test_delivered_signed_and_shaped_like_postmark() -> None:
    secret = new_secret()
    async with Receiver() as receiver, Poster() as poster:
        result = await post(poster, receiver.url(), secret)
    assert result.outcome is PostOutcome.DELIVERED
    assert (result.status_code, result.response_excerpt, result.error) == (200, "", None)  # nothing of a 2xx kept
    assert result.duration_ms > 0
    [request] = receiver.requests
    assert (request.method, request.target, request.body) == ("POST", "/hook", BODY)
    headers = request.headers
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "Posthouse"
    assert headers["webhook-id"] == EVENT_ID
    assert headers["host"] == f"127.0.0.1:{receiver.port}"
    assert "authorization" not in headers and "cookie" not in headers
    assert verified(request, secret) == {
        "RecordType": "Delivery",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Recipient": "john@example.com",
    }
    with pytest.raises(WebhookVerificationError, match="signature"):
        verified(request, new_secret())


async def test_the_webhook_id_is_stable_across_retries() -> None:
    secret = new_secret()
    now = int(time.time())
    async with Receiver(answer(500)) as receiver, Poster() as poster:
        for now_s in (now - 120, now):
            await poster.post(PostTarget(receiver.url(), secret), EVENT_ID, BODY, now_s=now_s)
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == EVENT_ID
    assert (first.headers["webhook-timestamp"], second.headers["webhook-timestamp"]) == (str(now - 120), str(now))
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    verified(first, secret)
    verified(second, secret)


# --- Status codes ------------------------------------------------------------------------------

STATUSES = [
    (200, PostOutcome.DELIVERED),
    (201, PostOutcome.DELIVERED),
    (202, PostOutcome.DELIVERED),
    (204, PostOutcome.DELIVERED),
    (403, PostOutcome.STOP),
    (410, PostOutcome.STOP),
    (500, PostOutcome.RETRY),
    (502, PostOutcome.RETRY),
    (503, PostOutcome.RETRY),
    (400, PostOutcome.RETRY),
    (401, PostOutcome.RETRY),
    (404, PostOutcome.RETRY),
    (408, PostOutcome.RETRY),
    (429, PostOutcome.RETRY),
    (301, PostOutcome.RETRY),
    (304, PostOutcome.RETRY),
]


@pytest.mark.parametrize(("status", "outcome"), STATUSES)
async def test_status_decides_the_outcome(status: int, outcome: PostOutcome) -> None:
    body = b"" if status in (204, 304) else b"receiver says " + str(status).encode()
    async with Receiver(answer(status, body)) as receiver, Poster() as poster:
        result = await post(poster, receiver.url())
    excerpt = "" if outcome is PostOutcome.DELIVERED else body.decode()  # only an answer that failed is kept
    assert (result.outcome, result.status_code, result.response_excerpt) == (outcome, status, excerpt)
    assert classify_status(status) is outcome
    if outcome is PostOutcome.DELIVERED:
        assert result.error is None
    else:
        assert result.error == f"the webhook receiver answered HTTP {status}"


async def test_a_redirect_is_not_followed() -> None:
    async with Receiver() as receiver, Poster() as poster:
        receiver.respond = answer(302, b"moved", [("Location", receiver.url(path="/elsewhere"))])
        result = await post(poster, receiver.url())
    assert (result.outcome, result.status_code) == (PostOutcome.RETRY, 302)
    assert [r.target for r in receiver.requests] == ["/hook"]


# --- Failures without an answer ----------------------------------------------------------------


async def test_a_receiver_that_never_answers_is_retried_after_the_timeout() -> None:
    async with Receiver(hang) as receiver, Poster(connect_timeout=0.5, total_timeout=0.5) as poster:
        started = time.monotonic()
        result = await post(poster, receiver.url())
        elapsed = time.monotonic() - started
    assert result.outcome is PostOutcome.RETRY
    assert (result.status_code, result.response_excerpt) == (None, "")
    assert result.error is not None and "did not answer within 0.5 s" in result.error
    assert 0.4 < elapsed < 3 and 400 < result.duration_ms < 3000
    assert len(receiver.requests) == 1  # it did arrive; no answer came


async def test_a_dripping_answer_is_cut_by_the_total_timeout() -> None:
    # Each byte of the excerpt arrives well within the read timeout: only the total deadline can end this.
    async with Receiver(drip(500)) as receiver, Poster(total_timeout=1.0) as poster:
        started = time.monotonic()
        result = await post(poster, receiver.url())
    assert result.outcome is PostOutcome.RETRY and result.status_code is None
    assert time.monotonic() - started < 4


async def test_a_dripping_2xx_is_delivered_without_waiting_for_its_body() -> None:
    async with Receiver(drip(200)) as receiver, Poster(total_timeout=5.0) as poster:
        started = time.monotonic()
        result = await post(poster, receiver.url())
    assert (result.outcome, result.status_code, result.response_excerpt) == (PostOutcome.DELIVERED, 200, "")
    assert time.monotonic() - started < 2


async def test_connection_refused_is_retried() -> None:
    async with Poster() as poster:
        result = await post(poster, f"http://127.0.0.1:{free_port()}/hook")
    assert (result.outcome, result.status_code) == (PostOutcome.RETRY, None)
    assert result.error is not None and "could not connect" in result.error


async def test_an_unresolvable_host_is_retried() -> None:
    async with Poster(resolver=fixed_resolver({})) as poster:
        result = await post(poster, "https://hooks.example.com/hook")
    assert result.outcome is PostOutcome.RETRY
    assert result.error is not None and "could not resolve" in result.error


# --- Response size -----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "excerpt"), [(200, ""), (500, "x" * EXCERPT_BYTES)])
async def test_a_huge_answer_is_cut_to_the_excerpt(status: int, excerpt: str) -> None:
    async with Receiver(endless(status)) as receiver, Poster(total_timeout=5) as poster:
        started = time.monotonic()
        result = await post(poster, receiver.url())
    assert result.status_code == status
    assert result.response_excerpt == excerpt
    assert time.monotonic() - started < 2  # it stopped reading; it did not wait for the end


async def test_a_binary_answer_becomes_readable_text() -> None:
    async with Receiver(answer(500, b"\xff\xfe" + "é".encode() * 600)) as receiver, Poster() as poster:
        result = await post(poster, receiver.url())
    assert result.response_excerpt == "\ufffd\ufffd" + "é" * ((EXCERPT_BYTES - 2) // 2)  # 256 bytes, decoded


# --- Auth and custom headers -------------------------------------------------------------------


async def test_basic_auth_and_custom_headers_arrive() -> None:
    secret = new_secret()
    custom = [("X-Api-Key", "k-123"), ("X-Multi", "a"), ("X-Multi", "b"), ("User-Agent", "Custom/1")]
    async with Receiver() as receiver, Poster() as poster:
        result = await post(poster, receiver.url(), secret, basic_auth=("hook-user", "pässword:1"), headers=custom)
    assert result.outcome is PostOutcome.DELIVERED
    [request] = receiver.requests
    expected = "Basic " + base64.b64encode("hook-user:pässword:1".encode()).decode()
    assert request.headers["authorization"] == expected
    assert request.headers["x-api-key"] == "k-123"
    assert [v for n, v in request.header_list if n.lower() == "x-multi"] == ["a", "b"]
    assert [v for n, v in request.header_list if n.lower() == "user-agent"] == ["Custom/1"]
    assert request.headers["content-type"] == "application/json"
    verified(request, secret)


async def test_a_custom_authorization_header_without_http_auth() -> None:
    async with Receiver() as receiver, Poster() as poster:
        await post(poster, receiver.url(), headers=[("Authorization", "Bearer tok")])
    assert receiver.requests[0].headers["authorization"] == "Bearer tok"


@pytest.mark.parametrize(
    "header",
    [
        ("Content-Type", "text/plain"),
        ("webhook-signature", "v1,forged"),
        ("Webhook-Id", "other"),
        ("Host", "internal.example.com"),
        ("Transfer-Encoding", "chunked"),
        ("X-Injected", "a\r\nX-Evil: 1"),
    ],
)
async def test_custom_headers_cannot_override_ours(header: tuple[str, str]) -> None:
    async with Receiver() as receiver, Poster() as poster:
        result = await post(poster, receiver.url(), headers=[header])
    assert (result.outcome, result.status_code) == (PostOutcome.REFUSED, None)
    assert receiver.requests == []


async def test_cookies_from_one_receiver_never_travel() -> None:
    async with Receiver(answer(200, b"", [("Set-Cookie", "session=abc; Path=/")])) as receiver, Poster() as poster:
        await post(poster, receiver.url())
        await post(poster, receiver.url())
    assert [r.headers.get("cookie") for r in receiver.requests] == [None, None]


# --- SSRF: validation at send time and the pinned address --------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/",
        "http://user:pass@127.0.0.1/",
        "ftp://127.0.0.1/",
        "http://010.0.0.1/",  # urlsplit and inet_aton read 8.0.0.1; httpx refuses it: refused either way
    ],
)
async def test_a_forbidden_target_is_refused_without_a_connection(url: str) -> None:
    async with Poster(resolver=fixed_resolver({})) as poster:
        result = await post(poster, url)
    assert (result.outcome, result.status_code, result.response_excerpt) == (PostOutcome.REFUSED, None, "")
    assert result.error


async def test_a_name_resolving_to_a_forbidden_address_is_refused() -> None:
    # DNS rebinding: one allowed answer (loopback, allowed here) and one private one.
    resolver = fixed_resolver({"rebind.example.com": ["127.0.0.1", "10.0.0.7"]})
    async with Receiver() as receiver, Poster(resolver=resolver) as poster:
        result = await post(poster, receiver.url("rebind.example.com"))
    assert result.outcome is PostOutcome.REFUSED
    assert result.error is not None and "10.0.0.7" in result.error
    assert receiver.requests == []


async def test_it_connects_to_the_checked_address_and_sends_the_name() -> None:
    resolver = fixed_resolver({"hooks.example.com": ["127.0.0.1"]})
    secret = new_secret()
    async with Receiver() as receiver, Poster(resolver=resolver) as poster:
        result = await post(poster, receiver.url("hooks.example.com"), secret)
    assert result.outcome is PostOutcome.DELIVERED
    assert resolver.calls == ["hooks.example.com"]  # resolved once, by us
    assert receiver.requests[0].headers["host"] == f"hooks.example.com:{receiver.port}"
    verified(receiver.requests[0], secret)


async def test_the_next_checked_address_is_tried_when_one_refuses() -> None:
    # Nothing listens on 127.0.0.2 (the receiver is bound to 127.0.0.1): the connection is refused.
    resolver = fixed_resolver({"hooks.example.com": ["127.0.0.2", "127.0.0.1"]})
    async with Receiver() as receiver, Poster(resolver=resolver) as poster:
        result = await post(poster, receiver.url("hooks.example.com"))
    assert result.outcome is PostOutcome.DELIVERED
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "2130706433"])
async def test_loopback_is_refused_unless_the_operator_allows_it(host: str) -> None:
    # The threat: with a server token, a webhook at http://127.0.0.1:<port>/ would post to any local
    # HTTP service and show its answer in the delivery log.
    async with Receiver(answer(404, b"<h1>admin console</h1>")) as receiver, Poster(allowed_networks=()) as poster:
        result = await post(poster, receiver.url(host))
    assert (result.outcome, result.status_code, result.response_excerpt) == (PostOutcome.REFUSED, None, "")
    assert result.error is not None and "loopback" in result.error
    assert receiver.requests == []


async def test_a_non_ascii_host_saved_before_normalisation_is_posted_as_checked() -> None:
    # "１２７。０。０。１" was once saved as a name; httpx cannot parse it. Checked and posted as 127.0.0.1.
    async with Receiver() as receiver, Poster() as poster:
        result = await post(poster, receiver.url("１２７。０。０。１"))
    assert result.outcome is PostOutcome.DELIVERED
    assert receiver.requests[0].headers["host"] == f"127.0.0.1:{receiver.port}"
    async with Receiver() as receiver, Poster(allowed_networks=()) as poster:
        refused = await post(poster, receiver.url("１２７。０。０。１"))
    assert refused.outcome is PostOutcome.REFUSED and receiver.requests == []


async def test_allowed_networks_reach_a_private_receiver() -> None:
    # 192.0.2.0/24 is documentation-only (RFC 5737): refused by default, and nothing answers there.
    resolver = fixed_resolver({"hooks.internal.example": ["192.0.2.7"]})
    async with Poster(resolver=resolver, allowed_networks=[ip_network("192.0.2.0/24")], connect_timeout=0.2) as poster:
        result = await post(poster, "http://hooks.internal.example/hook")
    # Allowed, so a connection was attempted and failed: RETRY, not REFUSED.
    assert result.outcome is PostOutcome.RETRY


# --- Kept-alive connections: reused for one host name only ---------------------------------------


async def test_posts_to_one_host_share_a_kept_alive_connection() -> None:
    async with Receiver(kept(), keep_alive=True) as receiver, Poster() as poster:
        results = [await post(poster, receiver.url()) for _ in range(5)]
    assert [r.outcome for r in results] == [PostOutcome.DELIVERED] * 5
    assert (len(receiver.requests), receiver.connections) == (5, 1)


async def test_two_host_names_on_one_address_never_share_a_connection() -> None:
    resolver = fixed_resolver({"a.example.com": ["127.0.0.1"], "b.example.com": ["127.0.0.1"]})
    async with Receiver(kept(), keep_alive=True) as receiver, Poster(resolver=resolver) as poster:
        for host in ("a.example.com", "b.example.com", "a.example.com", "b.example.com"):
            assert (await post(poster, receiver.url(host))).outcome is PostOutcome.DELIVERED
    assert [r.headers["host"].split(":")[0] for r in receiver.requests] == ["a.example.com", "b.example.com"] * 2
    assert receiver.connections == 2  # one per name, each reused once


async def test_a_connection_the_receiver_closed_silently_is_not_a_failed_post() -> None:
    """The receiver answers without `Connection: close` and hangs up: every post is still delivered, once."""
    async with Receiver(kept(then_close=True), keep_alive=True) as receiver, Poster() as poster:
        results = []
        for _ in range(5):
            results.append(await post(poster, receiver.url()))
            await asyncio.sleep(0.01)
    assert [r.outcome for r in results] == [PostOutcome.DELIVERED] * 5
    assert len(receiver.requests) == 5


async def test_a_kept_connection_dropped_without_an_answer_is_sent_again_at_once() -> None:
    """The second request on the kept connection is met by a hang-up, no answer (the race with a receiver's
    idle timeout): the post goes again at once on a new connection and is delivered, not left to the retry
    schedule."""
    answer_ok = kept()

    async def second_is_dropped(request: Received, writer: asyncio.StreamWriter) -> None:
        if len(receiver.requests) == 2:
            raise ConnectionResetError  # the receiver's finally closes the socket, nothing written
        await answer_ok(request, writer)

    async with Receiver(second_is_dropped, keep_alive=True) as receiver, Poster() as poster:
        first = await post(poster, receiver.url())
        second = await post(poster, receiver.url())
    assert (first.outcome, second.outcome) == (PostOutcome.DELIVERED, PostOutcome.DELIVERED)
    assert (len(receiver.requests), receiver.connections) == (3, 2)
    assert receiver.requests[1].headers["webhook-id"] == receiver.requests[2].headers["webhook-id"]


async def test_the_pools_of_hosts_posted_to_long_ago_are_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poster_module, "_MAX_HOSTS", 2)
    resolver = fixed_resolver({f"h{i}.example.com": ["127.0.0.1"] for i in range(4)})
    async with Receiver(kept(), keep_alive=True) as receiver, Poster(resolver=resolver, total_timeout=0.5) as poster:
        for i in range(4):
            assert (await post(poster, receiver.url(f"h{i}.example.com"))).outcome is PostOutcome.DELIVERED
        assert len(poster._clients) == 2 and len(poster._retired) == 2
        async def all_closed() -> bool:
            return not poster._retired

        await async_wait_for(all_closed, timeout=5)  # closed after the total timeout
    assert receiver.connections == 4


# --- TLS: the name is verified although the address is pinned ---------------------------------


@pytest.fixture(scope="module")
def hooks_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A certificate for hooks.example.com only (no IP address), so that verifying it proves the
    poster checked the name, not the 127.0.0.1 it connected to."""
    directory = tmp_path_factory.mktemp("hooks-tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=hooks.example.com",
            "-addext", "subjectAltName=DNS:hooks.example.com",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return server, ssl.create_default_context(cafile=str(cert))


async def test_https_to_a_pinned_address_verifies_the_name(hooks_tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_context, client_context = hooks_tls
    resolver = fixed_resolver({"hooks.example.com": ["127.0.0.1"], "other.example.com": ["127.0.0.1"]})
    secret = new_secret()
    async with (
        Receiver(tls=server_context) as receiver,
        Poster(resolver=resolver, verify=client_context) as poster,
    ):
        good = await post(poster, receiver.url("hooks.example.com"), secret)
        wrong_name = await post(poster, receiver.url("other.example.com"))
        by_address = await post(poster, receiver.url("127.0.0.1"))
    assert good.outcome is PostOutcome.DELIVERED
    verified(receiver.requests[0], secret)
    for result in (wrong_name, by_address):
        assert result.outcome is PostOutcome.RETRY
        assert result.error is not None and "certificate" in result.error.lower()
    assert len(receiver.requests) == 1


# --- uvloop ------------------------------------------------------------------------------------


async def _uvloop_scenarios() -> None:
    secret = new_secret()
    async with Receiver() as receiver, Poster() as poster:
        assert (await post(poster, receiver.url(), secret)).outcome is PostOutcome.DELIVERED
        verified(receiver.requests[0], secret)
    async with Receiver(endless(502)) as receiver, Poster() as poster:
        assert (await post(poster, receiver.url())).response_excerpt == "x" * EXCERPT_BYTES
    async with Receiver(hang) as receiver, Poster(total_timeout=0.3) as poster:
        assert (await post(poster, receiver.url())).outcome is PostOutcome.RETRY


def test_on_uvloop() -> None:
    """Production runs uvloop (docs/architecture.md §6a): the main scenarios once more on it."""
    uvloop = pytest.importorskip("uvloop")
    uvloop.run(_uvloop_scenarios())
