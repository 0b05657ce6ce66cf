"""/message-streams/{stream}/suppressions through the real ASGI app and a real database (docs/postmark-api.md §8.2)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from posthouse.server.domain.statuses import BounceType
from posthouse.server.services import notifications
from posthouse.server.store.base import BounceRecord
from support import WEBHOOKS_TO_LOOPBACK, assert_api_error

INVALID = "An invalid email address was provided."
MESSAGE = {"From": "app@example.com", "Subject": "Hi", "TextBody": "Hi"}


@pytest.fixture
def api_settings() -> dict[str, str]:
    """This module's webhooks point at loopback, which the operator must allow."""
    return WEBHOOKS_TO_LOOPBACK


def body(*emails: str | None) -> dict[str, Any]:
    return {"Suppressions": [{"EmailAddress": e} for e in emails]}


async def change(api, action: str, *emails: str | None, stream: str = "outbound") -> list[tuple[str, str, Any]]:  # type: ignore[no-untyped-def]
    path = f"/message-streams/{stream}/suppressions" + ("/delete" if action == "delete" else "")
    response = await api.client.post(path, json=body(*emails), headers=api.server_headers)
    assert response.status_code == 200, response.text
    return [(r["EmailAddress"], r["Status"], r["Message"]) for r in response.json()["Suppressions"]]


async def dump(api, stream: str = "outbound", **params: Any) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    response = await api.client.get(
        f"/message-streams/{stream}/suppressions/dump", params=params, headers=api.server_headers
    )
    assert response.status_code == 200, response.text
    return list(response.json()["Suppressions"])


async def emails(api, stream: str = "outbound", **params: Any) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(s["EmailAddress"] for s in await dump(api, stream, **params))


async def subscription_webhook(api, stream: str = "outbound") -> int:  # type: ignore[no-untyped-def]
    response = await api.client.post(
        "/webhooks",
        headers=api.server_headers,
        json={
            "Url": "http://127.0.0.1:9/hook",
            "MessageStream": stream,
            "Triggers": {"SubscriptionChange": {"Enabled": True}},
        },
    )
    assert response.status_code == 200, response.text
    return int(response.json()["ID"])


async def posts(api, webhook_id: int) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    rows = await api.runtime.store.query(
        "SELECT payload FROM webhook_posts WHERE webhook_id = ? ORDER BY id", (webhook_id,)
    )
    return [json.loads(r[0]) for r in rows]


async def record_bounce(api, email: str, bounce_type: BounceType) -> int:  # type: ignore[no-untyped-def]
    server = (await api.client.get("/server", headers=api.server_headers)).json()
    bounce = BounceRecord(
        server_id=server["ID"],
        message_id=None,
        stream="outbound",
        type=bounce_type.type_name,
        type_code=bounce_type.code,
        email=email,
        sender="app@example.com",
        subject="Hello",
        tag=None,
        description=bounce_type.display_name,
        details="550",
        bounced_at=api.runtime.clock.micros(),
        inactive=bounce_type.deactivates,
        can_activate=bounce_type is BounceType.HARD_BOUNCE,
        dump="",
    )
    (bounce_id,) = await api.runtime.store.record_bounces(
        [(bounce, None, [], notifications.suppression_for(bounce, None, {}))]
    )
    return bounce_id


# -- creating ---------------------------------------------------------------------------------------


