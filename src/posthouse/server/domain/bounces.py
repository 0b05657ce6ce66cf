"""Reading inbound bounce messages (RFC 3464 DSNs, RFC 5965 complaints, auto replies, MTA prose) into typed reports."""

from __future__ import annotations

import codecs
import contextlib
import email
import html
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.errors import HeaderParseError
from email.header import Header, decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr
from enum import StrEnum
from typing import Any

from posthouse.server.domain.replies import bounce_type_for
from posthouse.server.domain.statuses import BounceType

_log = logging.getLogger(__name__)


class ReportKind(StrEnum):
    DSN = "dsn"  # RFC 3464 multipart/report; report-type=delivery-status
    NON_STANDARD = "non_standard"  # a bounce recognised by heuristics (Postfix/qmail/Exim/Yahoo/MS... text)
    FEEDBACK = "feedback"  # RFC 5965 ARF, multipart/report; report-type=feedback-report -> spam complaint
    AUTO_REPLY = "auto_reply"  # vacation/out-of-office (RFC 3834 Auto-Submitted: auto-replied, X-Autoreply, subjects)
    UNRECOGNISED = "unrecognised"  # not a bounce we can read


@dataclass(frozen=True, slots=True)
class BouncedRecipient:
    recipient: str  # the failed address, lower-cased domain, without angle brackets/"rfc822;"
    action: str | None  # RFC 3464 Action: failed / delayed / ... (None when unknown)
    status: str | None  # enhanced status code "5.1.1" when known
    diagnostic: str  # Diagnostic-Code text or the bounce's explanatory line(s), whitespace-collapsed, <= 1000 chars
    remote_mta: str | None
    bounce_type: BounceType


@dataclass(frozen=True, slots=True)
class BounceReport:
    kind: ReportKind
    recipients: tuple[BouncedRecipient, ...]
    description: str  # one human line, like Postmark's bounce "Description"
    original_message_id: str | None  # Message-ID of the returned original, if included
    original_headers: dict[str, str]  # selected headers of the returned original when present
    feedback_type: str | None  # ARF Feedback-Type (abuse, fraud, ...) for FEEDBACK


# Postmark's one-line description of each bounce type (its bounce API's `Description`).
_DESCRIPTION: dict[BounceType, str] = {
    BounceType.HARD_BOUNCE: "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
    BounceType.TRANSIENT: (
        "The server could not temporarily deliver your message (ex: Message is delayed due to network troubles)."
    ),
    BounceType.UNSUBSCRIBE: "Unsubscribe or Remove request.",
    BounceType.SUBSCRIBE: "Subscribe request from someone wanting to get added to the mailing list.",
    BounceType.AUTO_RESPONDER: 'Automatic email responder (ex: "Out of Office" or "On Vacation").',
    BounceType.ADDRESS_CHANGE: "The recipient has requested an address change.",
    BounceType.DNS_ERROR: "A temporary DNS error.",
    BounceType.SPAM_NOTIFICATION: (
        "The message was delivered, but was either blocked by the user, or classified as spam, bulk mail, or had "
        "rejected content."
    ),
    BounceType.OPEN_RELAY_TEST: "The NDR is actually a test email message to see if the mail server is an open relay.",
    BounceType.UNKNOWN: "Unable to classify the NDR.",
    BounceType.SOFT_BOUNCE: (
        "Unable to temporarily deliver message (i.e. mailbox full, account disabled, exceeds quota, out of disk space)."
    ),
    BounceType.VIRUS_NOTIFICATION: (
        "The bounce is actually a virus notification warning about a virus/code infected message."
    ),
    BounceType.CHALLENGE_VERIFICATION: "The bounce is a challenge asking for verification you actually sent the email.",
    BounceType.BAD_EMAIL_ADDRESS: "The address is not a valid email address.",
    BounceType.SPAM_COMPLAINT: "The subscriber explicitly marked this message as spam.",
    BounceType.MANUALLY_DEACTIVATED: "The email was manually deactivated.",
    BounceType.UNCONFIRMED: "The subscriber has not clicked on the confirmation link upon registration or import.",
    BounceType.BLOCKED: "Blocked from this ISP due to content or blacklisting.",
    BounceType.SMTP_API_ERROR: "An error occurred while accepting an email through the SMTP API.",
    BounceType.INBOUND_ERROR: "Unable to deliver inbound message to destination inbound hook.",
    BounceType.DMARC_POLICY: "Email rejected due DMARC Policy.",
    BounceType.TEMPLATE_RENDERING_FAILED: "An error occurred while attempting to render your template.",
}


def _unrecognised() -> BounceReport:
    # A fresh report each time: original_headers is a dict a caller may change.
    return BounceReport(ReportKind.UNRECOGNISED, (), "Not a bounce report that could be read.", None, {}, None)


_MAX_DIAGNOSTIC = 1000
_MAX_TEXT = 100_000  # characters of one text part that are read; bounce prose sits at the top
_MAX_LINE = 1000  # characters of one line that the line patterns look at (keeps every regex linear)
_MAX_DEPTH = 12  # MIME nesting that is followed; a returned bounce inside a bounce is two or three levels
_ORIGINAL_HEADERS = ("X-PM-Message-Id", "Message-ID", "Subject", "From", "To", "X-PM-Tag")
_ROLE_LOCAL_PARTS = frozenset({"postmaster", "mailer-daemon", "mailer_daemon", "mail-daemon"})

