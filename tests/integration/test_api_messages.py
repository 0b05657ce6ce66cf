"""GET /messages/outbound, its details and dump through the real ASGI app and a real database
(docs/postmark-api.md §4)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from typing import Any

import httpx
import pytest

from posthouse.server.config import load_settings
from posthouse.server.runtime import Runtime
from posthouse.server.services.clock import Clock, to_micros
from support import async_wait_for

MINIMAL = {"From": "sender@example.com", "To": "receiver@example.com", "Subject": "Hi", "TextBody": "Hello"}
# docs/postmark-api.md §4.3: every key of an outbound message in a list.
MESSAGE_KEYS = {
    "Tag", "MessageID", "MessageStream", "To", "Cc", "Bcc", "Recipients", "ReceivedAt", "From", "Subject",
    "Attachments", "Status", "TrackOpens", "TrackLinks", "Metadata", "Sandboxed",
}


async def send(api, **changes: object) -> str:  # type: ignore[no-untyped-def]
    """POST /email with MINIMAL changed by `changes`; returns the MessageID."""
    body = {**MINIMAL, **changes}
    response = await api.client.post("/email", json=body, headers=api.server_headers)
    assert response.status_code == 200, response.text
    return str(response.json()["MessageID"])


async def listing(api, path: str = "/messages/outbound", headers: dict[str, str] | None = None,  # type: ignore[no-untyped-def]
                  **params: object) -> dict[str, Any]:
    query = {"count": 50, "offset": 0, **params}
    response = await api.client.get(path, params=query, headers=headers or api.server_headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def found(api, **params: object) -> tuple[int, list[str]]:  # type: ignore[no-untyped-def]
    """(TotalCount, MessageIDs in the order given) for a search."""
    page = await listing(api, **params)
    return page["TotalCount"], [m["MessageID"] for m in page["Messages"]]


async def details(api, message_id: str, headers: dict[str, str] | None = None) -> httpx.Response:  # type: ignore[no-untyped-def]
    return await api.client.get(f"/messages/outbound/{message_id}/details", headers=headers or api.server_headers)


# -- paging (docs/postmark-api.md §1.5, §4.2) ----------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?count=10",
        "?offset=0",
        "?count=0&offset=0",
        "?count=501&offset=0",
        "?count=-1&offset=0",
        "?count=100&offset=9901",
        "?count=500&offset=9501",
        "?count=10&offset=-1",
        "?count=ten&offset=0",
        "?count=10&offset=zero",
    ],
)
async def test_paging_errors_are_700(api, query) -> None:  # type: ignore[no-untyped-def]
    await send(api)
    response = await api.client.get("/messages/outbound" + query, headers=api.server_headers)
    assert response.status_code == 422, response.text
    assert response.json()["ErrorCode"] == 700
    assert response.headers["X-PM-ApiErrorCode"] == "700"


async def test_paging_limits_themselves_are_allowed(api) -> None:  # type: ignore[no-untyped-def]
    message_id = await send(api)
    assert await found(api, count=500, offset=0) == (1, [message_id])
    assert await found(api, count=500, offset=9500) == (1, [])
    assert await found(api, count=1, offset=9999) == (1, [])


async def test_newest_first_and_offset_paging(api) -> None:  # type: ignore[no-untyped-def]
    sent = [await send(api, Subject=f"n{i}") for i in range(5)]
    newest_first = list(reversed(sent))
    assert await found(api, count=2, offset=0) == (5, newest_first[0:2])
    assert await found(api, count=2, offset=2) == (5, newest_first[2:4])
    assert await found(api, count=2, offset=4) == (5, newest_first[4:5])
    assert await found(api, count=2, offset=5) == (5, [])
    assert await found(api, count=500, offset=0) == (5, newest_first)


async def test_empty_server_lists_nothing(api) -> None:  # type: ignore[no-untyped-def]
    assert await listing(api) == {"TotalCount": 0, "Messages": []}


# -- filters (docs/postmark-api.md §4.2) -----------------------------------------------------------------


async def test_recipient_matches_to_cc_and_bcc_case_insensitively(api) -> None:  # type: ignore[no-untyped-def]
    first = await send(api, To="Ann <ann@example.com>", Cc="carl@example.com", Bcc="Hidden@Example.com")
    second = await send(api, To="bob@example.com", Cc="carl@example.com")
    third = await send(api, To="zed@example.org")
    assert await found(api, recipient="ann@example.com") == (1, [first])
    assert await found(api, recipient="ANN@EXAMPLE.COM") == (1, [first])
    assert await found(api, recipient="hidden@example.com") == (1, [first])
    assert await found(api, recipient="Carl@Example.Com") == (2, [second, first])
    assert await found(api, recipient="bob@example.com") == (1, [second])
    assert await found(api, recipient="zed@example.org") == (1, [third])
    assert await found(api, recipient="nobody@example.com") == (0, [])


@pytest.mark.parametrize(
    ("field", "query", "literal", "lookalike"),
    [
        ("To", "recipient", "a_b@example.com", "axb@example.com"),
        ("Subject", "subject", "Save 50% now", "Save 50 dollars now"),
        ("Subject", "subject", "snake_case", "snakeXcase"),
    ],
)
async def test_like_wildcards_in_filters_are_literal(api, field, query, literal, lookalike) -> None:  # type: ignore[no-untyped-def]
    """`_` and `%` typed into a filter are characters to find, not SQL LIKE wildcards."""
    wanted = await send(api, **{field: literal})
    await send(api, **{field: lookalike})
    assert await found(api, **{query: literal}) == (1, [wanted])


async def test_fromemail_matches_the_sender_address_case_insensitively(api) -> None:  # type: ignore[no-untyped-def]
    shop = await send(api, From="Shop <Shop@example.com>")
    other = await send(api, From="other@example.com")
    assert await found(api, fromemail="shop@example.com") == (1, [shop])
    assert await found(api, fromemail="SHOP@EXAMPLE.COM") == (1, [shop])
    assert await found(api, fromemail="other@example.com") == (1, [other])
    assert await found(api, fromemail="receiver@example.com") == (0, [])


async def test_tag_filter(api) -> None:  # type: ignore[no-untyped-def]
    welcome = await send(api, Tag="welcome")
    second_welcome = await send(api, Tag="welcome")
    await send(api, Tag="invoice")
    await send(api)
    assert await found(api, tag="welcome") == (2, [second_welcome, welcome])
    assert await found(api, tag="nope") == (0, [])


async def test_subject_filter_is_a_substring_match(api) -> None:  # type: ignore[no-untyped-def]
    order = await send(api, Subject="Your order #42 has shipped")
    other = await send(api, Subject="Order confirmation")
    await send(api, Subject="Newsletter")
    assert await found(api, subject="order #42") == (1, [order])
    assert await found(api, subject="ORDER") == (2, [other, order])
    assert await found(api, subject="Your order #42 has shipped") == (1, [order])
    assert await found(api, subject="refund") == (0, [])


async def test_status_queued_then_sent_after_the_worker_delivered(api) -> None:  # type: ignore[no-untyped-def]
    first = await send(api)
    second = await send(api)
    assert await found(api, status="queued") == (2, [second, first])
    assert await found(api, status="sent") == (0, [])
    assert await found(api, status="processed") == (0, [])
    assert [m["Status"] for m in (await listing(api))["Messages"]] == ["Queued", "Queued"]
    await api.runtime.start_worker()

    async def all_sent() -> bool:
        return (await found(api, status="sent"))[0] == 2

    await async_wait_for(all_sent)
    assert await found(api, status="sent") == (2, [second, first])
    assert await found(api, status="processed") == (2, [second, first])
    assert await found(api, status="SENT") == (2, [second, first])
    assert await found(api, status="queued") == (0, [])
    assert [m["Status"] for m in (await listing(api))["Messages"]] == ["Sent", "Sent"]


async def test_unknown_status_is_700(api) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.get("/messages/outbound?count=10&offset=0&status=lost", headers=api.server_headers)
    assert response.status_code == 422
    assert response.json()["ErrorCode"] == 700


async def test_messagestream_defaults_to_outbound(api) -> None:  # type: ignore[no-untyped-def]
    transactional = await send(api)
    broadcast = await send(api, MessageStream="broadcast")
    assert await found(api) == (1, [transactional])
    assert await found(api, messagestream="outbound") == (1, [transactional])
    assert await found(api, messagestream="broadcast") == (1, [broadcast])
    page = await listing(api, messagestream="broadcast")
    assert page["Messages"][0]["MessageStream"] == "broadcast"
    assert await found(api, messagestream="inbound") == (0, [])


async def test_metadata_filter_matches_the_exact_value(api) -> None:  # type: ignore[no-untyped-def]
    exact = await send(api, Metadata={"order": "42", "color": "blue"})
    await send(api, Metadata={"order": "420"})
    await send(api, Metadata={"order": "4"})
    await send(api, Metadata={"reorder": "42"})
    await send(api, Metadata={"color": "42"})
    await send(api)
    assert await found(api, metadata_order="42") == (1, [exact])
    assert await found(api, metadata_color="blue") == (1, [exact])
    assert await found(api, metadata_order="43") == (0, [])


async def test_metadata_filter_keys_with_underscores_and_values_with_wildcards(api) -> None:  # type: ignore[no-untyped-def]
    user = await send(api, Metadata={"user_id": "7", "code": "10%_off"})
    await send(api, Metadata={"user_id": "8", "code": "10xxoff"})
    assert await found(api, metadata_user_id="7") == (1, [user])
    assert await found(api, metadata_code="10%_off") == (1, [user])
    assert await found(api, metadata_code="10%") == (0, [])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("city", "Köln"),
        ("städt", "Berlin"),
        ("note", 'say "hi"'),
        ("path", "C:\\temp"),
    ],
)
async def test_metadata_filter_values_that_json_escapes(api, key, value) -> None:  # type: ignore[no-untyped-def]
    """Non-ASCII, quotes and backslashes are stored JSON-escaped; the filter must still find them."""
    wanted = await send(api, Metadata={key: value})
    await send(api, Metadata={key: "other"})
    assert await found(api, **{f"metadata_{key}": value}) == (1, [wanted])


async def test_recipient_filter_finds_an_internationalized_address(api) -> None:  # type: ignore[no-untyped-def]
    wanted = await send(api, To="Jörg <jörg@example.com>")
    await send(api, To="jorg@example.com")
    page = await listing(api)
    assert page["Messages"][1]["Recipients"] == ["jörg@example.com"]
    assert await found(api, recipient="jörg@example.com") == (1, [wanted])


async def test_two_metadata_filters_are_700(api) -> None:  # type: ignore[no-untyped-def]
    await send(api, Metadata={"a": "1", "b": "2"})
    response = await api.client.get(
        "/messages/outbound?count=10&offset=0&metadata_a=1&metadata_b=2", headers=api.server_headers)
    assert response.status_code == 422
    assert response.json()["ErrorCode"] == 700


async def test_filters_combine(api) -> None:  # type: ignore[no-untyped-def]
    both = await send(api, Tag="welcome", To="ann@example.com")
    await send(api, Tag="welcome", To="bob@example.com")
    await send(api, Tag="other", To="ann@example.com")
    assert await found(api, tag="welcome", recipient="ann@example.com") == (1, [both])


async def test_query_names_are_case_insensitive_and_trailing_slash_works(api) -> None:  # type: ignore[no-untyped-def]
    shop = await send(api, From="shop@example.com")
    await send(api)
    broadcast = await send(api, MessageStream="broadcast", From="shop@example.com")
    headers = api.server_headers
    for query in ("fromEmail", "FROMEMAIL", "fromemail", "from_email"):
        response = await api.client.get(
            f"/messages/outbound?Count=10&OFFSET=0&{query}=shop@example.com", headers=headers)
        assert response.status_code == 200, (query, response.text)
        assert response.json()["TotalCount"] == 1
        assert [m["MessageID"] for m in response.json()["Messages"]] == [shop]
    response = await api.client.get("/messages/outbound?count=10&offset=0&messageStream=broadcast", headers=headers)
    assert [m["MessageID"] for m in response.json()["Messages"]] == [broadcast]
    response = await api.client.get("/messages/outbound/?count=10&offset=0", headers=headers)
    assert response.status_code == 200
    assert response.json()["TotalCount"] == 2
    response = await api.client.get("/Messages/Outbound/?count=10&offset=0&fromemail=shop@example.com",
                                    headers=headers)
    assert response.status_code == 200
    assert [m["MessageID"] for m in response.json()["Messages"]] == [shop]


async def test_server_token_is_required(api) -> None:  # type: ignore[no-untyped-def]
    for headers in ({}, {"X-Postmark-Server-Token": "wrong"}, {"X-Postmark-Server-Token": api.account_token}):
        response = await api.client.get("/messages/outbound?count=10&offset=0", headers=headers)
        assert response.status_code == 401
        assert response.json()["ErrorCode"] == 10


# -- date filters, on a clock the test controls -------------------------------------------------------


class FixedClock(Clock):
    """A clock that stands still until the test moves it."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def micros(self) -> int:
        return to_micros(self.moment)


