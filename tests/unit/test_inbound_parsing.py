"""domain/inbound.py (docs/postmark-api.md §10): a received message read into the facts of Postmark's inbound
JSON, and that JSON (webhooks/payloads.py) as an application reads it. Table tests per field, and a property:
whatever bytes arrive, the reader answers and never raises (it has no error of its own: it is total)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthouse.server.domain.inbound import (
    InboundContent,
    Mailbox,
    format_addresses,
    mailbox_hash,
    parse_inbound,
    strip_reply,
)
from posthouse.server.webhooks.payloads import InboundFacts, inbound_payload


def mail(headers: str, body: bytes | str = "Hi.\r\n", *, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = headers if headers.endswith("\r\n") or not headers else headers + "\r\n"
    if content_type:
        head += f"MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n"
    raw = body.encode() if isinstance(body, str) else body
    return head.encode("utf-8") + b"\r\n" + raw


def posted(raw: bytes, original_recipient: str = "abc+tick@inbound.example") -> dict[str, Any]:
    """The inbound webhook's JSON for `raw`, decoded as the application decodes it."""
    return dict(json.loads(inbound_payload(InboundFacts(
        content=parse_inbound(raw), message_id="m-1", message_stream="inbound",
        original_recipient=original_recipient, envelope_sender="bounce@sender.example"))))


# --- Addresses ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "expected"), [
    ("From: ann@sender.example", {"Email": "ann@sender.example", "Name": "", "MailboxHash": ""}),
    ("From: Ann Sender <ann@sender.example>", {"Email": "ann@sender.example", "Name": "Ann Sender",
                                                "MailboxHash": ""}),
    ('From: "Sender, Ann" <ann+billing@sender.example>',
     {"Email": "ann+billing@sender.example", "Name": "Sender, Ann", "MailboxHash": "billing"}),
    ("From: =?utf-8?b?Sm9zw6kgTcO8bGxlcg==?= <jose@sender.example>",
     {"Email": "jose@sender.example", "Name": "José Müller", "MailboxHash": ""}),
    ("From: =?iso-8859-1?q?Fran=E7ois?= <f@sender.example>", {"Email": "f@sender.example", "Name": "François",
                                                              "MailboxHash": ""}),
    # RFC 6532: UTF-8 in the header itself, an internationalised domain and local part (IDN, as sent).
    ("From: José <josé@bücher.example>", {"Email": "josé@bücher.example", "Name": "José", "MailboxHash": ""}),
    ("From: <ann@xn--bcher-kva.example>", {"Email": "ann@xn--bcher-kva.example", "Name": "", "MailboxHash": ""}),
    ('From: "Mail Delivery System" <>', {"Email": "", "Name": "Mail Delivery System", "MailboxHash": ""}),
    ("Subject: no From at all", {"Email": "", "Name": "", "MailboxHash": ""}),
])
def test_from_full(header: str, expected: dict[str, str]) -> None:
    body = posted(mail(header + "\r\nTo: x@inbound.example"))
    assert body["FromFull"] == expected
    assert (body["From"], body["FromName"]) == (expected["Email"], expected["Name"])


@pytest.mark.parametrize(("header", "to", "to_full"), [
    ("To: a@x.example", "a@x.example", [("a@x.example", "", "")]),
    ("To: Ann <a+42@x.example>, b@y.example", '"Ann" <a+42@x.example>, b@y.example',
     [("a+42@x.example", "Ann", "42"), ("b@y.example", "", "")]),
    ('To: "Quote \\"Q\\" Person" <q@x.example>', '"Quote \\"Q\\" Person" <q@x.example>',
     [("q@x.example", 'Quote "Q" Person', "")]),
    ("To: =?utf-8?q?Zo=C3=AB?= <zoe@b\u00fccher.example>", '"Zoë" <zoe@bücher.example>',
     [("zoe@bücher.example", "Zoë", "")]),
    ("To: undisclosed-recipients:;", "", []),
    ("To: Group: a@x.example, b@x.example;", "a@x.example, b@x.example",
     [("a@x.example", "", ""), ("b@x.example", "", "")]),
])
def test_to_and_to_full(header: str, to: str, to_full: list[tuple[str, str, str]]) -> None:
    body = posted(mail("From: s@sender.example\r\n" + header))
    assert body["To"] == to
    assert [(a["Email"], a["Name"], a["MailboxHash"]) for a in body["ToFull"]] == to_full