# Report parts (RFC 3464 §2, RFC 6533 §6 for the internationalised variant, RFC 5965 §3) and returned originals.
_DSN_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_FEEDBACK_TYPES = frozenset({"message/feedback-report"})
_ORIGINAL_TYPES = frozenset({"message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers"})
_OPAQUE_TYPES = _DSN_TYPES | _FEEDBACK_TYPES | {"message/disposition-notification"}

_ADDRESS = (
    r"[A-Za-z0-9!#$%&*+/=?^_{|}~.-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)
_ADDRESS_RE = re.compile(_ADDRESS)
_LOOSE_ADDRESS = re.compile(r"[^@\s<>;,\"']+@[^@\s<>;,\"']+")  # DSN fields name addresses; dotless domains too
_ADDRESS_PREFIX = re.compile(r"\b(?:smtp|rfc822)\s*[:=;]\s*(?=[^\s@]+@)", re.I)  # "[SMTP:a@b]", "dda:SMTP=a@b"

# RFC 3463 §2: class.subject.detail; 2.x.x is success and never a bounce.
_ENHANCED = re.compile(r"(?<![\d.])([45]\.\d{1,3}\.\d{1,3})(?!\.?\d)")
# A basic reply code (RFC 5321 §4.2), not the digits of an IP address, a phone number or a date.
_CODE = re.compile(r"(?<![\w.(-])([45]\d\d)(?!\w|\.\d|-\d{3}-|\))")
_DIAGNOSTIC_TYPE = re.compile(r"^\s*[A-Za-z][\w-]*\s*;\s*")  # RFC 3464 §2.3.6 "smtp; 550 ..."
_REMOTE_HOST = re.compile(r"\bhost\s+\[?([A-Za-z0-9][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)+)")
_SPACE = re.compile(r"\s+")

# Lines that start the returned original; everything after them is the sender's own message.
_CUT_PHRASE = re.compile(
    r"original (?:message|mail)|returned (?:message|mail)|unsent message|undelivered message|copy of|header of"
    r"|headers? follows?|message header|message text|message reads|lines of|mensaje original|forwarded message"
    r"|source mail|message details",
    re.I,
)
_CUT_SHAPE = re.compile(
    r"^\s*[-=*_|#~\[]{2,}|\b(?:follows?|following|below|attached)\b\W*$|:\s*$"
    r"|below (?:this|the next) line",
    re.I,
)
# Lines that announce a list of failed addresses.
_INTRO = re.compile(
    r"following (?:recipient|address|user|destination|e-?mail address)|failed recipients?|failed addresses"
    r"|address(?:es|\(es\))? failed|did not receive|could not be reached|not reach the following"
    r"|delivery to the following|these recipients|address to which the message"
    r"|not (?:yet )?(?:been )?(?:be )?delivered to(?: the following)?\s*:?\s*$|(?:message|mail) to\s*:?\s*$"
    r"|addressed to (?:e-?mail )?address\s*:?\s*$|to this address\s*$|the following\s*:?\s*$"
    r"|undeliverable to\s*:?\s*$",
    re.I,
)
_HEADER_LIKE = re.compile(
    r"^\s*(?:[*>]\s*)?(?:to|from|cc|bcc|subject|date|sent|message-id|return-path|received"
    r"|reply-to|sender|in-reply-to|references)\s*:",
    re.I,
)
_STOP = re.compile(r"\b(?:contact|contacting|reply to|replies to|assistance|questions)\b|send mail to", re.I)
_DECORATION = re.compile(r"^\s*[-=*_|#~<>]{3,}")
# "<a@b>: reason", "a@b:", "* [a@b]: 550 ...", "a@b ... unknown host", "a@b - no such user", "a@b on <date>".
_LEADING = re.compile(
    r"^\s*(?:[-*>•]+\s*)?[<\[\"'(]?\s*(" + _ADDRESS + r")\s*[>\]\"')]?"
    r"(?:\s*(?::|\.\.\.)|\s+-\s|\s*\(|\s*;|\s+on\s|\s{2,}|\s*$)(.*)$"
)
_LABELLED = re.compile(
    r"^\s*(?:[-*>]+\s*)?([A-Za-z][A-Za-z0-9'()/ _-]{0,60}?)\s*:\s*[<\[\"'(]*\s*(" + _ADDRESS + r")[>\]\"')]*(.*)$"
)
_LABEL_WORDS = re.compile(
    r"recipient|address|user|mailbox|deliver|error|reach|account|failed|full|unknown|invalid", re.I
)
_LABEL_REASON = re.compile(r"unknown|invalid|full|failed|error|quota|not\b|attempts", re.I)
_INLINE = (
    re.compile(
        r"(?:\bdeliver\w*|\bmessage|\bmail|\baddressed|\bundeliverable|\bsent)\b[^.\n]{0,40}?\bto:?\s*"
        r"[<'\"\[(]?\s*(" + _ADDRESS + r")[>'\"\])]?(.*)$",
        re.I,
    ),
    re.compile(r"\baddressed,\s*(" + _ADDRESS + r")(.*)$", re.I),
    re.compile(r"\bmailbox\s+<?(" + _ADDRESS + r")>?(\s+(?:is|was|does|has)\b.*)$", re.I),
)
_ALIAS = re.compile(r"\((?:expanded|generated) from:?\s*<?(" + _ADDRESS + r")>?", re.I)
_TRANSCRIPT_RCPT = re.compile(r"\bRCPT TO:\s*<?(" + _ADDRESS + r")", re.I)
_REPLY_LINE = re.compile(r"^\s*(?:[\w >]{0,40}?(?:said|replied|returned|response|>>>)\s*:?\s*)?[\"']?[45]\d\d\b")

# A notification that the message is still queued rather than returned (Postfix "THIS IS A WARNING ONLY",
# Exim "has not yet been delivered", Exchange "Delivery Status Notification (Delay)").
_DELAYED = re.compile(
    r"warning(?: message)? only|just a warning|advisory[- ]only|\bdelayed\b|not yet been delivered|has not yet been"
    r"|will (?:continue|be retried|retry)|still being retried|postponed|delivery attempts will continue"
    r"|no action is required",
    re.I,
)
_FINAL = re.compile(r"permanent|given up|giving up|gave up|not going to try again|will not be retried", re.I)
_CHALLENGE = re.compile(
    r"verify (?:that )?you are (?:a )?(?:human|real person|not a robot)|challenge[- ]response|\bchallenge\b"
    r"|spam ?arrest|mailfrontier|\bboxbe\b|(?:confirm|verify) (?:that )?you (?:sent|are)|sender verification",
    re.I,
)
_VIRUS = re.compile(
    r"\bvirus(?:es)? (?:was |were |has been |have been )?(?:found|detected)|(?:contains?|containing|infected with)"
    r" (?:a |the )?(?:virus|malware|worm|trojan)|virus alert|malware (?:was )?detected"
    r"|infected (?:attachment|message|file)",
    re.I,
)

# Bounce wording that `replies.bounce_type_for` (written for live SMTP replies) does not know, checked first for
# generic or absent enhanced codes. Order matters: a DNS failure also says "not found".
_REPORT_TEXT_RULES: tuple[tuple[re.Pattern[str], BounceType], ...] = (
    (
        re.compile(
            r"host not found|unknown host|name service error|nameserver error|no such domain"
            r"|domain (?:name )?(?:does not exist|not found)|unknown domain|could not find a gateway"
            r"|unrout(?:e)?able (?:mail )?domain|no mx (?:record|host)|dns (?:error|failure|lookup)",
            re.I,
        ),
        BounceType.DNS_ERROR,
    ),
    (
        re.compile(
            r"(?:mail ?box|mail ?folder|inbox|folder)(?:'s)? (?:is )?(?:full|over ?quota)|disk quota"
            r"|too much mail|space not enough|over ?quota|(?:account|mailbox) (?:has been |is )?(?:disabled"
            r"|suspended|inactive|deactivated|discontinued|locked)",
            re.I,
        ),
        BounceType.SOFT_BOUNCE,
    ),
    # RFC 3463 §3.4 x.3.4 "message too big for system".
    (
        re.compile(
            r"message (?:is )?too (?:large|big)|exceed\w* (?:the )?(?:maximum )?(?:\w+ )?(?:message )?size"
            r"|message size exceeds|size limit",
            re.I,
        ),
        BounceType.SOFT_BOUNCE,
    ),
    (
        re.compile(
            r"user not known|(?:addressee|recipient|user|mailbox) (?:is )?unknown|not listed in"
            r"|(?:does not|doesn't) have an? [\w. -]{0,40}?(?:account|mailbox|delivery point)|no longer valid"
            r"|invalid\b[\w ]{0,30}?\b(?:user ?id|user|mailbox|recipient|account)\b|name is not recognized"
            r"|did not (?:exactly )?match|no such (?:user|mailbox|recipient|account|address)|no mailbox here"
            r"|n'existe pas|existiert nicht|no existe",
            re.I,
        ),
        BounceType.HARD_BOUNCE,
    ),
    # The sending MTA gave up on a condition that is temporary by nature (RFC 3463 §3.1: class 4 persisting).
    (
        re.compile(
            r"timed? ?out|not (?:be )?reachable|unreachable|not responding|did not respond"
            r"|(?:server|host) (?:is )?(?:busy|unavailable)|unavailable or busy"
            r"|connection (?:refused|failed|timed out|lost)|(?:could not|couldn't|can't|cannot|unable to"
            r"|wasn't able to) (?:establish an? (?:smtp )?connection|connect)|maximum delivery attempts"
            r"|\b\d+ (?:delivery )?attempts?\b|attempt\(s\)|too long in (?:the )?queue|queue too long|expired",
            re.I,
        ),
        BounceType.SOFT_BOUNCE,
    ),
)

# Evidence that a message is a delivery report at all (RFC 5321 §4.5.5: reports are sent from the null path).
_BOUNCE_SENDER = re.compile(
    r"mailer[-_ ]?daemon|postmaster|mail delivery|delivery (?:sub)?system|mdaemon"
    r"|system administrator|mail administrator|delivery service",
    re.I,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|deliver(?:y|ed)? (?:status|failure|report|notification|problem|has failed|failed|warning)"
    r"|returned mail|failure notice|not (?:been )?delivered|failed mail|mail error|processing error|delayed"
    r"|non-?delivery|could not be delivered|mail (?:delivery )?failed|rejected mail|delivery failure|virus",
    re.I,
)
_BOUNCE_BODY = re.compile(
    r"could(?: not|n't) be delivered|undeliver|not (?:been )?delivered|delivery (?:has )?failed|delivery failure"
    r"|delivery status notification|permanent(?:ly)? (?:fatal )?error|(?:unable|not able) to deliver"
    r"|could not deliver|did not reach|failed permanently|returned mail|mail delivery|non-?delivery"
    r"|has been delayed",
    re.I,
)
# RFC 3834 §5 Auto-Submitted: auto-replied, and the de-facto markers of vacation responders.
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:(?:re|aw|fw|fwd|tr)\s*:\s*)*(?:auto(?:matic)?[\s_-]*(?:reply|response|responder|antwort|risposta)"
    r"|out of (?:the )?office|on vacation|vacation|away from (?:the |my )?office|abwesen|absence|autoreply"
    r"|autoresponse|r[ée]ponse automatique|respuesta autom[aá]tica)",
    re.I,
)


