"""Stats, opens and clicks through the SDK, against the real server process, async and sync.

Sends and bounces go through the server as users make them (the sandbox bounces mail to its bounce testing
domain); opens and clicks, which the tracking listener records, are written into the server's own
database with the store's `insert_hits` and `bump_stats`, as that recorder writes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

import posthouse
from posthouse.server.domain.stats import Family, Metric, StatKey, day_of, family_metric
from posthouse.server.services.clock import to_micros
from posthouse.server.store import open_store_for
from posthouse.server.store.hits import HitKind, StoredHit, insert_hits
from posthouse.server.store.sql import Stmt
from posthouse.server.store.stats import bump_stats
from sdk.sdk_support import Tenant
from support import async_wait_for

SENDER = "app@example.com"
GONE = "HardBounce@bounce-testing.postmarkapp.com"


async def write(tenant: Tenant, stmts: Sequence[Stmt]) -> None:
    """Statements run in the server process's database, as its own writers would run them."""
    store = open_store_for(tenant.process.database_url)
    await store.open()
    try:
        await store.transact(stmts)
    finally:
        await store.close()


async def test_sends_bounces_and_every_breakdown(tenant: Tenant, flavour) -> None:  # type: ignore[no-untyped-def]
    client = flavour.server_client(tenant.token, tenant.base_url)
    try:
        await flavour(client.outbound.send(posthouse.Email(
            sender=SENDER, to="a@example.com, b@example.com", subject="Hi", html_body="<p>Hi</p>", tag="welcome",
            track_opens=True)))
        await flavour(client.outbound.send(posthouse.Email(sender=SENDER, to=GONE, subject="Bye", text_body="x",
                                                           tag="gone")))

        async def bounced() -> posthouse.BounceCounts | None:
            counts = await flavour(client.stats.bounces())
            return counts if counts.hard_bounce else None

        bounces = await async_wait_for(bounced, timeout=15)
        assert isinstance(bounces, posthouse.BounceCounts)
        today = datetime.now(UTC).date().isoformat()
        assert bounces.days == [posthouse.BounceDay(date=today, hard_bounce=1, smtp_api_error=0, soft_bounce=0,
                                                    transient=0)]
        overview = await flavour(client.stats.overview())
        assert isinstance(overview, posthouse.OutboundOverview)
        assert (overview.sent, overview.bounced, overview.bounce_rate, overview.tracked) == (3, 1, 33.333, 2)
        sends = await flavour(client.stats.sends(tag="welcome", from_date=date.today() - timedelta(days=1),
                                                 to_date=datetime.now(UTC)))
        assert sends == posthouse.SentCounts(days=[posthouse.SentDay(date=today, sent=2)], sent=2)
        assert (await flavour(client.stats.sends(message_stream="broadcast"))).sent == 0
        assert (await flavour(client.stats.sends(to_date="2000-01-01"))).days == []
        tracked = await flavour(client.stats.tracked(tag="welcome"))
        assert tracked.tracked == 2 and isinstance(tracked.days[0], posthouse.TrackedDay)
        assert (await flavour(client.stats.spam())) == posthouse.SpamCounts(days=[], spam_complaint=0)
        for call, kind in ((client.stats.opens, posthouse.OpenCounts),
                           (client.stats.open_platforms, posthouse.PlatformCounts),
                           (client.stats.clicks, posthouse.ClickCounts),
                           (client.stats.click_platforms, posthouse.ClickPlatformCounts),
                           (client.stats.click_locations, posthouse.ClickLocationCounts)):
            answer = await flavour(call())
            assert isinstance(answer, kind) and answer.days == [], call
        for call in (client.stats.email_clients, client.stats.read_times, client.stats.browser_families):
            assert await flavour(call()) == posthouse.UsageCounts(days=[], totals={})
    finally:
        await flavour.close(client)


