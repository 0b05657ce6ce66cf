"""Outbound messages: validating a Postmark send request and composing what the store keeps and delivers.

Validation mirrors Postmark's (docs/postmark-api.md §2.1): every refusal is an ApiError with Postmark's
ErrorCode, raised before anything is stored. Header injection (a CR or LF in any header name, value
or address) is refused with ErrorCode 300 rather than repaired.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from posthouse import wire
from posthouse.server.domain.addresses import (
    Address,
    AddressError,
    has_line_break,
    parse_address,
    parse_address_list,
)
from posthouse.server.domain.ids import new_message_id
from posthouse.server.domain.links import (
    UNTRACKED,
    TrackedLink,
    TrackingSettings,
    choose_tracking,
    has_placeholders,
    track_bodies,
)
from posthouse.server.domain.media_types import MediaTypeError, parse_media_type
from posthouse.server.domain.mime import Attachment, MessageContent, build_message
from posthouse.server.domain.statuses import TRACK_LINKS_VALUES
from posthouse.server.errors import ApiError

MAX_RECIPIENTS = 50
MAX_SUBJECT = 2000
MAX_TAG = 1000
MAX_FROM = 255
MAX_BODY = 5 * 1024 * 1024
MAX_METADATA_KEYS = 10
MAX_METADATA_KEY = 20
MAX_METADATA_VALUE = 80
# Postmark refuses these attachment extensions with ErrorCode 411 (docs/postmark-api.md §2.1).
FORBIDDEN_EXTENSIONS = frozenset((
    "vbs", "exe", "bin", "bat", "chm", "com", "cpl", "crt", "hlp", "hta", "inf", "ins", "isp", "jse", "lnk", "mdb",
    "pcd", "pif", "reg", "scr", "sct", "shs", "vbe", "vba", "wsf", "wsh", "wsl", "msc", "msi", "msp", "mst",
))
# Headers the message's own fields own; setting them through `Headers` would contradict the fields.
_RESERVED_HEADERS = {
    "from": "From",
    "to": "To",
    "cc": "Cc",
    "bcc": "Bcc",
    "subject": "Subject",
    "date": "Date",
    "mime-version": None,
    "content-type": None,
    "content-transfer-encoding": None,
    "x-pm-message-id": None,
}
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 §2.2: printable ASCII except ':'
# Whitespace a base64 attachment may be wrapped with; anything else outside the alphabet is refused.
_BASE64_WHITESPACE = " \t\r\n"
_DROP_BASE64_WHITESPACE = str.maketrans("", "", _BASE64_WHITESPACE)


def invalid(message: str, code: int = 300) -> ApiError:
    return ApiError(code, message)


@dataclass(slots=True)
class ComposedMessage:
    """A validated message, ready for one durable insert and for delivery."""

    message_id: str
    stream: str
    sender: Address
    to: list[Address]
    cc: list[Address]
    bcc: list[Address]
    subject: str
    tag: str | None
    metadata: dict[str, str]
    track_opens: bool | None
    track_links: str | None
    attachment_names: list[str]
    received_at: datetime
    content: bytes
    envelope_from: str
    recipients: list[str]  # envelope recipients, each once
    send_at: datetime | None = None  # scheduled sending (a Posthouse extension): released then
    # Tracking (domain/links.py), once decided: `track_opens`/`track_links` then hold what applies to this
    # message; `links` are its tracked links (stored as message_links), `open_pixel` whether its HTML has
    # the pixel. The content carries their placeholders.
    links: list[TrackedLink] = field(default_factory=list)
    open_pixel: bool = False

    @property
    def tracked_links(self) -> int:
        return len(self.links)

    @property
    def is_tracked(self) -> bool:
        """Whether the content carries tracking placeholders (the worker personalises it per recipient)."""
        return self.open_pixel or bool(self.links)

    def addresses_json(self, addresses: Sequence[Address]) -> str:
        if not addresses:
            return "[]"  # as json.dumps([]) has it; most messages have no Cc or Bcc
        return json.dumps([{"Email": a.email, "Name": a.name} for a in addresses], ensure_ascii=False)


def invalid_address(label: str, text: str) -> ApiError:
    return invalid(f"Invalid '{label}' address: '{text}'.")


def _address_field(label: str, value: str | None) -> list[Address]:
    if value is None or not value.strip():
        return []
    try:
        return parse_address_list(value)
    except AddressError as exc:
        raise invalid_address(label, exc.text) from None


def _check_text(label: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    if has_line_break(value):
        raise invalid(f"The '{label}' field cannot contain line breaks.")
    if len(value) > limit:
        raise invalid(f"The '{label}' field is too long: at most {limit} characters.")
    return value


def check_common(*, recipients: int, subject: str | None, tag: str | None, metadata: dict[str, object] | None
                 ) -> tuple[str, str | None, dict[str, str]]:
    """The rules every message meets however it arrives, API or SMTP (docs/postmark-api.md §2.1): at most
    50 recipients, Subject ≤ 2000 and Tag ≤ 1000 characters, Postmark's metadata rules, and no line break
    in any of them (header injection). Returns (subject, tag, metadata) checked.

    One place, so SMTP cannot accept what the API refuses: a message submitted over SMTP is stored,
    listed and posted to webhooks like any other. (Addresses are checked by whoever parses them, with
    the same words: `invalid_address`.)"""
    if recipients > MAX_RECIPIENTS:
        raise invalid(f"Too many recipients: {recipients}. A message can have at most {MAX_RECIPIENTS}.")
    checked_subject = _check_text("Subject", subject, MAX_SUBJECT) or ""
    checked_tag = _check_text("Tag", tag, MAX_TAG) or None
    return checked_subject, checked_tag, metadata_from(metadata)


def metadata_from(raw: dict[str, object] | None) -> dict[str, str]:
    """Postmark's metadata rules (docs/postmark-api.md §2.1): ≤ 10 keys of ≤ 20 chars, values ≤ 80, keys unique."""
    if not raw:
        return {}
    if len(raw) > MAX_METADATA_KEYS:
        raise invalid(f"Metadata can have at most {MAX_METADATA_KEYS} fields.")
    result: dict[str, str] = {}
    seen: set[str] = set()
    for key, value in raw.items():
        if not key or len(key) > MAX_METADATA_KEY:
            raise invalid(f"Metadata field names must be 1 to {MAX_METADATA_KEY} characters: '{key}'.")
        if key.lower() in seen:
            raise invalid(f"Metadata field names must be unique regardless of case: '{key}'.")
        seen.add(key.lower())
        if value is None or isinstance(value, dict | list):
            raise invalid(f"Metadata value for '{key}' must be a string.")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if len(text) > MAX_METADATA_VALUE:
            raise invalid(f"Metadata value for '{key}' is too long: at most {MAX_METADATA_VALUE} characters.")
        if has_line_break(key) or has_line_break(text):
            raise invalid(f"Metadata field '{key}' cannot contain line breaks.")
        result[key] = text
    return result


