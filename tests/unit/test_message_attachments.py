"""A send request's attachments (domain/messages.py): the forms clients send are accepted and arrive intact;
anything else is refused with ErrorCode 300 before a byte is stored."""

from __future__ import annotations

import base64
import textwrap
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from posthouse import wire
from posthouse.server.domain.messages import compose
from posthouse.server.errors import ApiError

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DATA = bytes(range(256)) * 3
ENCODED = base64.b64encode(DATA).decode()


def send(content: str, content_type: str | None = "application/octet-stream", name: str = "data.dat") -> bytes:
    request = wire.EmailRequest(sender="app@example.com", to="to@example.com", subject="Files", text_body="See.",
                                attachments=[wire.Attachment(name=name, content=content, content_type=content_type)])
    return compose(request, now=NOW).content


def the_file(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    [part] = [p for p in message.walk() if p.get_content_disposition() == "attachment"]
    assert isinstance(part, EmailMessage) and part.defects == []
    return part


def encoded_lines(raw: bytes) -> list[bytes]:
    body = raw.split(b"Content-Transfer-Encoding: base64\r\n\r\n", 1)[1]
    return body.split(b"\r\n--", 1)[0].split(b"\r\n")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(ENCODED, id="one-line"),
        pytest.param(base64.encodebytes(DATA).decode(), id="76-columns-lf"),  # postmarker's MIMEBase payloads
        pytest.param("\r\n".join(textwrap.wrap(ENCODED, 76)) + "\r\n", id="76-columns-crlf"),
        pytest.param("\n".join(textwrap.wrap(ENCODED, 64)), id="64-columns-pem-style"),
        pytest.param(" " + "\t".join(textwrap.wrap(ENCODED, 50)) + " \r\n", id="spaces-and-tabs"),
    ],
)
def test_base64_with_whitespace_and_line_breaks_is_accepted_and_rewrapped(content: str) -> None:
    raw = send(content)
    assert the_file(raw).get_content() == DATA
    # Written again at RFC 2045 §6.8's 76 columns, whatever the client's wrapping was.
    lines = encoded_lines(raw)
    assert {len(line) for line in lines[:-1]} == {76}
    assert 0 < len(lines[-1]) <= 76


@pytest.mark.parametrize(
    "content",
    ["not base64!", "QQ=", "QQ==\v", "QQ\u00a0==", "QQ\f==", "Q-Q=", "QQ==\r\n!"],
)
def test_other_invalid_base64_is_refused(content: str) -> None:
    with pytest.raises(ApiError) as caught:
        send(content)
    assert caught.value.error_code == 300
    assert caught.value.message == "Attachment 'data.dat' content is not valid base64."


@pytest.mark.parametrize(
    ("content_type", "sent_type", "params"),
    [
        ('text/plain; charset="utf-8"', "text/plain", {"charset": "utf-8"}),  # django-anymail's text attachments
        ("text/csv;charset=UTF-8;header=present", "text/csv", {"charset": "UTF-8", "header": "present"}),
        ("Image/PNG", "image/png", {}),
        (None, "application/octet-stream", {}),
        ("  application/pdf  ", "application/pdf", {}),
        ("application/json; name=other.json", "application/json", {}),
    ],
)
def test_media_type_parameters_reach_the_part(content_type: str | None, sent_type: str, params: dict[str, str]) -> None:
    part = the_file(send(base64.b64encode(b"a,b\n").decode(), content_type, name="list.csv"))
    assert part.get_content_type() == sent_type
    assert dict(part["Content-Type"].params) == {**params, "name": "list.csv"}
    assert part.get_payload(decode=True) == b"a,b\n"


@pytest.mark.parametrize(
    ("content_type", "reason"),
    [
        ("text", "expected a '/' after the type, found the end"),
        ("text/plain; charset", "expected '=' after the parameter name 'charset', found the end"),
        ('text/plain; charset="utf-8', "a quoted value is not closed"),
        ("text/plain; charset=a; charset=b", "the parameter 'charset' is given twice"),
        ("text/plain\r\nBcc: victim@example.com", "it cannot contain line breaks"),
    ],
)
def test_invalid_media_types_are_refused_with_the_reason(content_type: str, reason: str) -> None:
    with pytest.raises(ApiError) as caught:
        send("QQ==", content_type)
    assert caught.value.error_code == 300
    assert caught.value.message == f"Invalid attachment content type: '{content_type}': {reason}."
