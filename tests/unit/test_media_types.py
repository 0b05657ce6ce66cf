"""Media types (RFC 2045 §5.1): what is read, what is refused, and that writing back keeps the meaning.

The stdlib's header parser is the oracle: it must read the same type and parameters from what we
write as from what the client gave, without defects.
"""

from __future__ import annotations

import email.policy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthouse.server.domain.media_types import MAX_MEDIA_TYPE, MediaType, MediaTypeError, parse_media_type


def stdlib_reading(value: str) -> tuple[str, dict[str, str], list[Any]]:
    header = email.policy.default.header_factory("Content-Type", value)
    return header.content_type, dict(header.params), list(header.defects)


VALID = [
    ("text/plain", "text/plain", ()),
    ('text/plain; charset="utf-8"', "text/plain", (("charset", "utf-8"),)),  # django-anymail's form
    ("TEXT/Plain;Charset=UTF-8", "text/plain", (("charset", "UTF-8"),)),
    ("image/svg+xml", "image/svg+xml", ()),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
     "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ()),
    ("text/csv; charset=utf-8; header=present", "text/csv", (("charset", "utf-8"), ("header", "present"))),
    ("  text / plain ;  charset = us-ascii  ", "text/plain", (("charset", "us-ascii"),)),
    ("text/plain;", "text/plain", ()),
    ('text/plain; title="say \\"hi\\" \\\\ bye"', "text/plain", (("title", 'say "hi" \\ bye'),)),
    ('text/plain; charset=""', "text/plain", (("charset", ""),)),
    ('multipart/mixed; boundary="a b:c"', "multipart/mixed", (("boundary", "a b:c"),)),
    ('text/plain; x="tab\there"', "text/plain", (("x", "tab\there"),)),
    # RFC 2231 §4 and §3's own examples: extended values and continuations are tokens or quoted-strings.
    ("application/x-stuff; title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A",
     "application/x-stuff", (("title*", "us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A"),)),
    ('message/external-body; access-type=URL; URL*0="ftp://"; URL*1="cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar"',
     "message/external-body",
     (("access-type", "URL"), ("url*0", "ftp://"), ("url*1", "cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar"))),
]


@pytest.mark.parametrize(("text", "essence", "parameters"), VALID, ids=[v[0] for v in VALID])
def test_valid_media_types_are_read(text: str, essence: str, parameters: tuple[tuple[str, str], ...]) -> None:
    media_type = parse_media_type(text)
    assert media_type.essence == essence
    assert media_type.parameters == parameters
    # What we write reads back the same, through our parser and through the stdlib's.
    assert parse_media_type(str(media_type)) == media_type
    written = stdlib_reading(str(media_type))
    assert written[2] == []
    assert written[:2] == stdlib_reading(text)[:2]


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ('text/plain; charset="utf-8"', "text/plain; charset=utf-8"),
        ("text/plain; name=report.txt", "text/plain; name=report.txt"),
        ('text/plain; title="two words"', 'text/plain; title="two words"'),
        ('text/plain; title="a;b"', 'text/plain; title="a;b"'),
        ('text/plain; title="q\\"uote"', 'text/plain; title="q\\"uote"'),
        ('text/plain; charset=""', 'text/plain; charset=""'),
        ("Image/PNG", "image/png"),
    ],
)
def test_the_written_form_quotes_only_what_is_not_a_token(text: str, written: str) -> None:
    assert str(parse_media_type(text)) == written


REFUSED = [
    ("", "expected a type, found the end"),
    ("text", "expected a '/' after the type, found the end"),
    ("text/", "expected a subtype, found the end"),
    ("/plain", "expected a type, found '/' at position 1"),
    ("text/plain charset=utf-8", "expected ';' before a parameter, found 'c' at position 12"),
    ("text/plain; charset", "expected '=' after the parameter name 'charset', found the end"),
    ("text/plain; charset=", "expected a value of the parameter 'charset', found the end"),
    ('text/plain; charset="utf-8', "a quoted value is not closed"),
    ('text/plain; charset="utf-8\\', "a quoted value is not closed"),
    ("text/plain; charset=utf-8; charset=latin1", "the parameter 'charset' is given twice"),
    ("text/plain; Charset=a; CHARSET=b", "the parameter 'charset' is given twice"),
    ("text/plain (a comment)", "expected ';' before a parameter, found '(' at position 12"),
    ("text/plain; name=a b", "expected ';' before a parameter, found 'b' at position 20"),
    ("text/pl@in", "expected ';' before a parameter, found '@' at position 8"),
    ("tëxt/plain", "expected a '/' after the type, found 'ë' at position 2"),
    ("text/plain; title=héllo", "expected ';' before a parameter, found 'é' at position 20"),
    ('text/plain; title="héllo"', "a quoted value holds the character 'é'"),
    ('text/plain; title="a\x01b"', "a quoted value holds the character '\\x01'"),
    ('text/plain; title="a\\\x7fb"', "a quoted value holds the character '\\x7f'"),
    ('text/plain; title*="quoted"', "the RFC 2231 parameter 'title*' takes an unquoted value"),
    ("text/plain; =x", "expected a parameter name, found '=' at position 13"),
    ("text/" + "x" * MAX_MEDIA_TYPE, f"it is too long: at most {MAX_MEDIA_TYPE} characters"),
    # Header injection (RFC 5322 §2.2): even a folded line is refused, since it is written as given.
    ("text/plain\r\nBcc: victim@example.com", "it cannot contain line breaks"),
    ("text/plain;\r\n charset=utf-8", "it cannot contain line breaks"),
    ('text/plain; x="a\nb"', "it cannot contain line breaks"),
    ("text/plain\0", "it cannot contain line breaks"),
]


@pytest.mark.parametrize(("text", "reason"), REFUSED, ids=[r[0][:40] for r in REFUSED])
def test_invalid_media_types_are_refused_saying_why(text: str, reason: str) -> None:
    with pytest.raises(MediaTypeError) as caught:
        parse_media_type(text)
    assert str(caught.value) == reason


def test_without_drops_a_parameter_in_every_rfc_2231_form() -> None:
    media_type = parse_media_type("text/plain; charset=utf-8; name=a.txt; name*=utf-8''%C3%A9; "
                                  "name*0*=x; name*1=y; names=kept")
    assert media_type.without("name").parameters == (("charset", "utf-8"), ("names", "kept"))
    assert media_type.without("name").essence == "text/plain"


@pytest.mark.parametrize(
    ("text", "composite"),
    [("message/rfc822", True), ("multipart/mixed; boundary=x", True), ("text/plain", False),
     ("application/octet-stream", False)],
)
def test_composite_types(text: str, composite: bool) -> None:
    assert parse_media_type(text).is_composite is composite


TOKEN = st.text(st.sampled_from("abcXYZ019!#$%&'*+-.^_`|~"), min_size=1, max_size=12)
QUOTED = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\t"), max_size=30)


@given(
    type_=TOKEN,
    subtype=TOKEN,
    parameters=st.dictionaries(TOKEN.map(str.lower).filter(lambda a: not a.endswith("*")), TOKEN | QUOTED,
                               max_size=4),
)
def test_what_is_written_reads_back_the_same(type_: str, subtype: str, parameters: dict[str, str]) -> None:
    media_type = MediaType(type_.lower(), subtype.lower(), tuple(parameters.items()))
    assert parse_media_type(str(media_type)) == media_type
