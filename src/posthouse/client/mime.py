"""An `Email` as an RFC 5322 message and its SMTP envelope, with the stdlib `email` package and no I/O.

Postmark's fields without a MIME equivalent become Postmark's SMTP headers (docs/postmark-api.md §9), which
Posthouse and Postmark read and remove before delivery: `X-PM-Tag`, `X-PM-Metadata-<key>`,
`X-PM-Message-Stream`, `X-PM-TrackOpens`, `X-PM-TrackLinks`; `send_at` becomes Posthouse's
`X-Posthouse-Send-At` (ISO 8601, as the API's `SendAt`), which only Posthouse reads (and removes).
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from email.utils import format_datetime, getaddresses, make_msgid
from typing import TypeAlias

from posthouse import wire

__all__ = ["Envelope", "build_message", "envelope_of"]

# 7bit: non-ASCII bodies go out quoted-printable or base64, so no server needs 8BITMIME. CRLF line ends
# as SMTP wants them (RFC 5321 §2.3.8); a header value with CR or LF is refused by the policy itself.
_POLICY = policy.SMTP.clone(cte_type="7bit")
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 §3.6.8: printable ASCII except ':'

Envelope: TypeAlias = tuple[str, list[str]]  # (MAIL FROM, [RCPT TO, ...])


def envelope_of(email: wire.EmailRequest) -> Envelope:
    """(MAIL FROM, RCPT TO list): the sender's address, and every To, Cc and Bcc address once."""
    for value in (email.sender, email.to, email.cc, email.bcc):
        # A line break would let one field smuggle recipients or headers (header injection).
        if value and ("\r" in value or "\n" in value):
            raise ValueError(f"A line break in an address field: {value!r}")
    senders = [address for _, address in getaddresses([email.sender or ""]) if address]
    if len(senders) != 1:
        raise ValueError(f"The sender must be one address, not {email.sender!r}.")
    recipients: list[str] = []
    for _, address in getaddresses([email.to or "", email.cc or "", email.bcc or ""]):
        if address and address.lower() not in (r.lower() for r in recipients):
            recipients.append(address)
    if not recipients:
        raise ValueError("The message has no recipient (to, cc or bcc).")
    return senders[0], recipients


def build_message(email: wire.EmailRequest) -> EmailMessage:
    """The message as it goes into DATA. Bcc is not written: it lives in the envelope only."""
    msg = EmailMessage(policy=_POLICY)
    custom = {header.name.lower() for header in email.headers or [] if header.name}
    sender = envelope_of(email)[0]
    msg["From"] = email.sender or sender
    for name, value in (("To", email.to), ("Cc", email.cc), ("Reply-To", email.reply_to)):
        if value:
            msg[name] = value
    msg["Subject"] = email.subject or ""
    if "date" not in custom:
        msg["Date"] = format_datetime(datetime.now(UTC))
    if "message-id" not in custom:
        msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "posthouse.invalid")
    for header in email.headers or []:
        if header.name:
            msg[_header_name(header.name)] = header.value or ""
    _add_postmark_headers(msg, email)
    _add_bodies(msg, email)
    return msg


def _header_name(name: str) -> str:
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"Invalid header name: {name!r}")
    return name


def _add_postmark_headers(msg: EmailMessage, email: wire.EmailRequest) -> None:
    if email.message_stream:
        msg["X-PM-Message-Stream"] = email.message_stream
    if email.tag:
        msg["X-PM-Tag"] = email.tag
    for key, value in (email.metadata or {}).items():
        msg[_header_name(f"X-PM-Metadata-{key}")] = str(value)
    if email.track_opens is not None:
        msg["X-PM-TrackOpens"] = "true" if email.track_opens else "false"
    if email.track_links:
        msg["X-PM-TrackLinks"] = email.track_links
    if email.send_at:
        msg["X-Posthouse-Send-At"] = email.send_at


def _add_bodies(msg: EmailMessage, email: wire.EmailRequest) -> None:
    """text/plain, text/html, or multipart/alternative of both; inline images (a ContentID) go into a
    multipart/related around the HTML, other attachments make the whole a multipart/mixed."""
    if email.text_body is not None or email.html_body is None:
        msg.set_content(email.text_body or "")
        if email.html_body is not None:
            msg.add_alternative(email.html_body, subtype="html")
    else:
        msg.set_content(email.html_body, subtype="html")
    html_part = msg.get_body(("html",)) if email.html_body is not None else None
    attachments = email.attachments or []
    # Inline parts first: once the message is multipart/mixed, the HTML part is still there to wrap.
    for attachment in [a for a in attachments if (a.content_id or "").strip()]:
        data, maintype, subtype, name, params = _decoded(attachment)
        cid = "<" + (attachment.content_id or "").strip().removeprefix("cid:").strip("<>") + ">"
        if isinstance(html_part, EmailMessage):
            html_part.add_related(
                data, maintype=maintype, subtype=subtype, cid=cid, filename=name, disposition="inline", params=params
            )
        else:
            msg.add_attachment(data, maintype=maintype, subtype=subtype, cid=cid, filename=name, params=params)
    for attachment in [a for a in attachments if not (a.content_id or "").strip()]:
        data, maintype, subtype, name, params = _decoded(attachment)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name, params=params)


def _decoded(attachment: wire.Attachment) -> tuple[bytes, str, str, str, dict[str, str]]:
    """(content, main type, subtype, file name, media-type parameters) of an API-shaped attachment."""
    name = attachment.name or "attachment"
    try:
        # Base64 wrapped in lines (76 columns, as MIME writes it) is as valid as one long line.
        data = base64.b64decode("".join((attachment.content or "").split()), validate=True)
    except binascii.Error:
        raise ValueError(f"Attachment {name!r}: content is not base64.") from None
    content_type = attachment.content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    if "\r" in content_type or "\n" in content_type:
        raise ValueError(f"Attachment {name!r}: invalid content type {content_type!r}.")
    # `text/plain; charset="utf-8"`: the parameters are kept on the part (RFC 2045 §5.1).
    parsed = Message()
    parsed["Content-Type"] = content_type
    maintype, _, subtype = content_type.split(";", 1)[0].strip().partition("/")
    if not maintype or not subtype or parsed.get_content_type() != f"{maintype}/{subtype}".lower():
        raise ValueError(f"Attachment {name!r}: invalid content type {content_type!r}.")
    params = {key: str(value) for key, value in (parsed.get_params() or [])[1:] if key.lower() != "name"}
    return data, maintype.lower(), subtype.lower(), name, params
