"""Safe retries: a lost answer, a 503, a 429, a timeout, a refused connection; one Idempotency-Key per send."""

from __future__ import annotations

import time

import httpx
import pytest

import posthouse
from posthouse.client.retries import RetryPolicy
from sdk.sdk_support import FlakyProxy, Tenant
from support import free_port

FAST = RetryPolicy(retries=3, backoff=0.01, max_backoff=0.05)
EMAIL = posthouse.Email(sender="app@example.com", to="once@example.com", subject="Exactly once", text_body="x")


async def test_a_dropped_connection_and_a_503_send_exactly_once(tenant: Tenant, flavour) -> None:  # type: ignore[no-untyped-def]
    with FlakyProxy(tenant.base_url, ["drop", "503"]) as proxy:
        client = flavour.server_client(tenant.token, proxy.base_url, retries=FAST)
        try:
            sent = await flavour(client.outbound.send(EMAIL))
        finally:
            await flavour.close(client)
    assert sent.error_code == 0
    assert [(r.method, r.path) for r in proxy.requests] == [("POST", "/email")] * 3
    keys = {r.headers.get("idempotency-key") for r in proxy.requests}
    assert len(keys) == 1 and None not in keys  # one generated key, on every attempt
    assert len({r.body for r in proxy.requests}) == 1
    listed = tenant.get("/messages/outbound", count=50, offset=0)
    assert [m["MessageID"] for m in listed["Messages"]] == [sent.message_id]


async def test_a_batch_retries_with_the_callers_key(tenant: Tenant, flavour) -> None:  # type: ignore[no-untyped-def]
    with FlakyProxy(tenant.base_url, ["503"]) as proxy:
        client = flavour.server_client(tenant.token, proxy.base_url, retries=FAST)
        try:
            results = await flavour(client.outbound.send_batch([EMAIL, EMAIL], idempotency_key="signup-42"))
        finally:
            await flavour.close(client)
    assert [r.error_code for r in results] == [0, 0]
    assert [r.headers.get("idempotency-key") for r in proxy.requests] == ["signup-42", "signup-42"]
    assert tenant.get("/messages/outbound", count=50, offset=0)["TotalCount"] == 2


async def test_reads_retry_and_give_up_after_the_last_retry(tenant: Tenant, flavour) -> None:  # type: ignore[no-untyped-def]
    with FlakyProxy(tenant.base_url, ["503"] * 3) as proxy:
        client = flavour.server_client(tenant.token, proxy.base_url, retries=RetryPolicy(2, 0.01, 0.05))
        try:
            with pytest.raises(posthouse.ServerError) as failed:
                await flavour(client.server.get())
            assert (failed.value.http_status, failed.value.error_code) == (503, 100)
            assert len(proxy.requests) == 3  # the first try and two retries
            assert (await flavour(client.server.get())).id == tenant.id  # the script is used up: forwarded
        finally:
            await flavour.close(client)


async def test_calls_that_could_act_twice_are_not_retried_after_they_may_have_arrived(  # type: ignore[no-untyped-def]
    tenant: Tenant, flavour
) -> None:
    with FlakyProxy(tenant.base_url, ["drop", "503"]) as proxy:
        account = flavour.account_client(tenant.account_token, proxy.base_url, retries=FAST)
        try:
            with pytest.raises(posthouse.ConnectionFailedError) as dropped:
                await flavour(account.servers.create(posthouse.ServerRequest(name=f"{tenant.name}-x")))
            assert dropped.value.request_sent is True
            with pytest.raises(posthouse.ServerError):
                await flavour(account.servers.create(posthouse.ServerRequest(name=f"{tenant.name}-x")))
        finally:
            await flavour.close(account)
    assert len(proxy.requests) == 2


def rate_limited_then_ok(calls: list[httpx.Request], retry_after: str) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(
                429, headers={"Retry-After": retry_after}, json={"ErrorCode": 0, "Message": "Slow down"}
            )
        return httpx.Response(200, json={"TotalCount": 0, "Servers": []})

    return httpx.MockTransport(answer)


def test_429_waits_retry_after_even_for_calls_that_are_not_replayable() -> None:
    calls: list[httpx.Request] = []
    client = posthouse.sync.AccountClient(
        "t", base_url="http://posthouse.test", transport=rate_limited_then_ok(calls, "0")
    )
    with client:
        assert client.servers.list().total_count == 0
    assert len(calls) == 2


