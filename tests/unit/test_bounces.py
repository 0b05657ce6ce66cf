"""Bounce reports: RFC 3464 DSNs, RFC 5965 complaints, auto replies and the prose of common MTAs, read into types."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posthouse.server.domain.bounces import BounceReport, ReportKind, parse_report
from posthouse.server.domain.statuses import BounceType

# flufl.bounce's corpus (Apache-2.0, its LICENSE alongside), copied into the repository so CI has it.
CORPUS = Path(os.environ.get("POSTHOUSE_BOUNCE_CORPUS", Path(__file__).parents[1] / "data" / "bounces"))
CORPUS_FILES = sorted(path.name for path in CORPUS.iterdir())
BOUNCE_FILES = [name for name in CORPUS_FILES if name.endswith(".txt")]

HARD = BounceType.HARD_BOUNCE
SOFT = BounceType.SOFT_BOUNCE
TRANSIENT = BounceType.TRANSIENT
DNS = BounceType.DNS_ERROR
UNKNOWN = BounceType.UNKNOWN
BLOCKED = BounceType.BLOCKED

# (file, failed recipients, bounce type), written by reading each file. A file with recipients of different types
# has one row per type. Judgement calls, so the table can be argued with:
# - DSNs name the address the sender used in Original-Recipient (RFC 3464 §2.3.1); that one is expected, not the
#   Final-Recipient after aliasing (dsn_01, dsn_04, dsn_17). Prose "(expanded from: x)" is read the same way.
# - A final failure after retrying a temporary condition (4.x.x with Action failed, "not going to try again",
#   "failed 20 attempts", host not responding for days) is a soft bounce: the address itself may be fine.
# - A permanent failure that gives no reason at all is Unknown, not a guessed hard bounce.
EXPECTED: list[tuple[str, tuple[str, ...], BounceType]] = [
    ("bounce_02.txt", ("userx@example.com",), HARD),  # 550 mailbox unavailable
    ("bounce_03.txt", ("userx@example.uk",), UNKNOWN),  # "has not been collected after 30 days"
    ("caiwireless_01.txt", ("userx@example.com",), UNKNOWN),  # no reason given
    ("dsn_01.txt", ("userx@example.com",), SOFT),  # 5.0.0 (recipient reached disk quota)
    ("dsn_02.txt", ("zzzzz@example.uk",), SOFT),  # X.400 gateway, failed 4.4.7 message timed out
    ("dsn_03.txt", ("userx@example.be",), SOFT),  # 553 exceeded maximum inbound message size
    ("dsn_04.txt", ("userx@example.ch",), SOFT),  # PMDF: disk quota exceeded
    ("dsn_05.txt", ("userx@example.cz",), TRANSIENT),  # Action: delayed
    ("dsn_06.txt", ("userx@example.com",), TRANSIENT),  # Action: Delayed
    ("dsn_07.txt", ("userx@example.nz",), TRANSIENT),  # Action: delayed
    ("dsn_08.txt", ("userx@example.de",), TRANSIENT),  # Postfix warning, Action: delayed
    ("dsn_09.txt", ("userx@example.com",), BLOCKED),  # 5.0.0, text: "5.7.1 Unable to relay"
    ("dsn_10.txt", ("anne.person@dom.ain",), HARD),  # 550 user unknown
    ("dsn_11.txt", ("joem@example.com",), HARD),  # 5.1.1, eleven identical blocks
    ("dsn_12.txt", ("userx@example.jp",), HARD),  # 5.1.1 bad destination mailbox
    ("dsn_13.txt", ("userx@example.com",), HARD),  # 5.1.1, DSN nested in multipart/mixed
    ("dsn_14.txt", ("userx@example.com.dk",), HARD),  # 550 5.1.1, Final-Recipient without address type
    ("dsn_15.txt", ("userx@example.com",), HARD),  # 5.1.1, whole DSN wrapped in message/rfc822
    ("dsn_16.txt", ("userx@example.com",), HARD),  # 550
    ("dsn_17.txt", ("userx@example.fi",), TRANSIENT),  # delayed, quota
    ("dsn_18.txt", ("email@replaced.net",), DNS),  # "Domain does not exist"
    ("exim_01.txt", ("userx@its.example.nl",), HARD),  # 553 5.1.1
    ("groupwise_01.txt", ("userx@example.edu",), HARD),  # Exchange: recipient name is not recognized
    ("groupwise_02.txt", ("userx@example.com",), HARD),  # the same, as HTML
    ("hotpop_01.txt", ("userx@example.com",), SOFT),  # over disk quota
    ("llnl_01.txt", ("user1@example.gov",), HARD),  # did not match an LLNL address
    ("microsoft_01.txt", ("userx@example.com",), HARD),  # recipient name is not recognized
    ("microsoft_02.txt", ("userx@example.com",), HARD),  # the same; the subject mentions a virus
    ("microsoft_03.txt", ("userx@example.com",), UNKNOWN),  # non-delivery without a reason
    ("microsoft_04.txt", ("userx@example.com",), HARD),  # recipient name is not recognized
    ("netscape_01.txt", ("aaaaa@corel.com", "bbbbb@corel.com"), SOFT),  # host not responding for 2 days
    ("newmailru_01.txt", ("zzzzz@newmail.ru",), SOFT),  # quota
    ("postfix_01.txt", ("xxxxx@local.ie",), HARD),  # 550 5.1.1
    ("postfix_02.txt", ("yyyyy@digicool.com",), DNS),  # name service error, host not found
    ("postfix_03.txt", ("ttttt@ggggg.com",), UNKNOWN),  # amavis crashed
    ("postfix_04.txt", ("userx@mail1.example.com",), SOFT),  # mail quota exceeded
    ("postfix_05.txt", ("userx@example.net",), UNKNOWN),  # 554 No Resent-From field given
    ("qmail_01.txt", ("userx@example.de",), UNKNOWN),  # permanent error, no reason
    ("qmail_02.txt", ("userx@example.com",), SOFT),  # mailfolder is full
    ("qmail_03.txt", ("userx@example.jp",), HARD),  # no mailbox here (#5.1.1)
    ("qmail_04.txt", ("userx@example.au",), HARD),  # 550 No such user
    ("qmail_05.txt", ("userx@example.com",), HARD),  # 550 User unknown
    ("qmail_06.txt", ("ntl@xxx.com",), SOFT),  # disk quota exceeded
    ("qmail_07.txt", ("user@example.net",), SOFT),  # mailfolder is full
    ("qmail_08.txt", ("contact@example.com",), BounceType.AUTO_RESPONDER),  # Precedence: auto_reply
    ("sendmail_01.txt", ("zzzzz@nfg.nl",), UNKNOWN),  # 554 too many hops (expanded from zzzzz@nfg.nl)
    ("simple_01.txt", ("bbbsss@example.com",), SOFT),  # 552 would exceed mailbox quota
    ("simple_02.txt", ("userx@example.net",), UNKNOWN),  # processing error
    ("simple_03.txt", ("userx@example.za",), TRANSIENT),  # Exim: not yet delivered after 24 hours
    ("simple_04.txt", ("userx@example.com",), DNS),  # unknown host
    ("simple_05.txt", ("userx@example.net",), HARD),  # doesn't have a sbcglobal.net account
    ("simple_06.txt", ("userx@example.com",), HARD),  # doesn't have an account
    ("simple_07.txt", ("userx@example.net",), SOFT),  # mailbox is full
    ("simple_08.txt", ("userx@example.de",), HARD),  # 550 user unknown
    ("simple_09.txt", ("userx@example.de",), SOFT),  # quota exceeded
    ("simple_10.txt", ("userx@example.com",), UNKNOWN),  # failed, no reason
    ("simple_11.txt", ("userx@example.com",), HARD),  # not listed in Domino Directory
    ("simple_12.txt", ("userx@example.ac.jp",), HARD),  # invalid final delivery userid
    ("simple_13.txt", ("userx@example.fr",), HARD),  # "n'existe pas", broken delivery-status part
    ("simple_14.txt", ("usery@example.com",), SOFT),  # 552 quota violation (reason names another address)
    ("simple_15.txt", ("userx@example.be",), HARD),  # 550 5.1.1 unknown user
    ("simple_16.txt", ("userx@example.com",), UNKNOWN),  # undisclosed address generated from userx
    ("simple_17.txt", ("userx@example.com",), UNKNOWN),  # failed permanently, no reason
    ("simple_18.txt", ("userx@example.com",), UNKNOWN),  # 554 message looping
    ("simple_19.txt", ("userx@example.com.ar",), HARD),  # no mailbox here (#5.1.1)
    ("simple_20.txt", ("userx@example.com",), UNKNOWN),  # could not be delivered, no reason
    ("simple_21.txt", ("userx@example.com",), TRANSIENT),  # warning: not yet delivered
    ("simple_22.txt", ("User@example.org",), TRANSIENT),  # delivery attempts will continue
    ("simple_23.txt", ("userx@example.it",), HARD),  # user not known
    ("simple_24.txt", ("userx@example.com",), UNKNOWN),  # did not reach, no reason
    ("simple_25.txt", ("userx@example.com",), HARD),  # HTML: No such user
    ("simple_26.txt", ("userx@example.it",), HARD),  # address wrong or no longer valid
    ("simple_27.txt", ("userx@example.net.py",), HARD),  # no such user here
    ("simple_28.txt", ("userx@example.com",), TRANSIENT),  # Gmail delay warning
    ("simple_29.txt", ("userx@example.com",), HARD),  # 550 unknown user
    ("simple_30.txt", ("userx@example.com",), HARD),  # 553 5.3.0 no such user here
    ("simple_31.txt", ("userx@example.fr",), UNKNOWN),  # empty delivery-status part, no reason
    ("simple_32.txt", ("userx@example.com",), DNS),  # could not find a gateway
    ("simple_33.txt", ("userx@example.com",), HARD),  # 553 5.3.0 no such user here
    ("simple_34.txt", ("roland@example.com",), HARD),  # 550 5.1.1 user unknown
    ("simple_35.txt", ("calvin@example.com",), TRANSIENT),  # postponed, will continue to try
    ("simple_36.txt", ("userx@example.com",), HARD),  # 550 unknown user
    ("simple_37.txt", ("user@example.edu",), HARD),  # no final email delivery point
    ("simple_38.txt", ("userx@example.com",), SOFT),  # Dovecot reject: quota exceeded
    ("simple_39.txt", ("userx@example.ru",), HARD),  # mail.ru: user not found
    ("simple_40.txt", ("user@example.com",), TRANSIENT),  # Exim: delayed 2 days
    ("simple_41.txt", ("userx@example.com",), HARD),  # 550 mailbox unavailable
    ("simple_42.txt", ("david...@gmail.com",), BLOCKED),  # 550 5.7.1 unsolicited mail
    ("simple_44.txt", ("user@example.com",), SOFT),  # 4.4.4 server busy, given up after 30 attempts
    ("simple_45.txt", ("subscriber@earthlink.net",), SOFT),  # overquota
    ("sina_01.txt", ("userx@sina.com", "usery@sina.com"), UNKNOWN),  # reason only in Chinese, no detail
    ("smtp32_01.txt", ("userx@example.ph",), SOFT),  # delivery failed 20 attempts
    ("smtp32_02.txt", ("userx@example.com",), SOFT),  # delivery failed 20 attempts
    ("smtp32_03.txt", ("userx@example.com",), UNKNOWN),  # undeliverable, no reason
    ("smtp32_04.txt", ("after_another@example.net", "one_bad_address@example.net"), HARD),  # 553 addressee unknown
    ("smtp32_05.txt", ("userx@example.com",), UNKNOWN),  # undeliverable, no reason
    ("smtp32_06.txt", ("Absolute_garbage_addr@example.net",), HARD),  # 553 addressee unknown
    ("smtp32_07.txt", ("userx@example.com",), HARD),  # invalid final delivery userid
    ("yahoo_01.txt", ("userx@example.com",), SOFT),  # no SMTP connection (#4.4.1), not trying again
    ("yahoo_02.txt", ("userx@example.es",), SOFT),  # over quota
    ("yahoo_03.txt", ("userx@example.com",), SOFT),  # account disabled or discontinued
    ("yahoo_04.txt", ("userx@example.es", "usery@example.uk"), SOFT),  # over quota
    ("yahoo_05.txt", ("userx@example.com", "usery@example.com"), SOFT),  # disabled
    ("yahoo_06.txt", ("userx@example.com", "usery@example.com", "userz@example.com", "usera@example.com"), SOFT),
    ("yahoo_07.txt", ("userw@example.com", "userx@example.com", "usery@example.com", "userz@example.com"), SOFT),
    ("yahoo_08.txt", tuple(f"user{c}@example.com" for c in "abcdef"), SOFT),  # disabled
    ("yahoo_09.txt", ("userx@example.com", "usery@example.com"), SOFT),  # disabled
    ("yahoo_10.txt", ("userx@example.com", "userz@example.com"), HARD),  # doesn't have a yahoo.com account
    ("yahoo_10.txt", ("usery@example.com",), SOFT),  # disabled or discontinued
    ("yahoo_11.txt", ("bad_user@aol.com",), HARD),  # 550 5.1.1; an address after the separator is ignored
    ("yahoo_13.txt", ("bogus-address@example.net",), HARD),  # 550 5.1.1
]

# Files without an address a reader could name as the failed recipient; each must yield no invented recipient.
UNASSERTED = {
    "aol_01.txt": "the recipient is a bare AOL screen name, not an address",
    "bounce_01.txt": "the recipient is only the local part 'dylan'",
    "dumbass_01.txt": "no recipient in the text; the returned copy's To is the list address",
    "groupwise_03.txt": "not a bounce: a human reply from a hotel",
    "simple_43.txt": "no recipient in the text; only the returned copy's Received trace hints at one",
    "yahoo_12.txt": "only the quoted To: of the original, the same shape as Exchange's 'Your message To: <list>'",
    "yale_01.txt": "the recipient is only the local part 'userx'; the other addresses are examples",
}


def _expected_by_file() -> dict[str, dict[str, BounceType]]:
    table: dict[str, dict[str, BounceType]] = defaultdict(dict)
    for name, recipients, bounce_type in EXPECTED:
        for recipient in recipients:
            table[name][recipient] = bounce_type
    return dict(table)


EXPECTED_BY_FILE = _expected_by_file()


def read(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


@pytest.fixture
def no_safety_net(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Fails the test if parse_report had to fall back on its catch-all (that would be a parser bug)."""
    caplog.set_level(logging.WARNING, logger="posthouse.server.domain.bounces")
    return caplog


