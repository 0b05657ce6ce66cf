"""The official Python clients read stats, opens and clicks from the real server (docs/postmark-api.md §4.5, §6).

Mail is sent through the clients and relayed to a recording sink; the opens and clicks the tracking listener
would record are written into the server's database with the store's `insert_hits` and `bump_stats`, in the
shape that recorder writes. postmark-python validates every answer with its pydantic models, so a missing key
or a `Days` without a fixed key fails here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import postmark
from postmarker.core import PostmarkClient

from e2e.relay_tenants import Tenant
from posthouse.server.domain.stats import Family, Metric, StatKey, day_of, family_metric
from posthouse.server.services.clock import to_micros
from posthouse.server.store import open_store_for
from posthouse.server.store.hits import HitKind, StoredHit, insert_hits
from posthouse.server.store.sql import Stmt
from posthouse.server.store.stats import bump_stats
from support import wait_for

SENDER = "app@example.com"
WHEN = datetime(2026, 1, 5, 10, tzinfo=UTC)
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"


def write(tenant: Tenant, stmts: Sequence[Stmt]) -> None:
    """Statements run in the server process's own database, as its writers would run them."""
    async def run() -> None:
        store = open_store_for(tenant.process.database_url)
        await store.open()
        try:
            await store.transact(stmts)
        finally:
            await store.close()

    asyncio.run(run())


def record_engagement(tenant: Tenant, message_id: str, recipient: str) -> None:
    """Two opens (the first one first) and a click of one recipient on 2026-01-05, with their counters."""
    common: dict[str, Any] = {
              "server_id": tenant.server_id, "stream": "outbound", "message_id": message_id, "delivery_id": 1,
              "recipient": recipient, "tag": "news", "proxy": False, "platform": "Mobile", "user_agent": IPHONE,
              "client_name": "Apple Mail", "client_company": "Apple", "client_family": "Apple Mail",
              "os_name": "iOS 17.4", "os_company": "Apple Inc.", "os_family": "iOS", "country_iso": "DK",
              "country": "Denmark", "city": "Copenhagen", "ip": "192.0.2.1"}
    micros = to_micros(WHEN)

    def key(metric: str) -> StatKey:
        return StatKey(tenant.server_id, day_of(micros), "outbound", "news", metric)

    write(tenant, [
        insert_hits([
            StoredHit(kind=HitKind.OPEN.value, occurred_at=micros, first=True, **common),
            StoredHit(kind=HitKind.OPEN.value, occurred_at=micros + 90_000_000, first=False, **common),
            StoredHit(kind=HitKind.CLICK.value, occurred_at=micros + 30_000_000, first=True, link=1,
                      url="https://example.com/offer", click_location="HTML", **common),
        ]),
        *bump_stats([(key(Metric.OPENS), 2), (key(Metric.UNIQUE_OPENS), 1), (key(Metric.CLICKS), 1),
                     (key(Metric.UNIQUE_CLICKS), 1), (key(Metric.UNIQUE_LINKS_CLICKED), 1),
                     (key(Metric.WITH_CLIENT_RECORDED), 1), (key(Metric.WITH_PLATFORM_RECORDED), 1),
                     (key(family_metric(Family.OPEN_CLIENT, "Apple Mail")), 2),
                     (key(family_metric(Family.OPEN_PLATFORM, "Mobile")), 2),
                     (key(family_metric(Family.CLICK_BROWSER, "Mobile Safari")), 1),
                     (key(family_metric(Family.CLICK_PLATFORM, "Mobile")), 1),
                     (key(family_metric(Family.CLICK_LOCATION, "HTML")), 1)]),
    ])