async def test_429_beyond_the_longest_wait_is_raised_with_retry_after() -> None:
    calls: list[httpx.Request] = []
    transport = rate_limited_then_ok(calls, "120")
    async with posthouse.AccountClient("t", base_url="http://posthouse.test", transport=transport) as client:
        with pytest.raises(posthouse.RateLimitedError) as limited:
            await client.servers.list()
    assert limited.value.retry_after == 120.0 and limited.value.http_status == 429
    assert len(calls) == 1


async def test_a_connect_error_is_retried_even_for_a_create() -> None:
    calls: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, content=b"not json")

    transport = httpx.MockTransport(answer)
    async with posthouse.AccountClient("t", base_url="http://posthouse.test", retries=FAST, transport=transport) as c:
        with pytest.raises(posthouse.UnexpectedResponseError):  # a 200 that is not JSON: never retried
            await c.servers.create(posthouse.ServerRequest(name="x"))
    assert len(calls) == 2


async def test_a_timeout_is_a_typed_error(flavour) -> None:  # type: ignore[no-untyped-def]
    with FlakyProxy(None, ["hang"] * 3) as proxy:
        client = flavour.server_client("t", proxy.base_url, timeout=0.2, retries=RetryPolicy(1, 0.01, 0.05))
        started = time.monotonic()
        try:
            with pytest.raises(posthouse.RequestTimeoutError) as timed_out:
                await flavour(client.outbound.send(EMAIL))
        finally:
            await flavour.close(client)
    assert timed_out.value.request_sent is True
    assert isinstance(timed_out.value, posthouse.NetworkError)
    assert len(proxy.requests) == 2  # sends are replayable: retried once, then raised
    assert time.monotonic() - started < 5


async def test_a_refused_connection_is_a_typed_error(flavour) -> None:  # type: ignore[no-untyped-def]
    client = flavour.server_client("t", f"http://127.0.0.1:{free_port()}", retries=RetryPolicy(2, 0.01, 0.05))
    try:
        with pytest.raises(posthouse.ConnectionFailedError) as refused:
            await flavour(client.server.get())
    finally:
        await flavour.close(client)
    assert refused.value.request_sent is False
    assert isinstance(refused.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize(
    ("error", "replayable", "retried"),
    [
        (posthouse.ConnectionFailedError("x", request_sent=False), False, True),
        (posthouse.ConnectionFailedError("x", request_sent=True), False, False),
        (posthouse.ConnectionFailedError("x", request_sent=True), True, True),
        (posthouse.RequestTimeoutError("x", request_sent=True), True, True),
        (posthouse.RequestTimeoutError("x", request_sent=False), False, True),
        (posthouse.ServerError("x", http_status=500), True, True),
        (posthouse.ServerError("x", http_status=500), False, False),
        (posthouse.RateLimitedError("x", retry_after=None), False, True),
        (posthouse.InvalidRequestError("x", error_code=300, http_status=422), True, False),
        (posthouse.InvalidTokenError("x", error_code=10, http_status=401), True, False),
        (posthouse.UnexpectedResponseError("x", http_status=200), True, False),
    ],
)
def test_what_is_retried(error: posthouse.PosthouseError, replayable: bool, retried: bool) -> None:
    policy = RetryPolicy(retries=1, backoff=1.0, max_backoff=4.0)
    wait = policy.wait_before_retry(0, error, replayable=replayable)
    assert (wait is not None) == retried
    assert policy.wait_before_retry(1, error, replayable=replayable) is None  # no retries left


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(retries=10, backoff=1.0, max_backoff=4.0)
    error = posthouse.ServerError("x", http_status=503)
    for retry, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (5, 4.0)]:
        waits = {policy.wait_before_retry(retry, error, replayable=True) for _ in range(50)}
        assert all(w is not None and ceiling / 2 <= w <= ceiling for w in waits)
        assert len(waits) > 1  # jittered


def test_a_send_still_in_flight_is_asked_again_not_given_up() -> None:
    """409 / ErrorCode 1611 means the first attempt with this key still runs: a replayable send waits
    and asks again (the answer then replays); anything else in the 4xx range is raised at once."""
    from posthouse.client.errors import InvalidRequestError
    from posthouse.client.retries import RetryPolicy

    policy = RetryPolicy(retries=2, backoff=0.01, max_backoff=0.02)
    in_flight = InvalidRequestError("still in progress", error_code=1611, http_status=409)
    refused = InvalidRequestError("bad", error_code=300, http_status=422)
    assert policy.wait_before_retry(0, in_flight, replayable=True) is not None
    assert policy.wait_before_retry(0, in_flight, replayable=False) is None
    assert policy.wait_before_retry(0, refused, replayable=True) is None
    assert policy.wait_before_retry(2, in_flight, replayable=True) is None