class ClockedApi:
    def __init__(self, client: httpx.AsyncClient, server_token: str, clock: FixedClock) -> None:
        self.client = client
        self.clock = clock
        self.server_headers = {"X-Postmark-Server-Token": server_token, "Accept": "application/json"}


@pytest.fixture
async def clocked(store) -> AsyncIterator[ClockedApi]:  # type: ignore[no-untyped-def]
    """The `api` harness, but on a FixedClock: messages are received exactly when the test says."""
    clock = FixedClock(datetime(2024, 3, 10, 12, 0, tzinfo=UTC))
    runtime = Runtime(load_settings({"delivery": "sandbox"}, environ={}), store, clock=clock)
    tokens = await runtime.accounts.bootstrap()
    assert tokens is not None
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://posthouse.test") as client:
        yield ClockedApi(client, tokens[0], clock)
    await runtime.stop()


MOMENTS = {
    "late-9th": datetime(2024, 3, 9, 23, 59, 59, 500_000, tzinfo=UTC),
    "start-10th": datetime(2024, 3, 10, 0, 0, 0, tzinfo=UTC),
    "noon-10th": datetime(2024, 3, 10, 12, 0, 0, tzinfo=UTC),
    "end-10th": datetime(2024, 3, 10, 23, 59, 59, 999_999, tzinfo=UTC),
    "start-11th": datetime(2024, 3, 11, 0, 0, 0, tzinfo=UTC),
}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"fromdate": "2024-03-10"}, ["start-11th", "end-10th", "noon-10th", "start-10th"]),
        ({"todate": "2024-03-10"}, ["end-10th", "noon-10th", "start-10th", "late-9th"]),
        ({"fromdate": "2024-03-10", "todate": "2024-03-10"}, ["end-10th", "noon-10th", "start-10th"]),
        ({"fromdate": "2024-03-11", "todate": "2024-03-11"}, ["start-11th"]),
        ({"fromdate": "2024-03-12"}, []),
        ({"todate": "2024-03-08"}, []),
        ({"fromdate": "2024-03-10T12:00:00"}, ["start-11th", "end-10th", "noon-10th"]),
        ({"todate": "2024-03-10T12:00:00"}, ["noon-10th", "start-10th", "late-9th"]),
        ({"fromdate": "2024-03-10T12:00:00", "todate": "2024-03-10T12:00:00"}, ["noon-10th"]),
        ({"fromdate": "2024-03-10T00:00:00", "todate": "2024-03-10T11:59:59"}, ["start-10th"]),
        ({"fromDate": "2024-03-10T12:00:01", "toDate": "2024-03-11"}, ["start-11th", "end-10th"]),
    ],
)
async def test_date_filters_are_inclusive(clocked, params, expected) -> None:  # type: ignore[no-untyped-def]
    ids = {}
    for name, moment in MOMENTS.items():
        clocked.clock.moment = moment
        ids[name] = await send(clocked, Subject=name)
    total, got = await found(clocked, **params)
    assert (total, got) == (len(expected), [ids[name] for name in expected])


