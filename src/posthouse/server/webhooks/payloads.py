"""Postmark's webhook payloads (docs/postmark-api.md §7.3) as JSON bytes, built from plain facts.

Each builder takes a small frozen dataclass of facts (snake_case, times as integer microseconds
since the epoch, as the store keeps them) and returns the exact bytes to post and sign. Postmark's
PascalCase exists in this module only (docs/architecture.md, "Import layering"). Keys come in the order of Postmark's
documented examples; every documented key is always present (null when unknown) so that receivers
written against Postmark's models (postmark-python's `Bounce`, `OpenEvent`, `ClickEvent`) parse
them, except `Content`, which Postmark adds only when the webhook's `IncludeContent` is on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import msgspec

from posthouse.server.domain.inbound import InboundContent, Mailbox, format_addresses
from posthouse.server.domain.statuses import BounceType

__all__ = [
    "AgentInfo",
    "BounceFacts",
    "ClickFacts",
    "ClickLocation",
    "DeliveryFacts",
    "GeoInfo",
    "InboundFacts",
    "OpenFacts",
    "Platform",
    "SpamComplaintFacts",
    "SubscriptionChangeFacts",
    "SuppressionOrigin",
    "SuppressionReason",
    "bounce_payload",
    "click_payload",
    "delivery_payload",
    "inbound_payload",
    "open_payload",
    "spam_complaint_payload",
    "subscription_change_payload",
]

_encoder = msgspec.json.Encoder()


# --- Vocabularies ------------------------------------------------------------------------------


class Platform(StrEnum):
    """Where an open or click happened (Postmark's `Platform`)."""

    WEBMAIL = "WebMail"
    DESKTOP = "Desktop"
    MOBILE = "Mobile"
    UNKNOWN = "Unknown"


class ClickLocation(StrEnum):
    """Which part of the message held the clicked link (Postmark's `ClickLocation`)."""

    HTML = "HTML"
    TEXT = "Text"


class SuppressionOrigin(StrEnum):
    """Who changed a subscription (Postmark's `Origin`)."""

    RECIPIENT = "Recipient"
    CUSTOMER = "Customer"
    ADMIN = "Admin"


class SuppressionReason(StrEnum):
    """Why sending is suppressed (Postmark's `SuppressionReason`; an unsubscribe is ManualSuppression)."""

    HARD_BOUNCE = "HardBounce"
    SPAM_COMPLAINT = "SpamComplaint"
    MANUAL_SUPPRESSION = "ManualSuppression"


# --- Facts -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentInfo:
    """An email client or operating system as parsed from a user agent; None when not known."""

    name: str | None = None
    company: str | None = None
    family: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GeoInfo:
    """Where an open or click came from; None when not known. `coords` is "lat,long"."""

    country_iso_code: str | None = None
    country: str | None = None
    region_iso_code: str | None = None
    region: str | None = None
    city: str | None = None
    zip: str | None = None
    coords: str | None = None
    ip: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryFacts:
    """One recipient's message was accepted by the receiving server."""

    message_id: str
    server_id: int
    message_stream: str
    recipient: str
    delivered_at_us: int
    details: str  # the receiving server's reply, e.g. "250 2.0.0 OK"
    tag: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class BounceFacts:
    """One bounce record (any type but SpamComplaint, which has its own payload)."""

    id: int
    type: BounceType
    message_id: str
    server_id: int
    message_stream: str
    email: str
    from_: str
    bounced_at_us: int
    details: str
    description: str
    subject: str
    dump_available: bool
    inactive: bool
    can_activate: bool
    tag: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    content: str | None = None  # the bounce dump; set only when the webhook's IncludeContent is on


@dataclass(frozen=True, slots=True, kw_only=True)
class SpamComplaintFacts:
    """One spam complaint: a bounce record of type SpamComplaint, which always deactivates for good."""

    id: int
    message_id: str
    server_id: int
    message_stream: str
    email: str
    from_: str
    bounced_at_us: int  # when the complaint arrived; Postmark's key is BouncedAt here too
    details: str
    description: str
    subject: str
    dump_available: bool
    tag: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    content: str | None = None  # the abuse report; set only when the webhook's IncludeContent is on


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionChangeFacts:
    """A recipient's suppression was added or removed.

    `message_id` is None for manual suppressions and reactivations; a reactivation has
    `suppress_sending=False`, `suppression_reason=None` (docs/postmark-api.md §7.3).
    """

    message_id: str | None
    server_id: int
    message_stream: str
    recipient: str
    changed_at_us: int
    origin: SuppressionOrigin
    suppress_sending: bool
    suppression_reason: SuppressionReason | None
    tag: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenFacts:
    """A recipient opened a message (the tracking pixel was fetched)."""

    message_id: str
    message_stream: str
    recipient: str
    received_at_us: int
    first_open: bool
    platform: Platform = Platform.UNKNOWN
    user_agent: str | None = None
    read_seconds: int = 0
    client: AgentInfo = field(default_factory=AgentInfo)
    os: AgentInfo = field(default_factory=AgentInfo)
    geo: GeoInfo = field(default_factory=GeoInfo)
    tag: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClickFacts:
    """A recipient followed a tracked link."""

    message_id: str
    message_stream: str
    recipient: str
    received_at_us: int
    original_link: str
    click_location: ClickLocation
    platform: Platform = Platform.UNKNOWN
    user_agent: str | None = None
    client: AgentInfo = field(default_factory=AgentInfo)
    os: AgentInfo = field(default_factory=AgentInfo)
    geo: GeoInfo = field(default_factory=GeoInfo)
    tag: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundFacts:
    """A received message for the server's InboundHookUrl (docs/postmark-api.md §10)."""

    content: InboundContent  # the message as read (domain/inbound.py)
    message_id: str  # Posthouse's MessageID for it
    message_stream: str
    original_recipient: str  # the envelope recipient it came to
    envelope_sender: str  # MAIL FROM ("" for the null sender), shown as the first header, Return-Path
    raw_email: bytes | None = None  # the message as received, when the server's RawEmailEnabled is on


# --- Rendering ---------------------------------------------------------------------------------


def _timestamp(micros: int) -> str:
    """Microseconds since the epoch as Postmark's webhook times: UTC, 7 fractional digits, "Z".

    Postmark's examples are .NET round-trip times ("2019-11-05T16:33:54.9070259Z"); we keep
    microseconds, so the seventh digit is always 0. Integer arithmetic: a float would lose the
    last microsecond of present-day times.
    """
    seconds, fraction = divmod(micros, 1_000_000)
    moment = datetime.fromtimestamp(seconds, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction:06d}0Z"


def _metadata(metadata: Mapping[str, Any]) -> dict[str, str]:
    """Metadata with string values, as Postmark posts it (§7.3).

    The API accepts only strings (§2.1), so this is a guard for data stored by older code or other
    paths: None becomes "", anything else its JSON text (1 → "1", true → "true").
    """
    return {
        str(key): value if isinstance(value, str) else "" if value is None else _encoder.encode(value).decode()
        for key, value in metadata.items()
    }


def _agent(info: AgentInfo) -> dict[str, str | None]:
    return {"Name": info.name, "Company": info.company, "Family": info.family}


def _geo(info: GeoInfo) -> dict[str, str | None]:
    return {
        "CountryISOCode": info.country_iso_code,
        "Country": info.country,
        "RegionISOCode": info.region_iso_code,
        "Region": info.region,
        "City": info.city,
        "Zip": info.zip,
        "Coords": info.coords,
        "IP": info.ip,
    }


# --- Builders ----------------------------------------------------------------------------------


def delivery_payload(facts: DeliveryFacts) -> bytes:
    """The Delivery webhook: `RecordType: "Delivery"`."""
    return _encoder.encode(
        {
            "RecordType": "Delivery",
            "MessageStream": facts.message_stream,
            "ServerID": facts.server_id,
            "MessageID": facts.message_id,
            "Recipient": facts.recipient,
            "Tag": facts.tag,
            "DeliveredAt": _timestamp(facts.delivered_at_us),
            "Details": facts.details,
            "Metadata": _metadata(facts.metadata),
        }
    )


def _bounce_record(
    record_type: str,
    bounce_type: BounceType,
    facts: BounceFacts | SpamComplaintFacts,
    *,
    inactive: bool,
    can_activate: bool,
) -> bytes:
    payload: dict[str, Any] = {
        "RecordType": record_type,
        "MessageStream": facts.message_stream,
        "ID": facts.id,
        "Type": bounce_type.type_name,
        "TypeCode": bounce_type.code,
        "Name": bounce_type.display_name,
        "Tag": facts.tag,
        "MessageID": facts.message_id,
        "Metadata": _metadata(facts.metadata),
        "ServerID": facts.server_id,
        "Description": facts.description,
        "Details": facts.details,
        "Email": facts.email,
        "From": facts.from_,
        "BouncedAt": _timestamp(facts.bounced_at_us),
        "DumpAvailable": facts.dump_available,
        "Inactive": inactive,
        "CanActivate": can_activate,
        "Subject": facts.subject,
    }
    # Postmark adds Content only when the webhook's trigger has IncludeContent (§7.1).
    if facts.content is not None:
        payload["Content"] = facts.content
    return _encoder.encode(payload)


def bounce_payload(facts: BounceFacts) -> bytes:
    """The Bounce webhook: `RecordType: "Bounce"` with the bounce's Type, TypeCode and Name."""
    if facts.type is BounceType.SPAM_COMPLAINT:
        # Postmark posts complaints to the SpamComplaint trigger, never as a Bounce record.
        raise ValueError("a spam complaint is posted with spam_complaint_payload, not as a Bounce")
    return _bounce_record("Bounce", facts.type, facts, inactive=facts.inactive, can_activate=facts.can_activate)


def spam_complaint_payload(facts: SpamComplaintFacts) -> bytes:
    """The SpamComplaint webhook: the Bounce shape with Type SpamComplaint (100001).

    A complaint always deactivates the address and cannot be reactivated through the API
    (docs/postmark-api.md §7.3, §5 "not activatable"), so Inactive and CanActivate are fixed.
    """
    return _bounce_record("SpamComplaint", BounceType.SPAM_COMPLAINT, facts, inactive=True, can_activate=False)


def subscription_change_payload(facts: SubscriptionChangeFacts) -> bytes:
    """The SubscriptionChange webhook: a suppression added (SuppressSending true) or removed."""
    origin = SuppressionOrigin(facts.origin)
    reason = None if facts.suppression_reason is None else SuppressionReason(facts.suppression_reason)
    return _encoder.encode(
        {
            "RecordType": "SubscriptionChange",
            "MessageID": facts.message_id,
            "ServerID": facts.server_id,
            "MessageStream": facts.message_stream,
            "ChangedAt": _timestamp(facts.changed_at_us),
            "Recipient": facts.recipient,
            "Origin": origin.value,
            "SuppressSending": facts.suppress_sending,
            "SuppressionReason": None if reason is None else reason.value,
            "Tag": facts.tag,
            "Metadata": _metadata(facts.metadata),
        }
    )


def open_payload(facts: OpenFacts) -> bytes:
    """The Open webhook (no ServerID in Postmark's shape)."""
    return _encoder.encode(
        {
            "RecordType": "Open",
            "MessageStream": facts.message_stream,
            "Metadata": _metadata(facts.metadata),
            "FirstOpen": facts.first_open,
            "Recipient": facts.recipient,
            "MessageID": facts.message_id,
            "ReceivedAt": _timestamp(facts.received_at_us),
            "Platform": Platform(facts.platform).value,
            "ReadSeconds": facts.read_seconds,
            "Tag": facts.tag,
            "UserAgent": facts.user_agent,
            "OS": _agent(facts.os),
            "Client": _agent(facts.client),
            "Geo": _geo(facts.geo),
        }
    )


def click_payload(facts: ClickFacts) -> bytes:
    """The Click webhook (no ServerID in Postmark's shape)."""
    return _encoder.encode(
        {
            "RecordType": "Click",
            "MessageStream": facts.message_stream,
            "Metadata": _metadata(facts.metadata),
            "Recipient": facts.recipient,
            "MessageID": facts.message_id,
            "ReceivedAt": _timestamp(facts.received_at_us),
            "Platform": Platform(facts.platform).value,
            "ClickLocation": ClickLocation(facts.click_location).value,
            "OriginalLink": facts.original_link,
            "Tag": facts.tag,
            "UserAgent": facts.user_agent,
            "OS": _agent(facts.os),
            "Client": _agent(facts.client),
            "Geo": _geo(facts.geo),
        }
    )


def _inbound_address(box: Mailbox) -> dict[str, str]:
    return {"Email": box.email, "Name": box.name, "MailboxHash": box.mailbox_hash}


def inbound_bcc(content: InboundContent, original_recipient: str) -> tuple[Mailbox, ...]:
    """Postmark's Bcc: the message's own Bcc header, and the address the message came to when neither To
    nor Cc names it (it was blind-copied there, or forwarded without rewriting)."""
    bcc = content.bcc
    named = {box.email.lower() for box in (*content.to, *content.cc, *bcc)}
    if original_recipient and original_recipient.lower() not in named:
        bcc = (*bcc, Mailbox(original_recipient, ""))
    return bcc


def inbound_payload(facts: InboundFacts) -> bytes:
    """The inbound webhook: no RecordType; keys in the order of Postmark's real posts. Attachments' Content is
    base64 (msgspec encodes bytes so); `RawEmail`, with "\\n" line ends as Postmark's, only when asked for."""
    c = facts.content
    bcc = inbound_bcc(c, facts.original_recipient)
    headers = [{"Name": "Return-Path", "Value": f"<{facts.envelope_sender}>"}]
    headers += [{"Name": name, "Value": value} for name, value in c.headers]
    payload: dict[str, Any] = {
        "FromName": c.sender.name,
        "MessageStream": facts.message_stream,
        "From": c.sender.email,
        "FromFull": _inbound_address(c.sender),
        "To": format_addresses(c.to),
        "ToFull": [_inbound_address(box) for box in c.to],
        "Cc": format_addresses(c.cc),
        "CcFull": [_inbound_address(box) for box in c.cc],
        "Bcc": format_addresses(bcc),
        "BccFull": [_inbound_address(box) for box in bcc],
        "OriginalRecipient": facts.original_recipient,
        "Subject": c.subject,
        "MessageID": facts.message_id,
        "ReplyTo": c.reply_to,
        "MailboxHash": Mailbox(facts.original_recipient, "").mailbox_hash,
        "Date": c.date,
        "TextBody": c.text_body,
        "HtmlBody": c.html_body,
        "StrippedTextReply": c.stripped_text_reply,
        "Tag": c.tag,
        "Headers": headers,
        # ContentID only for a part that has one: django-anymail reads any ContentID, "" too, as an inline part.
        "Attachments": [
            {"Name": a.name, "Content": a.content, "ContentType": a.content_type, "ContentLength": len(a.content),
             **({"ContentID": a.content_id} if a.content_id else {})}
            for a in c.attachments
        ],
    }
    if facts.raw_email is not None:
        payload["RawEmail"] = facts.raw_email.replace(b"\r\n", b"\n").decode("utf-8", "replace")
    return _encoder.encode(payload)
