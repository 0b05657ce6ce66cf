"""Tracking in MIME: quoted-printable never cuts a placeholder, and submitted messages have their text bodies
tracked in place, attachments and every other byte untouched, readable by the stdlib parser, and back."""

from __future__ import annotations

import binascii
import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posthouse.server.domain.addresses import Address
from posthouse.server.domain.links import TrackingChoice, TrackingSettings, track_message, untrack_message
from posthouse.server.domain.mime import MessageContent, build_message, quoted_printable
from posthouse.server.domain.mime_parts import replace_parts, text_parts
from posthouse.server.domain.submission import compose_submitted, track_submitted
from posthouse.server.domain.tracking import PLACEHOLDER, TrackingToken, decode_token, personalize, placeholder

BASE = "http://127.0.0.1:8081"
KEY = bytes(range(32))
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
PLACEHOLDERS = st.integers(0, 9999).map(placeholder)


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def body(message: EmailMessage, subtype: str) -> str:
    """A body as the stdlib reads it, with "\n" line ends (it keeps the CRLF of the wire form)."""
    part = message.get_body((subtype,))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def decoded_qp(encoded: bytes) -> bytes:
    return binascii.a2b_qp(encoded).replace(b"\r\n", b"\n")


# -- quoted-printable ------------------------------------------------------------------------------------------


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(PLACEHOLDERS, st.text(max_size=90), st.sampled_from(["=", " ", "\t", "\n", "é", "."])),
                max_size=30))
def test_quoted_printable_never_cuts_a_placeholder(pieces: list[str]) -> None:
    data = "".join(pieces).replace("\r", "").encode()
    encoded = quoted_printable(data)
    lines = encoded.split(b"\r\n")
    assert max(map(len, lines)) <= 76
    assert decoded_qp(encoded) == data
    assert len(PLACEHOLDER.findall(encoded)) == len(PLACEHOLDER.findall(data))
    assert b"\r\n.\r\n" not in b"\r\n" + encoded + b"\r\n"  # the "." guard holds for the new lines too


def test_a_long_html_line_keeps_its_placeholders_whole() -> None:
    html = "<p>" + "".join(f'<a href="{BASE}/c/{placeholder(i)}">link {i} é</a>' for i in range(1, 60)) + "</p>"
    content = build_message(MessageContent(message_id="<m@x>", date=NOW, sender=Address("a@example.com"),
                                           to=[Address("b@example.com")], html_body=html))
    assert b"quoted-printable" in content
    assert len(PLACEHOLDER.findall(content)) == 59
    personal = personalize(content, KEY, 42)
    assert len(personal) == len(content) and not PLACEHOLDER.search(personal)
    html = body(parse(personal), "html")
    tokens = re.findall(rf"{re.escape(BASE)}/c/([A-Za-z0-9_-]{{28}})", html)
    assert [decode_token(KEY, t) for t in tokens] == [TrackingToken(42, i) for i in range(1, 60)]


# -- submitted MIME --------------------------------------------------------------------------------------------

HTML = ('<html><body><p>Hello é, <a href="https://example.com/a?x=1&amp;y=2">read</a> and '
        '<a href="mailto:x@example.com">mail</a> ' + "x" * 120 + "</p></body></html>\n")
TEXT = "Hello é, read https://example.com/a?x=1&y=2 now.\n"


def submitted(cte_html: str = "quoted-printable", cte_text: str = "quoted-printable",
              charset: str = "utf-8") -> bytes:
    message = EmailMessage()
    message["From"] = "a@example.com"
    message["To"] = "b@example.com"
    message["Subject"] = "s"
    message.set_content(TEXT, charset=charset, cte=cte_text)
    message.add_alternative(HTML, subtype="html", charset=charset, cte=cte_html)
    message.add_attachment(b"%PDF-1.4 https://attached.example/ phtrk", maintype="application", subtype="pdf",
                           filename="a.pdf")
    message.add_attachment("see https://attached-text.example/\n", filename="notes.txt")
    return message.as_bytes(policy=policy.SMTP)


