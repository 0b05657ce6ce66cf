"""MIME message bytes: the RFC 5322 / RFC 2045-2049 wire form of one outgoing message."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from posthouse.server.domain.addresses import Address, has_line_break
from posthouse.server.domain.media_types import MediaType, parse_media_type
from posthouse.server.domain.tracking import PLACEHOLDER


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attached file; a `content_id` makes it an inline part the HTML refers to as `cid:…`.

    `content_type` is a media type with any parameters (`text/plain; charset="utf-8"`); they are
    written on the part's Content-Type, all but `name`, which always comes from `name`.
    """

    name: str
    content: bytes
    content_type: str
    content_id: str | None = None


@dataclass(frozen=True, slots=True)
class MessageContent:
    """Everything that goes into the message bytes; Bcc recipients are envelope-only, not here."""

    message_id: str
    date: datetime
    sender: Address
    to: Sequence[Address]
    cc: Sequence[Address] = ()
    reply_to: Sequence[Address] = ()
    subject: str = ""
    text_body: str | None = None
    html_body: str | None = None
    headers: Sequence[tuple[str, str]] = ()
    attachments: Sequence[Attachment] = ()


_CRLF = b"\r\n"

# RFC 5322 §2.1.1: a line MUST be ≤ 998 octets and SHOULD be ≤ 78. RFC 2047 §2 caps a line that
# carries encoded-words at 76, so every header is folded at 76 and no two cases need telling apart.
_FOLD_WIDTH = 76
_MAX_LINE = 998

# RFC 2047 §2: an encoded-word is at most 75 characters, `=?utf-8?q?` and `?=` included.
_EW_MAX = 75
_EW_OVERHEAD = len("=?utf-8?q?") + len("?=")
# The smallest word that still holds one character: a 4-octet character is 12 characters in Q.
_EW_MIN = _EW_OVERHEAD + 12

# RFC 2047 §5 (3): the characters a Q-encoded word may carry literally inside a phrase. This is the
# strictest of the three contexts, so one table serves Subject, custom headers and display names.
_Q_LITERAL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/"
_Q_TABLE = tuple(
    chr(b) if b in _Q_LITERAL else "_" if b == 0x20 else f"={b:02X}" for b in range(256)
)

# RFC 5322 §3.2.3: a display name made of atoms separated by single spaces can be written bare.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_ATOM_PHRASE = re.compile(rf"{_ATEXT}{{1,{_EW_MAX}}}(?: {_ATEXT}{{1,{_EW_MAX}}})*")

# RFC 5322 §3.6.8: a field name is printable ASCII other than ":".
_FIELD_NAME = re.compile(r"[!-9;-~]+")

# Header fields this module writes itself, and Bcc. A custom header with one of these names is
# skipped: a second From/Subject/Message-ID breaks RFC 5322 §3.6 (each occurs at most once), a
# second Content-Type would change how the body is read, and Bcc must never reach the recipients.
_OWNED_FIELDS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)