def assert_no_safety_net(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.name == "posthouse.server.domain.bounces"]


def assert_well_formed(report: BounceReport) -> None:
    assert isinstance(report, BounceReport)
    assert isinstance(report.kind, ReportKind)
    if report.kind is ReportKind.UNRECOGNISED:
        assert report.recipients == ()
    for recipient in report.recipients:
        assert "@" in recipient.recipient and "<" not in recipient.recipient
        assert recipient.recipient.split("@")[-1] == recipient.recipient.split("@")[-1].lower()
        assert len(recipient.diagnostic) <= 1000
        assert "\n" not in recipient.diagnostic
        assert isinstance(recipient.bounce_type, BounceType)


# --- the corpus -----------------------------------------------------------------------------------------------------


def test_corpus_is_complete_and_every_file_is_accounted_for() -> None:
    assert len(CORPUS_FILES) == 118  # 117 messages and the corpus LICENSE
    assert not set(EXPECTED_BY_FILE) & set(UNASSERTED)
    assert set(EXPECTED_BY_FILE) | set(UNASSERTED) == set(BOUNCE_FILES)
    assert len(EXPECTED_BY_FILE) >= 90


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_every_corpus_file_parses(name: str, no_safety_net: pytest.LogCaptureFixture) -> None:
    assert_well_formed(parse_report(read(name)))
    assert_no_safety_net(no_safety_net)


