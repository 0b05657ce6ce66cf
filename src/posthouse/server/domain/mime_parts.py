"""The text bodies inside raw MIME: a message's inline text/plain and text/html parts found and decoded, and
changed ones put back with every other byte as it was.

Mail submitted over SMTP arrives as MIME the client built. To track its links, its body parts (not its
attachments) are decoded, rewritten and spliced back: the part's body is encoded again, quoted-printable
by our own encoder (`mime.quoted_printable`, which never cuts a tracking placeholder), or left in its 7bit/
8bit/binary form when the new text still fits it. Only that part's body, and its Content-Transfer-Encoding
field when the encoding changes, are written anew; headers, boundaries, preambles and the other parts
stay byte for byte. The same splice turns stored tracked content back into the original for the message's
details and dump.

A part is a text body when its type is text/plain or text/html (RFC 2045 §5.2: a missing Content-Type
means text/plain; a message without MIME-Version is plain text, and left alone if it has Content-* fields)
and its Content-Disposition is not `attachment` (RFC 2183). Multiparts are followed
(RFC 2046 §5.1.1: a delimiter is CRLF, "--", the boundary, then optional whitespace); message/rfc822
parts are not (a forwarded message is the sender's attachment, not their body). A part that cannot be
decoded (an unknown charset or transfer encoding, a charset that does not keep ASCII as ASCII) is left
alone. Lines end in CRLF (the SMTP server refuses bare CR and LF).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message

from posthouse.server.domain.mime import quoted_printable

_MAX_DEPTH = 32  # nested multiparts followed at most (a message nested deeper is left as it is)
_MAX_LINE = 998  # RFC 5322 §2.1.1, RFC 2045 §2.7-2.8
_IDENTITY = ("7bit", "8bit", "binary")
_FIELD_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")
# Text that tracking adds must come out of the part's charset as the same ASCII bytes.
_ASCII_PROBE = '<img src="https://t.example:8081/o/phtrk0000xxxxxxxxxxxxxxxxxxx" alt="" />&=%?#_~'


@dataclass(frozen=True, slots=True)
class TextPart:
    """One text body of a message: where its header section and body are in the bytes, and its text."""

    subtype: str  # "plain" or "html"
    charset: str
    encoding: str  # its Content-Transfer-Encoding, lower case ("7bit" when none)
    header_start: int
    header_end: int  # after the last header field's CRLF (the empty line follows)
    body_start: int
    body_end: int
    text: str
    encoding_field: tuple[int, int] | None  # the Content-Transfer-Encoding field's span, if it has one
    mime: bool = True  # False for the body of a message without MIME-Version (RFC 2045 §4)


def _fields(data: bytes, start: int, end: int) -> list[tuple[str, str, int, int]]:
    """(name in lower case, unfolded value, start, end) of each header field in data[start:end]."""
    fields: list[tuple[str, str, int, int]] = []
    pos = start
    while pos < end:
        line_end = data.find(b"\r\n", pos, end)
        line_end = end if line_end < 0 else line_end + 2
        if data[pos:pos + 1] in (b" ", b"\t") and fields:
            name, value, field_start, _ = fields[-1]
            fields[-1] = (name, value + " " + data[pos:line_end].decode("latin-1").strip(), field_start, line_end)
        else:
            match = _FIELD_NAME.match(data, pos, line_end)
            if match is not None:
                value = data[match.end():line_end].decode("latin-1").strip()
                fields.append((match.group(1).decode("ascii").lower(), value, pos, line_end))
        pos = line_end
    return fields


def _is_ascii_compatible(charset: str) -> bool:
    try:
        return _ASCII_PROBE.encode(charset) == _ASCII_PROBE.encode("ascii")
    except (LookupError, UnicodeError):
        return False


def _decode_body(body: bytes, encoding: str) -> bytes | None:
    if encoding in _IDENTITY:
        return body
    if encoding == "quoted-printable":
        return binascii.a2b_qp(body)
    if encoding == "base64":
        try:
            return base64.b64decode(body)  # non-alphabet characters (line breaks) are skipped
        except (binascii.Error, ValueError):
            return None
    return None


def text_parts(data: bytes) -> list[TextPart]:
    """The message's text bodies, in the order they appear."""
    found: list[TextPart] = []
    _walk(data, 0, len(data), "text/plain", found, 0, top=True)
    return found