@pytest.mark.parametrize(("cte_html", "cte_text", "charset"), [
    ("quoted-printable", "quoted-printable", "utf-8"),
    ("base64", "base64", "utf-8"),
    ("8bit", "8bit", "utf-8"),
    ("quoted-printable", "base64", "iso-8859-1"),
])
def test_a_submitted_message_is_tracked_in_its_bodies_only(cte_html: str, cte_text: str, charset: str) -> None:
    original = submitted(cte_html, cte_text, charset)
    tracked = track_message(original, TrackingChoice(True, "HtmlAndText"), BASE)
    assert [(link.link, link.url, link.location) for link in tracked.links] == [
        (1, "https://example.com/a?x=1&y=2", "HTML"), (2, "https://example.com/a?x=1&y=2", "Text")]
    assert tracked.pixel
    parsed = parse(tracked.content)
    html, text = body(parsed, "html"), body(parsed, "plain")
    assert f'href="{BASE}/c/{placeholder(1)}"' in html and f'{BASE}/o/{placeholder(0)}"' in html
    assert text == TEXT.replace("https://example.com/a?x=1&y=2", f"{BASE}/c/{placeholder(2)}")
    # The raw bytes hold every placeholder whole, so each recipient's tokens can be swapped in.
    found = sorted({m.group() for m in PLACEHOLDER.finditer(tracked.content)})
    assert found == [placeholder(i).encode() for i in (0, 1, 2)]
    # Attachments, headers and boundaries are byte for byte as they were.
    attachments = {p.get_filename(): p.get_content() for p in parsed.iter_attachments()}
    assert attachments == {"a.pdf": b"%PDF-1.4 https://attached.example/ phtrk",
                           "notes.txt": "see https://attached-text.example/\r\n"}
    head = original.split(b"\r\n\r\n", 1)[0]
    assert tracked.content.startswith(head + b"\r\n\r\n")
    untouched = [chunk for chunk in re.split(rb"\r\n--=+\d+==", original) if b"attachment;" in chunk]
    assert len(untouched) == 2 and all(chunk in tracked.content for chunk in untouched)
    # And back: the bodies as the sender wrote them.
    written = {link.link: link.written for link in tracked.links}
    restored = parse(untrack_message(tracked.content, written))
    assert (body(restored, "html"), body(restored, "plain")) == (HTML, TEXT)


def test_text_parts_finds_bodies_not_attachments_nor_forwarded_messages() -> None:
    inner = EmailMessage()
    inner["Subject"] = "forwarded"
    inner.set_content("forwarded https://inner.example/\n")
    message = EmailMessage()
    message["From"] = "a@example.com"
    message.set_content("body https://outer.example/\n")
    message.add_attachment(inner)
    message.add_attachment("<a href='https://x.example/'>x</a>", subtype="html", filename="page.html")
    parts = text_parts(message.as_bytes(policy=policy.SMTP))
    assert [(p.subtype, p.text) for p in parts] == [("plain", "body https://outer.example/\r\n")]


def test_a_message_without_mime_version_is_plain_text() -> None:
    data = (b"From: a@example.com\r\nSubject: old\r\n\r\n"
            b"<a href=\"https://a.example/\">a</a> https://b.example/ " + b"x" * 990 + b"\r\n")
    parts = text_parts(data)
    assert [(p.subtype, p.mime) for p in parts] == [("plain", False)]
    tracked = track_message(data, TrackingChoice(True, "HtmlAndText"), BASE)
    assert [link.url for link in tracked.links] == ["https://a.example/", "https://b.example/"]
    assert not tracked.pixel
    # The line grew past 998: quoted-printable, so MIME-Version comes with its Content-Transfer-Encoding.
    assert tracked.content.startswith(b"From: a@example.com\r\nSubject: old\r\nMIME-Version: 1.0\r\n"
                                      b"Content-Transfer-Encoding: quoted-printable\r\n\r\n")
    assert body(parse(tracked.content), "plain").startswith(f'<a href="{BASE}/c/{placeholder(1)}">')


def test_a_message_with_mime_fields_but_no_mime_version_is_left_alone() -> None:
    data = (b"From: a@example.com\r\nContent-Type: text/html\r\n\r\n"
            b"<a href=\"https://a.example/\">a</a> https://b.example/\r\n")
    assert text_parts(data) == []
    assert track_message(data, TrackingChoice(True, "HtmlAndText"), BASE).content == data


def test_a_line_too_long_for_7bit_after_tracking_becomes_quoted_printable() -> None:
    urls = " ".join(f"http://a.example/{i}" for i in range(45))
    data = b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n" + urls.encode() + b"\r\n"
    assert max(map(len, data.split(b"\r\n"))) <= 998
    tracked = track_message(data, TrackingChoice(False, "TextOnly"), BASE)
    assert b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" in tracked.content
    assert max(map(len, tracked.content.split(b"\r\n"))) <= 76
    assert body(parse(tracked.content), "plain").count(f"{BASE}/c/phtrk") == 45