async def test_opens_clicks_and_their_breakdowns(tenant: Tenant, flavour) -> None:  # type: ignore[no-untyped-def]
    client = flavour.server_client(tenant.token, tenant.base_url)
    try:
        sent = await flavour(client.outbound.send(posthouse.Email(
            sender=SENDER, to="ann@example.com", subject="Hi", html_body="<p>Hi</p>", track_opens=True,
            track_links="HtmlOnly", tag="news")))
        when = datetime(2026, 1, 5, 10, tzinfo=UTC)
        common: dict[str, Any] = {
                  "server_id": tenant.id, "stream": "outbound", "message_id": sent.message_id, "delivery_id": 1,
                  "recipient": "ann@example.com", "tag": "news", "proxy": False, "platform": "Mobile",
                  "user_agent": "Mozilla/5.0 (iPhone)", "client_name": "Apple Mail", "client_company": "Apple",
                  "os_name": "iOS 17", "os_family": "iOS", "country": "Denmark", "ip": "192.0.2.1"}
        day = day_of(to_micros(when))

        def key(metric: str) -> StatKey:
            return StatKey(tenant.id, day, "outbound", "news", metric)

        await write(tenant, [
            insert_hits([
                StoredHit(kind=HitKind.OPEN.value, occurred_at=to_micros(when), first=True, **common),
                StoredHit(kind=HitKind.OPEN.value, occurred_at=to_micros(when) + 60_000_000, first=False, **common),
                StoredHit(kind=HitKind.CLICK.value, occurred_at=to_micros(when) + 1_000_000, first=True, link=1,
                          url="https://example.com/x", click_location="HTML", **common),
            ]),
            *bump_stats([(key(Metric.OPENS), 2), (key(Metric.UNIQUE_OPENS), 1), (key(Metric.CLICKS), 1),
                         (key(family_metric(Family.OPEN_CLIENT, "Apple Mail")), 1),
                         (key(family_metric(Family.OPEN_PLATFORM, "Mobile")), 1),
                         (key(family_metric(Family.CLICK_BROWSER, "Mobile Safari")), 1),
                         (key(family_metric(Family.CLICK_LOCATION, "HTML")), 1)]),
        ])

        opens = await flavour(client.outbound.opens(country="Denmark", count=10))
        assert isinstance(opens, posthouse.OpenList) and opens.total_count == 2
        latest, first = opens.opens
        assert isinstance(first, posthouse.OpenEvent)
        assert (first.first_open, latest.first_open, first.message_id, first.platform) == \
            (True, False, sent.message_id, "Mobile")
        assert first.client == posthouse.AgentDetails(name="Apple Mail", company="Apple", family=None)
        assert first.os.family == "iOS" and first.geo.country == "Denmark" and first.geo.ip == "192.0.2.1"
        assert datetime.fromisoformat(first.received_at) == when
        assert (await flavour(client.outbound.opens(recipient="bob@example.com"))).total_count == 0
        assert (await flavour(client.outbound.opens(from_date=when + timedelta(seconds=1)))).total_count == 1
        mine = await flavour(client.outbound.message_opens(sent.message_id, count=1, offset=1))
        assert mine.total_count == 2 and mine.opens == [first]

        clicks = await flavour(client.outbound.clicks(tag="news"))
        assert isinstance(clicks, posthouse.ClickList)
        [click] = clicks.clicks
        assert isinstance(click, posthouse.ClickEvent)
        assert (click.original_link, click.click_location, click.geo.country) == \
            ("https://example.com/x", "HTML", "Denmark")
        assert (await flavour(client.outbound.message_clicks(sent.message_id))).clicks == [click]

        counts = await flavour(client.stats.opens(tag="news"))
        assert counts == posthouse.OpenCounts(days=[posthouse.OpenDay(date="2026-01-05", opens=2, unique=1)],
                                              opens=2, unique=1)
        clients = await flavour(client.stats.email_clients(from_date="2026-01-05", to_date="2026-01-05"))
        assert clients == posthouse.UsageCounts(days=[posthouse.UsageDay(date="2026-01-05",
                                                                         counts={"Apple Mail": 1})],
                                                totals={"Apple Mail": 1})
        assert (await flavour(client.stats.browser_families())).totals == {"Mobile Safari": 1}
        assert (await flavour(client.stats.open_platforms())).mobile == 1
        assert (await flavour(client.stats.click_locations())).html == 1
        assert (await flavour(client.stats.clicks())).clicks == 1

        with pytest.raises(posthouse.InvalidRequestError) as missing:
            await flavour(client.outbound.message_opens("00000000-0000-0000-0000-000000000000"))
        assert missing.value.error_code == 701
    finally:
        await flavour.close(client)
