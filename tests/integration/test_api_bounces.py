"""/bounces and /deliverystats through the real ASGI app and a real database (docs/postmark-api.md §5).

Bounces are written with the store's `record_bounces`, as the delivery worker and the bounce receiver
write them, with the webhook events and suppression `notifications` builds for them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from posthouse.server.domain.statuses import BounceType
from posthouse.server.services import notifications
from posthouse.server.services.clock import to_micros
from posthouse.server.store.base import BounceRecord
from support import WEBHOOKS_TO_LOOPBACK, assert_api_error

# docs/postmark-api.md §5 (a superset of what §11.3 says postmark-python requires).
BOUNCE_KEYS = {
    "RecordType",
    "ID",
    "Type",
    "TypeCode",
    "Name",
    "Tag",
    "MessageID",
    "ServerID",
    "MessageStream",
    "Description",
    "Details",
    "Email",
    "From",
    "BouncedAt",
    "DumpAvailable",
    "Inactive",
    "CanActivate",
    "Subject",
}
DUMP = "Return-Path: <>\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\n550 5.1.1 no such user\r\n"


@pytest.fixture
def api_settings() -> dict[str, str]:
    """This module's webhooks point at loopback, which the operator must allow."""
    return WEBHOOKS_TO_LOOPBACK


def at(text: str) -> int:
    return to_micros(datetime.fromisoformat(text).replace(tzinfo=UTC))


async def this_server_id(api) -> int:  # type: ignore[no-untyped-def]
    return int((await api.client.get("/server", headers=api.server_headers)).json()["ID"])


async def record_bounce(
    api,
    email: str = "gone@example.com",
    bounce_type: BounceType = BounceType.HARD_BOUNCE,  # type: ignore[no-untyped-def]
    *,
    stream: str = "outbound",
    tag: str | None = None,
    message_id: str | None = None,
    dump: str = "",
    when: int | None = None,
) -> int:
    """A bounce as the worker records one: the row, its webhooks, and its suppression if it deactivates."""
    bounce = BounceRecord(
        server_id=await this_server_id(api),
        message_id=message_id,
        stream=stream,
        type=bounce_type.type_name,
        type_code=bounce_type.code,
        email=email,
        sender="app@example.com",
        subject="Hello",
        tag=tag,
        description=bounce_type.display_name,
        details="550 5.1.1 no such user",
        bounced_at=when if when is not None else api.runtime.clock.micros(),
        inactive=bounce_type.deactivates,
        can_activate=bounce_type is BounceType.HARD_BOUNCE,
        dump=dump,
    )
    suppression = notifications.suppression_for(bounce, tag, {})
    (bounce_id,) = await api.runtime.store.record_bounces(
        [(bounce, None, [notifications.bounce_event(bounce, {})], suppression)]
    )
    return bounce_id


async def get(api, path: str, **params: Any) -> Any:  # type: ignore[no-untyped-def]
    response = await api.client.get(path, params=params, headers=api.server_headers)
    assert response.status_code == 200, response.text
    return response.json()


async def ids(api, **params: Any) -> tuple[int, list[int]]:  # type: ignore[no-untyped-def]
    page = await get(api, "/bounces", **{"count": 50, "offset": 0, **params})
    return page["TotalCount"], [b["ID"] for b in page["Bounces"]]


async def subscription_posts(api, webhook_id: int) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    rows = await api.runtime.store.query(
        "SELECT payload FROM webhook_posts WHERE webhook_id = ? AND record_type = 'SubscriptionChange' ORDER BY id",
        (webhook_id,),
    )
    return [json.loads(r[0]) for r in rows]


async def subscription_webhook(api) -> int:  # type: ignore[no-untyped-def]
    response = await api.client.post(
        "/webhooks",
        headers=api.server_headers,
        json={"Url": "http://127.0.0.1:9/hook", "Triggers": {"SubscriptionChange": {"Enabled": True}}},
    )
    assert response.status_code == 200, response.text
    return int(response.json()["ID"])


# -- listing and filtering ------------------------------------------------------------------------


async def test_a_new_server_has_no_bounces(api) -> None:  # type: ignore[no-untyped-def]
    assert await get(api, "/bounces", count=10, offset=0) == {"TotalCount": 0, "Bounces": []}
    assert await get(api, "/deliverystats") == {
        "InactiveMails": 0,
        "Bounces": [{"Type": "All", "TypeCode": 0, "Name": "All", "Count": 0}],
    }


