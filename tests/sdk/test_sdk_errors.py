"""Typed errors: answers to exceptions, Postmark's inactive-recipient text, Retry-After, and bad settings."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

import posthouse
from posthouse.client.protocol import (
    error_from_answer,
    error_from_result,
    parse_inactive_recipients,
    parse_retry_after,
)

INACTIVE = (
    "You tried to send to recipient(s) that have been marked as inactive. Found inactive addresses: "
    "a@x.com, b@y.com. Inactive recipients are ones that have generated a hard bounce, a spam complaint, "
    "or a manual suppression."
)


@pytest.mark.parametrize(
    ("message", "addresses"),
    [
        (INACTIVE, ["a@x.com", "b@y.com"]),
        # the batch item text (docs/postmark-api.md §2.6), with its trailing space
        (
            "You tried to send to a recipient that has been marked as inactive. Found inactive addresses: x@y.com. "
            "Inactive recipients are ones that have generated a hard bounce, a spam complaint, "
            "or a manual suppression. ",
            ["x@y.com"],
        ),
        ("Message OK, but will not deliver to these inactive addresses: a@x.com, b@x.com.", ["a@x.com", "b@x.com"]),
        # the partial text with the sentence after the list, as Posthouse (and anymail's recorded answer) has it
        ("Message OK, but will not deliver to these inactive addresses: a@x.com, b@x.com. Inactive recipients are ones "
         "that have generated a hard bounce, a spam complaint, or a manual suppression.", ["a@x.com", "b@x.com"]),
        ("Found inactive addresses: solo@example.co.uk", ["solo@example.co.uk"]),
        ("Something else entirely.", []),
    ],
)
def test_inactive_addresses_are_parsed_from_postmarks_text(message: str, addresses: list[str]) -> None:
    assert parse_inactive_recipients(message) == addresses


NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("Thu, 01 Jan 2026 12:00:30 GMT", 30.0),
        ("Thu, 01 Jan 2026 11:00:00 GMT", 0.0),  # in the past: no wait
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def body(code: int, message: str) -> bytes:
    return f'{{"ErrorCode": {code}, "Message": "{message}"}}'.encode()


@pytest.mark.parametrize(
    ("status", "content", "kind", "code"),
    [
        (401, body(10, "Request does not contain a valid Server token."), posthouse.InvalidTokenError, 10),
        (401, b"", posthouse.InvalidTokenError, 0),
        (422, body(300, "Invalid 'From' address: 'test'."), posthouse.InvalidRequestError, 300),
        (422, body(406, INACTIVE), posthouse.InactiveRecipientsError, 406),
        (422, body(10, "wrong kind of token"), posthouse.InvalidTokenError, 10),
        (404, body(12, "Bulk send not found"), posthouse.InvalidRequestError, 12),
        (413, body(300, "too large"), posthouse.InvalidRequestError, 300),
        (429, body(0, "slow down"), posthouse.RateLimitedError, 0),
        (500, body(101, "Unexpected error"), posthouse.ServerError, 101),
        (502, b"<html>Bad gateway</html>", posthouse.ServerError, 0),
        (503, body(100, "Maintenance"), posthouse.ServerError, 100),
        (302, b"", posthouse.UnexpectedResponseError, 0),
    ],
)
def test_answers_become_typed_errors(status: int, content: bytes, kind: type, code: int) -> None:
    error = error_from_answer(status, {"X-Request-Id": "req-1"}, content)
    assert type(error) is kind
    assert isinstance(error, posthouse.APIError) and isinstance(error, posthouse.PosthouseError)
    assert (error.http_status, error.error_code, error.request_id) == (status, code, "req-1")
    assert error.message
    assert f"[{code}]" in str(error) and f"HTTP {status}" in str(error)


def test_a_refused_batch_item_is_an_error_value() -> None:
    item = posthouse.SendResponse(to="a@x.com", submitted_at="", message_id="", error_code=406, message=INACTIVE)
    error = error_from_result(item)
    assert isinstance(error, posthouse.InactiveRecipientsError)
    assert error.inactive_recipients == ["a@x.com", "b@y.com"] and error.http_status == 200


def fake_406(request: httpx.Request) -> httpx.Response:
    return httpx.Response(422, json={"ErrorCode": 406, "Message": INACTIVE}, headers={"X-PM-ApiErrorCode": "406"})


EMAIL = posthouse.Email(sender="app@example.com", to="a@x.com, b@y.com", subject="s", text_body="t")


async def test_a_406_answer_raises_inactive_recipients_async() -> None:
    transport = httpx.MockTransport(fake_406)
    async with posthouse.ServerClient("token", base_url="http://posthouse.test", transport=transport) as client:
        with pytest.raises(posthouse.InactiveRecipientsError) as refused:
            await client.outbound.send(EMAIL)
    assert refused.value.inactive_recipients == ["a@x.com", "b@y.com"]
    assert (refused.value.error_code, refused.value.http_status) == (406, 422)
    assert isinstance(refused.value, posthouse.InvalidRequestError)


def test_a_406_answer_raises_inactive_recipients_sync() -> None:
    transport = httpx.MockTransport(fake_406)
    client = posthouse.sync.ServerClient("token", base_url="http://posthouse.test", transport=transport)
    with client, pytest.raises(posthouse.InactiveRecipientsError) as refused:
        client.outbound.send(EMAIL)
    assert refused.value.inactive_recipients == ["a@x.com", "b@y.com"]


def test_a_success_that_is_not_the_expected_json_is_unexpected() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>captive portal</html>"))
    client = posthouse.sync.ServerClient("token", base_url="http://posthouse.test", transport=transport)
    with client, pytest.raises(posthouse.UnexpectedResponseError) as wrong:
        client.server.get()
    assert wrong.value.http_status == 200


def test_what_goes_on_the_wire() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"To": "a@x.com", "SubmittedAt": "now", "MessageID": "m", "ErrorCode": 0, "Message": "OK"}
        )

    transport = httpx.MockTransport(answer)
    with posthouse.sync.ServerClient("token-1", base_url="http://posthouse.test/", transport=transport) as client:
        client.outbound.send(EMAIL, send_at=datetime(2030, 5, 1, 9, 30, tzinfo=UTC), idempotency_key="k-1")
        client.outbound.send(EMAIL)
        client.outbound.send(posthouse.Email(sender="a@b.c", to="d@e.f", send_at="2030-05-01T09:30:00Z"))
        with pytest.raises(ValueError, match="time zone"):
            client.outbound.send(EMAIL, send_at=datetime(2030, 5, 1, 9, 30))
    first, second, third = seen
    assert first.url == "http://posthouse.test/email"
    assert first.headers["X-Postmark-Server-Token"] == "token-1"
    assert first.headers["Accept"] == "application/json"
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["Idempotency-Key"] == "k-1"
    assert first.headers["User-Agent"].startswith("posthouse-python/")
    assert first.read() == (
        b'{"From":"app@example.com","To":"a@x.com, b@y.com","Subject":"s","TextBody":"t",'
        b'"SendAt":"2030-05-01T09:30:00+00:00"}'
    )
    assert len(second.headers["Idempotency-Key"]) == 36  # a uuid4 when none is given
    assert second.headers["Idempotency-Key"] != first.headers["Idempotency-Key"]
    assert b'"SendAt":"2030-05-01T09:30:00Z"' in third.read()


def test_a_get_has_no_body_and_no_content_type() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"TotalCount": 0, "Messages": []})

    with posthouse.sync.ServerClient("t", base_url="http://h.test", transport=httpx.MockTransport(answer)) as client:
        client.outbound.list(count=10, tag="a b", metadata={"user_id": "7"}, from_date=datetime(2026, 1, 2, tzinfo=UTC))
    [request] = seen
    assert "content-type" not in request.headers and request.read() == b""
    assert dict(request.url.params) == {
        "count": "10",
        "offset": "0",
        "tag": "a b",
        "metadata_user_id": "7",
        "fromdate": "2026-01-02T00:00:00+00:00",
    }


@pytest.mark.parametrize(
    ("kwargs", "environ", "match"),
    [
        ({}, {"POSTHOUSE_BASE_URL": "http://h.test"}, "POSTHOUSE_SERVER_TOKEN"),
        ({"token": "t"}, {}, "POSTHOUSE_BASE_URL"),
        ({"token": "t", "base_url": "ftp://h.test"}, {}, "http"),
        ({"token": "t", "base_url": "http://h.test", "retries": -1}, {}, "retries"),
        ({"token": "t", "base_url": "http://h.test", "timeout": 0}, {}, "timeout"),
    ],
)
def test_bad_settings_are_configuration_errors(kwargs, environ, match, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for name in ("POSTHOUSE_SERVER_TOKEN", "POSTHOUSE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    token = kwargs.pop("token", None)
    with pytest.raises(posthouse.ConfigurationError, match=match) as bad:
        posthouse.sync.ServerClient(token, **kwargs)
    assert isinstance(bad.value, ValueError)


def test_the_account_client_reads_its_own_variable(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("POSTHOUSE_SERVER_TOKEN", "server-token")
    monkeypatch.delenv("POSTHOUSE_ACCOUNT_TOKEN", raising=False)
    with pytest.raises(posthouse.ConfigurationError, match="POSTHOUSE_ACCOUNT_TOKEN"):
        posthouse.AccountClient(base_url="http://h.test")