async def test_suppressing_addresses_reports_each_and_announces_each_new_one(api) -> None:  # type: ignore[no-untyped-def]
    webhook_id = await subscription_webhook(api)
    before = datetime.now(UTC)
    results = await change(
        api, "create", "Ann@Example.com", "not-an-address", "ann@example.com", None, "bob@example.org"
    )
    assert results == [
        ("Ann@Example.com", "Suppressed", None),
        ("not-an-address", "Failed", INVALID),
        ("ann@example.com", "Suppressed", None),
        ("", "Failed", INVALID),
        ("bob@example.org", "Suppressed", None),
    ]
    entries = await dump(api)
    assert sorted(entries, key=lambda e: e["EmailAddress"]) == [
        {
            "EmailAddress": "ann@example.com",
            "SuppressionReason": "ManualSuppression",
            "Origin": "Customer",
            "CreatedAt": entries[0]["CreatedAt"],
        },
        {
            "EmailAddress": "bob@example.org",
            "SuppressionReason": "ManualSuppression",
            "Origin": "Customer",
            "CreatedAt": entries[0]["CreatedAt"],
        },
    ]
    created = datetime.fromisoformat(entries[0]["CreatedAt"])
    assert created.utcoffset() == timedelta(0) and abs(created - before) < timedelta(seconds=30)
    announced = await posts(api, webhook_id)
    assert sorted(p["Recipient"] for p in announced) == ["ann@example.com", "bob@example.org"]  # once per address
    for post in announced:
        assert post["RecordType"] == "SubscriptionChange" and post["SuppressSending"] is True
        assert post["SuppressionReason"] == "ManualSuppression" and post["Origin"] == "Customer"
        assert post["MessageID"] is None and post["MessageStream"] == "outbound"

    # A suppressed address is refused when sending, in any spelling.
    refused = await api.client.post("/email", json={**MESSAGE, "To": "ANN@example.com"}, headers=api.server_headers)
    assert_api_error(refused, 406)
    # Suppressing it again is no change: still `Suppressed`, nothing announced.
    assert await change(api, "create", "ann@example.com") == [("ann@example.com", "Suppressed", None)]
    assert len(await posts(api, webhook_id)) == 2


async def test_suppressions_belong_to_one_stream(api) -> None:  # type: ignore[no-untyped-def]
    await change(api, "create", "reader@example.com", stream="broadcast")
    assert await emails(api, "broadcast") == ["reader@example.com"]
    assert await emails(api, "outbound") == []
    accepted = await api.client.post("/email", json={**MESSAGE, "To": "reader@example.com"}, headers=api.server_headers)
    assert accepted.status_code == 200, accepted.text


async def test_an_existing_bounce_suppression_is_kept_as_it_is(api) -> None:  # type: ignore[no-untyped-def]
    await record_bounce(api, "gone@example.com", BounceType.HARD_BOUNCE)
    assert await change(api, "create", "gone@example.com") == [("gone@example.com", "Suppressed", None)]
    (entry,) = await dump(api)
    assert (entry["SuppressionReason"], entry["Origin"]) == ("HardBounce", "Recipient")


# -- deleting -------------------------------------------------------------------------------------


async def test_deleting_lifts_suppressions_reactivates_bounces_and_announces_it(api) -> None:  # type: ignore[no-untyped-def]
    bounce_id = await record_bounce(api, "gone@example.com", BounceType.HARD_BOUNCE)
    await change(api, "create", "manual@example.com")
    webhook_id = await subscription_webhook(api)
    results = await change(api, "delete", "Gone@Example.com", "manual@example.com", "never@example.com", "bad@")
    assert results == [
        ("Gone@Example.com", "Deleted", None),
        ("manual@example.com", "Deleted", None),
        ("never@example.com", "Deleted", None),
        ("bad@", "Failed", INVALID),
    ]
    assert await dump(api) == []
    bounce = (await api.client.get(f"/bounces/{bounce_id}", headers=api.server_headers)).json()
    assert bounce["Inactive"] is False
    announced = await posts(api, webhook_id)
    # Only the suppressions that existed are announced.
    assert sorted(p["Recipient"] for p in announced) == ["gone@example.com", "manual@example.com"]
    for post in announced:
        assert post["SuppressSending"] is False and post["SuppressionReason"] is None
        assert post["Origin"] == "Customer" and post["MessageID"] is None
    accepted = await api.client.post("/email", json={**MESSAGE, "To": "gone@example.com"}, headers=api.server_headers)
    assert accepted.status_code == 200, accepted.text


async def test_a_spam_complaint_suppression_cannot_be_deleted(api) -> None:  # type: ignore[no-untyped-def]
    await record_bounce(api, "angry@example.com", BounceType.SPAM_COMPLAINT)
    webhook_id = await subscription_webhook(api)
    ((email, status, message),) = await change(api, "delete", "angry@example.com")
    assert (email, status) == ("angry@example.com", "Failed")
    assert "spam complaint" in message
    assert await emails(api, SuppressionReason="SpamComplaint") == ["angry@example.com"]
    assert await posts(api, webhook_id) == []