def test_cc_and_bcc_full_and_the_blind_copied_recipient() -> None:
    raw = mail("From: s@sender.example\r\nTo: a@x.example\r\nCc: Carl <c+9@x.example>, d@x.example")
    body = posted(raw, original_recipient="hash+ticket@inbound.example")
    assert body["Cc"] == '"Carl" <c+9@x.example>, d@x.example'
    assert [a["MailboxHash"] for a in body["CcFull"]] == ["9", ""]
    # Neither To nor Cc names the inbound address: it was blind-copied (Postmark's BccFull).
    assert body["BccFull"] == [{"Email": "hash+ticket@inbound.example", "Name": "", "MailboxHash": "ticket"}]
    named = posted(mail("From: s@sender.example\r\nTo: Hash+Ticket@inbound.example"),
                   original_recipient="hash+ticket@inbound.example")
    assert named["BccFull"] == [] and named["Bcc"] == ""


@pytest.mark.parametrize(("address", "expected"), [
    ("abc+tick@inbound.example", "tick"), ("abc@inbound.example", ""), ("abc+@inbound.example", ""),
    ("a+b+c@x.example", "b+c"), ("plus+in+local@x", "in+local"), ("no-at-sign+x", "x"), ("", ""),
])
def test_mailbox_hash(address: str, expected: str) -> None:
    assert mailbox_hash(address) == expected


def test_mailbox_hash_of_the_post_is_the_original_recipients() -> None:
    body = posted(mail("From: s@sender.example\r\nTo: support@inbound.example"),
                  original_recipient="abc+order-17@inbound.example")
    assert body["MailboxHash"] == "order-17" and body["OriginalRecipient"] == "abc+order-17@inbound.example"


def test_format_addresses_quotes_names() -> None:
    assert format_addresses([Mailbox("a@x", 'A "B" \\ C'), Mailbox("b@x", "")]) == '"A \\"B\\" \\\\ C" <a@x>, b@x'


# --- StrippedTextReply -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("Thanks!\n\nOn Mon, 1 Jun 2026 at 10:00, Ann <ann@x> wrote:\n> earlier\n> more\n", "Thanks!"),
    ("Merci\n\nLe lun. 1 juin 2026 à 10:00, Ann a écrit :\n> avant\n", "Merci"),
    ("Danke\n\nAm 01.06.2026 um 10:00 schrieb Ann:\n> vorher\n", "Danke"),
    ("Yes.\n\n-----Original Message-----\nFrom: Ann\nSent: Monday\n", "Yes."),
    ("Sure\n\n________________________________\nFrom: Ann <ann@x>\nSent: Monday, June 1\nTo: b@x\n", "Sure"),
    ("New text\n> quoted to the end\n>\n> still\n", "New text"),
    ("A message that quotes nobody.\n", ""),
    ("A line\n> inside a text\nthen more text\n", ""),  # a quote that does not run to the end is not one
    ("", ""),
])
def test_strip_reply(text: str, expected: str) -> None:
    assert strip_reply(text) == expected


def test_stripped_text_reply_in_the_post_and_crlf_bodies() -> None:
    body = posted(mail("From: s@x.example\r\nTo: t@x.example", "Got it.\r\n\r\nOn Tue, Bob wrote:\r\n> hi\r\n"))
    assert body["TextBody"] == "Got it.\n\nOn Tue, Bob wrote:\n> hi\n"
    assert body["StrippedTextReply"] == "Got it."