@pytest.mark.parametrize("name", sorted(EXPECTED_BY_FILE))
def test_corpus_recipients_and_types(name: str) -> None:
    report = parse_report(read(name))
    found = {recipient.recipient: recipient.bounce_type for recipient in report.recipients}
    assert found == EXPECTED_BY_FILE[name]
    assert len(report.recipients) == len(found)  # each address once


@pytest.mark.parametrize("name", sorted(UNASSERTED))
def test_corpus_files_without_a_recipient_yield_none(name: str) -> None:
    report = parse_report(read(name))
    assert report.recipients == ()
    assert report.kind is ReportKind.UNRECOGNISED


def test_corpus_kinds() -> None:
    kinds = {name: parse_report(read(name)).kind for name in BOUNCE_FILES}
    assert {name for name, kind in kinds.items() if kind is ReportKind.DSN} == {
        *(f"dsn_{n:02}.txt" for n in range(1, 19)),
        "simple_42.txt",
    }
    assert kinds["qmail_08.txt"] is ReportKind.AUTO_REPLY
    assert kinds["postfix_01.txt"] is kinds["yahoo_11.txt"] is kinds["simple_38.txt"] is ReportKind.NON_STANDARD


@pytest.mark.parametrize(
    ("name", "message_id"),
    [
        ("exim_01.txt", "<19990920022322.A19735@stereo.rotzorg.org>"),  # quoted after the notification
        ("dsn_17.txt", "<mailman.150418.1209869464.31038.pray4-team@strategicnetwork.org>"),  # QP rfc822-headers
        ("yahoo_13.txt", "<130907fb-848c-d154-8e59-ed1e08319fcf@yahoo.com>"),  # message/rfc822 part
        ("dsn_15.txt", "<mailman.4360.1149475419.1567.gpc-talk@grizz.org>"),  # the DSN's original, not the wrapper
        ("postfix_01.txt", None),  # "Message removed"
    ],
)
def test_corpus_original_message_id(name: str, message_id: str | None) -> None:
    report = parse_report(read(name))
    assert report.original_message_id == message_id
    if message_id:
        assert report.original_headers["Message-ID"] == message_id