def _headers(raw: list[wire.Header] | None) -> tuple[list[tuple[str, str]], str | None, str | None]:
    """Custom headers; returns (headers, custom Message-ID or None, Reply-To header or None)."""
    headers: list[tuple[str, str]] = []
    message_id: str | None = None
    reply_to: str | None = None
    for header in raw or ():
        name = (header.name or "").strip()
        value = "" if header.value is None else str(header.value)
        if not name or not _HEADER_NAME.match(name):
            raise invalid(f"Invalid header name: '{name}'.")
        if has_line_break(value):
            raise invalid(f"The value of header '{name}' cannot contain line breaks.")
        lowered = name.lower()
        if lowered == "message-id":
            message_id = value.strip()
            continue
        if lowered == "reply-to":
            reply_to = value
            continue
        if lowered in _RESERVED_HEADERS:
            field_name = _RESERVED_HEADERS[lowered]
            hint = f" Use the '{field_name}' field." if field_name else ""
            raise invalid(f"The header '{name}' cannot be set through Headers.{hint}")
        headers.append((name, value))
    return headers, message_id, reply_to


def _attachments(raw: list[wire.Attachment] | None) -> list[Attachment]:
    result: list[Attachment] = []
    for item in raw or ():
        name = item.name or ""
        if not name.strip():
            raise invalid("Attachments must have a 'Name'.")
        if has_line_break(name):
            raise invalid(f"Attachment name cannot contain line breaks: '{name}'.")
        extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if extension in FORBIDDEN_EXTENSIONS:
            raise invalid(f"Forbidden attachment type: '{name}'.", 411)
        content_type = (item.content_type or "application/octet-stream").strip()
        try:
            media_type = parse_media_type(content_type)
        except MediaTypeError as exc:
            raise invalid(f"Invalid attachment content type: '{content_type}': {exc}.") from None
        content = item.content or ""
        if any(ch in content for ch in _BASE64_WHITESPACE):
            # RFC 2045 §6.8 wraps base64 at 76 columns, and clients pass it on that way (postmarker
            # sends MIME parts' payloads as they are); the line breaks are not part of the data.
            content = content.translate(_DROP_BASE64_WHITESPACE)
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise invalid(f"Attachment '{name}' content is not valid base64.") from None
        content_id = (item.content_id or "").strip() or None
        if content_id:
            if has_line_break(content_id):
                raise invalid(f"Attachment ContentID cannot contain line breaks: '{name}'.")
            if content_id.lower().startswith("cid:"):
                content_id = content_id[4:]
            content_id = content_id.strip("<>")
        result.append(Attachment(name, data, str(media_type), content_id))
    return result