async def test_bounces_are_listed_newest_first_with_postmarks_fields(api) -> None:  # type: ignore[no-untyped-def]
    server_id = await this_server_id(api)
    first = await record_bounce(
        api,
        "one@example.com",
        tag="welcome",
        dump=DUMP,
        when=at("2026-01-10T12:00:00"),
        message_id="6a3e1b52-3f0e-4a41-9f7a-2d7c3e8f0b11",
    )
    second = await record_bounce(api, "two@example.com", BounceType.SOFT_BOUNCE, when=at("2026-01-11T12:00:00"))
    page = await get(api, "/bounces", count=10, offset=0)
    assert page["TotalCount"] == 2
    assert [b["ID"] for b in page["Bounces"]] == [second, first]
    item = page["Bounces"][1]
    assert set(item) == BOUNCE_KEYS  # no Content in a list
    assert item == {
        "RecordType": "Bounce",
        "ID": first,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "welcome",
        "MessageID": "6a3e1b52-3f0e-4a41-9f7a-2d7c3e8f0b11",
        "ServerID": server_id,
        "MessageStream": "outbound",
        "Description": "Hard bounce",
        "Details": "550 5.1.1 no such user",
        "Email": "one@example.com",
        "From": "app@example.com",
        "BouncedAt": "2026-01-10T12:00:00.000000+00:00",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Hello",
    }
    soft = page["Bounces"][0]
    assert (soft["Type"], soft["TypeCode"], soft["Name"]) == ("SoftBounce", 4096, "Soft bounce")
    assert (soft["Inactive"], soft["CanActivate"], soft["DumpAvailable"], soft["MessageID"]) == (
        False,
        False,
        False,
        "",
    )
    # Paging, and postmarker's trailing slash.
    assert await ids(api, count=1, offset=1) == (2, [first])
    response = await api.client.get("/bounces/", params={"count": 1, "offset": 0}, headers=api.server_headers)
    assert [b["ID"] for b in response.json()["Bounces"]] == [second]


async def test_every_filter_narrows_the_list(api) -> None:  # type: ignore[no-untyped-def]
    message_id = "0c1f7a2e-5b8d-4e0f-9a61-3b2c4d5e6f70"
    hard = await record_bounce(
        api, "Hard.One@Example.com", tag="welcome", message_id=message_id, when=at("2026-01-10T12:00:00")
    )
    soft = await record_bounce(
        api, "soft@example.org", BounceType.SOFT_BOUNCE, tag="news", when=at("2026-01-11T12:00:00")
    )
    spam = await record_bounce(api, "angry@example.net", BounceType.SPAM_COMPLAINT, when=at("2026-01-12T12:00:00"))
    broadcast = await record_bounce(api, "list@example.com", stream="broadcast", when=at("2026-01-13T12:00:00"))

    assert await ids(api) == (4, [broadcast, spam, soft, hard])
    assert await ids(api, type="HardBounce") == (2, [broadcast, hard])
    assert await ids(api, type="spamcomplaint") == (1, [spam])  # type names are matched case-insensitively
    assert await ids(api, inactive="true") == (3, [broadcast, spam, hard])
    assert await ids(api, inactive="True") == (3, [broadcast, spam, hard])  # postmarker's spelling
    assert await ids(api, inactive="false") == (1, [soft])
    assert await ids(api, emailFilter="hard.one") == (1, [hard])
    assert await ids(api, emailfilter="EXAMPLE.") == (4, [broadcast, spam, soft, hard])
    assert await ids(api, tag="news") == (1, [soft])
    assert await ids(api, messageID=message_id.upper()) == (1, [hard])
    assert await ids(api, messagestream="broadcast") == (1, [broadcast])
    assert await ids(api, messageStream="outbound") == (3, [spam, soft, hard])
    assert await ids(api, fromdate="2026-01-11", todate="2026-01-12") == (2, [spam, soft])
    assert await ids(api, fromdate="2026-01-11T13:00:00") == (2, [broadcast, spam])
    assert await ids(api, todate="2026-01-10T12:00:00") == (1, [hard])
    # Postmark: count and offset are not required when searching by messageID.
    page = await get(api, "/bounces", messageID=message_id)
    assert [b["ID"] for b in page["Bounces"]] == [hard]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"count": 10},
        {"offset": 0},
        {"count": 0, "offset": 0},
        {"count": 501, "offset": 0},
        {"count": 500, "offset": 9501},
        {"count": "ten", "offset": 0},
        {"count": 10, "offset": -1},
        {"count": 10, "offset": 0, "type": "Bounced"},
        {"count": 10, "offset": 0, "fromdate": "yesterday"},
        {"count": 10, "offset": 0, "todate": "2026-13-01"},
    ],
)
async def test_bad_queries_are_postmarks_1000(api, params) -> None:  # type: ignore[no-untyped-def]
    assert_api_error(await api.client.get("/bounces", params=params, headers=api.server_headers), 1000)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/deliverystats"),
        ("GET", "/bounces?count=1&offset=0"),
        ("GET", "/bounces/1"),
        ("GET", "/bounces/tags"),
        ("GET", "/bounces/1/dump"),
        ("PUT", "/bounces/1/activate"),
    ],
)
async def test_every_bounce_endpoint_needs_a_server_token(api, method, path) -> None:  # type: ignore[no-untyped-def]
    assert_api_error(await api.client.request(method, path, headers={"Accept": "application/json"}), 10, status=401)
    assert_api_error(await api.client.request(method, path, headers=api.account_headers), 10, status=401)


