"""What an acceptance and a bounce add to the stats counters, and how a stats query's dates are read."""

from __future__ import annotations

from typing import Any

import pytest

from posthouse import wire
from posthouse.server.domain.stats import (
    BOUNCED_TYPES,
    Metric,
    StatKey,
    acceptance_increments,
    bounce_increment,
    bounce_metric,
)
from posthouse.server.domain.statuses import BounceType
from posthouse.server.errors import ApiError
from posthouse.server.services.stats import parse_stats_day

DAY = 20_000
AT = DAY * 86_400_000_000 + 5


def counted(*, track_opens: bool | None = None, track_links: str | None = None, tracked_links: int = 0,
            sent: int = 3) -> dict[str, int]:
    increments = acceptance_increments(7, "outbound", "welcome", track_opens=track_opens, track_links=track_links,
                                       tracked_links=tracked_links, sent=sent, received_at=AT)
    assert all(k.server_id == 7 and k.day == DAY and k.stream == "outbound" and k.tag == "welcome"
               for k, _ in increments)
    return {k.metric: v for k, v in increments}


@pytest.mark.parametrize(("fields", "expected"), [
    ({}, {"sent": 3}),
    ({"track_links": "None", "track_opens": False}, {"sent": 3}),
    ({"track_opens": True}, {"sent": 3, "tracked": 3, "tracked.opens": 3}),
    ({"track_links": "HtmlOnly", "tracked_links": 4},
     {"sent": 3, "tracked": 3, "tracked.links": 3, "tracked.linkcount": 12}),
    ({"track_opens": True, "track_links": "HtmlAndText", "tracked_links": 2},
     {"sent": 3, "tracked": 3, "tracked.opens": 3, "tracked.links": 3, "tracked.linkcount": 6}),
    ({"track_opens": True, "sent": -2}, {"sent": -2, "tracked": -2, "tracked.opens": -2}),  # cancelled
    ({"track_opens": True, "sent": 0}, {}),  # every recipient suppressed
])
def test_an_acceptance_counts_its_recipients_and_their_tracking(fields: dict[str, Any],
                                                                 expected: dict[str, int]) -> None:
    assert counted(**fields) == expected


def test_a_bounce_counts_once_by_type_on_its_day() -> None:
    assert bounce_increment(7, "outbound", None, "HardBounce", AT) == \
        (StatKey(7, DAY, "outbound", "", "bounces:HardBounce"), 1)
    assert bounce_metric(BounceType.SPAM_COMPLAINT.type_name) == Metric.SPAM_COMPLAINTS.value
    assert bounce_metric(BounceType.SMTP_API_ERROR.type_name) == Metric.SMTP_API_ERRORS.value
    assert bounce_metric("Transient") == "bounces:Transient"


def test_bounced_means_not_delivered() -> None:
    assert {"HardBounce", "SoftBounce", "DnsError", "BadEmailAddress", "Blocked"} <= BOUNCED_TYPES
    assert not {"Transient", "AutoResponder", "SpamComplaint", "SMTPApiError", "Subscribe", "Unsubscribe",
                "AddressChange", "SpamNotification", "OpenRelayTest", "ChallengeVerification"} & BOUNCED_TYPES
    assert {t.type_name for t in BounceType} >= BOUNCED_TYPES


@pytest.mark.parametrize(("text", "day"), [
    ("1970-01-01", 0), ("1970-01-02", 1), ("2026-1-5", 20458), ("2026-01-05", 20458), ("2026-01-05T23:59:59", 20458),
    ("2026-01-05T10:00:00+05:00", 20458), (" 2026-1-05 ", 20458), (None, None), ("", None),
])
def test_stats_dates_are_days(text: str | None, day: int | None) -> None:
    assert parse_stats_day(text) == day


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "2026-02-30", "2026-01-05x", "2026-01",
                                  "2026-01-05T25:00"])
def test_a_date_that_is_no_date_is_900(text: str) -> None:
    with pytest.raises(ApiError) as refused:
        parse_stats_day(text)
    assert refused.value.error_code == 900


def test_usage_counts_go_to_the_wire_and_back() -> None:
    usage = wire.UsageCounts(days=[wire.UsageDay(date="2026-01-05", counts={"Apple Mail": 2, "Gmail": 1})],
                             totals={"Apple Mail": 2, "Gmail": 1})
    flat = wire.usage_to_json(usage)
    assert flat == {"Days": [{"Date": "2026-01-05", "Apple Mail": 2, "Gmail": 1}], "Apple Mail": 2, "Gmail": 1}
    assert wire.usage_from_json(flat) == usage
    assert wire.usage_from_json({"Days": []}) == wire.UsageCounts(days=[], totals={})