def compose(request: wire.EmailRequest, *, now: datetime, default_stream: str = "outbound",
            message_id_domain: str = "posthouse", tracking: TrackingSettings | None = None) -> ComposedMessage:
    """Validate a Postmark send request and build its MIME; raise ApiError on the first problem.

    With `tracking` (the server's defaults), TrackOpens/TrackLinks are decided and the bodies tracked
    (domain/links.py) before the MIME is built; without, they are kept as requested and nothing is tracked.
    """
    if request.sender is None or not request.sender.strip():
        raise invalid("Invalid 'From' address: ''.")
    if len(request.sender) > MAX_FROM or has_line_break(request.sender):
        raise invalid(f"Invalid 'From' address: '{request.sender}'.")
    try:
        sender = parse_address(request.sender)
    except AddressError:
        raise invalid(f"Invalid 'From' address: '{request.sender}'.") from None
    to = _address_field("To", request.to)
    cc = _address_field("Cc", request.cc)
    bcc = _address_field("Bcc", request.bcc)
    if not (to or cc or bcc):
        raise invalid("Zero recipients specified")
    subject, tag, metadata = check_common(recipients=len(to) + len(cc) + len(bcc), subject=request.subject,
                                          tag=request.tag, metadata=request.metadata)
    if not request.html_body and not request.text_body:
        raise invalid("Provide either email TextBody or HtmlBody or both.")
    for label, body in (("HtmlBody", request.html_body), ("TextBody", request.text_body)):
        if body is not None and len(body) > MAX_BODY:
            raise invalid(f"The '{label}' is too long: at most 5 MB.")
    if request.track_links is not None and request.track_links not in TRACK_LINKS_VALUES:
        allowed = ", ".join(TRACK_LINKS_VALUES)
        raise invalid(f"Invalid 'TrackLinks' value: '{request.track_links}'. Use one of {allowed}.")
    headers, custom_message_id, reply_to_header = _headers(request.headers)
    reply_to = _address_field("ReplyTo", request.reply_to if request.reply_to else reply_to_header)
    attachments = _attachments(request.attachments)
    stream = (request.message_stream or "").strip() or default_stream

    message_id = new_message_id()
    # A custom Message-ID header is honoured (docs/postmark-api.md §2.1); it must look like one.
    if custom_message_id:
        if not (custom_message_id.startswith("<") and custom_message_id.endswith(">")):
            custom_message_id = f"<{custom_message_id.strip('<>')}>"
        message_id_header = custom_message_id
    else:
        message_id_header = f"<{message_id}@{message_id_domain}>"
    headers.append(("X-PM-Message-Id", message_id))
    html_body, text_body = request.html_body or None, request.text_body or None
    track_opens, track_links = request.track_opens, request.track_links
    links: list[TrackedLink] = []
    open_pixel = False
    if tracking is not None:
        choice = choose_tracking(track_opens, track_links, server_opens=tracking.opens, server_links=tracking.links)
        if choice.any and (has_placeholders(html_body or "") or has_placeholders(text_body or "")):
            choice = UNTRACKED  # the sender's own text looks like our placeholders: see links.has_placeholders
        if choice.any:
            tracked = track_bodies(html_body, text_body, choice, tracking.base_url)
            html_body, text_body, links, open_pixel = tracked.html, tracked.text, tracked.links, tracked.pixel
        track_opens, track_links = choice.opens, choice.links
    try:
        content = build_message(MessageContent(
            message_id=message_id_header,
            date=now,
            sender=sender,
            to=to,
            cc=cc,
            reply_to=reply_to,
            subject=subject,
            text_body=text_body,
            html_body=html_body,
            headers=headers,
            attachments=attachments,
        ))
    except (ValueError, UnicodeError) as exc:
        # The checks above should leave nothing the builder refuses; if one slips through, the
        # sender hears a validation error, not a 500.
        raise invalid(f"The message cannot be built: {exc}") from None
    return ComposedMessage(
        message_id=message_id,
        stream=stream,
        sender=sender,
        to=to,
        cc=cc,
        bcc=bcc,
        subject=subject,
        tag=tag,
        metadata=metadata,
        track_opens=track_opens,
        track_links=track_links,
        attachment_names=[a.name for a in attachments],
        received_at=now,
        content=content,
        envelope_from=sender.email,
        recipients=unique_emails(a.email for a in (*to, *cc, *bcc)),
        send_at=parse_send_at(request.send_at),
        links=links,
        open_pixel=open_pixel,
    )


def parse_send_at(value: str | None, label: str = "SendAt") -> datetime | None:
    """`SendAt`: ISO 8601 with a UTC offset (or `Z`); a time without one is refused, not guessed."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise invalid(f"Invalid '{label}': '{text}'. Use ISO 8601 with an offset, e.g. 2030-01-31T09:30:00+01:00.")
    return moment


def unique_emails(emails: Iterable[str]) -> list[str]:
    """In order, without case-insensitive duplicates."""
    seen: set[str] = set()
    result: list[str] = []
    for email in emails:
        if email.lower() not in seen:
            seen.add(email.lower())
            result.append(email)
    return result