# --- Charsets ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("charset", "encoding", "body", "expected"), [
    ("utf-8", "8bit", "Café ☕".encode(), "Café ☕"),
    ("iso-8859-1", "8bit", "Café".encode("latin-1"), "Café"),
    ("windows-1252", "quoted-printable", b"=93quoted=94 =80", "\u201cquoted\u201d €"),
    ("koi8-r", "base64", base64.b64encode("Привет".encode("koi8-r")), "Привет"),
    ("shift_jis", "8bit", "こんにちは".encode("shift_jis"), "こんにちは"),
    ("utf-7", "7bit", b"Hi +AOk-", "Hi é"),
    # Undeclared, unknown or lying: UTF-8 when it reads as UTF-8, else Windows-1252; never an error.
    ("", "8bit", "Grüße".encode(), "Grüße"),
    ("x-no-such-charset", "8bit", "Grüße".encode(), "Grüße"),
    ("us-ascii", "8bit", "Grüße".encode("cp1252"), "Grüße"),
    ("utf-8", "8bit", b"bad \xff\xfe bytes", "bad \ufffd\ufffd bytes"),
])
def test_text_body_charsets(charset: str, encoding: str, body: bytes, expected: str) -> None:
    content_type = f"text/plain; charset={charset}" if charset else "text/plain"
    raw = mail(f"From: s@x.example\r\nContent-Transfer-Encoding: {encoding}", body, content_type=content_type)
    assert parse_inbound(raw).text_body == expected


def test_subject_and_eight_bit_headers() -> None:
    raw = mail("From: s@x.example\r\nSubject: =?utf-8?q?Caf=C3=A9?= =?iso-8859-2?q?_=B1?=\r\nX-Raw: caf\u00e9")
    content = parse_inbound(raw)
    assert content.subject == "Café ą"
    assert ("X-Raw", "café") in content.headers
    latin = b"From: s@x.example\r\nSubject: caf\xe9\r\n\r\nHi\r\n"  # raw Windows-1252 in a header
    assert parse_inbound(latin).subject == "café"
    # An unknown charset's word is read as far as it goes (its bytes as UTF-8, else Windows-1252).
    unknown = parse_inbound(b"From: s@x.example\r\nSubject: =?no-such?q?ab?= tail\r\n\r\nHi\r\n")
    assert unknown.subject == "ab tail"


# --- Attachments -------------------------------------------------------------------------------------------

MIXED = (
    "From: s@x.example\r\nTo: t@x.example\r\nSubject: files\r\nMIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="OUT"\r\n\r\n'
    '--OUT\r\nContent-Type: multipart/alternative; boundary="ALT"\r\n\r\n'
    "--ALT\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlain text\r\n"
    "--ALT\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>HTML <img src=\"cid:logo@x\"></p>\r\n--ALT--\r\n"
    "--OUT\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\nContent-ID: <logo@x>\r\n"
    "Content-Disposition: inline; filename=\"logo.png\"\r\n\r\n" + base64.b64encode(b"\x89PNG fake").decode() +
    "\r\n--OUT\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n"
    "Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf\r\n\r\n"
    + base64.b64encode(b"%PDF-1.4 " + bytes(range(256))).decode() +
    "\r\n--OUT\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Disposition: attachment; filename=notes.txt\r\n\r\n"
    "not the body\r\n"
    "--OUT\r\nContent-Type: message/rfc822\r\n\r\nFrom: inner@x.example\r\nSubject: forwarded\r\n\r\nInner body\r\n"
    "--OUT\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n%%%not base64%%%\r\n"
    "--OUT--\r\n"
)


def test_attachments_as_posted() -> None:
    body = posted(MIXED.encode())
    assert (body["TextBody"], body["HtmlBody"]) == ("Plain text", '<p>HTML <img src="cid:logo@x"></p>')
    found = {a["Name"]: a for a in body["Attachments"]}
    assert list(found) == ["logo.png", "résumé.pdf", "notes.txt", "attachment.eml", "attachment.bin"]
    logo = found["logo.png"]
    assert (logo["ContentType"], logo["ContentID"], base64.b64decode(logo["Content"])) == \
        ("image/png", "logo@x", b"\x89PNG fake")
    assert logo["ContentLength"] == len(b"\x89PNG fake")
    pdf = found["résumé.pdf"]
    assert "ContentID" not in pdf  # only a part that has one (anymail takes any ContentID as inline)
    assert base64.b64decode(pdf["Content"]) == b"%PDF-1.4 " + bytes(range(256)) and pdf["ContentLength"] == 265
    assert base64.b64decode(found["notes.txt"]["Content"]) == b"not the body"  # the CRLF is the boundary's
    forwarded = base64.b64decode(found["attachment.eml"]["Content"])
    assert found["attachment.eml"]["ContentType"] == "message/rfc822" and b"Subject: forwarded" in forwarded
    assert b"Inner body" in forwarded and "Inner body" not in body["TextBody"]  # whole, not in the body
    assert found["attachment.bin"]["ContentLength"] == len(base64.b64decode(found["attachment.bin"]["Content"]))
    assert all(a["ContentLength"] == len(base64.b64decode(a["Content"])) for a in body["Attachments"])