def _walk(data: bytes, start: int, end: int, default_type: str, found: list[TextPart], depth: int, *,
          top: bool = False) -> None:
    if data.startswith(b"\r\n", start):
        header_end, body_start = start, start + 2  # no header fields at all
    else:
        blank = data.find(b"\r\n\r\n", start, end)
        if blank < 0:
            return  # headers only: no body to change
        header_end, body_start = blank + 2, blank + 4
    fields = _fields(data, start, header_end)
    values: dict[str, str] = {}
    encoding_field: tuple[int, int] | None = None
    for name, value, field_start, field_end in fields:
        if name not in values:
            values[name] = value
            if name == "content-transfer-encoding":
                encoding_field = (field_start, field_end)
    mime = not top or "mime-version" in values
    if not mime:
        # Not MIME (RFC 2045 §4): plain US-ASCII text. One with MIME fields all the same is left alone: readers
        # differ on whether to honour them, and rewriting it as text could break a structure they see.
        if any(name.startswith("content-") for name in values):
            return
        encoding_field = None
    header = Message()
    if "content-type" in values:
        header["Content-Type"] = values["content-type"]
    media_type = header.get_content_type() if "content-type" in values else default_type
    maintype, _, subtype = media_type.partition("/")
    if maintype == "multipart":
        boundary = header.get_param("boundary")
        if isinstance(boundary, str) and boundary and depth < _MAX_DEPTH:
            child_default = "message/rfc822" if subtype == "digest" else "text/plain"
            for part_start, part_end in _body_parts(data, body_start, end, boundary.encode("latin-1")):
                _walk(data, part_start, part_end, child_default, found, depth + 1)
        return
    if maintype != "text" or subtype not in ("plain", "html"):
        return
    if "content-disposition" in values:
        disposition = Message()
        disposition["Content-Disposition"] = values["content-disposition"]
        if disposition.get_content_disposition() == "attachment":
            return
    encoding = values.get("content-transfer-encoding", "7bit").strip().lower() or "7bit"
    charset = header.get_content_charset() or "us-ascii"
    if not _is_ascii_compatible(charset):
        return
    raw = _decode_body(data[body_start:end], encoding)
    if raw is None:
        return
    # surrogateescape: bytes the charset does not know come back unchanged when the text is encoded again.
    text = raw.decode(charset, "surrogateescape")
    found.append(TextPart(subtype, charset, encoding, start, header_end, body_start, end, text, encoding_field, mime))


def _body_parts(data: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """(start, end) of each body part of a multipart body in data[start:end] (RFC 2046 §5.1.1)."""
    delimiter = b"--" + boundary
    marks: list[tuple[int, int, bool]] = []  # (where the delimiter's CRLF starts, where its line ends, close)
    pos = start
    while True:
        if pos == start and data.startswith(delimiter, start):
            at, line_start = start, start
        else:
            found = data.find(b"\r\n" + delimiter, pos, end)
            if found < 0:
                break
            at, line_start = found, found + 2
        after = line_start + len(delimiter)
        close = data.startswith(b"--", after)
        line_end = data.find(b"\r\n", after, end)
        line_end = end if line_end < 0 else line_end + 2
        rest = data[after + (2 if close else 0):line_end].rstrip(b"\r\n")
        if rest.strip(b" \t"):
            pos = after  # a longer boundary that starts with this one: not a delimiter
            continue
        marks.append((at, line_end, close))
        if close:
            break
        if line_end >= end:
            break
        # From the delimiter line's own CRLF: it is also the CRLF of the next delimiter when a part is empty.
        pos = line_end - 2 if data.startswith(b"\r\n", line_end - 2) else line_end
    parts = []
    for (_, part_start, close), nxt in zip(marks, [*marks[1:], None], strict=True):
        if close:
            break
        part_end = nxt[0] if nxt is not None else end
        parts.append((part_start, max(part_start, part_end)))
    return parts


def _fits(body: bytes, encoding: str) -> bool:
    """Whether the new body can go as it is in the part's identity encoding (RFC 2045 §2.7-2.9)."""
    if encoding == "binary":
        return True
    if b"\0" in body or (encoding == "7bit" and not body.isascii()):
        return False
    return len(body) <= _MAX_LINE or max(map(len, body.split(b"\r\n"))) <= _MAX_LINE


def replace_parts(data: bytes, changes: Sequence[tuple[TextPart, str]]) -> bytes:
    """`data` with each part's text replaced, re-encoded as described in the module docstring."""
    out: list[bytes] = []
    pos = 0
    for part, text in sorted(changes, key=lambda change: change[0].header_start):
        body = text.encode(part.charset, "surrogateescape")
        if part.encoding in _IDENTITY and _fits(body, part.encoding):
            out += (data[pos:part.body_start], body)
        else:
            normalized = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            encoded = quoted_printable(normalized)
            if part.encoding == "quoted-printable":
                out += (data[pos:part.body_start], encoded)
            else:
                field = b"Content-Transfer-Encoding: quoted-printable\r\n"
                if not part.mime:
                    field = b"MIME-Version: 1.0\r\n" + field  # so that readers decode it
                if part.encoding_field is not None:
                    out += (data[pos:part.encoding_field[0]], field, data[part.encoding_field[1]:part.body_start])
                else:
                    out += (data[pos:part.header_end], field, data[part.header_end:part.body_start])
                out.append(encoded)
        pos = part.body_end
    out.append(data[pos:])
    return b"".join(out)
