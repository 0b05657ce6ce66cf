"""Reply classification: delivered, transient or a typed bounce, from code, enhanced code and text."""

from __future__ import annotations

import pytest

from posthouse.server.domain.replies import Outcome, classify_reply, retry_hint
from posthouse.server.domain.statuses import BounceType

CASES = [
    (250, "2.0.0", "Ok: queued as 12345", Outcome.DELIVERED, None),
    (251, None, "User not local; will forward", Outcome.DELIVERED, None),
    (421, "4.7.0", "Too many connections", Outcome.TRANSIENT, None),
    (450, "4.2.1", "Mailbox unavailable", Outcome.TRANSIENT, None),
    (451, "4.3.0", "Try again later", Outcome.TRANSIENT, None),
    (452, "4.2.2", "Mailbox full", Outcome.TRANSIENT, None),
    (550, "5.1.1", "No such user", Outcome.PERMANENT, BounceType.HARD_BOUNCE),
    (550, None, "Recipient address rejected: User unknown in virtual mailbox table", Outcome.PERMANENT,
     BounceType.HARD_BOUNCE),
    (553, "5.1.3", "Bad recipient address syntax", Outcome.PERMANENT, BounceType.BAD_EMAIL_ADDRESS),
    (552, "5.2.2", "Mailbox full", Outcome.PERMANENT, BounceType.SOFT_BOUNCE),
    (550, None, "Mailbox over quota", Outcome.PERMANENT, BounceType.SOFT_BOUNCE),
    (552, "5.3.4", "Message size exceeds fixed limit", Outcome.PERMANENT, BounceType.SOFT_BOUNCE),
    (554, "5.7.1", "Service unavailable; client host blocked using zen.spamhaus.org", Outcome.PERMANENT,
     BounceType.BLOCKED),
    (550, "5.7.1", "No such user here", Outcome.PERMANENT, BounceType.HARD_BOUNCE),
    (550, "5.7.26", "Unauthenticated email is not accepted due to domain's DMARC policy", Outcome.PERMANENT,
     BounceType.DMARC_POLICY),
    (550, "5.4.4", "Unable to route", Outcome.PERMANENT, BounceType.DNS_ERROR),
    (550, "5.1.6", "Mailbox has moved", Outcome.PERMANENT, BounceType.ADDRESS_CHANGE),
    (554, None, "Transaction failed", Outcome.PERMANENT, BounceType.UNKNOWN),
    (554, None, "Message rejected: virus found", Outcome.PERMANENT, BounceType.VIRUS_NOTIFICATION),
    (354, None, "odd", Outcome.TRANSIENT, None),
]


@pytest.mark.parametrize(("code", "enhanced", "text", "outcome", "bounce_type"), CASES)
def test_classify(code: int, enhanced: str | None, text: str, outcome: Outcome, bounce_type: BounceType | None) -> None:
    result = classify_reply(code, enhanced, text)
    assert result.outcome is outcome
    assert result.bounce_type is bounce_type


@pytest.mark.parametrize(("text", "seconds"), [
    ("Greylisted, please try again in 300 seconds", 300.0),
    ("4.7.1 Try again in 5 minutes", 300.0),
    ("retry after 60s", 60.0),
    ("Try later", None),
])
def test_retry_hint(text: str, seconds: float | None) -> None:
    assert retry_hint(text) == seconds


def test_transient_reply_carries_the_hint() -> None:
    assert classify_reply(451, "4.7.1", "try again in 120 seconds").retry_after == 120.0


def test_bounce_types_match_postmark_codes() -> None:
    assert (BounceType.HARD_BOUNCE.type_name, BounceType.HARD_BOUNCE.code) == ("HardBounce", 1)
    assert BounceType.SPAM_COMPLAINT.code == 100001
    assert BounceType.SMTP_API_ERROR.code == 100007
    assert BounceType.from_type_name("softbounce") is BounceType.SOFT_BOUNCE
    assert BounceType.HARD_BOUNCE.deactivates and not BounceType.SOFT_BOUNCE.deactivates
