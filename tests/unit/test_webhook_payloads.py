"""Webhook payloads: exactly Postmark's keys and types (docs/postmark-api.md §7.3), checked by table and by
postmark-python's own models where it has them (Bounce, OpenEvent, ClickEvent)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from postmark.models.bounces.schemas import Bounce
from postmark.models.outbound.schemas import ClickEvent, OpenEvent

from posthouse.server.domain.statuses import BounceType
from posthouse.server.webhooks.payloads import (
    AgentInfo,
    BounceFacts,
    ClickFacts,
    ClickLocation,
    DeliveryFacts,
    GeoInfo,
    OpenFacts,
    Platform,
    SpamComplaintFacts,
    SubscriptionChangeFacts,
    SuppressionOrigin,
    SuppressionReason,
    bounce_payload,
    click_payload,
    delivery_payload,
    open_payload,
    spam_complaint_payload,
    subscription_change_payload,
)

MESSAGE_ID = "883953f4-6105-42a2-a16a-77a8eac79483"
# 2019-11-05T16:33:54.907025Z, Postmark's example moment, in microseconds.
AT_US = 1572971634_907025
AT_TEXT = "2019-11-05T16:33:54.9070250Z"
# .NET round-trip format: 7 fractional digits and Z, as in every §7.3 example.
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z")
STR_OR_NONE = (str, type(None))

AGENT_KEYS = {"Name": STR_OR_NONE, "Company": STR_OR_NONE, "Family": STR_OR_NONE}
GEO_KEYS = {
    k: STR_OR_NONE for k in ("CountryISOCode", "Country", "RegionISOCode", "Region", "City", "Zip", "Coords", "IP")
}

# key → allowed types, per RecordType (bool is checked strictly: True is not an int here).
DELIVERY_KEYS = {
    "RecordType": str, "MessageStream": str, "ServerID": int, "MessageID": str, "Recipient": str,
    "Tag": STR_OR_NONE, "DeliveredAt": str, "Details": str, "Metadata": dict,
}  # fmt: skip
BOUNCE_KEYS = {
    "RecordType": str, "MessageStream": str, "ID": int, "Type": str, "TypeCode": int, "Name": str,
    "Tag": STR_OR_NONE, "MessageID": str, "Metadata": dict, "ServerID": int, "Description": str, "Details": str,
    "Email": str, "From": str, "BouncedAt": str, "DumpAvailable": bool, "Inactive": bool, "CanActivate": bool,
    "Subject": str,
}  # fmt: skip
SUBSCRIPTION_KEYS = {
    "RecordType": str, "MessageID": STR_OR_NONE, "ServerID": int, "MessageStream": str, "ChangedAt": str,
    "Recipient": str, "Origin": str, "SuppressSending": bool, "SuppressionReason": STR_OR_NONE,
    "Tag": STR_OR_NONE, "Metadata": dict,
}  # fmt: skip
TRACKING_KEYS = {
    "RecordType": str, "MessageStream": str, "Metadata": dict, "Recipient": str, "MessageID": str,
    "ReceivedAt": str, "Platform": str, "Tag": STR_OR_NONE, "UserAgent": STR_OR_NONE, "OS": dict,
    "Client": dict, "Geo": dict,
}  # fmt: skip
OPEN_KEYS = {**TRACKING_KEYS, "FirstOpen": bool, "ReadSeconds": int}
CLICK_KEYS = {**TRACKING_KEYS, "ClickLocation": str, "OriginalLink": str}

CHROME = AgentInfo(name="Chrome 35.0.1916.153", company="Google", family="Chrome")
OS_X = AgentInfo(name="OS X 10.7 Lion", company="Apple Computer, Inc.", family="OS X 10")
NOVI_SAD = GeoInfo(
    country_iso_code="RS", country="Serbia", region_iso_code="VO", region="Autonomna Pokrajina Vojvodina",
    city="Novi Sad", zip="21000", coords="45.2517,19.8369", ip="188.2.95.4",
)  # fmt: skip


def decode(payload: bytes) -> dict[str, Any]:
    assert isinstance(payload, bytes)
    value = json.loads(payload)
    assert isinstance(value, dict)
    return value


def assert_shape(record: dict[str, Any], keys: dict[str, Any]) -> None:
    """Exactly these keys, each of its types; ints are not bools; times ISO; Metadata str → str."""
    assert set(record) == set(keys), set(record) ^ set(keys)
    for key, kinds in keys.items():
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        value = record[key]
        assert isinstance(value, kinds), (key, value)
        if int in kinds and bool not in kinds:
            assert not isinstance(value, bool), (key, value)
        if key.endswith("At"):
            assert ISO.fullmatch(value), (key, value)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in record["Metadata"].items())


def delivery(**changes: Any) -> DeliveryFacts:
    fields: dict[str, Any] = {
        "message_id": MESSAGE_ID, "server_id": 23, "message_stream": "outbound", "recipient": "john@example.com",
        "tag": "welcome-email", "delivered_at_us": AT_US, "details": "250 2.0.0 OK id=1abc",
        "metadata": {"a_key": "a_value"},
    }  # fmt: skip
    return DeliveryFacts(**(fields | changes))


def bounce(**changes: Any) -> BounceFacts:
    fields: dict[str, Any] = {
        "id": 4323372036854775807, "type": BounceType.HARD_BOUNCE, "message_id": MESSAGE_ID, "server_id": 23,
        "message_stream": "outbound", "email": "john@example.com", "from_": "sender@example.com",
        "bounced_at_us": AT_US, "details": "550 5.1.1 no such user", "description": "The server was unable to "
        "deliver your message (ex: unknown user, mailbox not found).", "subject": "Welcome", "tag": "Invitation",
        "metadata": {"a_key": "a_value", "b_key": "b_value"}, "dump_available": True, "inactive": True,
        "can_activate": True,
    }  # fmt: skip
    return BounceFacts(**(fields | changes))


def complaint(**changes: Any) -> SpamComplaintFacts:
    fields: dict[str, Any] = {
        "id": 42, "message_id": MESSAGE_ID, "server_id": 23, "message_stream": "outbound",
        "email": "john@example.com", "from_": "sender@example.com", "bounced_at_us": AT_US,
        "details": "Test spam complaint details", "description": "", "subject": "Test subject",
        "dump_available": True, "tag": "Test",
    }  # fmt: skip
    return SpamComplaintFacts(**(fields | changes))


def subscription(**changes: Any) -> SubscriptionChangeFacts:
    fields: dict[str, Any] = {
        "message_id": MESSAGE_ID, "server_id": 23, "message_stream": "outbound", "changed_at_us": AT_US,
        "recipient": "john@example.com", "origin": SuppressionOrigin.RECIPIENT, "suppress_sending": True,
        "suppression_reason": SuppressionReason.HARD_BOUNCE, "tag": "welcome-email", "metadata": {"a": "b"},
    }  # fmt: skip
    return SubscriptionChangeFacts(**(fields | changes))


def opened(**changes: Any) -> OpenFacts:
    fields: dict[str, Any] = {
        "message_id": MESSAGE_ID, "message_stream": "outbound", "recipient": "john@example.com",
        "received_at_us": AT_US, "first_open": True, "platform": Platform.WEBMAIL, "read_seconds": 5,
        "user_agent": "Mozilla/5.0 (Macintosh)", "client": CHROME, "os": OS_X, "geo": NOVI_SAD,
        "tag": "welcome-email", "metadata": {"example": "value"},
    }  # fmt: skip
    return OpenFacts(**(fields | changes))


def clicked(**changes: Any) -> ClickFacts:
    fields: dict[str, Any] = {
        "message_id": MESSAGE_ID, "message_stream": "outbound", "recipient": "john@example.com",
        "received_at_us": AT_US, "original_link": "https://example.com/welcome?x=1",
        "click_location": ClickLocation.HTML, "platform": Platform.DESKTOP, "user_agent": "Mozilla/5.0",
        "client": CHROME, "os": OS_X, "geo": NOVI_SAD, "tag": "welcome-email", "metadata": {"example": "value"},
    }  # fmt: skip
    return ClickFacts(**(fields | changes))


# --- Delivery ----------------------------------------------------------------------------------


def test_delivery_is_postmarks_example() -> None:
    record = decode(delivery_payload(delivery()))
    assert_shape(record, DELIVERY_KEYS)
    assert record == {
        "RecordType": "Delivery", "MessageStream": "outbound", "ServerID": 23, "MessageID": MESSAGE_ID,
        "Recipient": "john@example.com", "Tag": "welcome-email", "DeliveredAt": AT_TEXT,
        "Details": "250 2.0.0 OK id=1abc", "Metadata": {"a_key": "a_value"},
    }  # fmt: skip
    assert list(record) == list(DELIVERY_KEYS)  # Postmark's key order


def test_delivery_without_tag_or_metadata() -> None:
    record = decode(delivery_payload(delivery(tag=None, metadata={})))
    assert_shape(record, DELIVERY_KEYS)
    assert record["Tag"] is None and record["Metadata"] == {}


# --- Bounce and spam complaint -----------------------------------------------------------------


@pytest.mark.parametrize("kind", [t for t in BounceType if t is not BounceType.SPAM_COMPLAINT], ids=str)
def test_bounce_of_every_type_parses_with_postmark_python(kind: BounceType) -> None:
    record = decode(bounce_payload(bounce(type=kind)))
    assert_shape(record, BOUNCE_KEYS)
    assert record["RecordType"] == "Bounce"
    assert (record["Type"], record["TypeCode"], record["Name"]) == kind.value
    model = Bounce.model_validate(record)
    assert model.bounced_at == datetime(2019, 11, 5, 16, 33, 54, 907025, tzinfo=UTC)
    assert model.content is None


def test_bounce_fields() -> None:
    record = decode(bounce_payload(bounce()))
    assert record["ID"] == 4323372036854775807  # int64 survives JSON
    assert record["From"] == "sender@example.com"
    assert record["BouncedAt"] == AT_TEXT
    assert (record["DumpAvailable"], record["Inactive"], record["CanActivate"]) == (True, True, True)
    assert record["Metadata"] == {"a_key": "a_value", "b_key": "b_value"}


def test_content_only_with_include_content() -> None:
    assert "Content" not in decode(bounce_payload(bounce()))
    record = decode(bounce_payload(bounce(content="Return-Path: <>\r\n...")))
    assert_shape(record, {**BOUNCE_KEYS, "Content": str})
    assert record["Content"] == "Return-Path: <>\r\n..."
    assert Bounce.model_validate(record).content == "Return-Path: <>\r\n..."


def test_a_spam_complaint_is_not_a_bounce_record() -> None:
    with pytest.raises(ValueError, match="spam_complaint_payload"):
        bounce_payload(bounce(type=BounceType.SPAM_COMPLAINT))


def test_spam_complaint_is_postmarks_example() -> None:
    record = decode(spam_complaint_payload(complaint(content="<abuse report>")))
    assert_shape(record, {**BOUNCE_KEYS, "Content": str})
    assert record["RecordType"] == "SpamComplaint"
    assert (record["Type"], record["TypeCode"], record["Name"]) == ("SpamComplaint", 100001, "Spam complaint")
    assert (record["Inactive"], record["CanActivate"]) == (True, False)
    assert record["BouncedAt"] == AT_TEXT and record["Content"] == "<abuse report>"
    Bounce.model_validate(record)


# --- Subscription change -----------------------------------------------------------------------


def test_subscription_change_is_postmarks_example() -> None:
    record = decode(subscription_change_payload(subscription()))
    assert_shape(record, SUBSCRIPTION_KEYS)
    assert record == {
        "RecordType": "SubscriptionChange", "MessageID": MESSAGE_ID, "ServerID": 23, "MessageStream": "outbound",
        "ChangedAt": AT_TEXT, "Recipient": "john@example.com", "Origin": "Recipient", "SuppressSending": True,
        "SuppressionReason": "HardBounce", "Tag": "welcome-email", "Metadata": {"a": "b"},
    }  # fmt: skip
    assert list(record) == list(SUBSCRIPTION_KEYS)


def test_reactivation_has_nulls_where_postmark_has_them() -> None:
    facts = subscription(
        message_id=None, origin=SuppressionOrigin.CUSTOMER, suppress_sending=False, suppression_reason=None,
        tag=None, metadata={},
    )  # fmt: skip
    record = decode(subscription_change_payload(facts))
    assert_shape(record, SUBSCRIPTION_KEYS)
    assert record["MessageID"] is None and record["SuppressionReason"] is None and record["Tag"] is None
    assert (record["Origin"], record["SuppressSending"], record["Metadata"]) == ("Customer", False, {})


def test_subscription_vocabularies_are_closed() -> None:
    with pytest.raises(ValueError, match="Robot"):
        subscription_change_payload(subscription(origin="Robot"))
    with pytest.raises(ValueError, match="Unsubscribed"):
        subscription_change_payload(subscription(suppression_reason="Unsubscribed"))


# --- Open and click ----------------------------------------------------------------------------


def test_open_is_postmarks_example() -> None:
    record = decode(open_payload(opened()))
    assert_shape(record, OPEN_KEYS)
    assert "ServerID" not in record
    assert (record["RecordType"], record["FirstOpen"], record["ReadSeconds"]) == ("Open", True, 5)
    assert (record["ReceivedAt"], record["Platform"]) == (AT_TEXT, "WebMail")
    assert record["Client"] == {"Name": "Chrome 35.0.1916.153", "Company": "Google", "Family": "Chrome"}
    assert record["OS"] == {"Name": "OS X 10.7 Lion", "Company": "Apple Computer, Inc.", "Family": "OS X 10"}
    assert record["Geo"] == {
        "CountryISOCode": "RS", "Country": "Serbia", "RegionISOCode": "VO", "Region": "Autonomna Pokrajina Vojvodina",
        "City": "Novi Sad", "Zip": "21000", "Coords": "45.2517,19.8369", "IP": "188.2.95.4",
    }  # fmt: skip
    model = OpenEvent.model_validate(record)
    assert model.geo.city == "Novi Sad" and model.client.family == "Chrome"


def test_open_with_nothing_known_keeps_every_key() -> None:
    facts = OpenFacts(
        message_id=MESSAGE_ID, message_stream="outbound", recipient="john@example.com", received_at_us=AT_US,
        first_open=False,
    )  # fmt: skip
    record = decode(open_payload(facts))
    assert_shape(record, OPEN_KEYS)
    for key, keys in (("Client", AGENT_KEYS), ("OS", AGENT_KEYS), ("Geo", GEO_KEYS)):
        assert record[key] == dict.fromkeys(keys)
    assert (record["Platform"], record["UserAgent"], record["ReadSeconds"]) == ("Unknown", None, 0)
    OpenEvent.model_validate(record)


def test_click_is_postmarks_example() -> None:
    record = decode(click_payload(clicked()))
    assert_shape(record, CLICK_KEYS)
    assert "ServerID" not in record and "FirstOpen" not in record
    assert (record["RecordType"], record["ClickLocation"], record["Platform"]) == ("Click", "HTML", "Desktop")
    assert record["OriginalLink"] == "https://example.com/welcome?x=1"
    model = ClickEvent.model_validate(record)
    assert model.original_link == "https://example.com/welcome?x=1"
    assert decode(click_payload(clicked(click_location=ClickLocation.TEXT)))["ClickLocation"] == "Text"


def test_nested_objects_have_exactly_postmarks_keys() -> None:
    for record in (decode(open_payload(opened())), decode(click_payload(clicked()))):
        for key in ("Client", "OS"):
            assert set(record[key]) == set(AGENT_KEYS)
            assert all(isinstance(v, STR_OR_NONE) for v in record[key].values())
        assert set(record["Geo"]) == set(GEO_KEYS)


def test_platform_is_closed() -> None:
    with pytest.raises(ValueError, match="Tablet"):
        open_payload(opened(platform="Tablet"))


# --- Shared rules ------------------------------------------------------------------------------


def test_metadata_values_are_strings() -> None:
    metadata = {"s": "text", "n": 1, "f": 1.5, "b": True, "none": None, "l": [1, "a"]}
    record = decode(delivery_payload(delivery(metadata=metadata)))
    assert record["Metadata"] == {"s": "text", "n": "1", "f": "1.5", "b": "true", "none": "", "l": '[1,"a"]'}


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "1970-01-01T00:00:00.0000000Z"),
        (AT_US, AT_TEXT),
        (1_743_870_834_000_001, "2025-04-05T16:33:54.0000010Z"),
        (4_102_444_799_999_999, "2099-12-31T23:59:59.9999990Z"),
    ],
)
def test_times_are_dotnet_round_trip_utc(micros: int, text: str) -> None:
    assert decode(delivery_payload(delivery(delivered_at_us=micros)))["DeliveredAt"] == text


@given(st.integers(min_value=0, max_value=253_402_300_799_999_999))
def test_every_time_round_trips(micros: int) -> None:
    text = decode(subscription_change_payload(subscription(changed_at_us=micros)))["ChangedAt"]
    assert ISO.fullmatch(text)
    delta = datetime.fromisoformat(text) - datetime(1970, 1, 1, tzinfo=UTC)
    assert (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds == micros


def test_payloads_are_compact_utf8_json() -> None:
    payload = delivery_payload(delivery(recipient="jöhn@example.com"))
    assert b"\xc3\xb6" in payload and b": " not in payload