def test_unknown_charsets_and_encodings_are_left_alone() -> None:
    for headers in (b"Content-Type: text/html; charset=x-unknown\r\n",
                    b"Content-Type: text/html; charset=utf-16\r\n",
                    b"Content-Type: text/html\r\nContent-Transfer-Encoding: x-uuencode\r\n"):
        data = b"MIME-Version: 1.0\r\n" + headers + b"\r\n<a href=\"https://a.example/\">a</a>\r\n"
        assert text_parts(data) == []
        assert track_message(data, TrackingChoice(True, "HtmlAndText"), BASE).content == data


@pytest.mark.parametrize("body", [
    b"--b\r\n\r\nfirst\r\n--b\r\n\r\nsecond\r\n--b--\r\nepilogue",
    b"preamble\r\n--b  \r\n\r\nfirst\r\n--bx\r\nnot a delimiter\r\n--b--",
    b"--b\r\n--b\r\n\r\nafter an empty part\r\n--b--",
    b"--b\r\n\r\nno closing delimiter",
])
def test_multipart_bodies_split_as_rfc_2046_says(body: bytes) -> None:
    data = b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' + body
    texts = [p.text for p in text_parts(data)]
    expected = [part.get_content() for part in parse(data).iter_parts()]
    assert [t.replace("\r\n", "\n") for t in texts] == [e.replace("\r\n", "\n") for e in expected if e]


def test_replacing_nothing_changes_nothing_and_a_part_keeps_its_7bit_form() -> None:
    data = b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nline one\r\nline two\r\n"
    assert replace_parts(data, []) == data
    [part] = text_parts(data)
    assert replace_parts(data, [(part, part.text.replace("two", "2"))]) == data.replace(b"two", b"2")


# -- the whole submission path ---------------------------------------------------------------------------------


def test_x_pm_headers_decide_tracking_and_are_removed() -> None:
    raw = (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: s\r\nX-PM-TrackOpens: true\r\n"
           b"X-PM-TrackLinks: HtmlOnly\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           b"<body><a href=\"https://example.com/\">x</a> https://text.example/</body>\r\n")
    message = compose_submitted(raw, mail_from="a@example.com", recipients=["b@example.com"], now=NOW)
    message = track_submitted(message, TrackingSettings(BASE))
    assert (message.track_opens, message.track_links, message.open_pixel) == (True, "HtmlOnly", True)
    assert [link.url for link in message.links] == ["https://example.com/"]
    assert b"X-PM-Track" not in message.content
    assert f'href="{BASE}/c/{placeholder(1)}"'.encode() in message.content


def test_the_server_defaults_apply_without_headers_and_untracked_mail_is_untouched() -> None:
    raw = (b"From: a@example.com\r\nTo: b@example.com\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n"
           b"see https://example.com/\r\n")
    plain = compose_submitted(raw, mail_from="a@example.com", recipients=["b@example.com"], now=NOW)
    before = plain.content
    plain = track_submitted(plain, TrackingSettings(BASE))
    assert plain.content is before and (plain.track_opens, plain.track_links, plain.links) == (False, "None", [])
    tracked = compose_submitted(raw, mail_from="a@example.com", recipients=["b@example.com"], now=NOW)
    tracked = track_submitted(tracked, TrackingSettings(BASE, opens=True, links="TextOnly"))
    assert (tracked.track_opens, tracked.track_links, tracked.open_pixel) == (True, "TextOnly", False)
    assert tracked.content.endswith(f"see {BASE}/c/{placeholder(1)}\r\n".encode())


def test_a_message_that_already_has_placeholders_goes_untracked() -> None:
    raw = (b"From: a@example.com\r\nTo: b@example.com\r\nX-PM-TrackLinks: TextOnly\r\n\r\n"
           b"see https://example.com/ " + placeholder(1).encode() + b"\r\n")
    message = compose_submitted(raw, mail_from="a@example.com", recipients=["b@example.com"], now=NOW)
    before = message.content
    message = track_submitted(message, TrackingSettings(BASE))
    assert message.content == before and message.track_links == "None" and not message.links
