"""Messages submitted as raw MIME (SMTP): Postmark's `X-PM-*` headers read and removed, our headers set.

docs/postmark-api.md §9: `X-PM-Message-Stream`, `X-PM-Tag`, `X-PM-Metadata-<key>`, `X-PM-TrackOpens`,
`X-PM-TrackLinks` and `X-PM-KeepID` are honoured and then stripped before delivery; the Message-ID
is replaced by ours unless `X-PM-KeepID: true`. Recipients come from the envelope, so Bcc works;
a `Bcc` header, if a client left one, is removed so it never reaches a recipient. The body is
passed on byte for byte.

A message without a `From` header (smtplib's classic `sendmail(from_addr, …)` names the sender only
in the envelope) gets `From: <envelope sender>` added, as Postfix's cleanup and hosted submission
services do; with the null reverse path there is nobody to name, and it is refused. A `From` header
that is present but names no valid mailbox is refused too rather than passed on (Postfix passes
it) or replaced: the author is the client's to state, not ours to invent, RFC 5322 §3.6.2 requires a
mailbox there, large receivers refuse mail without one, and the API refuses such a `From` as well.
`Date` and `Message-ID` are added when missing.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Sequence
from datetime import datetime
from email.header import decode_header, make_header
from functools import lru_cache

from posthouse.server.domain.addresses import Address, AddressError, has_line_break, normalize_email
from posthouse.server.domain.ids import new_message_id
from posthouse.server.domain.links import UNTRACKED, TrackingSettings, choose_tracking, track_message
from posthouse.server.domain.messages import (
    ComposedMessage,
    check_common,
    invalid,
    invalid_address,
    parse_send_at,
    unique_emails,
)
from posthouse.server.domain.statuses import TRACK_LINKS_VALUES
from posthouse.server.domain.tracking import has_placeholders

_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")
_FOLD = re.compile(r"\r\n[ \t]")


def _split(data: bytes) -> tuple[list[bytes], bytes]:
    """Header fields (each with its folded continuation lines, CRLF kept) and the rest of the message
    from the empty line on (RFC 5322 §2.1)."""
    if data.startswith(b"\r\n"):
        return [], data  # no header section at all
    end = data.find(b"\r\n\r\n")
    if end < 0:  # headers only: the empty line and empty body are implied
        head, rest = (data if data.endswith(b"\r\n") else data + b"\r\n"), b"\r\n"
    else:
        head, rest = data[: end + 2], data[end + 2 :]
    fields: list[bytes] = []
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line + b"\r\n"
        else:
            fields.append(line + b"\r\n")
    return fields, rest


def _name_value(field: bytes) -> tuple[str, str] | None:
    match = _FIELD_NAME.match(field)
    if match is None:
        return None
    value = field[match.end():].decode("utf-8", "replace")
    if "\r\n " in value or "\r\n\t" in value:  # a folded field (RFC 5322 §2.2.3): unfolded
        value = _FOLD.sub(" ", value)
    return match.group(1).decode("ascii").lower(), value.strip()


def _decoded(value: str) -> str:
    """RFC 2047 encoded-words decoded, for the record (not for the delivered bytes)."""
    if "=?" not in value:
        # No encoded word can start here (RFC 2047 §2): decode_header would hand the text back as it is.
        # The values come from bytes decoded with errors="replace", so they hold no lone surrogate either.
        return value
    try:
        decoded = str(make_header(decode_header(value)))
    except (ValueError, LookupError):
        return value
    # Some charsets (utf-7, unicode_escape) decode to lone surrogates, which no database can store.
    return decoded.encode("utf-8", "replace").decode("utf-8")


@lru_cache(maxsize=4096)
def _address_pairs(values: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Address header values decoded, and the (display name, addr-spec) pairs they hold. A pure function
    of the values, kept for the next message with the same ones: transactional mail comes from a few
    From addresses, and the stdlib's parser (email._parseaddr) was the largest single cost of accepting
    a message over SMTP."""
    decoded = tuple(_decoded(v) for v in values)
    return decoded, tuple(email.utils.getaddresses(list(decoded)))


def _addresses(values: Sequence[str], label: str) -> list[Address]:
    decoded, pairs = _address_pairs(tuple(values))
    for text in decoded:
        # An encoded word can hide a line break ("=?utf-8?q?App=0D=0ABcc:_x@example.com?="): the API refuses
        # one in any address, and the parser would read what follows it as another address.
        if has_line_break(text):
            raise invalid_address(label, re.sub(r"[\r\n\0]+", " ", text))
    result = []
    for name, addr in pairs:
        if not addr:
            continue
        try:
            result.append(Address(normalize_email(addr), name or None))
        except AddressError:
            result.append(Address(addr, name or None))
    return result


def _sender(values: Sequence[str], mail_from: str) -> tuple[Address, str | None]:
    """The message's author and, when the message has no `From` header, the header to add."""
    if not values:
        if not mail_from:
            raise invalid("The message has no From header, and the envelope sender is null (MAIL FROM:<>): "
                          "add a From header.")
        try:
            sender = normalize_email(mail_from)
        except AddressError:
            raise invalid(f"The message has no From header, and the envelope sender '{mail_from}' is not a "
                          "valid address to take it from.") from None
        return Address(sender), f"From: {sender}\r\n"
    _, found = _address_pairs((values[0],))
    first = found[0][1] if found else ""
    try:
        return Address(normalize_email(first), found[0][0] or None), None
    except AddressError:
        raise invalid(f"Invalid From header: '{values[0]}' names no valid address.") from None