async def test_postmark_python_reads_every_stat_and_the_opens_and_clicks(tenant: Tenant) -> None:
    async with postmark.ServerClient(tenant.token, base_url=tenant.base_url, retries=0) as client:
        sent = await client.outbound.send({
            "sender": SENDER, "to": tenant.address("ann"), "cc": tenant.address("cc"), "subject": "News",
            "html_body": "<p>News</p>", "tag": "news", "track_opens": True, "track_links": "HtmlOnly"})
        await asyncio.to_thread(wait_for, lambda: len(tenant.arrived()) == 2, 10)
        await asyncio.to_thread(record_engagement, tenant, sent.message_id, tenant.address("ann"))

        overview = await client.stats.overview()
        assert (overview.sent, overview.tracked, overview.with_open_tracking, overview.with_link_tracking) == \
            (2, 2, 2, 2)
        assert (overview.opens, overview.unique_opens, overview.total_clicks, overview.unique_links_clicked) == \
            (2, 1, 1, 1)
        today = datetime.now(UTC).date()
        sent_counts = await client.stats.sent_counts(tag="news", from_date=today, to_date=today)
        assert sent_counts.sent == 2 and [(d.date, d.sent) for d in sent_counts.days] == [(today.isoformat(), 2)]
        assert (await client.stats.bounce_counts()).days == []
        assert (await client.stats.spam_counts()).spam_complaint == 0
        assert (await client.stats.tracked_counts(message_stream="outbound")).tracked == 2
        opens = await client.stats.open_counts(from_date=date(2026, 1, 1), to_date=date(2026, 1, 31))
        assert [(d.date, d.opens, d.unique) for d in opens.days] == [("2026-01-05", 2, 1)]
        platforms = await client.stats.platform_usage()
        assert [(d.date, d.mobile, d.desktop, d.web_mail, d.unknown) for d in platforms.days] == \
            [("2026-01-05", 2, 0, 0, 0)]
        clients = await client.stats.email_client_usage()
        assert clients.days == [{"Date": "2026-01-05", "Apple Mail": 2}]
        assert clients.model_extra == {"Apple Mail": 2}
        assert (await client.stats.read_times()).days == []
        clicks = await client.stats.click_counts()
        assert (clicks.clicks, clicks.unique) == (1, 1)
        assert (await client.stats.browser_usage()).model_extra == {"Mobile Safari": 1}
        assert [(d.mobile, d.desktop) for d in (await client.stats.browser_platform_usage()).days] == [(1, 0)]
        assert [(d.html, d.text) for d in (await client.stats.click_location()).days] == [(1, 0)]

        page = await client.outbound.list_opens(count=10, offset=0, platform="Mobile", country="Denmark",
                                                from_date=WHEN - timedelta(days=1), to_date=WHEN + timedelta(days=1))
        assert page.total == 2
        latest, first = page.items
        assert (first.message_id, first.recipient, first.platform, first.tag) == \
            (sent.message_id, tenant.address("ann"), "Mobile", "news")
        assert first.received_at == WHEN and latest.received_at == WHEN + timedelta(seconds=90)
        assert (first.client.name, first.os.family, first.geo.country_iso_code, first.geo.city) == \
            ("Apple Mail", "iOS", "DK", "Copenhagen")
        assert (await client.outbound.list_opens(count=10, offset=0, client_name="Outlook")).total == 0
        assert (await client.outbound.list_opens(count=10, offset=0, recipient=tenant.address("cc"))).total == 0
        mine = await client.outbound.list_message_opens(sent.message_id, count=1, offset=0)
        assert mine.total == 2 and [o.received_at for o in mine.items] == [latest.received_at]

        clicks_page = await client.outbound.list_clicks(count=10, offset=0, tag="news")
        [click] = clicks_page.items
        assert (click.original_link, click.click_location, click.message_id) == \
            ("https://example.com/offer", "HTML", sent.message_id)
        assert (await client.outbound.list_message_clicks(sent.message_id)).total == 1


def test_postmarker_reads_the_stats_and_the_opens(tenant: Tenant) -> None:
    pm = PostmarkClient(server_token=tenant.token, root_api_url=tenant.base_url + "/")
    sent = pm.emails.send(From=SENDER, To=tenant.address("ann"), Subject="News", HtmlBody="<p>News</p>",
                          Tag="news", TrackOpens=True)
    wait_for(lambda: len(tenant.arrived()) == 1, 10)
    record_engagement(tenant, sent["MessageID"], tenant.address("ann"))

    assert pm.stats.overview(tag="news")["Opens"] == 2
    assert pm.stats.opens(fromdate="2026-01-05", todate="2026-01-05") == \
        {"Days": [{"Date": "2026-01-05", "Opens": 2, "Unique": 1}], "Opens": 2, "Unique": 1}
    assert pm.stats.emailclients()["Apple Mail"] == 2
    assert pm.stats.location()["HTML"] == 1
    opens = pm.messages.outbound.opens.all(count=10, offset=0, platform="Mobile")
    assert [o.Recipient for o in opens] == [tenant.address("ann")] * 2
    assert [o.FirstOpen for o in opens] == [False, True]
    assert pm.messages.outbound.opens.get(sent["MessageID"])["TotalCount"] == 2