@dataclass(slots=True)
class _Found:
    """One failed address found in a notification's prose, with the lines that explain it."""

    address: str
    lines: list[str] = field(default_factory=list)

    def is_open_across_blank(self) -> bool:
        # An explanation that so far ends in a colon ("because:") goes on after the blank line.
        return not self.lines or self.lines[-1].rstrip().endswith(":")


def parse_report(raw: bytes) -> BounceReport:
    """The typed report of one inbound message; kind UNRECOGNISED when it is not a bounce we can read."""
    try:
        return _parse(raw)
    except Exception:  # noqa: BLE001 — a report is untrusted input and this function is total by contract
        # Reached only through a parser bug on malformed input: the message is unreadable, never fatal.
        _log.warning("bounce report could not be read; treating it as unrecognised", exc_info=True)
        return _unrecognised()


def _parse(raw: bytes) -> BounceReport:
    if not raw.strip():
        return _unrecognised()
    # compat32 never raises on header access; policy.default parses lazily and can raise on broken headers.
    message = email.message_from_bytes(raw, policy=policy.compat32)
    nodes = list(_walk(message))
    report_node = _first(nodes, _FEEDBACK_TYPES)
    if report_node is not None:
        return _feedback_report(report_node, nodes)
    report_node = _first(nodes, _DSN_TYPES)
    if report_node is not None:
        report = _delivery_status_report(report_node, nodes, message)
        if report is not None:
            return report
    return _prose_report(message, nodes)


