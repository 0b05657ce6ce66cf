"""Classifying delivery replies: every remote answer becomes delivered, transient or a typed bounce, once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from posthouse.server.domain.statuses import BounceType


class Outcome(StrEnum):
    DELIVERED = "delivered"
    TRANSIENT = "transient"  # retry on the schedule
    PERMANENT = "permanent"  # bounce now, never retry


@dataclass(frozen=True, slots=True)
class Classification:
    outcome: Outcome
    bounce_type: BounceType | None = None
    retry_after: float | None = None  # a hint from the reply text, in seconds


# RFC 3463 subject.detail → Postmark bounce type, for permanent (5.x.x) replies.
_PERMANENT_BY_ENHANCED: dict[str, BounceType] = {
    "1.0": BounceType.HARD_BOUNCE,
    "1.1": BounceType.HARD_BOUNCE,  # bad destination mailbox address
    "1.2": BounceType.DNS_ERROR,  # bad destination system address
    "1.3": BounceType.BAD_EMAIL_ADDRESS,  # bad destination mailbox address syntax
    "1.6": BounceType.ADDRESS_CHANGE,  # destination mailbox has moved
    "1.10": BounceType.HARD_BOUNCE,  # RFC 7505 null MX
    "2.0": BounceType.SOFT_BOUNCE,
    "2.1": BounceType.SOFT_BOUNCE,  # mailbox disabled
    "2.2": BounceType.SOFT_BOUNCE,  # mailbox full
    "2.3": BounceType.SOFT_BOUNCE,  # message too large for mailbox
    "3.4": BounceType.SOFT_BOUNCE,  # message too big for system
    "4.4": BounceType.DNS_ERROR,  # unable to route
    "7.1": BounceType.BLOCKED,  # delivery not authorized, message refused
    "7.26": BounceType.DMARC_POLICY,  # RFC 7372 multiple authentication checks failed
    "7.509": BounceType.DMARC_POLICY,
}
_TEXT_RULES: tuple[tuple[re.Pattern[str], BounceType], ...] = (
    (re.compile(r"dmarc", re.I), BounceType.DMARC_POLICY),
    (re.compile(r"virus|malware|infected", re.I), BounceType.VIRUS_NOTIFICATION),
    (re.compile(r"spam|blocked|block list|blacklist|blocklist|reputation|rbl|denied by policy", re.I),
     BounceType.BLOCKED),
    (re.compile(r"quota|mailbox (is )?full|over ?quota|insufficient storage", re.I), BounceType.SOFT_BOUNCE),
    (re.compile(r"unknown user|user unknown|no such (user|mailbox|recipient)|does not exist|"
                r"invalid recipient|recipient rejected|unknown recipient|not found|unrouteable", re.I),
     BounceType.HARD_BOUNCE),
)
_RETRY_HINT = re.compile(
    r"(?:try|retry)(?:\s+again)?\s+(?:in|after)\s+(\d+)\s*(s|sec|secs|seconds?|m|mins?|minutes?)?\b", re.I
)


def retry_hint(text: str) -> float | None:
    """Seconds from hints like "try again in 30 seconds" or "retry after 5 minutes"."""
    match = _RETRY_HINT.search(text)
    if not match:
        return None
    value = float(match.group(1))
    unit = (match.group(2) or "s").lower()
    return value * 60 if unit.startswith("m") else value


def bounce_type_for(code: int, enhanced: str | None, text: str) -> BounceType:
    """The Postmark bounce type of a permanent failure."""
    if enhanced and enhanced.startswith("5."):
        subject_detail = enhanced.split(".", 1)[1]
        if subject_detail in _PERMANENT_BY_ENHANCED:
            found = _PERMANENT_BY_ENHANCED[subject_detail]
            # 5.7.1 is also used for unknown users by some receivers; the text decides then.
            if found is not BounceType.BLOCKED:
                return found
    for pattern, bounce_type in _TEXT_RULES:
        if pattern.search(text):
            return bounce_type
    if enhanced and enhanced.startswith("5.7."):
        return BounceType.BLOCKED
    if code == 552:
        return BounceType.SOFT_BOUNCE
    if code in (550, 551, 553):
        return BounceType.HARD_BOUNCE
    return BounceType.UNKNOWN


def classify_reply(code: int, enhanced: str | None, text: str) -> Classification:
    """Classify one SMTP reply (RFC 5321 §4.2.1: the first digit decides; RFC 3463 refines)."""
    if 200 <= code < 300:
        return Classification(Outcome.DELIVERED)
    if 500 <= code < 600:
        return Classification(Outcome.PERMANENT, bounce_type_for(code, enhanced, text))
    # 4xx, and anything unexpected, is worth another try.
    return Classification(Outcome.TRANSIENT, retry_after=retry_hint(text))
