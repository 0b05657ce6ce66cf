"""Delivery status notifications we write ourselves: an RFC 3464 report for a recipient we could not deliver to.

The sandbox's bounce testing uses it, so a simulated bounce has a dump as a real one has (`DumpAvailable`,
`GET /bounces/{id}/dump`): a `multipart/report; report-type=delivery-status` (RFC 6522) with a human-readable
part, the `message/delivery-status` fields (RFC 3464 §2.2, §2.3) and the returned message's header section as
`text/rfc822-headers` (RFC 6522 §4), the way Postfix returns one. Lines end in CRLF; non-ASCII in the returned
headers (RFC 6532 mail) is kept as UTF-8.
"""

from __future__ import annotations

import email.utils
import secrets
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class FailedRecipient:
    """One recipient the report is about: the reply that refused it (`status` is its enhanced code, X.Y.Z)."""

    address: str
    status: str
    diagnostic: str  # the remote reply as text, e.g. "550 5.1.1 No such user"
    remote_mta: str = ""


MAX_RETURNED_HEADERS = 64 * 1024  # a report returns at most this much of the message's header section


def _header_section(message: bytes) -> bytes:
    """The returned message's header fields (RFC 5322 §2.1), without the empty line that ends them, cut at a
    line end once past MAX_RETURNED_HEADERS (a report need not carry an oversized header section whole)."""
    end = message.find(b"\r\n\r\n")
    head = message if end < 0 else message[: end + 2]
    if len(head) > MAX_RETURNED_HEADERS:
        cut = head.rfind(b"\r\n", 0, MAX_RETURNED_HEADERS)
        head = head[: cut + 2] if cut >= 0 else b""
    head = head.replace(b"\x00", b"")  # a NUL is no text (and no PostgreSQL text column holds one)
    return head if head.endswith(b"\r\n") or not head else head + b"\r\n"


def _one_line(text: str) -> str:
    """A field value on one line: a reply may carry CR/LF from a multi-line answer (never a field break here)."""
    return " ".join(text.split())


def build_dsn(*, reporting_mta: str, return_path: str, recipients: list[FailedRecipient], original: bytes,
              now: datetime, explanation: str) -> bytes:
    """The report, as the bytes a bounce message would have. `return_path` is where it is addressed (the
    failed message's envelope sender); `explanation` is the first paragraph of the human-readable part."""
    host = _one_line(reporting_mta) or "localhost"
    boundary = f"posthouse-dsn-{secrets.token_hex(12)}"
    date = email.utils.format_datetime(now)
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{host}>",
        f"To: <{_one_line(return_path)}>" if return_path else "To: undisclosed-recipients:;",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {date}",
        f"Message-ID: <{secrets.token_hex(16)}@{host}>",
        "Auto-Submitted: auto-replied",  # RFC 3834 §5: nobody answers a bounce
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Description: Notification",
        "Content-Type: text/plain; charset=utf-8",
        "",
        _one_line(explanation),
        "",
        *(f"<{r.address}>: {_one_line(r.diagnostic)}" for r in recipients),
        "",
        f"--{boundary}",
        "Content-Description: Delivery report",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {host}",
    ]
    for r in recipients:
        lines += [
            "",
            f"Final-Recipient: rfc822; {r.address}",
            "Action: failed",
            f"Status: {r.status}",
            *([f"Remote-MTA: dns; {_one_line(r.remote_mta)}"] if r.remote_mta else []),
            f"Diagnostic-Code: smtp; {_one_line(r.diagnostic)}",
            f"Last-Attempt-Date: {date}",
        ]
    lines += [
        "",
        f"--{boundary}",
        "Content-Description: Undelivered Message Headers",
        "Content-Type: text/rfc822-headers",
        "",
    ]
    head = "\r\n".join(lines).encode("utf-8") + b"\r\n"
    return head + _header_section(original) + f"\r\n--{boundary}--\r\n".encode("ascii")