def test_corpus_details() -> None:
    postfix = parse_report(read("postfix_01.txt")).recipients[0]
    assert (postfix.action, postfix.status, postfix.remote_mta) == ("failed", "5.1.1", "mail.local.ie")
    assert postfix.diagnostic == "host mail.local.ie[195.7.46.14] said: 550 5.1.1 <xxxxx@local.ie>... User unknown"
    delayed = parse_report(read("dsn_05.txt")).recipients[0]
    assert (delayed.action, delayed.status) == ("delayed", "4.4.1")
    gmail = parse_report(read("simple_42.txt")).recipients[0]
    assert (gmail.status, gmail.remote_mta) == ("5.7.1", "gmail-smtp-in.l.google.com")  # Status: 5.0.0 refined
    assert gmail.diagnostic.startswith("550-5.7.1 [94.136.40.141 12] Our system has detected")


@pytest.mark.parametrize("name", ["dsn_10.txt", "exim_01.txt", "qmail_04.txt", "yahoo_10.txt", "simple_25.txt"])
def test_crlf_line_endings_read_the_same(name: str) -> None:
    raw = read(name)
    crlf = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert parse_report(crlf).recipients == parse_report(raw).recipients


# --- hand-built reports ---------------------------------------------------------------------------------------------

POSTFIX_DSN = b"""\
Return-Path: <>
From: MAILER-DAEMON@mx.sender.example (Mail Delivery System)
To: bounces+abc@sender.example
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="8C1D63FE2B.1700000000/mx.sender.example"

This is a MIME-encapsulated message.

--8C1D63FE2B.1700000000/mx.sender.example
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.sender.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

<Alice@Receiver.Example>: host mx1.receiver.example[192.0.2.25] said: 550 5.1.1
    <alice@receiver.example>: Recipient address rejected: User unknown in
    virtual mailbox table (in reply to RCPT TO command)

--8C1D63FE2B.1700000000/mx.sender.example
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.sender.example
X-Postfix-Queue-ID: 8C1D63FE2B
Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000 (UTC)

Final-Recipient: rfc822; Alice@Receiver.Example
Original-Recipient: rfc822;Alice@Receiver.Example
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx1.receiver.example
Diagnostic-Code: smtp; 550 5.1.1 <alice@receiver.example>: Recipient address
    rejected: User unknown in virtual mailbox table

--8C1D63FE2B.1700000000/mx.sender.example
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: Sender <app@sender.example>
To: Alice@Receiver.Example
Subject: Your receipt
Message-ID: <20231114221320.1@sender.example>
X-PM-Message-Id: 3f2a8b9c-5d6e-4f70-8a91-b2c3d4e5f607
X-PM-Tag: receipts

--8C1D63FE2B.1700000000/mx.sender.example--
"""


