"""Inbound mail as Postmark posts it (docs/postmark-api.md §10): a received message read into plain facts.

Pure: bytes in, a frozen `InboundContent` out, no I/O. The message is untrusted and `parse_inbound` is total:
broken MIME, unknown or lying charsets, bad base64 and absurd nesting degrade (replacement characters, an
opaque attachment), they never raise. What Postmark does, as its real posts show (captured payloads quoted by
django-anymail's tests and by applications that log them):

- `Headers` is every header of the message, in order, unfolded (the CRLF of a fold removed, the white space
  kept), except the ones given as fields of their own: From, To, Cc, Bcc, Subject, Date, Reply-To, and the
  MIME structure's Content-Type and Content-Transfer-Encoding. Values are kept as received (encoded words
  are not decoded there; `Subject` and the names are decoded).
- `To`/`Cc` are the addresses as `"Name" <email>` (or the bare address), joined by ", "; each `…Full` item is
  `{Email, Name, MailboxHash}` with "" for what is missing; the mailbox hash is the local part after `+`.
- `TextBody`/`HtmlBody` are the message's inline text and HTML parts, decoded, with "\\n" line ends; every
  other part is an attachment (a forwarded message whole, a winmail.dat as it is), with its decoded bytes.

The webhook payload and the API answers are built from these facts elsewhere (`webhooks/payloads.py`,
`services/inbound.py`); this module knows no JSON.
"""

from __future__ import annotations

import codecs
import contextlib
import email
import hashlib
import hmac
import mimetypes
import re
from dataclasses import dataclass
from email import policy
from email.errors import HeaderParseError, MessageError
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses
from enum import StrEnum

__all__ = [
    "Attachment",
    "InboundContent",
    "InboundStatus",
    "Mailbox",
    "format_addresses",
    "inbound_hash",
    "is_valid_rule",
    "mailbox_hash",
    "matching_rule",
    "parse_inbound",
    "server_of_hash",
    "status_after_post",
    "strip_reply",
]

# Parts nested deeper than this are not opened: what is inside stays one opaque attachment.
MAX_DEPTH = 20
# Leaves looked at, at most; past this the rest of the message is one opaque attachment, so a message made of
# millions of empty parts costs what its size costs and no more.
MAX_PARTS = 2000
# Headers given as fields of their own, or describing the MIME structure the JSON flattens, are left out of
# `Headers` (as Postmark leaves them out).
_FIELD_HEADERS = frozenset({"from", "to", "cc", "bcc", "subject", "date", "reply-to", "content-type",
                            "content-transfer-encoding"})
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_LINE_ENDS = re.compile(r"\r\n?")
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f]")
_HASH_LENGTH = 24  # hex digits of MAC in an inbound hash; the server id follows in hex


class InboundStatus(StrEnum):
    """Postmark's inbound message statuses (its support article "Inbound message statuses")."""

    QUEUED = "queued"  # stored, its post not tried yet
    SCHEDULED = "scheduled"  # the hook answered something other than 200; retried on the schedule
    PROCESSED = "processed"  # posted (200), or nothing to post to (no InboundHookUrl)
    BLOCKED = "blocked"  # an inbound rule or the spam threshold held it, or the hook answered 403
    FAILED = "failed"  # every retry failed, or the hook went away before it succeeded

    @property
    def shown(self) -> str:
        """As the API shows it: "Processed", "Blocked", ..."""
        return self.value.capitalize()


def status_after_post(post_state: str) -> InboundStatus:
    """The message's status once its webhook post is in `post_state` (store/webhooks.py's post states)."""
    return {
        "delivered": InboundStatus.PROCESSED,
        "stopped": InboundStatus.BLOCKED,  # Postmark: a 403 from the hook stops the retries and blocks it
        "pending": InboundStatus.SCHEDULED,
        "sending": InboundStatus.SCHEDULED,
    }.get(post_state, InboundStatus.FAILED)  # failed, refused (the URL is no longer allowed), cancelled