# --- MIME structure -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Node:
    part: Message
    parent: Message | None
    in_original: bool  # inside a returned message/rfc822 part

    @property
    def content_type(self) -> str:
        return self.part.get_content_type()


def _payload(part: Message) -> Any:
    """`part.get_payload()`, which decodes 8-bit text with the part's charset parameter and raises on some
    (a NUL in the name: ValueError); such text is read as UTF-8 with replacement characters instead."""
    try:
        return part.get_payload()
    except (LookupError, ValueError):
        raw = part.get_payload(decode=True)
        return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else ""


def _walk(part: Message, parent: Message | None = None, depth: int = 0, in_original: bool = False) -> Iterator[_Node]:
    yield _Node(part, parent, in_original)
    content_type = part.get_content_type()
    # compat32 parses report fields into pseudo-messages; they are fields, not parts.
    if depth >= _MAX_DEPTH or content_type in _OPAQUE_TYPES:
        return
    payload = _payload(part)
    if not isinstance(payload, list):
        return
    inside = in_original or content_type in ("message/rfc822", "message/global")
    for child in payload:
        if isinstance(child, Message):
            yield from _walk(child, part, depth + 1, inside)


def _first(nodes: list[_Node], content_types: frozenset[str]) -> _Node | None:
    matching = [node for node in nodes if node.content_type in content_types]
    # A report of our own inside a forwarded message is still a report, but the outer one wins.
    outer = [node for node in matching if not node.in_original]
    chosen = outer or matching
    return chosen[0] if chosen else None


def _siblings(node: _Node, nodes: list[_Node]) -> list[_Node]:
    """The other parts of a report's multipart (and the alternatives inside them), in order."""
    if node.parent is None:
        return []
    siblings = [other for other in nodes if other.parent is node.parent]
    containers = {id(other.part) for other in siblings if other.part.is_multipart() and not other.in_original}
    nested = [other for other in nodes if other.parent is not None and id(other.parent) in containers]
    return siblings + nested


def _text_of(part: Message) -> str:
    """The decoded text of a leaf part; unknown or lying charsets degrade to replacement characters."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        payload_text = _payload(part)
        return payload_text[:_MAX_TEXT] if isinstance(payload_text, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        codecs.lookup(charset)
    except (LookupError, ValueError):
        charset = "utf-8"
    try:
        text = payload[: _MAX_TEXT * 4].decode(charset, errors="replace")
    except (LookupError, ValueError):  # codecs such as utf-7 can still refuse a byte sequence
        text = payload[: _MAX_TEXT * 4].decode("utf-8", errors="replace")
    text = text.replace("\r\n", "\n").replace("\r", "\n")[:_MAX_TEXT]
    if part.get_content_subtype() == "html":
        return _html_to_text(text)
    return text


def _html_to_text(text: str) -> str:
    if re.search(r"<(?:br|p|div|tr)\b", text, re.I):
        text = text.replace("\n", " ")  # HTML line breaks are tags; source newlines are only spaces
    text = re.sub(r"<\s*(?:br|/p|/div|/tr|p|div)\b[^>]{0,200}>", "\n", text, flags=re.I)
    text = re.sub(r"<[^<>]{0,2000}>", "", text)
    return html.unescape(text).replace("\xa0", " ")


def _notification_text(nodes: list[_Node], candidates: list[_Node] | None = None) -> str:
    """The human-readable part: the first text/plain (else text/html) outside any returned original."""
    # A report's own parts count even when the whole report arrived wrapped in a message/rfc822.
    pool = candidates if candidates is not None else [node for node in nodes if not node.in_original]
    for subtype in ("plain", "html"):
        for node in pool:
            if node.content_type == f"text/{subtype}":
                return _text_of(node.part)
    return ""


def _header(message: Message, name: str) -> str:
    """A header's value with RFC 2047 words decoded and whitespace collapsed; "" when absent or unreadable."""
    value = message.get(name)
    if value is None:
        return ""
    text = str(value) if not isinstance(value, Header) else _header_object_text(value)
    # Not RFC 2047 after all, or in a charset Python lacks: the raw text is then the best reading.
    with contextlib.suppress(HeaderParseError, LookupError, UnicodeError, ValueError):
        text = str(make_header(decode_header(text)))
    return _collapse(text)