async def test_received_at_is_the_acceptance_time_with_an_offset(clocked) -> None:  # type: ignore[no-untyped-def]
    clocked.clock.moment = datetime(2024, 3, 10, 7, 25, 1, 417_864, tzinfo=UTC)
    await send(clocked)
    message = (await listing(clocked))["Messages"][0]
    assert message["ReceivedAt"] == "2024-03-10T07:25:01.417864+00:00"
    assert datetime.fromisoformat(message["ReceivedAt"]) == clocked.clock.moment


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01", "10/03/2024", "2024-03-10T25:00:00"])
async def test_bad_dates_are_700(clocked, value) -> None:  # type: ignore[no-untyped-def]
    for name in ("fromdate", "todate"):
        response = await clocked.client.get(
            "/messages/outbound", params={"count": 10, "offset": 0, name: value}, headers=clocked.server_headers)
        assert response.status_code == 422, (name, value, response.text)
        assert response.json()["ErrorCode"] == 700


async def test_ordering_is_by_received_time_not_by_insertion(clocked) -> None:  # type: ignore[no-untyped-def]
    start = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
    by_offset = {}
    for minutes in (5, 1, 9, 3):
        clocked.clock.moment = start + timedelta(minutes=minutes)
        by_offset[minutes] = await send(clocked)
    assert await found(clocked) == (4, [by_offset[9], by_offset[5], by_offset[3], by_offset[1]])