def test_attachments_size_counts_decoded_bytes() -> None:
    content = parse_inbound(MIXED.encode())
    assert content.attachments_size == sum(len(a.content) for a in content.attachments) > 265


# --- Broken MIME -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    b"",
    b"\r\n\r\n",
    b"not a header line at all\r\n\r\nbody",
    b"From: s@x.example\r\nContent-Type: multipart/mixed\r\n\r\nno boundary given\r\n",
    b'From: s@x.example\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\n'
    b"never closed",
    b"From: s@x.example\r\nContent-Type: text/plain; charset=\"\r\n\r\nunterminated parameter\r\n",
    b"From: s@x.example\r\nContent-Transfer-Encoding: base64\r\n\r\n====!!!!\r\n",
    b"From: s@x.example\r\nContent-Type: /\r\n\r\nbody\r\n",
    b"From: \xff\xfe\x00 <\x00@\x00>\r\nTo: ,,,,<<<>>>\r\nCc: \"unclosed\r\n\r\n\x00\x01\x02",
    b"From: s@x.example\r\nContent-Type: message/rfc822\r\n\r\n",
    b"Content-Type: multipart/mixed; boundary=X\r\n\r\n"
    + b"--X\r\nContent-Type: multipart/mixed; boundary=X\r\n\r\n" * 60,
])
def test_broken_mime_degrades(raw: bytes) -> None:
    content = parse_inbound(raw)
    assert isinstance(content, InboundContent)
    body = posted(raw)  # the post is still built, and is valid JSON
    assert body["TextBody"] == content.text_body and len(body["Attachments"]) == len(content.attachments)


def test_absurd_nesting_stops_in_an_opaque_attachment() -> None:
    depth = 40
    raw = b"From: s@x.example\r\n"
    for level in range(depth):
        raw += f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n--b{level}\r\n'.encode()
    raw += b"Content-Type: text/plain\r\n\r\ndeep\r\n"
    content = parse_inbound(raw)
    assert "deep" not in content.text_body and len(content.attachments) == 1


# --- Any bytes ---------------------------------------------------------------------------------------------

_HEADERISH = st.lists(st.sampled_from([
    b"From: ", b"To: ", b"Cc: ", b"Subject: ", b"Content-Type: ", b"multipart/mixed; boundary=", b"text/plain",
    b"charset=", b"utf-7", b"Content-Transfer-Encoding: ", b"base64", b"quoted-printable", b"=?utf-8?b?", b"?=",
    b"\r\n", b"\r\n\r\n", b"--", b"<", b">", b"@", b'"', b",", b";", b"=", b"\xff", b"\xe9", b"\x00", b" ",
    b"message/rfc822", b"Content-Disposition: attachment; filename*=", b"Content-ID: ",
]), max_size=60).map(b"".join)


@given(st.one_of(st.binary(max_size=2000), _HEADERISH, st.tuples(_HEADERISH, st.binary(max_size=300)).map(
    lambda t: t[0] + t[1])))
def test_any_bytes_are_read_and_posted_without_an_error(raw: bytes) -> None:
    content = parse_inbound(raw)  # total: nothing but a result (the module has no error of its own to raise)
    body = posted(raw)
    assert body["From"] == content.sender.email
    assert len(body["Attachments"]) == len(content.attachments)
    json.dumps(body, ensure_ascii=False).encode("utf-8")  # no lone surrogate anywhere (a database would refuse)