async def test_another_servers_bounces_are_invisible(api) -> None:  # type: ignore[no-untyped-def]
    bounce_id = await record_bounce(api)
    created = await api.client.post("/servers", json={"Name": "other"}, headers=api.account_headers)
    other = {"X-Postmark-Server-Token": created.json()["ApiTokens"][0], "Accept": "application/json"}
    page = await api.client.get("/bounces", params={"count": 10, "offset": 0}, headers=other)
    assert page.json() == {"TotalCount": 0, "Bounces": []}
    assert_api_error(await api.client.get(f"/bounces/{bounce_id}", headers=other), 1001)
    assert_api_error(await api.client.put(f"/bounces/{bounce_id}/activate", headers=other), 1001)


# -- one bounce, its dump ---------------------------------------------------------------------------


async def test_a_single_bounce_carries_its_content_and_dump(api) -> None:  # type: ignore[no-untyped-def]
    with_dump = await record_bounce(api, dump=DUMP)
    without = await record_bounce(api, "other@example.com", BounceType.SOFT_BOUNCE)
    found = await get(api, f"/bounces/{with_dump}")
    assert set(found) == BOUNCE_KEYS | {"Content"}
    assert found["Content"] == DUMP and found["DumpAvailable"] is True
    assert await get(api, f"/bounces/{with_dump}/dump") == {"Body": DUMP}
    assert (await get(api, f"/bounces/{without}"))["Content"] == ""
    assert await get(api, f"/bounces/{without}/dump") == {"Body": ""}


@pytest.mark.parametrize("bounce_id", ["999999", "tag", "-1", "99999999999999999999999"])
async def test_an_unknown_bounce_is_1001(api, bounce_id: str) -> None:  # type: ignore[no-untyped-def]
    for path in (f"/bounces/{bounce_id}", f"/bounces/{bounce_id}/dump"):
        assert_api_error(await api.client.get(path, headers=api.server_headers), 1001)
    assert_api_error(await api.client.put(f"/bounces/{bounce_id}/activate", headers=api.server_headers), 1001)


async def test_tags_is_no_bounce_id_under_dump_and_activate(api) -> None:  # type: ignore[no-untyped-def]
    assert_api_error(await api.client.get("/bounces/tags/dump", headers=api.server_headers), 1001)
    assert_api_error(await api.client.put("/bounces/tags/activate", headers=api.server_headers), 1001)


# -- activation -----------------------------------------------------------------------------------


