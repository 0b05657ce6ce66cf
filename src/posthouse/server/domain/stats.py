"""Stats rollups: the names of the counters kept per server, UTC day, stream and tag, and the day numbers.

Every counter lives in one row of `stats_daily` keyed by (server, day, stream, tag, metric) and is
incremented in the same transaction as what it counts (an accepted message, a bounce, an open), so
/stats answers from a few hundred rows however many millions of events there are (docs/architecture.md
§6). A metric is a fixed name, or a family name and a value (`opens.client:Apple Mail`) for the
breakdowns whose keys are open-ended (email clients, browsers, platforms, bounce types).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from posthouse.server.domain.statuses import BounceType

_DAY_MICROS = 86_400_000_000


class Metric(StrEnum):
    """The fixed counters."""

    SENT = "sent"  # per recipient accepted (Postmark's "Sent" counts processed recipients)
    SMTP_API_ERRORS = "smtpapierrors"
    SPAM_COMPLAINTS = "spam"
    TRACKED = "tracked"  # per recipient sent with any tracking
    WITH_OPEN_TRACKING = "tracked.opens"
    WITH_LINK_TRACKING = "tracked.links"
    TRACKED_LINKS_SENT = "tracked.linkcount"  # tracked links in the copies sent (links × recipients)
    OPENS = "opens"
    UNIQUE_OPENS = "opens.unique"  # first opens of a delivery
    WITH_CLIENT_RECORDED = "opens.withclient"  # first opens whose email client was recognised
    WITH_PLATFORM_RECORDED = "opens.withplatform"
    WITH_READ_TIME_RECORDED = "opens.withreadtime"
    CLICKS = "clicks"
    UNIQUE_CLICKS = "clicks.unique"  # first clicks of a delivery
    UNIQUE_LINKS_CLICKED = "clicks.uniquelinks"  # first click of each (delivery, link)


class Family(StrEnum):
    """Counters with an open-ended second part: `f"{family}:{key}"`."""

    BOUNCES = "bounces"  # key: Postmark's bounce Type (HardBounce, SoftBounce, Transient, …); see `bounce_metric`
    OPEN_PLATFORM = "opens.platform"  # Desktop, Mobile, WebMail, Unknown
    OPEN_CLIENT = "opens.client"  # the email client's name (Apple Mail, Gmail, Outlook 2016, …)
    OPEN_READ_TIME = "opens.readtime"  # a read-time bucket
    CLICK_BROWSER = "clicks.browser"  # the browser family
    CLICK_PLATFORM = "clicks.platform"
    CLICK_LOCATION = "clicks.location"  # HTML, Text


def family_metric(family: Family, key: str) -> str:
    return f"{family.value}:{key}"


def split_metric(metric: str) -> tuple[str, str | None]:
    """(`opens.client`, `Apple Mail`) for a family counter, (`sent`, None) for a fixed one."""
    name, sep, key = metric.partition(":")
    return (name, key) if sep else (name, None)


def day_of(micros: int) -> int:
    """The UTC day number (days since 1970-01-01) of a time in microseconds."""
    return micros // _DAY_MICROS


@dataclass(frozen=True, slots=True)
class StatKey:
    server_id: int
    day: int
    stream: str
    tag: str  # "" for an untagged message
    metric: str


def tally(increments: Iterable[tuple[StatKey, int]]) -> dict[StatKey, int]:
    """Increments summed per key (one upsert per key in a transaction, however many events it counts)."""
    totals: dict[StatKey, int] = {}
    for key, value in increments:
        if value:
            totals[key] = totals.get(key, 0) + value
    return totals


# The bounce types the overview's `Bounced` (and `BounceRate`) counts: the message did not reach the
# recipient. Not counted there: a delay notice (Transient, the message is still being retried), replies
# and notices that are no failure (auto-replies, address changes, (un)subscribe requests, spam or virus
# notifications, challenges), and the two with counters of their own (SpamComplaint, SMTPApiError).
BOUNCED_TYPES = frozenset(t.type_name for t in (
    BounceType.HARD_BOUNCE, BounceType.SOFT_BOUNCE, BounceType.DNS_ERROR, BounceType.BAD_EMAIL_ADDRESS,
    BounceType.BLOCKED, BounceType.DMARC_POLICY, BounceType.UNKNOWN, BounceType.MANUALLY_DEACTIVATED,
    BounceType.UNCONFIRMED, BounceType.TEMPLATE_RENDERING_FAILED,
))


def bounce_metric(type_name: str) -> str:
    """The one counter a bounce record of this type adds to: spam complaints and SMTP API errors have
    fixed counters (the overview's `SpamComplaints`, `SMTPApiErrors`), every other type `bounces:<Type>`."""
    if type_name == BounceType.SPAM_COMPLAINT.type_name:
        return Metric.SPAM_COMPLAINTS.value
    if type_name == BounceType.SMTP_API_ERROR.type_name:
        return Metric.SMTP_API_ERRORS.value
    return family_metric(Family.BOUNCES, type_name)


def bounce_increment(server_id: int, stream: str, tag: str | None, type_name: str, bounced_at: int
                     ) -> tuple[StatKey, int]:
    """A bounce counts once, on the UTC day it was recorded."""
    return StatKey(server_id, day_of(bounced_at), stream, tag or "", bounce_metric(type_name)), 1


def acceptance_increments(server_id: int, stream: str, tag: str | None, *, track_opens: bool | None,
                          track_links: str | None, tracked_links: int, sent: int, received_at: int
                          ) -> list[tuple[StatKey, int]]:
    """What accepting a message for `sent` recipients (those not suppressed) adds, on the UTC day it was
    received: `Sent` per recipient, and per recipient sent with tracking `Tracked`, `WithOpenTracking`,
    `WithLinkTracking` and the tracked links in the copies (`tracked_links` × recipients). A negative
    `sent` takes back what cancelled recipients added.

    `track_opens`/`track_links` are read as the message carries them: once the server's defaults are
    applied at acceptance (issue 13, link and open insertion), they are what the message goes out with."""
    if not sent:
        return []

    def key(metric: Metric) -> StatKey:
        return StatKey(server_id, day_of(received_at), stream, tag or "", metric.value)

    opens = bool(track_opens)
    links = track_links not in (None, "None")
    increments = [(key(Metric.SENT), sent)]
    if opens or links:
        increments.append((key(Metric.TRACKED), sent))
    if opens:
        increments.append((key(Metric.WITH_OPEN_TRACKING), sent))
    if links:
        increments.append((key(Metric.WITH_LINK_TRACKING), sent))
        increments.append((key(Metric.TRACKED_LINKS_SENT), tracked_links * sent))
    return increments
