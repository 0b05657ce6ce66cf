"""Postmark's JSON shapes as msgspec Structs: PascalCase lives here and nowhere else.

Requests are lenient the way the official clients need (POSTMARK-API.md §1.4): every optional field
accepts `null`, unknown keys are ignored. Responses are the supersets the clients require (§11.3).
The SDK (`posthouse.client`) and the server's API share these types.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct, field

# -- requests ---------------------------------------------------------------------------------


class Header(Struct, rename="pascal", omit_defaults=True):
    name: str | None = None
    value: str | None = None


class Attachment(Struct, rename="pascal", omit_defaults=True):
    name: str | None = None
    content: str | None = None
    content_type: str | None = None
    content_id: str | None = field(default=None, name="ContentID")


class EmailRequest(Struct, rename="pascal", omit_defaults=True):
    """`POST /email` and each item of `POST /email/batch` (POSTMARK-API.md §2.1)."""

    sender: str | None = field(default=None, name="From")
    to: str | None = None
    cc: str | None = None
    bcc: str | None = None
    subject: str | None = None
    tag: str | None = None
    html_body: str | None = None
    text_body: str | None = None
    reply_to: str | None = None
    headers: list[Header] | None = None
    track_opens: bool | None = None
    track_links: str | None = None
    metadata: dict[str, Any] | None = None
    attachments: list[Attachment] | None = None
    message_stream: str | None = None
    # Posthouse extension (DESIGN §7): deliver at this ISO 8601 time; a string so the server validates it.
    send_at: str | None = None


class ServerRequest(Struct, rename="pascal", omit_defaults=True):
    """`POST /servers`, `PUT /servers/{id}` and `PUT /server` (POSTMARK-API.md §8.3)."""

    name: str | None = None
    color: str | None = None
    smtp_api_activated: bool | None = None
    raw_email_enabled: bool | None = None
    delivery_type: str | None = None
    inbound_hook_url: str | None = None
    bounce_hook_url: str | None = None
    open_hook_url: str | None = None
    delivery_hook_url: str | None = None
    click_hook_url: str | None = None
    post_first_open_only: bool | None = None
    inbound_domain: str | None = None
    inbound_spam_threshold: int | None = None
    track_opens: bool | None = None
    track_links: str | None = None
    include_bounce_content_in_hook: bool | None = None
    enable_smtp_api_error_hooks: bool | None = None


class SubscriptionManagementConfiguration(Struct, rename="pascal"):
    unsubscribe_handling_type: str = "None"


class MessageStreamRequest(Struct, rename="pascal", omit_defaults=True):
    """`POST /message-streams` and `PATCH /message-streams/{id}` (POSTMARK-API.md §8.1)."""

    id: str | None = field(default=None, name="ID")
    name: str | None = None
    message_stream_type: str | None = None
    description: str | None = None
    subscription_management_configuration: SubscriptionManagementConfiguration | None = None


# -- responses --------------------------------------------------------------------------------


class SendResponse(Struct, rename="pascal"):
    """The answer to one send; failed batch items carry every key too (§2.2 compat note)."""

    to: str
    submitted_at: str
    message_id: str = field(name="MessageID")
    error_code: int
    message: str


class ErrorResponse(Struct, rename="pascal"):
    error_code: int
    message: str


class EmailAddress(Struct, rename="pascal"):
    email: str
    name: str | None


class MessageEvent(Struct, rename="pascal"):
    recipient: str
    type: str
    received_at: str
    details: dict[str, Any]


class OutboundMessage(Struct, rename="pascal"):
    """An item of `GET /messages/outbound` (POSTMARK-API.md §4.3)."""

    tag: str | None
    message_id: str = field(name="MessageID")
    message_stream: str
    to: list[EmailAddress]
    cc: list[EmailAddress]
    bcc: list[EmailAddress]
    recipients: list[str]
    received_at: str
    sender: str = field(name="From")
    subject: str
    attachments: list[str]
    status: str
    track_opens: bool
    track_links: str
    metadata: dict[str, str]
    sandboxed: bool


class OutboundMessageDetails(OutboundMessage):
    text_body: str | None = None
    html_body: str | None = None
    body: str | None = None
    message_events: list[MessageEvent] = []


class OutboundMessageList(Struct, rename="pascal"):
    total_count: int
    messages: list[OutboundMessage]


class Dump(Struct, rename="pascal"):
    body: str


class Server(Struct, rename="pascal"):
    """`GET /server`, `/servers/{id}` (POSTMARK-API.md §8.3; postmark-python requires nearly all)."""

    id: int = field(name="ID")
    name: str
    api_tokens: list[str]
    color: str
    smtp_api_activated: bool
    raw_email_enabled: bool
    delivery_type: str
    server_link: str
    inbound_address: str
    inbound_hook_url: str
    bounce_hook_url: str
    open_hook_url: str
    delivery_hook_url: str
    click_hook_url: str
    post_first_open_only: bool
    inbound_domain: str
    inbound_hash: str
    inbound_spam_threshold: int
    track_opens: bool
    track_links: str
    include_bounce_content_in_hook: bool
    enable_smtp_api_error_hooks: bool


class ServerList(Struct, rename="pascal"):
    total_count: int
    servers: list[Server]


class MessageStream(Struct, rename="pascal"):
    id: str = field(name="ID")
    server_id: int = field(name="ServerID")
    name: str
    description: str | None
    message_stream_type: str
    created_at: str
    updated_at: str | None
    archived_at: str | None
    expected_purge_date: str | None
    subscription_management_configuration: SubscriptionManagementConfiguration


class MessageStreamList(Struct, rename="pascal"):
    message_streams: list[MessageStream]
    total_count: int


class ArchivedStream(Struct, rename="pascal"):
    id: str = field(name="ID")
    server_id: int = field(name="ServerID")
    expected_purge_date: str


encoder = msgspec.json.Encoder()