def test_postfix_dsn() -> None:
    report = parse_report(POSTFIX_DSN)
    assert report.kind is ReportKind.DSN
    assert report.description.startswith("The server was unable to deliver your message")
    (alice,) = report.recipients
    assert alice.recipient == "Alice@receiver.example"  # local part kept, domain lower-cased
    assert (alice.action, alice.status, alice.remote_mta) == ("failed", "5.1.1", "mx1.receiver.example")
    assert alice.bounce_type is BounceType.HARD_BOUNCE
    assert alice.diagnostic == (
        "550 5.1.1 <alice@receiver.example>: Recipient address rejected: User unknown in virtual mailbox table"
    )
    assert report.original_message_id == "<20231114221320.1@sender.example>"
    assert report.original_headers == {
        "X-PM-Message-Id": "3f2a8b9c-5d6e-4f70-8a91-b2c3d4e5f607",
        "Message-ID": "<20231114221320.1@sender.example>",
        "Subject": "Your receipt",
        "From": "Sender <app@sender.example>",
        "To": "Alice@Receiver.Example",
        "X-PM-Tag": "receipts",
    }
    assert report.feedback_type is None


def _dsn(fields: str, text: str = "Delivery report.") -> bytes:
    return f"""\
From: Mail Delivery System <MAILER-DAEMON@mx.sender.example>
To: bounces@sender.example
Subject: Delivery Status Notification
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

{text}

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.sender.example

{fields}
--b--
""".encode()


def test_delayed_dsn_is_transient() -> None:
    report = parse_report(
        _dsn(
            "Final-Recipient: rfc822; bob@slow.example\nAction: delayed\nStatus: 4.4.1\n"
            "Diagnostic-Code: smtp; 421 4.4.1 connection timed out\n"
            "Will-Retry-Until: Wed, 15 Nov 2023 22:13:20 +0000\n",
            "THIS IS A WARNING ONLY. YOU DO NOT NEED TO RESEND YOUR MESSAGE.",
        )
    )
    assert report.kind is ReportKind.DSN
    (bob,) = report.recipients
    assert (bob.recipient, bob.action, bob.status) == ("bob@slow.example", "delayed", "4.4.1")
    assert bob.bounce_type is BounceType.TRANSIENT
    assert bob.diagnostic == "421 4.4.1 connection timed out"
    assert report.description.startswith("The server could not temporarily deliver your message")