# --- Facts ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One address of an address header; `name` is "" when the header gives none."""

    email: str
    name: str

    @property
    def mailbox_hash(self) -> str:
        return mailbox_hash(self.email)


@dataclass(frozen=True, slots=True)
class Attachment:
    name: str
    content_type: str
    content: bytes
    content_id: str  # without angle brackets; "" when the part has none


@dataclass(frozen=True, slots=True)
class InboundContent:
    """A received message, read. Strings are never None: "" stands for absent, as in Postmark's JSON."""

    sender: Mailbox  # From ("" address when there is none)
    to: tuple[Mailbox, ...]
    cc: tuple[Mailbox, ...]
    bcc: tuple[Mailbox, ...]  # a Bcc header, rare in received mail
    reply_to: str  # the Reply-To addresses, formatted like `To`
    subject: str
    date: str  # the sender's Date header, unfolded, as written
    tag: str  # X-PM-Tag, for mail a Postmark-style sender tagged
    text_body: str
    html_body: str
    stripped_text_reply: str
    headers: tuple[tuple[str, str], ...]
    attachments: tuple[Attachment, ...]

    @property
    def attachments_size(self) -> int:
        """Decoded bytes of all attachments (Postmark refuses more than 35 MB)."""
        return sum(len(a.content) for a in self.attachments)


# --- Addresses -----------------------------------------------------------------------------------------


def mailbox_hash(address: str) -> str:
    """Postmark's MailboxHash: the local part after the first `+` ("user+12345@x" → "12345"), else ""."""
    local = address.rpartition("@")[0] if "@" in address else address
    return local.partition("+")[2]


def format_addresses(mailboxes: tuple[Mailbox, ...] | list[Mailbox]) -> str:
    """`"Name" <email>, email` as Postmark writes `To` and `Cc`."""
    parts = []
    for box in mailboxes:
        if box.name:
            name = box.name.replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'"{name}" <{box.email}>')
        else:
            parts.append(box.email)
    return ", ".join(parts)


def inbound_hash(server_id: int, key: bytes) -> str:
    """A server's InboundHash, `<InboundHash>@<inbound domain>` being its inbound address: a MAC of its id under
    the installation's key, then the id in hex. Mail to a made-up hash is refused (`server_of_hash`), and the
    hash of one server tells nothing about another's (an inbound address is as good as a password for posting
    mail into the application)."""
    mac = hmac.new(key, f"inbound:{server_id}".encode(), hashlib.sha256).hexdigest()[:_HASH_LENGTH]
    return f"{mac}{server_id:08x}"


def server_of_hash(value: str, key: bytes) -> int | None:
    """The server whose InboundHash `value` is (any case), or None when it is nobody's."""
    value = value.lower()
    if len(value) < _HASH_LENGTH + 8 or len(value) > _HASH_LENGTH + 16 or not re.fullmatch(r"[0-9a-f]+", value):
        return None
    server_id = int(value[_HASH_LENGTH:], 16)
    return server_id if hmac.compare_digest(inbound_hash(server_id, key), value) else None


# --- Inbound rules (docs/postmark-api.md §8.5) ---------------------------------------------------------

_DOMAIN = re.compile(r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}")
_LOCAL = re.compile(r"[^\s@<>()\[\]\\,;:\"]{1,64}")


def is_valid_rule(rule: str) -> bool:
    """A rule blocks one address (`someone@example.com`) or one domain (`example.com`)."""
    rule = rule.strip().lower()
    local, at, domain = rule.rpartition("@")
    if at:
        return bool(_LOCAL.fullmatch(local)) and bool(_DOMAIN.fullmatch(domain))
    return bool(_DOMAIN.fullmatch(rule))


def matching_rule(rules: list[str] | tuple[str, ...], senders: tuple[str, ...]) -> str | None:
    """The first rule that blocks one of `senders` (the envelope sender and the From address): the same address,
    or an address at that domain; matched without regard to case."""
    addresses = [s.strip().lower() for s in senders if s and "@" in s]
    domains = {a.rpartition("@")[2].rstrip(".") for a in addresses}
    for rule in rules:
        wanted = rule.strip().lower()
        if ("@" in wanted and wanted in addresses) or ("@" not in wanted and wanted in domains):
            return rule
    return None