@lru_cache(maxsize=8)
def _date_text(when: datetime) -> str:
    """RFC 5322 §3.3 date-time of a whole second (format_datetime shows no fraction): one formatting per second."""
    return email.utils.format_datetime(when)


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise invalid(f"Invalid {name} header value: '{value}'. Use true or false.")


def compose_submitted(data: bytes, *, mail_from: str, recipients: Sequence[str], now: datetime,
                      message_id_domain: str = "posthouse", received: str | None = None) -> ComposedMessage:
    """Read a submitted message's headers, apply Postmark's X-PM headers, and build the bytes to store."""
    fields, rest = _split(data)
    kept: list[bytes] = []
    headers: dict[str, list[str]] = {}
    metadata: dict[str, object] = {}
    stream = tag = track_links = None
    track_opens: bool | None = None
    keep_id = False
    send_at = None
    for field in fields:
        parsed = _name_value(field)
        if parsed is None:
            kept.append(field)
            continue
        name, value = parsed
        if name.startswith("x-pm-metadata-"):
            key = field[len("x-pm-metadata-"):field.index(b":")].decode("ascii").strip()
            # Postmark gives repeated keys an incrementing suffix on SMTP (docs/postmark-api.md §9).
            unique, n = key, 1
            while unique in metadata:
                n += 1
                unique = f"{key}{n}"
            metadata[unique] = value
        elif name == "x-pm-message-stream":
            stream = value
        elif name == "x-pm-tag":
            tag = value
        elif name == "x-pm-trackopens":
            track_opens = _bool("X-PM-TrackOpens", value)
        elif name == "x-pm-tracklinks":
            match = [v for v in TRACK_LINKS_VALUES if v.lower() == value.lower()]
            if not match:
                raise invalid(f"Invalid X-PM-TrackLinks header value: '{value}'.")
            track_links = match[0]
        elif name == "x-pm-keepid":
            keep_id = _bool("X-PM-KeepID", value)
        elif name == "x-posthouse-send-at":
            send_at = parse_send_at(value, "X-Posthouse-Send-At")
        headers.setdefault(name, []).append(value)
        # X-PM-* and X-Posthouse-* are instructions to us; Bcc must never reach a recipient; the
        # Message-ID is ours.
        if not (name.startswith(("x-pm-", "x-posthouse-")) or name in ("bcc", "message-id")):
            kept.append(field)
    _addresses(headers.get("from", [])[:1], "From")  # refuses a line break hidden in an encoded word
    sender, from_header = _sender(headers.get("from", []), mail_from)
    to = _addresses(headers.get("to", []), "To")
    cc = _addresses(headers.get("cc", []), "Cc")
    shown = {a.email.lower() for a in (*to, *cc)}
    envelope = unique_emails(recipients)
    bcc = [Address(r) for r in envelope if r.lower() not in shown]
    # The API's limits, checked where the API checks them (the raw X-PM-Tag and metadata, the decoded Subject).
    subject, checked_tag, checked_metadata = check_common(
        recipients=len(to) + len(cc) + len(bcc), subject=_decoded(headers.get("subject", [""])[0]), tag=tag,
        metadata=metadata)
    message_id = new_message_id()
    original_ids = headers.get("message-id", [])
    message_id_header = original_ids[0] if keep_id and original_ids else f"<{message_id}@{message_id_domain}>"
    added = [f"Message-ID: {message_id_header}\r\n", f"X-PM-Message-Id: {message_id}\r\n"]
    if from_header is not None:
        added.insert(0, from_header)
    date = _date_text(now.replace(microsecond=0))
    if "date" not in headers:
        added.append(f"Date: {date}\r\n")
    # RFC 5321 §4.4: a server that accepts a message adds its trace ("Received") at the top.
    trace = f"Received: {received} id {message_id};\r\n\t{date}\r\n" if received else ""
    content = trace.encode("ascii", "replace") + b"".join(kept) + "".join(added).encode("utf-8") + rest
    return ComposedMessage(
        message_id=message_id,
        stream=(stream or "").strip() or "outbound",
        sender=sender,
        to=to,
        cc=cc,
        bcc=bcc,
        subject=subject,
        tag=checked_tag,
        metadata=checked_metadata,
        track_opens=track_opens,
        track_links=track_links,
        attachment_names=[],
        received_at=now,
        content=content,
        envelope_from=mail_from or sender.email,
        recipients=envelope,
        send_at=send_at,
    )


def track_submitted(message: ComposedMessage, tracking: TrackingSettings) -> ComposedMessage:
    """The submitted message with TrackOpens/TrackLinks decided (its X-PM-* headers, then the server's
    defaults) and its text bodies tracked in place (domain/links.py: decoded, rewritten, encoded again)."""
    choice = choose_tracking(message.track_opens, message.track_links, server_opens=tracking.opens,
                             server_links=tracking.links)
    if choice.any and has_placeholders(message.content):
        choice = UNTRACKED  # the sender's own bytes look like our placeholders: see links.has_placeholders
    message.track_opens, message.track_links = choice.opens, choice.links
    if choice.any:
        tracked = track_message(message.content, choice, tracking.base_url)
        message.content, message.links, message.open_pixel = tracked.content, tracked.links, tracked.pixel
    return message