# -- the dump's filters ---------------------------------------------------------------------------


async def test_the_dump_filters_by_reason_origin_address_and_date(api) -> None:  # type: ignore[no-untyped-def]
    await record_bounce(api, "hard@example.com", BounceType.HARD_BOUNCE)
    await record_bounce(api, "spam@example.com", BounceType.SPAM_COMPLAINT)
    await change(api, "create", "manual@example.com")
    assert await emails(api) == ["hard@example.com", "manual@example.com", "spam@example.com"]
    assert await emails(api, SuppressionReason="HardBounce") == ["hard@example.com"]
    assert await emails(api, suppressionreason="manualsuppression") == ["manual@example.com"]
    assert await emails(api, Origin="Recipient") == ["hard@example.com", "spam@example.com"]
    assert await emails(api, origin="customer") == ["manual@example.com"]
    assert await emails(api, Origin="Admin") == []
    assert await emails(api, EmailAddress="Spam@Example.com") == ["spam@example.com"]
    today = datetime.now(UTC).date()
    assert len(await emails(api, fromdate=str(today), todate=str(today))) == 3
    assert await emails(api, fromdate=str(today + timedelta(days=1))) == []
    assert await emails(api, todate=str(today - timedelta(days=1))) == []


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"SuppressionReason": "Unsubscribed"}, 1404),
        ({"Origin": "Someone"}, 1405),
        ({"fromdate": "last week"}, 900),
    ],
)
async def test_bad_dump_filters_are_refused(api, params: dict[str, str], code: int) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.get(
        "/message-streams/outbound/suppressions/dump", params=params, headers=api.server_headers
    )
    assert_api_error(response, code)


# -- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/message-streams/nope/suppressions", "/message-streams/nope/suppressions/delete"])
async def test_an_unknown_stream_is_1226(api, path: str) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.post(path, json=body("a@example.com"), headers=api.server_headers)
    assert_api_error(response, 1226)
    dumped = await api.client.get("/message-streams/nope/suppressions/dump", headers=api.server_headers)
    assert_api_error(dumped, 1226)


@pytest.mark.parametrize("action", ["", "/delete"])
async def test_bad_bodies_are_refused(api, action: str) -> None:  # type: ignore[no-untyped-def]
    path = f"/message-streams/outbound/suppressions{action}"
    headers = {**api.server_headers, "Content-Type": "application/json"}
    assert_api_error(await api.client.post(path, content=b"", headers=headers), 1409)
    assert_api_error(await api.client.post(path, json={}, headers=headers), 1409)
    assert_api_error(await api.client.post(path, json={"Suppressions": None}, headers=headers), 1409)
    assert_api_error(await api.client.post(path, json={"Suppressions": []}, headers=headers), 1409)
    assert_api_error(await api.client.post(path, content=b"{not json", headers=headers), 402)
    too_many = body(*(f"user{i}@example.com" for i in range(51)))
    assert_api_error(await api.client.post(path, json=too_many, headers=headers), 1410)
    fifty = body(*(f"user{i}@example.com" for i in range(50)))
    assert (await api.client.post(path, json=fifty, headers=headers)).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/message-streams/outbound/suppressions/dump"),
        ("POST", "/message-streams/outbound/suppressions"),
        ("POST", "/message-streams/outbound/suppressions/delete"),
    ],
)
async def test_suppressions_need_a_server_token(api, method: str, path: str) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.request(method, path, json=body("a@example.com"), headers=api.account_headers)
    assert_api_error(response, 10, status=401)


async def test_another_servers_suppressions_are_invisible(api) -> None:  # type: ignore[no-untyped-def]
    await change(api, "create", "mine@example.com")
    created = await api.client.post("/servers", json={"Name": "other"}, headers=api.account_headers)
    other = {"X-Postmark-Server-Token": created.json()["ApiTokens"][0], "Accept": "application/json"}
    response = await api.client.get("/message-streams/outbound/suppressions/dump", headers=other)
    assert response.json() == {"Suppressions": []}
    deleted = await api.client.post(
        "/message-streams/outbound/suppressions/delete", json=body("mine@example.com"), headers=other
    )
    assert deleted.status_code == 200
    assert await emails(api) == ["mine@example.com"]