@pytest.mark.parametrize(
    ("fields", "status", "bounce_type"),
    [
        # The numbers inside the diagnostic refine a generic Status (RFC 3463 x.0.0).
        ("Action: failed\nStatus: 5.0.0\nDiagnostic-Code: smtp; 550 5.1.1 user unknown", "5.1.1", HARD),
        ("Action: failed\nDiagnostic-Code: smtp; 552 5.2.2 mailbox full", "5.2.2", SOFT),
        (
            "Action: failed\nStatus: 5.0.0\nDiagnostic-Code: smtp; 550 5.7.26 unauthenticated, DMARC policy",
            "5.7.26",
            BounceType.DMARC_POLICY,
        ),
        (
            "Action: failed\nStatus: 5.0.0\nDiagnostic-Code: smtp; 554 rejected: virus found in message",
            "5.0.0",
            BounceType.VIRUS_NOTIFICATION,
        ),
        ("Action: failed\nStatus: 5.4.4\nDiagnostic-Code: X-Postfix; Host or domain name not found", "5.4.4", DNS),
        ("Action: failed\nStatus: 4.4.7\nDiagnostic-Code: smtp; delivery time expired", "4.4.7", SOFT),
        ("Status: 4.2.2\nDiagnostic-Code: smtp; 452 4.2.2 over quota", "4.2.2", TRANSIENT),  # no Action: class 4
    ],
)
def test_dsn_codes_come_from_the_diagnostic(fields: str, status: str, bounce_type: BounceType) -> None:
    (recipient,) = parse_report(_dsn(f"Final-Recipient: rfc822; carol@receiver.example\n{fields}\n")).recipients
    assert (recipient.status, recipient.bounce_type) == (status, bounce_type)


def test_dsn_diagnostic_is_collapsed_and_bounded() -> None:
    long_text = " ".join(["no such user here"] * 200)
    (recipient,) = parse_report(
        _dsn(
            f"Final-Recipient: rfc822; dan@receiver.example\nAction: failed\nStatus: 5.1.1\n"
            f"Diagnostic-Code: smtp; 550 5.1.1\n   {long_text}\n"
        )
    ).recipients
    assert len(recipient.diagnostic) == 1000
    assert "  " not in recipient.diagnostic


def test_dsn_skips_delivered_recipients_and_x400_addresses() -> None:
    report = parse_report(
        _dsn(
            "Final-Recipient: rfc822; ok@receiver.example\nAction: delivered\nStatus: 2.0.0\n\n"
            "Final-Recipient: x400; /S=who/OU=example/C=GB/\nAction: failed\nStatus: 5.1.1\n\n"
            "Original-Recipient: rfc822; erin@receiver.example\nFinal-Recipient: rfc822; erin@alias.example\n"
            "Action: failed\nStatus: 5.1.1\n"
        )
    )
    assert [r.recipient for r in report.recipients] == ["erin@receiver.example"]  # RFC 3464 §2.3.1


def test_dsn_that_only_reports_success_is_not_a_bounce() -> None:
    report = parse_report(_dsn("Final-Recipient: rfc822; ok@receiver.example\nAction: delivered\nStatus: 2.0.0\n"))
    assert report.kind is ReportKind.UNRECOGNISED


# RFC 5965 Appendix B.2, with a Posthouse message as the reported original.
ARF = b"""\
From: <abusedesk@example.com>
Date: Thu, 8 Mar 2005 17:40:36 EDT
Subject: FW: Earn money
To: <abuse@example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
     boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.  For more information
about this format please see http://www.mipassoc.org/arf/.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <somespammer@example.net>
Original-Rcpt-To: <user@Example.COM>
Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT
Reporting-MTA: dns; mail.example.com
Source-IP: 192.0.2.1
Authentication-Results: mail.example.com;
               spf=fail smtp.mail=somespammer@example.com
Reported-Domain: example.net
Reported-Uri: http://example.net/earn_money.html

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

From: <somespammer@example.net>
Received: from mailserver.example.net (mailserver.example.net
        [192.0.2.1]) by example.com with ESMTP id M63d4137594e46;
        Thu, 08 Mar 2005 14:00:00 -0400
To: <Undisclosed Recipients>
Subject: Earn money
MIME-Version: 1.0
Content-type: text/plain
Message-ID: 8787KJKJ3K4J3K4J3K4J3.mail@example.net
X-PM-Message-Id: 0d5a1c2e-1111-4222-8333-944455566677
Date: Thu, 02 Sep 2004 12:31:03 -0500

Spam Spam Spam
Spam Spam Spam
--part1_13d.2e68ed54_boundary--
"""