def _header_object_text(value: Header) -> str:
    try:
        return str(value)
    except (LookupError, UnicodeError):
        return ""


def _collapse(text: str, limit: int | None = None) -> str:
    collapsed = _SPACE.sub(" ", text).strip()
    return collapsed[:limit] if limit else collapsed


def _normalize_address(text: str) -> str | None:
    candidate = text.strip().strip("<>\"'[]()").strip()
    if not _LOOSE_ADDRESS.fullmatch(candidate):
        return None
    local, _, domain = candidate.rpartition("@")
    domain = domain.rstrip(".")
    if not local or not domain:
        return None
    return f"{local}@{domain.lower()}"


def _sender(message: Message) -> str | None:
    _name, address = parseaddr(_header(message, "From"))
    return _normalize_address(address) if address else None


# --- the returned original ------------------------------------------------------------------------------------------


def _original_headers(original: Message | None) -> dict[str, str]:
    if original is None:
        return {}
    found: dict[str, str] = {}
    for name in _ORIGINAL_HEADERS:
        value = _header(original, name)
        if value:
            found[name] = value
    return found


def _original_from_node(node: _Node) -> Message | None:
    if node.content_type in ("message/rfc822", "message/global"):
        payload = _payload(node.part)
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
        return None
    return _headers_from_text(_text_of(node.part))  # text/rfc822-headers, possibly quoted-printable


def _headers_from_text(text: str) -> Message | None:
    lines = text.lstrip("\n").split("\n")
    if lines and all(line.startswith(">") or not line for line in lines[:5]):
        lines = [line[1:] for line in lines]  # a quoted copy ("> Return-Path: ...")
    if not lines or not re.match(r"^[\w-]{1,80}:", lines[0]):
        return None
    headers = HeaderParser(policy=policy.compat32).parsestr("\n".join(lines[:400]), headersonly=True)
    return headers if len(headers) else None


def _returned_original(nodes: list[_Node], preferred: list[_Node] | None = None) -> Message | None:
    for pool in (preferred or [], nodes[1:]):
        for node in pool:
            if node.content_type in _ORIGINAL_TYPES:
                original = _original_from_node(node)
                if original is not None and len(original):
                    return original
    return None


def _message_id(headers: dict[str, str]) -> str | None:
    return headers.get("Message-ID") or None


# --- RFC 5965 feedback reports --------------------------------------------------------------------------------------


def _field_blocks(part: Message) -> list[dict[str, list[str]]]:
    """The field groups of a report part (RFC 3464 §2.1: blocks separated by blank lines), names lower-cased."""
    payload = _payload(part)
    blocks: list[dict[str, list[str]]] = []
    if isinstance(payload, list):
        pseudo = [sub for sub in payload if isinstance(sub, Message)]
    else:
        text = _text_of(part)
        parser = HeaderParser(policy=policy.compat32)
        pseudo = [parser.parsestr(chunk.strip("\n"), headersonly=True) for chunk in re.split(r"\n[ \t]*\n", text)]
    for sub in pseudo:
        fields: dict[str, list[str]] = {}
        for name in sub:
            fields.setdefault(name.lower(), []).append(_header(sub, name))
        if fields:
            blocks.append(fields)
    return blocks


def _first_field(blocks: list[dict[str, list[str]]], name: str) -> str:
    for block in blocks:
        for value in block.get(name, []):
            if value:
                return value
    return ""


def _feedback_report(node: _Node, nodes: list[_Node]) -> BounceReport:
    blocks = _field_blocks(node.part)
    merged: dict[str, list[str]] = {}
    for block in blocks:
        for name, values in block.items():
            merged.setdefault(name, []).extend(values)
    feedback_type = (_first_field([merged], "feedback-type").split() or [""])[0].lower() or None
    siblings = _siblings(node, nodes)
    original = _returned_original(nodes, siblings)
    headers = _original_headers(original)
    # RFC 5965 §3.2: Original-Rcpt-To is optional and may repeat; the original's To stands in without it.
    addresses = [_normalize_address(value) for value in merged.get("original-rcpt-to", [])]
    if not any(addresses) and original is not None:
        addresses = [_normalize_address(address) for _name, address in getaddresses([_header(original, "To")])]
    text = _collapse(_notification_text(nodes, siblings), _MAX_DIAGNOSTIC)
    diagnostic = text or f"Feedback-Type: {feedback_type or 'unknown'}"
    # RFC 6430 "not-spam" reports the opposite of a complaint; it must not deactivate anyone.
    bounce_type = BounceType.UNKNOWN if feedback_type == "not-spam" else BounceType.SPAM_COMPLAINT
    remote = _strip_type(_first_field([merged], "reporting-mta")) or None
    recipients = tuple(
        BouncedRecipient(address, None, None, diagnostic, remote, bounce_type) for address in _unique(addresses)
    )
    return BounceReport(
        ReportKind.FEEDBACK, recipients, _DESCRIPTION[bounce_type], _message_id(headers), headers, feedback_type
    )