# --- Reply stripping ---------------------------------------------------------------------------------------

# Where a reply's quote starts: the attribution line mail clients write above it, in the languages they ship,
# an Outlook separator, or an Outlook-style header block. The text above is what the sender wrote.
_ATTRIBUTION = re.compile(
    r"^[ \t]*(?:On|Le|Am|El|Il|Op|Em|W dniu|Den|På|Dne)\b.{0,300}?"
    r"(?:wrote|a écrit|schrieb|escribió|ha scritto|scrisse|schreef|escreveu|napisał|skrev|kirjoitti|napsal)"
    r"[^\n]{0,80}:[ \t]*$",
    re.IGNORECASE | re.MULTILINE | re.DOTALL)
_SEPARATOR = re.compile(r"^[ \t]*-{2,}[ \t]*(?:Original Message|Ursprüngliche Nachricht|Message d'origine|"
                        r"Mensaje original|Forwarded message)[ \t]*-{2,}[ \t]*$", re.IGNORECASE | re.MULTILINE)
_HEADER_BLOCK = re.compile(r"^[ \t]*(?:_{5,}[ \t]*\n)?[ \t]*\*?From:\*?[ \t].{1,300}\n(?:.*\n){0,2}?"
                           r"[ \t]*\*?(?:Sent|Date):\*?[ \t]", re.IGNORECASE | re.MULTILINE)
_MAX_REPLY_SCAN = 200_000  # characters of a text body searched for the quote
_LINE_ENDING_COLON = re.compile(r":[ \t]*$", re.MULTILINE)  # an attribution line's end (a literal first: fast)


def _quote_patterns(text: str) -> list[re.Pattern[str]]:
    """The patterns that can match `text`: searching for a pattern tries it at every character, so one whose
    literal parts are certainly absent is not searched at all. The separator needs "--"; the attribution a line
    ending in ":"; the header block "From:" (in ASCII text, where IGNORECASE is plain ASCII case; any other text
    is searched)."""
    patterns = [_SEPARATOR] if "--" in text else []
    if ":" not in text:
        return patterns
    if _LINE_ENDING_COLON.search(text):
        patterns.insert(0, _ATTRIBUTION)
    if not text.isascii() or "from:" in text.lower():
        patterns.append(_HEADER_BLOCK)
    return patterns


def strip_reply(text: str) -> str:
    """The new text of a reply: what stands above the quoted message, without trailing blank lines; "" when no
    quote is found (a message that is not a reply), as Postmark's StrippedTextReply."""
    scanned = text[:_MAX_REPLY_SCAN]
    starts = [m.start() for pattern in _quote_patterns(scanned) if (m := pattern.search(scanned)) is not None]
    quoted = 0 if scanned.startswith(">") else scanned.find("\n>") + 1 or None  # the first line starting ">"
    if quoted is not None and re.fullmatch(r"(?:[ \t]*\n|>[^\n]*\n?)*", scanned[quoted:]):
        starts.append(quoted)  # only a quote that runs to the end: "> " inside a text is not one
    if not starts:
        return ""
    return scanned[:min(starts)].rstrip()


# --- Parsing -------------------------------------------------------------------------------------------