def test_arf_complaint() -> None:
    report = parse_report(ARF)
    assert report.kind is ReportKind.FEEDBACK
    assert report.feedback_type == "abuse"
    (user,) = report.recipients
    assert user.recipient == "user@example.com"
    assert user.bounce_type is BounceType.SPAM_COMPLAINT
    assert user.remote_mta == "mail.example.com"
    assert user.diagnostic.startswith("This is an email abuse report")
    assert report.original_message_id == "8787KJKJ3K4J3K4J3K4J3.mail@example.net"
    assert report.original_headers["X-PM-Message-Id"] == "0d5a1c2e-1111-4222-8333-944455566677"
    assert report.description == "The subscriber explicitly marked this message as spam."


def test_arf_without_original_rcpt_to_names_the_originals_to() -> None:
    raw = (
        ARF.replace(b"Original-Rcpt-To: <user@Example.COM>\n", b"")
        .replace(b"To: <Undisclosed Recipients>", b"To: Frank <frank@receiver.example>")
        .replace(b"Feedback-Type: abuse", b"Feedback-Type: fraud")
    )
    report = parse_report(raw)
    assert [r.recipient for r in report.recipients] == ["frank@receiver.example"]
    assert report.feedback_type == "fraud"
    assert report.recipients[0].bounce_type is BounceType.SPAM_COMPLAINT


OUT_OF_OFFICE = b"""\
From: Grace Hopper <Grace@Receiver.Example>
To: app@sender.example
Subject: Out of Office: Your receipt
Auto-Submitted: auto-replied
In-Reply-To: <20231114221320.1@sender.example>
Content-Type: text/plain; charset=utf-8

I am out of the office until Monday with limited access to email.
"""


def test_out_of_office_auto_reply() -> None:
    report = parse_report(OUT_OF_OFFICE)
    assert report.kind is ReportKind.AUTO_REPLY
    (grace,) = report.recipients
    assert grace.recipient == "Grace@receiver.example"
    assert grace.bounce_type is BounceType.AUTO_RESPONDER
    assert (grace.action, grace.status) == (None, None)
    assert report.original_message_id == "<20231114221320.1@sender.example>"  # RFC 3834 §3.1.5 In-Reply-To
    assert report.description.startswith("Automatic email responder")


@pytest.mark.parametrize(
    "headers",
    [
        b"Subject: Automatic reply: Your receipt\n",
        b"Subject: Your receipt\nX-Autoreply: yes\n",
        b"Subject: Re: Your receipt\nPrecedence: auto_reply\n",
    ],
)
def test_auto_reply_markers(headers: bytes) -> None:
    raw = b"From: henry@receiver.example\nTo: app@sender.example\n" + headers + b"\nI am away.\n"
    report = parse_report(raw)
    assert report.kind is ReportKind.AUTO_REPLY
    assert [r.recipient for r in report.recipients] == ["henry@receiver.example"]


def test_challenge_response() -> None:
    raw = b"""\
From: Ivy <ivy@receiver.example>
To: app@sender.example
Subject: Please verify your message to ivy@receiver.example
Auto-Submitted: auto-replied

I protect my inbox with a challenge-response system. Click below to verify you are human
and your message will be delivered.
"""
    report = parse_report(raw)
    assert report.kind is ReportKind.NON_STANDARD
    assert [(r.recipient, r.bounce_type) for r in report.recipients] == [
        ("ivy@receiver.example", BounceType.CHALLENGE_VERIFICATION)
    ]


def test_virus_notification() -> None:
    raw = b"""\
From: MailScanner <postmaster@receiver.example>
To: app@sender.example
Subject: Warning: virus detected

A virus was detected in a message you sent to jack@receiver.example.
The message was not delivered to:

  jack@receiver.example

Infected attachment: invoice.pdf.exe
"""
    report = parse_report(raw)
    assert [(r.recipient, r.bounce_type) for r in report.recipients] == [
        ("jack@receiver.example", BounceType.VIRUS_NOTIFICATION)
    ]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\r\n\r\n",
        b"\x00\xff\xfe garbage \x80\x81\n\n\xde\xad\xbe\xef",
        bytes(range(256)) * 4,
        b"From: someone\nContent-Type: multipart/report; boundary=x\n\n--x\nContent-Type: message/delivery-status\n\n",
        b"Content-Type: text/plain; charset=no-such-charset\n\n<kate@receiver.example>: 550 no such user\n",
    ],
)
def test_garbage_is_unrecognised(raw: bytes, no_safety_net: pytest.LogCaptureFixture) -> None:
    report = parse_report(raw)
    assert report.kind is ReportKind.UNRECOGNISED
    assert report.recipients == ()
    assert_no_safety_net(no_safety_net)