def _unique(addresses: list[str | None]) -> list[str]:
    seen: dict[str, str] = {}
    for address in addresses:
        if address and address.lower() not in seen:
            seen[address.lower()] = address
    return list(seen.values())


def _strip_type(value: str) -> str:
    """The value without its RFC 3464 §2.2.2 type: `dns; mx.example.com` -> `mx.example.com`."""
    return _DIAGNOSTIC_TYPE.sub("", value, count=1).strip()


# --- RFC 3464 delivery status notifications -------------------------------------------------------------------------


def _dsn_address(value: str) -> str | None:
    """An RFC 3464 §2.3.1/§2.3.2 recipient field: "rfc822; a@b"; other address types are not mail addresses."""
    address_type, separator, address = value.partition(";")
    if not separator:
        address_type, address = "rfc822", value
    if address_type.strip().lower() not in ("rfc822", "") and "/" in address:
        return None  # x400 and friends
    return _normalize_address(address)


def _block_recipient(block: dict[str, list[str]]) -> str | None:
    # RFC 3464 §2.3.1: Original-Recipient is the address the sender used; Final-Recipient may be an alias target.
    for name in ("original-recipient", "final-recipient", "x-actual-recipient"):
        for value in block.get(name, []):
            address = _dsn_address(value)
            if address is not None:
                return address
    return None


def _delivery_status_report(node: _Node, nodes: list[_Node], message: Message) -> BounceReport | None:
    blocks = _field_blocks(node.part)
    siblings = _siblings(node, nodes)
    notice, _rest = _split_notification(_notification_text(nodes, siblings))
    from_text = {found.address.lower(): found for found in _scan(notice, _bounce_address(message))}
    general = _general_text(notice)
    recipients: list[BouncedRecipient] = []
    seen: set[str] = set()
    for block in blocks:
        address = _block_recipient(block)
        if address is None or address.lower() in seen:
            continue
        action = (_first_field([block], "action").split() or [""])[0].lower() or None
        if action in ("delivered", "relayed", "expanded"):
            continue  # RFC 3464 §2.3.3: success notices, not failures
        seen.add(address.lower())
        recipients.append(_dsn_recipient(block, address, action, from_text, general))
    if not recipients:
        return None
    original = _returned_original(nodes, siblings)
    headers = _original_headers(original)
    return BounceReport(
        ReportKind.DSN, tuple(recipients), _DESCRIPTION[recipients[0].bounce_type], _message_id(headers), headers, None
    )


def _dsn_recipient(
    block: dict[str, list[str]], address: str, action: str | None, from_text: dict[str, _Found], general: str
) -> BouncedRecipient:
    status_field = _first_field([block], "status")
    diagnostic_code = _strip_type(_first_field([block], "diagnostic-code"))
    status_match = _ENHANCED.search(status_field)
    status_comment = _collapse((status_field[status_match.end() :] if status_match else status_field).strip(" ()"))
    found = from_text.get(address.lower())
    prose = _collapse(" ".join(found.lines)) if found else ""
    own = diagnostic_code or status_comment
    text = " ".join(piece for piece in (own, prose) if piece) or general
    enhanced = status_match.group(1) if status_match else None
    for source in (diagnostic_code, status_comment, prose):
        enhanced = _more_specific(enhanced, source)
    code = _reply_code(diagnostic_code) or _reply_code(status_field) or _reply_code(prose)
    # RFC 3464 §2.3.3: "delayed" means still queued; an RFC 3463 class 4 status without an action reads the same.
    delayed = action == "delayed" or (action is None and enhanced is not None and enhanced.startswith("4."))
    remote = _strip_type(_first_field([block], "remote-mta")) or _remote_host(text)
    return BouncedRecipient(
        recipient=address,
        action=action,
        status=enhanced,
        diagnostic=_collapse(own or prose or general, _MAX_DIAGNOSTIC),
        remote_mta=remote or None,
        bounce_type=_classify(delayed=delayed, code=code, enhanced=enhanced, text=text),
    )


def _more_specific(enhanced: str | None, text: str) -> str | None:
    """A generic x.0.0 status gives way to a specific one of the same class found in the diagnostic text."""
    if enhanced is not None and not enhanced.endswith(".0.0"):
        return enhanced
    for match in _ENHANCED.finditer(text):
        candidate = match.group(1)
        if enhanced is None or (candidate[0] == enhanced[0] and not candidate.endswith(".0.0")):
            return candidate
    return enhanced


def _reply_code(text: str) -> int | None:
    match = _CODE.search(text)
    return int(match.group(1)) if match else None


def _remote_host(text: str) -> str | None:
    match = _REMOTE_HOST.search(text)
    return match.group(1).lower() if match else None


# --- classification -------------------------------------------------------------------------------------------------


def _classify(*, delayed: bool, code: int | None, enhanced: str | None, text: str) -> BounceType:
    if _CHALLENGE.search(text):
        return BounceType.CHALLENGE_VERIFICATION  # not a delivery failure, whatever code came with it
    if delayed:
        return BounceType.TRANSIENT
    found = _permanent_type(code, enhanced, text)
    # The reporting MTA has given up, but on a class 4 condition (RFC 3463 §3.1 "persistent transient failure"):
    # the address may work later, so this is a soft bounce, not a hard one and no longer a delay.
    gave_up_transient = (enhanced or "").startswith("4.") or (
        code is not None and code < 500 and not (enhanced or "").startswith("5.")
    )
    if found is BounceType.UNKNOWN and gave_up_transient:
        return BounceType.SOFT_BOUNCE
    return found