# RFC 2231 §7: attribute-char, i.e. a token character other than "*", "'" and "%".
_RFC2231_LITERAL = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$&+-.^_`|~"
)
# Characters of percent-encoded value per RFC 2231 §3 section, so `filename*12*=…;` fits in 76.
_RFC2231_SECTION = 56

# RFC 2045 §6.7 rule 5: encoded lines are at most 76 characters, the soft break "=" included.
_QP_WIDTH = 76
_PLACEHOLDER_MARK = b"phtrk"  # what every tracking placeholder starts with (domain/tracking.py)

# RFC 2045 §6.8: base64 lines of at most 76 characters; 57 input octets make exactly 76.
_B64_LINE = 76

_OPAQUE = MediaType("application", "octet-stream")


def build_message(content: MessageContent) -> bytes:
    """The message as bytes with CRLF line endings, ready for SMTP DATA (before dot-stuffing).

    Header order: From, To, Cc, Reply-To, Subject, Date, Message-ID, MIME-Version, the custom
    headers, then the Content-* fields of the top part. There is never a Bcc field.

    Raises ValueError for a line break (CR, LF or NUL) in a value that is written as is: an
    addr-spec, a display name, the Message-ID, a content type or Content-ID; for a custom
    field name that is not printable ASCII without ":"; and for an attachment content type that
    is not a media type (RFC 2045 §5.1). Text that can carry a line break safely (Subject,
    custom header values, file names) is encoded instead.
    """
    out: list[bytes] = [_address_field("From", (content.sender,))]
    if content.to:
        out.append(_address_field("To", content.to))
    if content.cc:
        out.append(_address_field("Cc", content.cc))
    if content.reply_to:
        out.append(_address_field("Reply-To", content.reply_to))
    out.append(_fold("Subject", _unstructured_words("Subject", content.subject, verbatim=False)))
    out.append(b"Date: " + format_datetime(content.date).encode() + _CRLF)
    out.append(_fold("Message-ID", [_raw(content.message_id)]))
    out.append(b"MIME-Version: 1.0\r\n")
    for name, value in content.headers:
        if not _FIELD_NAME.fullmatch(name):
            raise ValueError(f"invalid header field name: {name!r}")
        if name.lower() not in _OWNED_FIELDS:
            out.append(_fold(name, _unstructured_words(name, value, verbatim=True)))

    headers, body, is_multipart = _top_part(content)
    out.append(headers)
    out.append(_CRLF)
    out += body
    if is_multipart:
        out.append(_CRLF)
    # A single-part body is written exactly as given, without an added final CRLF, so the body the
    # recipient decodes is the body we were handed; RFC 5322 §3.5 allows a last line without CRLF
    # and the SMTP client adds one before the terminating "." (RFC 5321 §4.1.1.4).
    return b"".join(out)


# --- body structure -------------------------------------------------------------------------

# A part is its Content-* header lines and its body as chunks, so nesting never copies the body.
_Part = tuple[bytes, list[bytes]]


def _top_part(content: MessageContent) -> tuple[bytes, list[bytes], bool]:
    # Boundaries (RFC 2046 §5.1.1) are "=_", a level letter and 128 random bits. "=_" cannot occur
    # in quoted-printable ("=" is always followed by two hex digits or a line break, RFC 2045
    # §6.7) nor in base64 (no "=" before the end, no "_" at all, RFC 2045 §6.8); a 7bit part or a
    # header value could hold it only by guessing 128 bits drawn after the content was fixed, so
    # the parts are not searched for it. The letter keeps the boundaries of one message from being
    # prefixes of each other, which parsers that match delimiters by prefix need.
    token = secrets.token_hex(16).encode()
    if content.text_body is not None and content.html_body is not None:
        part = _multipart(
            b"alternative",
            b"=_a" + token,
            [_text_part(content.text_body, b"plain"), _text_part(content.html_body, b"html")],
        )
        is_multipart = True
    elif content.html_body is not None:
        part = _text_part(content.html_body, b"html")
        is_multipart = False
    else:
        # Text only, or neither body: callers refuse that, but an empty text/plain part is valid.
        part = _text_part(content.text_body or "", b"plain")
        is_multipart = False

    inline = [a for a in content.attachments if a.content_id is not None]
    regular = [a for a in content.attachments if a.content_id is None]
    if inline:
        # RFC 2387: the root (the body) comes first, the parts it refers to by Content-ID follow.
        part = _multipart(b"related", b"=_r" + token, [part, *map(_attachment_part, inline)])
        is_multipart = True
    if regular:
        part = _multipart(b"mixed", b"=_m" + token, [part, *map(_attachment_part, regular)])
        is_multipart = True
    return part[0], part[1], is_multipart


def _multipart(subtype: bytes, boundary: bytes, parts: list[_Part]) -> _Part:
    chunks: list[bytes] = []
    for headers, body in parts:
        chunks += (b"--", boundary, _CRLF, headers, _CRLF)
        chunks += body
        # RFC 2046 §5.1.1: the CRLF before "--boundary" belongs to the delimiter, not to the part.
        chunks.append(_CRLF)
    chunks += (b"--", boundary, b"--")
    # The boundary is quoted because "=" is a tspecial (RFC 2045 §5.1).
    headers = b"Content-Type: multipart/" + subtype + b';\r\n boundary="' + boundary + b'"\r\n'
    return headers, chunks


_TEXT_HEADERS = {
    (subtype, cte): b"Content-Type: text/%s; charset=utf-8\r\nContent-Transfer-Encoding: %s\r\n"
    % (subtype, cte)
    for subtype in (b"plain", b"html")
    for cte in (b"7bit", b"quoted-printable")
}


def _text_part(text: str, subtype: bytes) -> _Part:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    data = text.encode()
    # RFC 2045 §2.7: 7bit data is ASCII, has no NUL, and lines of at most 998 octets.
    if data.isascii() and b"\0" not in data and not _has_long_line(data):
        return _TEXT_HEADERS[subtype, b"7bit"], [data.replace(b"\n", _CRLF)]
    return _TEXT_HEADERS[subtype, b"quoted-printable"], [quoted_printable(data)]


def _has_long_line(data: bytes) -> bool:
    return len(data) > _MAX_LINE and max(map(len, data.split(b"\n"))) > _MAX_LINE


def quoted_printable(data: bytes) -> bytes:
    """RFC 2045 §6.7 encoding of LF-separated text, with CRLF line breaks.

    binascii.b2a_qp does the work in C: "=XX" for "=", controls and non-ASCII (rule 1), escaped
    whitespace at a line's end (rule 3), soft breaks (rule 5), and "=2E" for a line that is just
    "." (a guard for SMTP peers that do not dot-stuff). It is 10-20 times faster than a Python
    loop, but when it escapes a space or tab at the end of a line it can leave that line at 77
    characters (`"a" * 74 + " \n"`); such lines get one more soft break here.

    Tracking placeholders (`tracking.PLACEHOLDER`) are never cut by a soft break: the delivery worker
    finds them in these bytes and swaps in each recipient's token, so a placeholder must stay in one
    piece. Text with one is wrapped here instead of by b2a_qp.
    """
    if _PLACEHOLDER_MARK in data:
        return _quoted_printable_keeping_placeholders(data)
    lines = binascii.b2a_qp(data, istext=True).split(b"\n")
    if max(map(len, lines)) > _QP_WIDTH:
        lines = [piece for line in lines for piece in _soft_wrap(line)]
    return _CRLF.join(lines)


def _quoted_printable_keeping_placeholders(data: bytes) -> bytes:
    # b2a_qp's soft breaks are taken out ("=" is always escaped as "=3D" in its output, so "=" at a line's
    # end is a soft break) and the lines wrapped again around the placeholders.
    joined = binascii.b2a_qp(data, istext=True).replace(b"=\n", b"")
    out: list[bytes] = []
    for line in joined.split(b"\n"):
        if len(line) <= _QP_WIDTH:
            out.append(line)
            continue
        keep = [(m.start(), m.end()) for m in PLACEHOLDER.finditer(line)]
        # A piece that is just "." after a soft break gets the guard b2a_qp gives such whole lines.
        out += [b"=2E" if piece == b"." else piece for piece in _soft_wrap(line, keep)]
    return _CRLF.join(out)


def _soft_wrap(line: bytes, keep: Sequence[tuple[int, int]] = ()) -> list[bytes]:
    """An encoded line cut into pieces of at most 76 characters, the soft break "=" included, never
    inside one of the `keep` spans (each far shorter than a line)."""
    pieces: list[bytes] = []
    start = 0
    while len(line) - start > _QP_WIDTH:
        cut = start + _QP_WIDTH - 1
        # Never cut inside an "=XX" escape; every "=" before the line's end starts one.
        if line[cut - 1] == 0x3D:
            cut -= 1
        elif line[cut - 2] == 0x3D:
            cut -= 2
        for span_start, span_end in keep:
            if span_start < cut < span_end:
                cut = span_start  # the character before a placeholder ends an escape or is a literal
                break
        pieces.append(line[start:cut] + b"=")
        start = cut
    pieces.append(line[start:])
    return pieces


def _attachment_part(attachment: Attachment) -> _Part:
    # Raises ValueError (MediaTypeError) for a line break: written as is, it would end the field.
    media_type = parse_media_type(attachment.content_type)
    if media_type.is_composite:
        # A composite type may not be base64-encoded (RFC 2045 §6.4, RFC 2046 §5.2.1) and a
        # reader would parse the base64 text as a message or look for a boundary; the file goes
        # as opaque bytes instead, its name (".eml") still telling the reader what it is. Its
        # parameters (a boundary, a charset) mean nothing for opaque bytes and are dropped.
        media_type = _OPAQUE
    # The part's name is the attachment's Name; a `name` the client put in the type would be a
    # second, possibly different one (RFC 2045 §5.1 does not allow a parameter twice).
    type_words = media_type.without("name").words()
    name_params = _param_words("name", attachment.name)
    filename_params = _param_words("filename", attachment.name)
    if attachment.content_id is None:
        disposition = "attachment;"
        content_id = b""
    else:
        disposition = "inline;"
        content_id = _fold("Content-ID", ["<" + _raw(attachment.content_id) + ">"])
    headers = b"".join(
        (
            _fold("Content-Type", [*type_words[:-1], type_words[-1] + ";", *name_params]),
            _fold("Content-Disposition", [disposition, *filename_params]),
            content_id,
            b"Content-Transfer-Encoding: base64\r\n",
        )
    )
    encoded = base64.b64encode(attachment.content)
    lines = [encoded[i : i + _B64_LINE] for i in range(0, len(encoded), _B64_LINE)]
    return headers, [_CRLF.join(lines)]


def _param_words(attribute: str, value: str) -> list[str]:
    """`attribute="value"`, or the RFC 2231 form in sections when it is not short printable ASCII.

    The words come out with ";" after all but the last, ready to follow a `type;` word.
    """
    if value.isascii() and value.isprintable():
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        word = f'{attribute}="{escaped}"'
        if len(word) < _FOLD_WIDTH - 1:
            return [word]
    # RFC 2231 §4: utf-8'' then percent-encoded octets. Sections (§3) end on character boundaries
    # so that a parser decoding each section on its own still gets whole characters.
    sections: list[str] = []
    current = "utf-8''"
    for ch in value:
        encoded = ch if ch in _RFC2231_LITERAL else "".join(f"%{b:02X}" for b in ch.encode())
        if len(current) + len(encoded) > _RFC2231_SECTION:
            sections.append(current)
            current = ""
        current += encoded
    sections.append(current)
    if len(sections) == 1:
        return [f"{attribute}*={current}"]
    last = len(sections) - 1
    return [
        f"{attribute}*{i}*={section}" + (";" if i < last else "")
        for i, section in enumerate(sections)
    ]


# --- header fields --------------------------------------------------------------------------


def _fold(name: str, words: Sequence[str]) -> bytes:
    """`name: word word …` and CRLF, folded before a word that would pass column 76.

    Folding (RFC 5322 §2.2.3) only puts a CRLF before the space between two words, so unfolding
    gives back the value. A word wider than a line stays whole; callers keep words under 998.
    """
    out = [name, ":"]
    column = len(name) + 1
    for i, word in enumerate(words):
        width = len(word) if word.isascii() else len(word.encode())
        if i and column + 1 + width > _FOLD_WIDTH:
            out.append("\r\n")
            column = 0
        out.append(" ")
        out.append(word)
        column += 1 + width
    out.append("\r\n")
    return "".join(out).encode()


def _raw(value: str) -> str:
    """A value written as is; a line break in it would end the field early (header injection)."""
    if has_line_break(value):
        raise ValueError(f"line break in header value: {value!r}")
    return value


def _unstructured_words(name: str, value: str, *, verbatim: bool) -> list[str]:
    """The words of an unstructured field body (RFC 5322 §3.2.5): raw when that reads back exactly.

    Printable ASCII is written raw. For the Subject (`verbatim=False`) a value that unfolding would
    change (a leading or trailing space) or that a reader would decode (it contains "=?") is
    encoded instead. Custom headers (`verbatim=True`) may be structured (List-Unsubscribe,
    References), where an encoded-word would be wrong (RFC 2047 §5), so printable ASCII is
    passed through as given, bar the outer spaces that unfolding drops anyway. Anything else, and
    any value with a word too long for a 998-octet line, becomes RFC 2047 encoded-words.
    """
    first_budget = _FOLD_WIDTH - len(name) - 2
    if value.isascii() and value.isprintable():
        if verbatim:
            value = value.strip(" ")
        if not value:
            return []
        if verbatim or ("=?" not in value and value[0] != " " and value[-1] != " "):
            if len(value) <= first_budget:
                return [value]
            words = _split_words(value)
            if max(map(len, words)) <= _MAX_LINE - len(name) - 2:
                return words
    return _encoded_words(value, first_budget)


def _split_words(value: str) -> list[str]:
    """Words to fold between; a run of spaces stays attached to the word after it."""
    words: list[str] = []
    pending = ""
    for piece in value.split(" "):
        if piece:
            words.append(pending + piece)
            pending = ""
        else:
            pending += " "
    return words


def _encoded_words(text: str, first_budget: int) -> list[str]:
    """RFC 2047 encoded-words for all of `text` in UTF-8, Q or B encoded.

    Each word holds whole characters (RFC 2047 §5: a multi-octet character is never split), the
    first is at most `first_budget` characters and the rest at most 75 (RFC 2047 §2). All spaces
    are inside the words, since the whitespace between adjacent encoded-words is dropped (§6.2).
    """
    data = text.encode()
    escaped = len(data.translate(None, _Q_LITERAL + b" "))
    budget = max(first_budget, _EW_MIN)
    words: list[str] = []
    # Whichever is shorter: Q costs 3 characters per escaped octet and 1 per other, B 4 per 3.
    if len(data) + 2 * escaped <= (len(data) + 2) // 3 * 4:
        current: list[str] = []
        size = _EW_OVERHEAD
        for ch in text:
            encoded = "".join([_Q_TABLE[b] for b in ch.encode()])
            if size + len(encoded) > budget:
                words.append("=?utf-8?q?" + "".join(current) + "?=")
                current = []
                size = _EW_OVERHEAD
                budget = _EW_MAX
            current.append(encoded)
            size += len(encoded)
        words.append("=?utf-8?q?" + "".join(current) + "?=")
    else:
        limit = (budget - _EW_OVERHEAD) // 4 * 3
        chunk = b""
        for ch in text:
            octets = ch.encode()
            if len(chunk) + len(octets) > limit:
                words.append("=?utf-8?b?" + base64.b64encode(chunk).decode() + "?=")
                chunk = b""
                limit = (_EW_MAX - _EW_OVERHEAD) // 4 * 3
            chunk += octets
        words.append("=?utf-8?b?" + base64.b64encode(chunk).decode() + "?=")
    return words


def _address_field(name: str, addresses: Sequence[Address]) -> bytes:
    words: list[str] = []
    budget = _FOLD_WIDTH - len(name) - 2
    for address in addresses:
        if words:
            words[-1] += ","
        words += _mailbox_words(address, budget)
        budget = _EW_MAX
    return _fold(name, words)


def _mailbox_words(address: Address, first_budget: int) -> list[str]:
    """`name <addr>` as words (RFC 5322 §3.4); a non-ASCII addr-spec stays UTF-8 (RFC 6532 §3.2)."""
    email = _raw(address.email)
    name = address.name
    if not name:
        return [email]
    # A phrase has no line breaks even once decoded; readers refuse one (the stdlib raises).
    _raw(name)
    if name.isascii() and name.isprintable() and "=?" not in name:
        if _ATOM_PHRASE.fullmatch(name):
            words = name.split(" ")
        else:
            # RFC 5322 §3.2.4: a quoted-string, with "\" and '"' as quoted-pairs.
            quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
            words = [quoted] if len(quoted) <= _EW_MAX else _encoded_words(name, first_budget)
    else:
        words = _encoded_words(name, first_budget)
    words.append("<" + email + ">")
    return words