def test_forged_bounce_without_recipients_is_unrecognised() -> None:
    raw = b"""\
Return-Path: <>
From: Mail Delivery System <MAILER-DAEMON@mx.sender.example>
To: app@sender.example
Subject: Undelivered Mail Returned to Sender

This is the mail system at host mx.sender.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

For further assistance, please send mail to postmaster@sender.example
"""
    report = parse_report(raw)
    assert report.kind is ReportKind.UNRECOGNISED
    assert report.recipients == ()
    assert report.description


def test_ordinary_mail_mentioning_addresses_is_not_a_bounce() -> None:
    raw = b"""\
From: Liam <liam@receiver.example>
To: app@sender.example
Subject: Re: Your receipt

Thanks! Please send the invoice to:

  billing@receiver.example
"""
    assert parse_report(raw).kind is ReportKind.UNRECOGNISED


def test_the_address_the_bounce_was_sent_to_is_never_a_recipient() -> None:
    raw = b"""\
From: MAILER-DAEMON@mx.receiver.example
To: bounces@sender.example
Subject: failure notice

Your message from bounces@sender.example to the following address failed:

<mia@receiver.example>:
550 5.1.1 mailbox unknown
"""
    report = parse_report(raw)
    assert [(r.recipient, r.status, r.bounce_type) for r in report.recipients] == [
        ("mia@receiver.example", "5.1.1", HARD)
    ]


# --- never raises ---------------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=3000))
def test_arbitrary_bytes_never_raise(raw: bytes, no_safety_net: pytest.LogCaptureFixture) -> None:
    assert_well_formed(parse_report(raw))
    assert_no_safety_net(no_safety_net)


MUTATION_SOURCES = [POSTFIX_DSN, ARF, OUT_OF_OFFICE] + [
    read(name)
    for name in (
        "dsn_02.txt",
        "dsn_15.txt",
        "exim_01.txt",
        "groupwise_02.txt",
        "qmail_06.txt",
        "simple_25.txt",
        "simple_39.txt",
        "sina_01.txt",
        "yahoo_13.txt",
    )
    if CORPUS.is_dir()
]


@st.composite
def mutated_bounces(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(MUTATION_SOURCES)))
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        if not data:
            break
        at = draw(st.integers(min_value=0, max_value=len(data) - 1))
        operation = draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
        if operation == "truncate":
            del data[at:]
        elif operation == "flip":
            data[at] = draw(st.integers(min_value=0, max_value=255))
        elif operation == "insert":
            data[at:at] = draw(
                st.sampled_from(
                    [
                        b"\n",
                        b"\r\n",
                        b"--",
                        b"=?utf-8?b?",
                        b"\xff\xfe",
                        b"=\n",
                        b'Content-Type: multipart/report; boundary="b"\n',
                        b"charset=utf-7\n",
                        b"<",
                        b"@",
                        b":",
                    ]
                )
            )
        else:
            del data[at : at + draw(st.integers(min_value=1, max_value=200))]
    return bytes(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=mutated_bounces())
def test_mutated_bounces_never_raise(raw: bytes, no_safety_net: pytest.LogCaptureFixture) -> None:
    assert_well_formed(parse_report(raw))
    assert_no_safety_net(no_safety_net)


@pytest.mark.parametrize("charset", [b"utf\x00-8", b"no-such-charset"])
def test_8bit_text_under_a_charset_python_refuses_is_read_without_the_safety_net(
    charset: bytes, no_safety_net: pytest.LogCaptureFixture
) -> None:
    # Found by test_mutated_bounces_never_raise: the email package decodes 8-bit text with the charset
    # parameter, and a NUL in its name raises ValueError from a plain get_payload().
    raw = (b"From: MAILER-DAEMON@example.net\r\nTo: app@example.com\r\nSubject: Undelivered Mail\r\n"
           b'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
           b'--b\r\nContent-Type: text/plain; charset="' + charset + b'"\r\n\r\ncaf\xc3\xa9: could not deliver\r\n'
           b"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
           b"Final-Recipient: rfc822; gone@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--b--\r\n")
    report = parse_report(raw)
    assert_well_formed(report)
    assert_no_safety_net(no_safety_net)
    assert [r.recipient for r in report.recipients] == ["gone@example.net"]