# -- the message object (docs/postmark-api.md §4.3, §11.3) --------------------------------------------------


FULL = {
    "From": "Shop <shop@example.com>",
    "To": "Ann <ann@example.com>, bob@example.com",
    "Cc": "Carl <carl@example.com>",
    "Bcc": "hidden@example.com",
    "Subject": "Your receipt",
    "Tag": "receipt",
    "TextBody": "Thanks for your order.",
    "HtmlBody": "<p>Thanks for your <b>order</b>.</p>",
    "TrackOpens": True,
    "TrackLinks": "HtmlOnly",
    "Metadata": {"order": "42", "customer": "ann"},
    "Attachments": [
        {"Name": "receipt.pdf", "Content": base64.b64encode(b"%PDF-1.4").decode(), "ContentType": "application/pdf"},
        {"Name": "notes.txt", "Content": base64.b64encode(b"notes").decode(), "ContentType": "text/plain"},
    ],
}


async def test_list_item_has_every_key_with_the_sent_values(api) -> None:  # type: ignore[no-untyped-def]
    message_id = await send(api, **FULL)
    before = datetime.now(UTC)
    message = (await listing(api))["Messages"][0]
    assert set(message) == MESSAGE_KEYS
    assert message["MessageID"] == message_id
    assert message["MessageStream"] == "outbound"
    assert message["Tag"] == "receipt"
    assert message["To"] == [{"Email": "ann@example.com", "Name": "Ann"}, {"Email": "bob@example.com", "Name": None}]
    assert message["Cc"] == [{"Email": "carl@example.com", "Name": "Carl"}]
    assert message["Bcc"] == [{"Email": "hidden@example.com", "Name": None}]
    assert message["Recipients"] == ["ann@example.com", "bob@example.com", "carl@example.com", "hidden@example.com"]
    assert message["From"] == '"Shop" <shop@example.com>'
    assert message["Subject"] == "Your receipt"
    assert message["Attachments"] == ["receipt.pdf", "notes.txt"]
    assert message["Status"] == "Queued"
    assert message["TrackOpens"] is True
    assert message["TrackLinks"] == "HtmlOnly"
    assert message["Metadata"] == {"order": "42", "customer": "ann"}
    assert message["Sandboxed"] is True  # the fixture's delivery mode is sandbox
    received = datetime.fromisoformat(message["ReceivedAt"])
    assert received.utcoffset() == timedelta(0)
    assert timedelta(0) <= before - received < timedelta(seconds=30)