def parse_inbound(raw: bytes) -> InboundContent:
    """Read a received message (its bytes as stored: our trace headers, then what the client sent)."""
    message = email.message_from_bytes(raw, policy=policy.compat32)  # compat32 never raises on header access
    headers: list[tuple[str, str]] = []
    found: dict[str, str] = {}
    for name, value in message.raw_items():
        text = _unfold(_eight_bit(value))
        key = name.lower()
        if key in _FIELD_HEADERS:
            found.setdefault(key, text)
        else:
            headers.append((_clean(name), _clean(text)))
    reader = _Reader()
    reader.walk(message, 0, top=True)
    text_body = _clean("\n".join(reader.texts))
    senders = _mailboxes(found.get("from", ""), keep_nameless=True)
    return InboundContent(
        sender=senders[0] if senders else Mailbox("", ""),
        to=_mailboxes(found.get("to", "")),
        cc=_mailboxes(found.get("cc", "")),
        bcc=_mailboxes(found.get("bcc", "")),
        reply_to=format_addresses(_mailboxes(found.get("reply-to", ""))),
        subject=_clean(_decode_words(found.get("subject", "")).strip()),
        date=_clean(found.get("date", "").strip()),
        tag=_clean(_decode_words(next((v for k, v in headers if k.lower() == "x-pm-tag"), "")).strip()),
        text_body=text_body,
        html_body=_clean("".join(reader.htmls)),
        stripped_text_reply=strip_reply(text_body),
        headers=tuple(headers),
        attachments=tuple(reader.attachments),
    )


class _Reader:
    """Walks the MIME tree once: inline text and HTML parts become the bodies, every other leaf an attachment."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.htmls: list[str] = []
        self.attachments: list[Attachment] = []
        self.parts = 0

    def walk(self, part: Message, depth: int, *, top: bool = False) -> None:
        self.parts += 1
        content_type = _content_type(part)
        if self.parts > MAX_PARTS or depth > MAX_DEPTH:
            self.attachments.append(_attachment(part, content_type, opaque=True))
            return
        if content_type in ("message/rfc822", "message/global") and not top:
            # A forwarded message, whole. Before the multipart branch: the parser gives such a part its inner
            # message as a one-item list, so `is_multipart()` is true of it and its text would join the body.
            self.attachments.append(_attachment(part, content_type))
            return
        if part.is_multipart():
            payload = part.get_payload()
            if isinstance(payload, list):
                for child in payload:
                    if isinstance(child, Message):
                        self.walk(child, depth + 1)
                return
        disposition = _disposition(part)
        named = bool(_param_filename(part))
        if content_type in ("text/plain", "text/html") and disposition != "attachment" and not named:
            text = _LINE_ENDS.sub("\n", _part_text(part))
            (self.texts if content_type == "text/plain" else self.htmls).append(text)
            return
        if content_type.startswith("multipart/"):
            # A multipart whose body could not be split (no boundary, or a broken one) is read as text.
            self.texts.append(_LINE_ENDS.sub("\n", _part_text(part)))
            return
        self.attachments.append(_attachment(part, content_type))


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except (ValueError, IndexError, HeaderParseError):
        return "application/octet-stream"


def _disposition(part: Message) -> str:
    with contextlib.suppress(ValueError, IndexError, HeaderParseError):
        return (part.get_content_disposition() or "").lower()
    return ""


def _param_filename(part: Message) -> str:
    """The part's file name (Content-Disposition's filename, else Content-Type's name; RFC 2231 and encoded
    words read), without any folder: a name like `../../x` would name a place to a receiver that saves it."""
    name: str | None = None
    with contextlib.suppress(ValueError, IndexError, HeaderParseError, LookupError, UnicodeError):
        name = part.get_filename() or None
        if name is None:
            value = part.get_param("name")
            if isinstance(value, tuple):
                name = email.utils.collapse_rfc2231_value(value)
            elif isinstance(value, str):
                name = value
    if not name:
        return ""
    name = _decode_words(_eight_bit(name))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    return _clean(_UNSAFE_NAME.sub("", name)).strip()[:255]


def _attachment(part: Message, content_type: str, *, opaque: bool = False) -> Attachment:
    name = _param_filename(part)
    if content_type in ("message/rfc822", "message/global") or opaque:
        content = _message_bytes(part, opaque=opaque)
    else:
        content = _payload_bytes(part)
    if not name:
        extension = ".eml" if content_type.startswith("message/") else mimetypes.guess_extension(content_type) or ""
        name = f"attachment{extension}"
    content_id = _clean(_unfold(_eight_bit(str(part.get("Content-ID", "") or "")))).strip().strip("<>").strip()
    return Attachment(name=name, content_type=content_type, content=content, content_id=content_id)


def _payload_bytes(part: Message) -> bytes:
    """The part's decoded bytes (base64 and quoted-printable undone; what cannot be decoded is kept as sent)."""
    try:
        payload = part.get_payload(decode=True)
    except (ValueError, LookupError, UnicodeError, AssertionError):
        payload = None
    if isinstance(payload, bytes):
        return payload
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw.encode("ascii", "surrogateescape")
    return _message_bytes(part, opaque=True)


