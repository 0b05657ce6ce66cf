"""/stats/outbound and its breakdowns through the real ASGI app and a real database (docs/postmark-api.md §6).

What is counted is counted where it happens: sends through `POST /email` and `/email/batch`, SMTP
submissions through the sending service, bounces through the delivery worker (sandbox bounce testing) and
through `record_bounces` (as the bounce receiver writes DSNs and complaints). Counters no writer of this
branch bumps yet (opens, clicks, their breakdowns) are bumped with `bump_stats`, as the tracking recorder does.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from posthouse.server.domain.stats import Family, Metric, StatKey, day_of, family_metric
from posthouse.server.domain.statuses import BounceType
from posthouse.server.services import notifications
from posthouse.server.store.base import BounceRecord
from posthouse.server.store.stats import bump_stats
from support import async_wait_for

SENDER = "app@example.com"
# The keys of each breakdown, in every day (docs/postmark-api.md §6 and postmark-python's models).
FIXED_KEYS = {
    "sends": {"Sent"},
    "bounces": {"HardBounce", "SMTPApiError", "SoftBounce", "Transient"},
    "spam": {"SpamComplaint"},
    "tracked": {"Tracked"},
    "opens": {"Opens", "Unique"},
    "opens/platforms": {"Desktop", "Mobile", "Unknown", "WebMail"},
    "clicks": {"Clicks", "Unique"},
    "clicks/platforms": {"Desktop", "Mobile", "Unknown"},
    "clicks/location": {"HTML", "Text"},
}
BY_NAME = ("opens/emailclients", "opens/readtimes", "clicks/browserfamilies")
OVERVIEW_KEYS = {
    "Sent", "Bounced", "SMTPApiErrors", "BounceRate", "SpamComplaints", "SpamComplaintsRate", "Opens", "UniqueOpens",
    "Tracked", "WithLinkTracking", "WithOpenTracking", "TotalTrackedLinksSent", "UniqueLinksClicked", "TotalClicks",
    "WithClientRecorded", "WithPlatformRecorded", "WithReadTimeRecorded",
}


async def get(api, path: str, **params: Any) -> Any:  # type: ignore[no-untyped-def]
    response = await api.client.get(path, params=params, headers=api.server_headers)
    assert response.status_code == 200, response.text
    return response.json()


async def send(api, **fields: Any) -> str:  # type: ignore[no-untyped-def]
    response = await api.client.post("/email", headers=api.server_headers,
                                      json={"From": SENDER, "Subject": "Hi", "TextBody": "Hello", **fields})
    assert response.status_code == 200, response.text
    return str(response.json()["MessageID"])


async def server_id(api) -> int:  # type: ignore[no-untyped-def]
    return int((await get(api, "/server"))["ID"])


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def day_number(text: str) -> int:
    return (date.fromisoformat(text) - date(1970, 1, 1)).days


async def record_bounce(api, bounce_type: BounceType, *, tag: str | None = None, stream: str = "outbound",  # type: ignore[no-untyped-def]
                        email: str = "gone@example.com") -> None:
    """A bounce as the bounce receiver records one: the row, its webhooks, its suppression if it deactivates."""
    bounce = BounceRecord(
        server_id=await server_id(api), message_id=None, stream=stream, type=bounce_type.type_name,
        type_code=bounce_type.code, email=email, sender=SENDER, subject="Hello", tag=tag,
        description=bounce_type.display_name, details="details", bounced_at=api.runtime.clock.micros(),
        inactive=bounce_type.deactivates, can_activate=bounce_type is BounceType.HARD_BOUNCE, dump="")
    await api.runtime.store.record_bounces(
        [(bounce, None, [notifications.bounce_event(bounce, {})], notifications.suppression_for(bounce, tag, {}))])


# -- the shapes the clients require --------------------------------------------------------------


async def test_a_new_server_answers_every_breakdown_with_days_and_zeros(api) -> None:  # type: ignore[no-untyped-def]
    overview = await get(api, "/stats/outbound")
    assert set(overview) == OVERVIEW_KEYS
    assert all(value == 0 for value in overview.values())
    for name, keys in FIXED_KEYS.items():
        assert await get(api, f"/stats/outbound/{name}") == {"Days": [], **dict.fromkeys(keys, 0)}, name
    for name in BY_NAME:
        assert await get(api, f"/stats/outbound/{name}") == {"Days": []}, name


@pytest.mark.parametrize("path", ["/stats/outbound/opens/emailClients", "/stats/outbound/opens/readTimes",
                                  "/stats/outbound/clicks/browserFamilies", "/STATS/OUTBOUND/SENDS/"])
async def test_paths_match_as_the_clients_spell_them(api, path: str) -> None:  # type: ignore[no-untyped-def]
    assert "Days" in await get(api, path)  # postmark.js and postmark-python write these in camelCase


async def test_stats_need_a_server_token(api) -> None:  # type: ignore[no-untyped-def]
    for path in ("/stats/outbound", "/stats/outbound/sends", "/stats/outbound/clicks/location"):
        refused = await api.client.get(path, headers={"X-Postmark-Server-Token": "not-a-token"})
        assert refused.status_code == 401 and refused.json()["ErrorCode"] == 10


# -- counted at acceptance ------------------------------------------------------------------------


async def test_sends_count_every_recipient_and_tracking_as_sent(api) -> None:  # type: ignore[no-untyped-def]
    await send(api, To="a@example.com, b@example.com", Cc="c@example.com", Tag="welcome", TrackOpens=True,
               TrackLinks="HtmlOnly", HtmlBody="<p>Hi</p>")
    await send(api, To="d@example.com", TrackLinks="None")
    await send(api, To="e@example.com", Tag="welcome", TrackOpens=False, TrackLinks="TextOnly")
    batch = await api.client.post("/email/batch", headers=api.server_headers, json=[
        {"From": SENDER, "To": "f@example.com", "Subject": "1", "TextBody": "x", "Tag": "batch"},
        {"From": SENDER, "To": "not an address", "Subject": "2", "TextBody": "x", "Tag": "batch"},
    ])
    assert [item["ErrorCode"] for item in batch.json()] == [0, 300]

    overview = await get(api, "/stats/outbound")
    assert (overview["Sent"], overview["Tracked"], overview["WithOpenTracking"], overview["WithLinkTracking"]) == \
        (6, 4, 3, 4)
    assert await get(api, "/stats/outbound/sends") == {"Days": [{"Date": today(), "Sent": 6}], "Sent": 6}
    assert await get(api, "/stats/outbound/sends", tag="welcome") == \
        {"Days": [{"Date": today(), "Sent": 4}], "Sent": 4}
    assert (await get(api, "/stats/outbound/sends", tag="batch"))["Sent"] == 1
    assert (await get(api, "/stats/outbound/sends", tag="nothing")) == {"Days": [], "Sent": 0}
    assert await get(api, "/stats/outbound/tracked", tag="welcome") == \
        {"Days": [{"Date": today(), "Tracked": 4}], "Tracked": 4}


async def test_suppressed_recipients_and_the_test_token_count_nothing(api) -> None:  # type: ignore[no-untyped-def]
    added = await api.client.post("/message-streams/outbound/suppressions", headers=api.server_headers,
                                  json={"Suppressions": [{"EmailAddress": "gone@example.com"}]})
    assert added.status_code == 200, added.text
    await send(api, To="gone@example.com, here@example.com")
    refused = await api.client.post("/email", headers=api.server_headers,
                                    json={"From": SENDER, "To": "gone@example.com", "TextBody": "x"})
    assert refused.json()["ErrorCode"] == 406
    tested = await api.client.post("/email", headers={"X-Postmark-Server-Token": "POSTMARK_API_TEST"},
                                   json={"From": SENDER, "To": "x@example.com", "TextBody": "x"})
    assert tested.status_code == 200
    assert (await get(api, "/stats/outbound"))["Sent"] == 1


async def test_a_cancelled_scheduled_message_is_taken_back(api) -> None:  # type: ignore[no-untyped-def]
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    message_id = await send(api, To="a@example.com, b@example.com", Tag="later", TrackOpens=True, SendAt=later,
                            HtmlBody="<p>x</p>")
    await send(api, To="c@example.com", Tag="later")
    assert (await get(api, "/stats/outbound", tag="later"))["Sent"] == 3
    cancelled = await api.client.put(f"/messages/outbound/{message_id}/cancel", headers=api.server_headers)
    assert cancelled.status_code == 200, cancelled.text
    overview = await get(api, "/stats/outbound", tag="later")
    assert (overview["Sent"], overview["Tracked"], overview["WithOpenTracking"]) == (1, 0, 0)
    # A second cancel changes nothing, so it takes back nothing.
    again = await api.client.put(f"/messages/outbound/{message_id}/cancel", headers=api.server_headers)
    assert again.json()["ErrorCode"] == 1602
    assert (await get(api, "/stats/outbound", tag="later"))["Sent"] == 1


async def test_smtp_submissions_count_sends_and_smtp_api_errors(api) -> None:  # type: ignore[no-untyped-def]
    added = await api.client.post("/message-streams/outbound/suppressions", headers=api.server_headers,
                                  json={"Suppressions": [{"EmailAddress": "gone@example.com"}]})
    assert added.status_code == 200
    server = await api.runtime.accounts.authenticate_server(api.server_token)
    data = (b"From: app@example.com\r\nTo: gone@example.com, here@example.com\r\nSubject: SMTP\r\n"
            b"X-PM-Tag: smtp\r\n\r\nHello\r\n")
    await api.runtime.sending.send_submitted(server, SENDER, ["gone@example.com", "here@example.com"], data)
    overview = await get(api, "/stats/outbound")
    assert (overview["Sent"], overview["SMTPApiErrors"], overview["Bounced"]) == (1, 1, 0)
    assert await get(api, "/stats/outbound/bounces", tag="smtp") == {
        "Days": [{"Date": today(), "HardBounce": 0, "SMTPApiError": 1, "SoftBounce": 0, "Transient": 0}],
        "HardBounce": 0, "SMTPApiError": 1, "SoftBounce": 0, "Transient": 0}


# -- counted where bounces are recorded -----------------------------------------------------------


async def test_delivery_bounces_count_on_the_day_they_happen(api) -> None:  # type: ignore[no-untyped-def]
    await send(api, To="HardBounce@bounce-testing.postmarkapp.com", Tag="t")
    await send(api, To="ann@example.com", Tag="t", Headers=[{"Name": "X-PM-Bounce-Type", "Value": "SoftBounce"}])
    await send(api, To="ok@example.com", Tag="t")
    await api.runtime.start_worker()

    async def counted() -> dict[str, Any] | None:
        bounces = await get(api, "/stats/outbound/bounces", tag="t")
        return bounces if bounces["HardBounce"] + bounces["SoftBounce"] == 2 else None

    bounces = await async_wait_for(counted)
    assert bounces == {"Days": [{"Date": today(), "HardBounce": 1, "SMTPApiError": 0, "SoftBounce": 1,
                                 "Transient": 0}], "HardBounce": 1, "SMTPApiError": 0, "SoftBounce": 1,
                       "Transient": 0}
    overview = await get(api, "/stats/outbound", tag="t")
    assert (overview["Sent"], overview["Bounced"], overview["BounceRate"]) == (3, 2, pytest.approx(66.667))


async def test_complaints_and_other_bounces_count_by_type(api) -> None:  # type: ignore[no-untyped-def]
    for i in range(4):
        await send(api, To=f"r{i}@example.com")
    await record_bounce(api, BounceType.SPAM_COMPLAINT, email="angry@example.com")
    await record_bounce(api, BounceType.HARD_BOUNCE)
    await record_bounce(api, BounceType.TRANSIENT)
    await record_bounce(api, BounceType.DNS_ERROR)
    await record_bounce(api, BounceType.AUTO_RESPONDER)
    await record_bounce(api, BounceType.HARD_BOUNCE, stream="broadcast")
    overview = await get(api, "/stats/outbound")
    # Bounced: the hard bounces and the DNS error; a delay, an auto-reply and a complaint are not bounces.
    assert (overview["Bounced"], overview["SpamComplaints"], overview["BounceRate"], overview["SpamComplaintsRate"]) \
        == (3, 1, 75.0, 25.0)
    assert await get(api, "/stats/outbound/spam") == {"Days": [{"Date": today(), "SpamComplaint": 1}],
                                                      "SpamComplaint": 1}
    bounces = await get(api, "/stats/outbound/bounces")
    assert (bounces["HardBounce"], bounces["Transient"], bounces["SoftBounce"]) == (2, 1, 0)
    assert (await get(api, "/stats/outbound/bounces", messagestream="broadcast"))["HardBounce"] == 1
    assert (await get(api, "/stats/outbound", messagestream="outbound"))["Bounced"] == 2


# -- reading the rollups: days, ranges, streams, tags ----------------------------------------------


async def bump(api, day: str, metric: str, value: int, *, stream: str = "outbound", tag: str = "") -> None:  # type: ignore[no-untyped-def]
    key = StatKey(await server_id(api), day_number(day), stream, tag, metric)
    await api.runtime.store.transact(bump_stats([(key, value)]))


async def test_days_are_listed_in_order_with_every_key_and_ranges_are_inclusive(api) -> None:  # type: ignore[no-untyped-def]
    await bump(api, "2026-01-03", Metric.OPENS, 5)
    await bump(api, "2026-01-03", Metric.UNIQUE_OPENS, 2, tag="a")
    await bump(api, "2026-01-01", Metric.OPENS, 1, stream="broadcast")
    await bump(api, "2026-01-07", Metric.UNIQUE_OPENS, 4, tag="b")
    await bump(api, "2026-01-07", Metric.SENT, 9)  # another series: not a day of /opens unless it has opens
    await bump(api, "2026-01-09", Metric.SENT, 1)
    assert await get(api, "/stats/outbound/opens") == {
        "Days": [{"Date": "2026-01-01", "Opens": 1, "Unique": 0}, {"Date": "2026-01-03", "Opens": 5, "Unique": 2},
                 {"Date": "2026-01-07", "Opens": 0, "Unique": 4}],
        "Opens": 6, "Unique": 6}
    # Inclusive at both ends; postmark.js writes dates without zero padding.
    ranged = await get(api, "/stats/outbound/opens", fromdate="2026-1-3", todate="2026-01-07")
    assert [d["Date"] for d in ranged["Days"]] == ["2026-01-03", "2026-01-07"]
    assert (ranged["Opens"], ranged["Unique"]) == (5, 6)
    assert [d["Date"] for d in (await get(api, "/stats/outbound/opens", fromdate="2026-01-04"))["Days"]] == \
        ["2026-01-07"]
    assert [d["Date"] for d in (await get(api, "/stats/outbound/opens", todate="2026-01-02T23:59:59"))["Days"]] \
        == ["2026-01-01"]
    assert (await get(api, "/stats/outbound/opens", messagestream="broadcast"))["Opens"] == 1
    assert await get(api, "/stats/outbound/opens", tag="b") == \
        {"Days": [{"Date": "2026-01-07", "Opens": 0, "Unique": 4}], "Opens": 0, "Unique": 4}
    overview = await get(api, "/stats/outbound", fromdate="2026-01-02", todate="2026-01-08")
    assert (overview["Sent"], overview["Opens"], overview["UniqueOpens"]) == (9, 5, 6)


async def test_breakdowns_keyed_by_names_list_each_days_names(api) -> None:  # type: ignore[no-untyped-def]
    await bump(api, "2026-02-01", family_metric(Family.OPEN_CLIENT, "Apple Mail"), 3)
    await bump(api, "2026-02-01", family_metric(Family.OPEN_CLIENT, "Gmail"), 2, tag="x")
    await bump(api, "2026-02-02", family_metric(Family.OPEN_CLIENT, "Apple Mail"), 1)
    await bump(api, "2026-02-02", family_metric(Family.CLICK_BROWSER, "Chrome"), 7)
    await bump(api, "2026-02-02", Metric.OPENS, 6)  # a fixed counter is no email client
    assert await get(api, "/stats/outbound/opens/emailclients") == {
        "Days": [{"Date": "2026-02-01", "Apple Mail": 3, "Gmail": 2}, {"Date": "2026-02-02", "Apple Mail": 1}],
        "Apple Mail": 4, "Gmail": 2}
    assert await get(api, "/stats/outbound/opens/emailclients", tag="x") == \
        {"Days": [{"Date": "2026-02-01", "Gmail": 2}], "Gmail": 2}
    assert await get(api, "/stats/outbound/clicks/browserfamilies") == \
        {"Days": [{"Date": "2026-02-02", "Chrome": 7}], "Chrome": 7}
    assert await get(api, "/stats/outbound/opens/readtimes") == {"Days": []}


async def test_platforms_locations_and_clicks_read_their_counters(api) -> None:  # type: ignore[no-untyped-def]
    await bump(api, "2026-03-01", family_metric(Family.OPEN_PLATFORM, "WebMail"), 2)
    await bump(api, "2026-03-01", family_metric(Family.OPEN_PLATFORM, "Mobile"), 1)
    await bump(api, "2026-03-01", family_metric(Family.CLICK_PLATFORM, "Desktop"), 4)
    await bump(api, "2026-03-01", family_metric(Family.CLICK_LOCATION, "Text"), 3)
    await bump(api, "2026-03-01", family_metric(Family.CLICK_LOCATION, "HTML"), 1)
    await bump(api, "2026-03-01", Metric.CLICKS, 4)
    await bump(api, "2026-03-01", Metric.UNIQUE_CLICKS, 2)
    await bump(api, "2026-03-01", Metric.UNIQUE_LINKS_CLICKED, 3)
    day = {"Date": "2026-03-01"}
    assert await get(api, "/stats/outbound/opens/platforms") == {
        "Days": [{**day, "Desktop": 0, "Mobile": 1, "Unknown": 0, "WebMail": 2}],
        "Desktop": 0, "Mobile": 1, "Unknown": 0, "WebMail": 2}
    assert await get(api, "/stats/outbound/clicks/platforms") == {
        "Days": [{**day, "Desktop": 4, "Mobile": 0, "Unknown": 0}], "Desktop": 4, "Mobile": 0, "Unknown": 0}
    assert await get(api, "/stats/outbound/clicks/location") == {
        "Days": [{**day, "HTML": 1, "Text": 3}], "HTML": 1, "Text": 3}
    assert await get(api, "/stats/outbound/clicks") == {"Days": [{**day, "Clicks": 4, "Unique": 2}], "Clicks": 4,
                                                        "Unique": 2}
    overview = await get(api, "/stats/outbound")
    assert (overview["TotalClicks"], overview["UniqueLinksClicked"]) == (4, 3)


async def test_another_servers_counters_are_invisible(api) -> None:  # type: ignore[no-untyped-def]
    other = StatKey(await server_id(api) + 1000, day_of(api.runtime.clock.micros()), "outbound", "", Metric.SENT)
    await api.runtime.store.transact(bump_stats([(other, 5)]))
    assert (await get(api, "/stats/outbound"))["Sent"] == 0
    assert (await get(api, "/stats/outbound/sends"))["Days"] == []


@pytest.mark.parametrize("params", [{"fromdate": "yesterday"}, {"todate": "2026-13-01"}, {"fromdate": "2026-01-01x"},
                                    {"todate": "2026-02-30"}])
async def test_a_date_that_is_no_date_is_refused(api, params: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    for path in ("/stats/outbound", "/stats/outbound/sends", "/stats/outbound/opens/emailclients"):
        refused = await api.client.get(path, params=params, headers=api.server_headers)
        assert refused.status_code == 422, refused.text
        assert refused.json()["ErrorCode"] == 900 and "Invalid date" in refused.json()["Message"]