async def test_list_item_defaults_for_a_minimal_message(api) -> None:  # type: ignore[no-untyped-def]
    message_id = await send(api)
    message = (await listing(api))["Messages"][0]
    assert message == {
        "Tag": None, "MessageID": message_id, "MessageStream": "outbound",
        "To": [{"Email": "receiver@example.com", "Name": None}], "Cc": [], "Bcc": [],
        "Recipients": ["receiver@example.com"], "ReceivedAt": message["ReceivedAt"], "From": "sender@example.com",
        "Subject": "Hi", "Attachments": [], "Status": "Queued", "TrackOpens": False, "TrackLinks": "None",
        "Metadata": {}, "Sandboxed": True,
    }


# -- details and dump (docs/postmark-api.md §4.1, §4.4) ---------------------------------------------------


def parse(raw: str):  # type: ignore[no-untyped-def]
    return BytesParser(policy=policy.default).parsebytes(raw.encode())


async def delivered_details(api, message_id: str, recipients: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    async def ready() -> dict[str, Any] | None:
        body = (await details(api, message_id)).json()
        done = [e for e in body["MessageEvents"] if e["Type"] == "Delivered"]
        return body if len(done) == recipients else None

    return dict(await async_wait_for(ready))


async def test_details_before_delivery_has_bodies_and_no_events(api) -> None:  # type: ignore[no-untyped-def]
    message_id = await send(api, **FULL)
    response = await details(api, message_id)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == MESSAGE_KEYS | {"TextBody", "HtmlBody", "Body", "MessageEvents"}
    assert body["MessageID"] == message_id
    assert body["TextBody"] == "Thanks for your order."
    assert body["HtmlBody"] == "<p>Thanks for your <b>order</b>.</p>"
    # The internal "Queued" event is not one of Postmark's types (postmark-python rejects it).
    assert body["MessageEvents"] == []
    assert body["Status"] == "Queued"
    assert body["Attachments"] == ["receipt.pdf", "notes.txt"]


async def test_details_after_delivery_has_one_delivered_event_per_recipient(api) -> None:  # type: ignore[no-untyped-def]
    message_id = await send(api, **FULL)
    await api.runtime.start_worker()
    body = await delivered_details(api, message_id, recipients=4)
    assert body["Status"] == "Sent"
    events = body["MessageEvents"]
    assert {e["Type"] for e in events} == {"Delivered"}
    assert sorted(e["Recipient"] for e in events) == [
        "ann@example.com", "bob@example.com", "carl@example.com", "hidden@example.com"]
    received = datetime.fromisoformat(body["ReceivedAt"])
    for event in events:
        assert set(event) == {"Recipient", "Type", "ReceivedAt", "Details"}
        assert datetime.fromisoformat(event["ReceivedAt"]) >= received
        assert datetime.fromisoformat(event["ReceivedAt"]).utcoffset() == timedelta(0)
        assert event["Details"] == {
            "DeliveryMessage": "250 2.0.0 Ok: kept in the sandbox, not delivered",
            "DestinationServer": "sandbox",
            "DestinationIP": "127.0.0.1",
        }
    assert await api.count("events") == 8  # four Queued (kept, not shown) and four Delivered


async def test_details_body_is_the_raw_mime(api) -> None:  # type: ignore[no-untyped-def]
    message_id = await send(api, **FULL)
    body = (await details(api, message_id)).json()
    message = parse(body["Body"])
    assert message["Subject"] == "Your receipt"
    assert message["X-PM-Message-Id"] == message_id
    assert message["To"] == "Ann <ann@example.com>, bob@example.com"
    assert message["Bcc"] is None
    assert message.get_content_type() == "multipart/mixed"
    assert [part.get_filename() for part in message.iter_attachments()] == ["receipt.pdf", "notes.txt"]


async def test_details_of_a_text_only_message_has_no_html(api) -> None:  # type: ignore[no-untyped-def]
    message_id = await send(api, TextBody="Only text")
    body = (await details(api, message_id)).json()
    assert body["TextBody"] == "Only text"
    assert body["HtmlBody"] is None


async def test_details_bodies_are_returned_as_sent(api) -> None:  # type: ignore[no-untyped-def]
    """Multi-line bodies come back as they were sent, not with the CRLF line endings of the stored MIME."""
    text = "Dear Ann,\n\nyour order shipped.\n-- \nShop"
    html = "<html>\n<body>\n<p>Shipped</p>\n</body>\n</html>"
    message_id = await send(api, TextBody=text, HtmlBody=html)
    body = (await details(api, message_id)).json()
    assert body["TextBody"] == text
    assert body["HtmlBody"] == html


async def test_details_id_is_case_insensitive(api) -> None:  # type: ignore[no-untyped-def]
    message_id = await send(api)
    response = await details(api, message_id.upper())
    assert response.status_code == 200
    assert response.json()["MessageID"] == message_id


@pytest.mark.parametrize("suffix", ["details", "dump"])
async def test_unknown_message_is_701(api, suffix) -> None:  # type: ignore[no-untyped-def]
    await send(api)
    for unknown in ("00000000-0000-0000-0000-000000000000", "not-a-message-id"):
        response = await api.client.get(f"/messages/outbound/{unknown}/{suffix}", headers=api.server_headers)
        assert response.status_code == 422, response.text
        assert response.json()["ErrorCode"] == 701
        assert response.headers["X-PM-ApiErrorCode"] == "701"


async def test_dump_is_the_raw_mime(api) -> None:  # type: ignore[no-untyped-def]
    message_id = await send(api, Subject="Dump me", TextBody="dumped body")
    response = await api.client.get(f"/messages/outbound/{message_id}/dump", headers=api.server_headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"Body"}
    assert "Subject: Dump me" in body["Body"]
    assert f"X-PM-Message-Id: {message_id}" in body["Body"]
    message = parse(body["Body"])
    assert message["Subject"] == "Dump me"
    assert message.get_content().rstrip("\r\n") == "dumped body"
    assert body["Body"] == (await details(api, message_id)).json()["Body"]


async def test_another_servers_messages_are_not_visible(api) -> None:  # type: ignore[no-untyped-def]
    created = await api.client.post("/servers", json={"Name": "second"}, headers=api.account_headers)
    assert created.status_code == 200, created.text
    other_headers = {"X-Postmark-Server-Token": created.json()["ApiTokens"][0], "Accept": "application/json"}
    mine = await send(api, Subject="mine")
    response = await api.client.post("/email", json={**MINIMAL, "Subject": "theirs"}, headers=other_headers)
    assert response.status_code == 200, response.text
    theirs = response.json()["MessageID"]

    assert await found(api) == (1, [mine])
    assert (await listing(api, headers=other_headers))["Messages"][0]["MessageID"] == theirs
    assert (await listing(api, headers=other_headers))["TotalCount"] == 1
    for suffix in ("details", "dump"):
        response = await api.client.get(f"/messages/outbound/{theirs}/{suffix}", headers=api.server_headers)
        assert response.status_code == 422
        assert response.json()["ErrorCode"] == 701
        response = await api.client.get(f"/messages/outbound/{mine}/{suffix}", headers=other_headers)
        assert response.status_code == 422
        assert response.json()["ErrorCode"] == 701
    assert (await details(api, theirs, headers=other_headers)).json()["Subject"] == "theirs"