async def test_activating_a_hard_bounce_lifts_the_suppression_and_posts_one_subscription_change(api) -> None:  # type: ignore[no-untyped-def]
    webhook_id = await subscription_webhook(api)
    bounce_id = await record_bounce(api, "Gone@Example.com")
    (suppressed,) = await subscription_posts(api, webhook_id)
    assert (suppressed["SuppressSending"], suppressed["SuppressionReason"]) == (True, "HardBounce")
    refused = await api.client.post(
        "/email",
        headers=api.server_headers,
        json={"From": "app@example.com", "To": "gone@example.com", "Subject": "Hi", "TextBody": "Hi"},
    )
    assert_api_error(refused, 406)

    response = await api.client.put(f"/bounces/{bounce_id}/activate", headers=api.server_headers)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["Message"] == "OK"
    assert set(answer["Bounce"]) == BOUNCE_KEYS
    assert (answer["Bounce"]["ID"], answer["Bounce"]["Inactive"], answer["Bounce"]["CanActivate"]) == (
        bounce_id,
        False,
        True,
    )
    assert (await get(api, f"/bounces/{bounce_id}"))["Inactive"] is False
    assert (await get(api, "/message-streams/outbound/suppressions/dump"))["Suppressions"] == []
    _, reactivated = await subscription_posts(api, webhook_id)
    assert reactivated["SuppressSending"] is False and reactivated["SuppressionReason"] is None
    assert reactivated["Origin"] == "Customer" and reactivated["MessageID"] is None
    assert reactivated["Recipient"] == "Gone@Example.com" and reactivated["MessageStream"] == "outbound"
    accepted = await api.client.post(
        "/email",
        headers=api.server_headers,
        json={"From": "app@example.com", "To": "gone@example.com", "Subject": "Hi", "TextBody": "Hi"},
    )
    assert accepted.status_code == 200, accepted.text

    # Activating again changes nothing and announces nothing.
    again = await api.client.put(f"/bounces/{bounce_id}/activate", headers=api.server_headers)
    assert again.status_code == 200, again.text
    assert len(await subscription_posts(api, webhook_id)) == 2


@pytest.mark.parametrize("bounce_type", [BounceType.SOFT_BOUNCE, BounceType.SPAM_COMPLAINT, BounceType.TRANSIENT])
async def test_a_bounce_that_cannot_be_activated_is_1003(api, bounce_type: BounceType) -> None:  # type: ignore[no-untyped-def]
    bounce_id = await record_bounce(api, bounce_type=bounce_type)
    response = await api.client.put(f"/bounces/{bounce_id}/activate", headers=api.server_headers)
    assert_api_error(response, 1003)
    assert response.json()["Message"].startswith("Cannot activate bounce.")
    assert (await get(api, f"/bounces/{bounce_id}"))["Inactive"] is bounce_type.deactivates


async def test_a_hard_bounce_cannot_lift_a_spam_complaint(api) -> None:  # type: ignore[no-untyped-def]
    await record_bounce(api, "reader@example.com", BounceType.SPAM_COMPLAINT)
    hard = await record_bounce(api, "reader@example.com")
    assert_api_error(await api.client.put(f"/bounces/{hard}/activate", headers=api.server_headers), 1003)
    suppressions = (await get(api, "/message-streams/outbound/suppressions/dump"))["Suppressions"]
    assert [(s["EmailAddress"], s["SuppressionReason"]) for s in suppressions] == [
        ("reader@example.com", "SpamComplaint")
    ]


# -- tags (legacy) --------------------------------------------------------------------------------


async def test_bounce_tags_are_the_distinct_tags_of_this_servers_bounces_in_order(api) -> None:  # type: ignore[no-untyped-def]
    assert await get(api, "/bounces/tags") == []
    for email, tag in (("a@example.com", "welcome"), ("b@example.com", "digest"), ("c@example.com", "welcome"),
                       ("d@example.com", None), ("e@example.com", "")):
        await record_bounce(api, email, tag=tag)
    other = await api.runtime.store.create_server("other", {}, "hash-other", "hint", 1, [])
    await api.runtime.store.record_bounces([(BounceRecord(
        server_id=other, message_id=None, stream="outbound", type="HardBounce", type_code=1, email="x@example.com",
        sender="app@example.com", subject="s", tag="elsewhere", description="d", details="x", bounced_at=1,
        inactive=False, can_activate=False, dump=""), None, [], None)])
    assert await get(api, "/bounces/tags") == ["digest", "welcome"]


# -- delivery stats -------------------------------------------------------------------------------