def _permanent_type(code: int | None, enhanced: str | None, text: str) -> BounceType:
    specific_permanent = enhanced is not None and enhanced.startswith("5.") and not enhanced.endswith(".0.0")
    if specific_permanent:
        found = bounce_type_for(code or 0, enhanced, text)
        if found is not BounceType.UNKNOWN:
            return found
    for pattern, bounce_type in _REPORT_TEXT_RULES:
        if pattern.search(text):
            return bounce_type
    return bounce_type_for(code or 0, enhanced, text)


# --- prose: non-standard bounces, challenges, auto replies ----------------------------------------------------------


def _split_notification(text: str) -> tuple[str, str]:
    """(the notification, the returned original quoted after it)."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        probe = line[:_MAX_LINE]
        # "did NOT receive a copy of your message:" introduces the failed addresses, not the copy.
        if _CUT_PHRASE.search(probe) and _CUT_SHAPE.search(probe) and not _INTRO.search(probe):
            return "\n".join(lines[:index]), "\n".join(lines[index + 1 :])
    return text, ""


def _general_text(notice: str) -> str:
    """The whole notification as one explanatory line, without quoted header lines and rulers."""
    kept = [
        line
        for line in notice.split("\n")
        if not _HEADER_LIKE.match(line) and not _DECORATION.match(line) and line.strip()
    ]
    return _collapse(" ".join(kept), _MAX_DIAGNOSTIC)


def _bounce_address(message: Message) -> str | None:
    """The address the report was sent to: ours, so never a failed recipient."""
    _name, address = parseaddr(_header(message, "To"))
    return _normalize_address(address) if address else None


def _scan(notice: str, own_address: str | None) -> list[_Found]:
    """Failed addresses and their explanations, from the prose of a notification (the shapes of common MTAs)."""
    found: list[_Found] = []
    current: _Found | None = None
    in_list = False  # after a line such as "could not be delivered to the following recipients:"
    list_started = False
    pending_rcpt: str | None = None  # "RCPT TO:<a@b>" in a transcript, waiting for its reply line

    def start(address: str, text: str = "") -> _Found:
        entry = _Found(address, [text.strip()] if text.strip() else [])
        found.append(entry)
        return entry

    for raw_line in notice.split("\n")[:2000]:
        line = raw_line[:_MAX_LINE]
        if not line.strip():
            if in_list and list_started:
                in_list = False
            if current is not None and not current.is_open_across_blank():
                current = None
            continue
        if in_list:
            list_started = True
        if _HEADER_LIKE.match(line):
            continue
        probe = _ADDRESS_PREFIX.sub("", line)
        addresses = [address for address in _ADDRESS_RE.findall(probe) if _is_candidate(address, own_address)]
        if _STOP.search(_ADDRESS_RE.sub(" ", probe)):
            current = None
            continue
        if pending_rcpt is not None and _REPLY_LINE.match(line):
            if current is None or current.address.lower() != pending_rcpt.lower():
                current = start(pending_rcpt)
            current.lines.append(line.strip())
            pending_rcpt = None
            continue
        rcpt = _TRANSCRIPT_RCPT.search(probe)
        if rcpt:
            pending_rcpt = rcpt.group(1)
            if current is not None:
                current.lines.append(line.strip())
            continue
        is_intro = bool(_INTRO.search(line))
        if is_intro:
            in_list, list_started, current = True, False, None
        alias = _ALIAS.search(probe)
        if alias and _is_candidate(alias.group(1), own_address):
            if current is not None:
                current.address = alias.group(1)  # the address the sender used, not the alias target
            else:
                current = start(alias.group(1))
            continue
        if _REPLY_LINE.match(line) or not addresses:
            if current is not None and not is_intro and not _DECORATION.match(line):
                current.lines.append(line.strip())
            continue
        entry = _recipient_line(probe, addresses, in_list and not is_intro)
        if entry is None:
            if current is not None and not is_intro:
                current.lines.append(line.strip())
            continue
        address, rest, leading = entry
        if current is not None and current.address.lower() == address.lower():
            # The same address again: a bare repeat adds nothing, a line saying something about it explains it.
            explanation = line.strip() if rest or not leading else ""
            if explanation:
                current.lines.append(explanation)
        else:
            current = start(address, rest)
        alias = _ALIAS.search(rest)
        if alias and _is_candidate(alias.group(1), own_address):
            current.address = alias.group(1)
    return _merge(found)


def _recipient_line(line: str, addresses: list[str], in_list: bool) -> tuple[str, str, bool] | None:
    """(address, explanation on the same line, address leads the line) when the line names a failed recipient."""
    leading = _LEADING.match(line)
    if leading and leading.group(1) in addresses:
        rest = leading.group(2).strip()
        if re.match(r"^\w{3},? \d", rest):
            rest = ""  # Exchange: "a@b on Fri, 4 Oct 2002"; the date explains nothing
        return leading.group(1), rest, True
    labelled = _LABELLED.match(line)
    if labelled and labelled.group(2) in addresses and _LABEL_WORDS.search(labelled.group(1)):
        label, rest = labelled.group(1), labelled.group(3).strip()
        reason = f"{label}: {rest}" if _LABEL_REASON.search(label) else rest
        return labelled.group(2), reason.strip(), True
    for pattern in _INLINE:
        inline = pattern.search(line)
        if inline and inline.group(1) in addresses:
            return inline.group(1), inline.group(2).strip(" ,.'\""), False
    if in_list:
        return addresses[0], "", False
    return None


def _is_candidate(address: str, own_address: str | None) -> bool:
    local, _, _domain = address.rpartition("@")
    if local.lower() in _ROLE_LOCAL_PARTS:
        return False
    return own_address is None or address.lower() != own_address.lower()


def _merge(found: list[_Found]) -> list[_Found]:
    merged: dict[str, _Found] = {}
    for entry in found:
        normalized = _normalize_address(entry.address)
        if normalized is None:
            continue
        key = normalized.lower()
        if key in merged:
            known = merged[key].lines
            known.extend(line for line in entry.lines if line not in known)
        else:
            merged[key] = _Found(normalized, list(entry.lines))
    return list(merged.values())


def _is_bounce_headers(message: Message) -> bool:
    sender = _header(message, "From")
    if _BOUNCE_SENDER.search(sender) or _BOUNCE_SUBJECT.search(_header(message, "Subject")):
        return True
    if message.get_content_type() == "multipart/report" or message.get("X-Failed-Recipients") is not None:
        return True
    if _header(message, "Auto-Submitted").lower().startswith("auto-generated"):
        return True
    return _header(message, "Return-Path").replace(" ", "") == "<>"


def _is_auto_reply(message: Message) -> bool:
    # RFC 3834 §5.1: auto-replied (auto-generated is a report, handled as a bounce).
    if _header(message, "Auto-Submitted").lower().startswith("auto-replied"):
        return True
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        value = _header(message, name).lower()
        if message.get(name) is not None and value not in ("no", "false", "0"):
            return True
    if _header(message, "Precedence").lower() == "auto_reply":
        return True
    return bool(_AUTO_SUBJECT.search(_header(message, "Subject")))


def _prose_report(message: Message, nodes: list[_Node]) -> BounceReport:
    notice, rest = _split_notification(_notification_text(nodes))
    general = _general_text(notice)
    original = _returned_original(nodes) or _headers_from_text(rest)
    headers = _original_headers(original)
    bounce_headers = _is_bounce_headers(message)
    auto_reply = _is_auto_reply(message)
    subject = _header(message, "Subject")
    looks_like_report = bounce_headers or bool(
        _BOUNCE_BODY.search(general) or _VIRUS.search(general) or _CHALLENGE.search(general)
    )
    if looks_like_report and not (auto_reply and not bounce_headers):
        recipients = _prose_recipients(message, notice, general)
        if recipients:
            return BounceReport(
                ReportKind.NON_STANDARD,
                recipients,
                _DESCRIPTION[recipients[0].bounce_type],
                _message_id(headers),
                headers,
                None,
            )
    sender = _sender(message)
    reply_to_id = _header(message, "In-Reply-To") or None  # RFC 3834 §3.1.5: the reply names our Message-ID
    if sender and not bounce_headers and _CHALLENGE.search(f"{subject}\n{general}"):
        challenge = BouncedRecipient(sender, None, None, general or subject, None, BounceType.CHALLENGE_VERIFICATION)
        return BounceReport(
            ReportKind.NON_STANDARD,
            (challenge,),
            _DESCRIPTION[BounceType.CHALLENGE_VERIFICATION],
            _message_id(headers) or reply_to_id,
            headers,
            None,
        )
    if auto_reply:
        recipients = ()
        if sender:
            recipients = (
                BouncedRecipient(
                    sender,
                    None,
                    None,
                    _collapse(f"{subject} {general}", _MAX_DIAGNOSTIC),
                    None,
                    BounceType.AUTO_RESPONDER,
                ),
            )
        return BounceReport(
            ReportKind.AUTO_REPLY,
            recipients,
            _DESCRIPTION[BounceType.AUTO_RESPONDER],
            _message_id(headers) or reply_to_id,
            headers,
            None,
        )
    return _unrecognised()


def _prose_recipients(message: Message, notice: str, general: str) -> tuple[BouncedRecipient, ...]:
    own_address = _bounce_address(message)
    found = _scan(notice, own_address)
    # Exim names the failed addresses in a header of its own.
    known = {entry.address.lower() for entry in found}
    for _name, address in getaddresses([_header(message, "X-Failed-Recipients")]):
        normalized = _normalize_address(address) if address else None
        if normalized and normalized.lower() not in known and _is_candidate(normalized, own_address):
            found.append(_Found(normalized))
            known.add(normalized.lower())
    delayed = bool(_DELAYED.search(notice)) and not _FINAL.search(notice)
    override = (
        BounceType.CHALLENGE_VERIFICATION
        if _CHALLENGE.search(general)
        else BounceType.VIRUS_NOTIFICATION
        if _VIRUS.search(general)
        else None
    )
    recipients = []
    for entry in found:
        own = _collapse(" ".join(entry.lines))
        text = own or general  # the notification's explanation stands for addresses listed without their own
        enhanced = _more_specific(None, text)
        code = _reply_code(text)
        bounce_type = override or _classify(delayed=delayed, code=code, enhanced=enhanced, text=text)
        recipients.append(
            BouncedRecipient(
                recipient=entry.address,
                action="delayed" if delayed else "failed",
                status=enhanced,
                diagnostic=_collapse(text, _MAX_DIAGNOSTIC),
                remote_mta=_remote_host(text),
                bounce_type=bounce_type,
            )
        )
    return tuple(recipients)
