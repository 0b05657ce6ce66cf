"""The DSNs we write: RFC 3464 reports the standard library parses and our own bounce reader reads back."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import cast

from posthouse.server.domain.bounces import ReportKind, parse_report
from posthouse.server.domain.dsn import MAX_RETURNED_HEADERS, FailedRecipient, build_dsn

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ORIGINAL = (b"From: app@example.com\r\nTo: ann@example.com, bob@example.com\r\nSubject: Hi\r\n"
            b"Message-ID: <m1@example.com>\r\n\r\nThe body is not returned.\r\n")


def dsn(original: bytes = ORIGINAL, *recipients: FailedRecipient) -> bytes:
    return build_dsn(reporting_mta="mx.example.org", return_path="bounces@example.com",
                     recipients=list(recipients) or [FailedRecipient("ann@example.com", "5.1.1",
                                                                     "550 5.1.1 No such\r\n user", "mx.example.net")],
                     original=original, now=NOW, explanation="Could not deliver.")


def parsed(raw: bytes) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(raw)


def parts(message: EmailMessage) -> list[EmailMessage]:
    return cast(list[EmailMessage], message.get_payload())


def returned_headers(raw: bytes) -> str:
    """The text/rfc822-headers part of a report."""
    return cast(str, parts(parsed(raw))[2].get_payload())


def test_the_report_parses_and_names_each_recipient() -> None:
    raw = dsn(ORIGINAL, FailedRecipient("ann@example.com", "5.1.1", "550 5.1.1 No such user"),
              FailedRecipient("bob@example.com", "5.2.2", "552 5.2.2 Mailbox full", "mx.example.net"))
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    message = parsed(raw)
    assert not message.defects
    assert (message.get_content_type(), message.get_param("report-type")) == ("multipart/report", "delivery-status")
    assert message["To"].addresses[0].addr_spec == "bounces@example.com"
    assert message["From"].addresses[0].username == "MAILER-DAEMON"
    _, status, returned = parts(message)
    per_message, ann, bob = parts(status)
    assert per_message["Reporting-MTA"] == "dns; mx.example.org"
    assert (ann["Final-Recipient"], ann["Status"], ann["Remote-MTA"]) == ("rfc822; ann@example.com", "5.1.1", None)
    assert (bob["Status"], bob["Remote-MTA"]) == ("5.2.2", "dns; mx.example.net")
    assert cast(str, returned.get_payload()).endswith("Message-ID: <m1@example.com>\r\n")
    assert b"The body is not returned" not in raw
    report = parse_report(raw)
    assert report.kind is ReportKind.DSN
    assert [(r.recipient, r.status) for r in report.recipients] == [("ann@example.com", "5.1.1"),
                                                                   ("bob@example.com", "5.2.2")]
    assert report.original_message_id == "<m1@example.com>"


def test_a_multi_line_reply_stays_one_field() -> None:
    status = parts(parts(parsed(dsn()))[1])[1]
    assert status["Diagnostic-Code"] == "smtp; 550 5.1.1 No such user"


def test_oversized_headers_are_cut_at_a_line_end_and_nul_is_dropped() -> None:
    many = b"".join(b"X-Filler-%05d: %s\r\n" % (i, b"v" * 60) for i in range(2000))
    raw = dsn(b"From: a@example.com\r\nX-Nul: a\x00b\r\n" + many + b"\r\nbody\r\n")
    returned = returned_headers(raw)
    assert len(returned) <= MAX_RETURNED_HEADERS and returned.endswith("\r\n")
    assert "X-Nul: ab\r\n" in returned and "\x00" not in returned
    assert returned.splitlines()[-1].startswith("X-Filler-") and returned.splitlines()[-1].endswith("v" * 60)


def test_a_message_without_body_or_final_crlf_still_makes_a_report() -> None:
    raw = dsn(b"Subject: only headers")
    returned = returned_headers(raw)
    assert returned == "Subject: only headers\r\n"