async def test_delivery_stats_count_every_type_and_the_inactive_addresses(api) -> None:  # type: ignore[no-untyped-def]
    for email in ("a@example.com", "b@example.com"):
        await record_bounce(api, email)
    await record_bounce(api, "a@example.com")  # the same address again: still one inactive address
    await record_bounce(api, "c@example.com", BounceType.SPAM_COMPLAINT)
    await record_bounce(api, "d@example.com", BounceType.SOFT_BOUNCE)
    await record_bounce(api, "e@example.com", BounceType.TRANSIENT, stream="broadcast")
    stats = await get(api, "/deliverystats")
    assert stats == {
        "InactiveMails": 3,
        "Bounces": [
            {"Type": "All", "TypeCode": 0, "Name": "All", "Count": 6},
            {"Type": "HardBounce", "TypeCode": 1, "Name": "Hard bounce", "Count": 3},
            {"Type": "Transient", "TypeCode": 2, "Name": "Message delayed", "Count": 1},
            {"Type": "SoftBounce", "TypeCode": 4096, "Name": "Soft bounce", "Count": 1},
            {"Type": "SpamComplaint", "TypeCode": 100001, "Name": "Spam complaint", "Count": 1},
        ],
    }
    # postmarker and postmark.js spell the path differently (docs/postmark-api.md §1.4).
    assert await get(api, "/deliveryStats") == stats


# -- bounce testing in the sandbox: a simulated bounce has the DSN we wrote as its dump ------------------------


@pytest.mark.parametrize(("to", "headers", "bounce_type"), [
    ("HardBounce@bounce-testing.postmarkapp.com", [], "HardBounce"),
    ("ann@example.com", [{"Name": "X-PM-Bounce-Type", "Value": "SoftBounce"}], "SoftBounce"),
])
async def test_a_simulated_bounce_has_its_dsn_as_dump(api, to, headers, bounce_type) -> None:  # type: ignore[no-untyped-def]
    from email import policy
    from email.parser import BytesParser

    from posthouse.server.domain.bounces import ReportKind, parse_report
    from support import async_wait_for

    hook = await api.client.post("/webhooks", headers=api.server_headers, json={
        "Url": "http://127.0.0.1:9/hook", "Triggers": {"Bounce": {"Enabled": True}}})
    assert hook.status_code == 200, hook.text
    sent = await api.client.post("/email", headers=api.server_headers, json={
        "From": "app@example.com", "To": to, "Subject": "Bounce me", "TextBody": "Hi", "Headers": headers})
    assert sent.status_code == 200, sent.text
    message_id = sent.json()["MessageID"]
    await api.runtime.start_worker()

    async def bounced() -> list[dict[str, Any]]:
        return (await get(api, "/bounces", count=10, offset=0))["Bounces"]  # type: ignore[no-any-return]

    [listed] = await async_wait_for(bounced)
    assert (listed["Type"], listed["MessageID"], listed["Email"]) == (bounce_type, message_id, to)
    assert listed["DumpAvailable"] is True
    single = await get(api, f"/bounces/{listed['ID']}")
    assert single["DumpAvailable"] is True
    body = (await get(api, f"/bounces/{listed['ID']}/dump"))["Body"]
    assert single["Content"] == body

    # A real RFC 3464 report, as the standard library's parser reads it (RFC 6522 multipart/report).
    dsn = BytesParser(policy=policy.default).parsebytes(body.encode())
    assert not dsn.defects
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert dsn["Subject"] == "Undelivered Mail Returned to Sender"
    assert dsn["Auto-Submitted"] == "auto-replied"
    human, status, returned = dsn.get_payload()
    assert human.get_content_type() == "text/plain" and to in human.get_content()
    assert status.get_content_type() == "message/delivery-status"
    per_message, per_recipient = status.get_payload()
    assert per_message["Reporting-MTA"].startswith("dns; ")
    assert per_recipient["Final-Recipient"] == f"rfc822; {to}"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.0.0"
    assert per_recipient["Diagnostic-Code"] == f"smtp; 550 5.0.0 Simulated {bounce_type} bounce (bounce testing)"
    assert returned.get_content_type() == "text/rfc822-headers"
    original = BytesParser(policy=policy.default).parsebytes(returned.get_payload().encode(), headersonly=True)
    assert original["Subject"] == "Bounce me" and original["X-PM-Message-Id"] == message_id

    # Our own bounce reader takes it for what it is.
    report = parse_report(body.encode())
    assert report.kind is ReportKind.DSN
    assert [(r.recipient.lower(), r.action, r.status) for r in report.recipients] == [(to.lower(), "failed", "5.0.0")]
    assert report.original_message_id == original["Message-ID"]

    # The Bounce webhook's payload says a dump is there too.
    rows = await api.runtime.store.query(
        "SELECT payload FROM webhook_posts WHERE record_type = 'Bounce' ORDER BY id")
    assert [json.loads(r[0])["DumpAvailable"] for r in rows] == [True]