def _message_bytes(part: Message, *, opaque: bool) -> bytes:
    """A message/rfc822 part's inner message (or, `opaque`, the part itself) as bytes."""
    target: Message = part
    if not opaque:
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            target = inner[0]
        elif isinstance(inner, str):
            return inner.encode("ascii", "surrogateescape")
    try:
        return target.as_bytes(policy=policy.compat32.clone(linesep="\r\n"))
    except (ValueError, LookupError, UnicodeError, MessageError, TypeError):
        return target.as_string().encode("utf-8", "replace")


def _part_text(part: Message) -> str:
    """A text part's content, decoded with its charset; unknown or lying charsets degrade, never fail."""
    data = _payload_bytes(part)
    charset = ""
    with contextlib.suppress(ValueError, IndexError, HeaderParseError, LookupError):
        charset = (part.get_content_charset() or "").strip().lower()
    return _bytes_text(data, charset)


def _bytes_text(data: bytes, charset: str) -> str:
    if charset in ("", "us-ascii", "ascii", "unknown-8bit", "x-unknown", "unknown"):
        charset = ""  # undeclared: UTF-8 if it reads as UTF-8, else Windows-1252 (what such mail mostly is)
    if charset:
        try:
            codecs.lookup(charset)
        except LookupError:
            charset = ""
    if charset:
        try:
            return data.decode(charset, errors="replace")
        except (LookupError, ValueError, TypeError):  # codecs like utf-7 can still refuse a sequence
            charset = ""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _eight_bit(value: str) -> str:
    """Header text as compat32 gives it (raw 8-bit bytes as surrogate escapes) → text: UTF-8 when it reads as
    UTF-8 (RFC 6532), else Windows-1252."""
    if value.isascii():
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _unfold(value: str) -> str:
    """RFC 5322 §2.2.3: unfolding removes the CRLF of each fold and keeps the white space after it."""
    return _FOLD.sub("", value).rstrip("\r\n")


def _decode_words(text: str) -> str:
    """RFC 2047 encoded words decoded; an unknown charset or a broken word leaves the text as written."""
    if "=?" not in text:
        return text
    try:
        return str(make_header(decode_header(text)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        pass
    try:
        chunks = decode_header(text)
    except (HeaderParseError, ValueError):
        return text
    out = []
    for chunk, charset in chunks:
        out.append(chunk if isinstance(chunk, str) else _bytes_text(chunk, (charset or "").lower()))
    return " ".join(part.strip() for part in out)


def _mailboxes(value: str, *, keep_nameless: bool = False) -> tuple[Mailbox, ...]:
    """The addresses of an address header; `keep_nameless` keeps a display name whose address is empty
    (`From: "Mail System" <>`, as bounces write it)."""
    if not value.strip():
        return ()
    try:
        pairs = getaddresses([value])
    except (ValueError, IndexError, TypeError):
        return ()
    boxes = []
    for name, address in pairs:
        address = _clean(address.strip())
        decoded = _clean(_decode_words(name).strip())
        if address or (keep_nameless and decoded):
            boxes.append(Mailbox(email=address, name=decoded))
    return tuple(boxes)


def _clean(text: str) -> str:
    """Lone surrogates (from a utf-7 body or a surrogate escape) cannot go into JSON or a database: U+FFFD."""
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
