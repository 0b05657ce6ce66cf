"""Recording opens and clicks on SQLite and PostgreSQL: the tracking listener's app through httpx over ASGI, the
API's details for the timeline, and the rows the recorder writes (hits, firsts, counters, webhook posts).

Messages are accepted through the real API; their links and tokens come from tests/tracking_helpers.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from posthouse.server.domain.stats import day_of
from posthouse.server.services.tracking import PIXEL, PendingHit, TrackingService
from posthouse.server.store.base import Store
from posthouse.server.workers.tracking import TrackingRecorder
from tracking_helpers import (
    APPLE_MAIL,
    CHROME,
    GMAIL_PROXY,
    IPHONE_SAFARI,
    LINKS,
    SCANNER,
    Harness,
    harness,
    tracking_key,
    write_city_db,
)


@pytest.fixture
async def h(store: Store) -> AsyncIterator[Harness]:
    async for made in harness(store):
        yield made


async def test_the_pixel_records_opens_first_and_repeat(h: Harness) -> None:
    every = await h.webhook(Open={"Enabled": True, "PostFirstOpenOnly": False})
    first_only = await h.webhook(Open={"Enabled": True, "PostFirstOpenOnly": True})
    message = await h.tracked("ann@example.com, bob@example.com", Tag="welcome", Metadata={"user": "42"})

    answer = await h.open(message.pixel("ann@example.com"), APPLE_MAIL)
    assert answer.status_code == 200 and answer.content == PIXEL and len(answer.content) == 43
    assert answer.headers["content-type"] == "image/gif" and "no-store" in answer.headers["cache-control"]
    await h.hits(1)  # one batch each, so the repeat comes after the first in time and in batches
    await h.open(message.pixel("ann@example.com"), APPLE_MAIL)
    await h.open(message.pixel("bob@example.com"), CHROME)
    hits = await h.hits(3)

    ann, bob = message.deliveries["ann@example.com"], message.deliveries["bob@example.com"]
    assert [(x["delivery_id"], x["kind"], x["first"]) for x in hits] == [(ann, "open", 1), (ann, "open", 0),
                                                                         (bob, "open", 1)]
    assert (hits[0]["platform"], hits[0]["client_name"], hits[0]["os_name"]) == ("Desktop", "Apple Mail",
                                                                                 "Mac OS X 10.15.7")
    assert (hits[2]["platform"], hits[2]["client_name"]) == ("WebMail", "Chrome 120.0.0.0")
    assert hits[0]["ip"] == "127.0.0.1" and hits[0]["user_agent"] == APPLE_MAIL

    engagement = await h.store.query("SELECT delivery_id, opens, clicks FROM engagements ORDER BY delivery_id")
    assert [tuple(r) for r in engagement] == sorted([(ann, 2, 0), (bob, 1, 0)])

    day = day_of(hits[0]["occurred_at"])
    rows = await h.store.query("SELECT day, stream, tag, metric, value FROM stats_daily WHERE metric = 'opens'")
    assert [tuple(r) for r in rows] == [(day, "outbound", "welcome", "opens", 3)]
    assert await h.counters() == {
        "opens": 3, "opens.unique": 2, "opens.platform:Desktop": 1, "opens.platform:WebMail": 1,
        "opens.withplatform": 2, "opens.withclient": 2, "opens.client:Apple Mail": 1, "opens.client:Chrome": 1,
    }

    all_opens = await h.posts(every)
    assert [(p["Recipient"], p["FirstOpen"]) for p in all_opens] == [
        ("ann@example.com", True), ("ann@example.com", False), ("bob@example.com", True)]
    assert [(p["Recipient"], p["FirstOpen"]) for p in await h.posts(first_only)] == [
        ("ann@example.com", True), ("bob@example.com", True)]
    payload = all_opens[0]
    assert payload["RecordType"] == "Open" and payload["MessageID"] == message.message_id
    assert (payload["MessageStream"], payload["Tag"], payload["Metadata"]) == ("outbound", "welcome", {"user": "42"})
    assert payload["Platform"] == "Desktop" and payload["ReadSeconds"] == 0 and payload["UserAgent"] == APPLE_MAIL
    assert payload["Client"] == {"Name": "Apple Mail", "Company": "Apple", "Family": "Apple Mail"}
    assert payload["OS"] == {"Name": "Mac OS X 10.15.7", "Company": "Apple", "Family": "Mac OS X"}
    assert payload["Geo"]["IP"] == "127.0.0.1" and payload["Geo"]["City"] is None

    timeline = await h.timeline(message.message_id)
    assert [(e["Recipient"], e["Type"], e["Details"]) for e in timeline] == [
        ("ann@example.com", "Opened", {"Summary": f"Email opened with {APPLE_MAIL}"}),
        ("bob@example.com", "Opened", {"Summary": f"Email opened with {CHROME}"})]


async def test_links_redirect_and_record_unique_clicks(h: Harness) -> None:
    clicks_hook = await h.webhook(Click={"Enabled": True})
    message = await h.tracked("ann@example.com, bob@example.com")

    answer = await h.click(message.link("ann@example.com", 1), CHROME)
    assert answer.status_code == 302 and answer.headers["location"] == LINKS[0][1]
    assert answer.headers["cache-control"] == "no-store"
    await h.hits(1)
    await h.click(message.link("ann@example.com", 1), CHROME)
    await h.click(message.link("ann@example.com", 2), IPHONE_SAFARI)
    # A gateway's link scanner follows Bob's link before he does: his own click is still his first.
    assert (await h.click(message.link("bob@example.com", 1), SCANNER)).status_code == 302
    await h.hits(4)
    assert (await h.click(message.link("bob@example.com", 1), CHROME)).headers["location"] == LINKS[0][1]
    hits = await h.hits(5)

    assert [(x["recipient"], x["link"], x["first"], x["automated"]) for x in hits] == [
        ("ann@example.com", 1, 1, 0), ("ann@example.com", 1, 0, 0), ("ann@example.com", 2, 1, 0),
        ("bob@example.com", 1, 0, 1), ("bob@example.com", 1, 1, 0)]
    assert [(x["url"], x["click_location"], x["platform"]) for x in hits[1:3]] == [
        (LINKS[0][1], "HTML", "Desktop"), (LINKS[1][1], "Text", "Mobile")]

    clicked = await h.posts(clicks_hook)
    assert [(p["Recipient"], p["OriginalLink"], p["ClickLocation"]) for p in clicked] == [
        ("ann@example.com", LINKS[0][1], "HTML"), ("ann@example.com", LINKS[1][1], "Text"),
        ("bob@example.com", LINKS[0][1], "HTML")]
    assert clicked[1]["Platform"] == "Mobile" and clicked[1]["Client"]["Family"] == "Mobile Safari"
    assert clicked[2]["UserAgent"] == CHROME

    counters = await h.counters()
    assert {k: v for k, v in counters.items() if k.startswith("clicks")} == {
        "clicks": 4, "clicks.unique": 2, "clicks.uniquelinks": 3, "clicks.location:HTML": 2,
        "clicks.location:Text": 1, "clicks.platform:Desktop": 2, "clicks.platform:Mobile": 1,
        "clicks.browser:Chrome": 2, "clicks.browser:Mobile Safari": 1}

    timeline = await h.timeline(message.message_id)
    assert [(e["Recipient"], e["Type"], e["Details"]["Link"], e["Details"]["ClickLocation"]) for e in timeline] == [
        ("ann@example.com", "LinkClicked", LINKS[0][1], "HTML"),
        ("ann@example.com", "LinkClicked", LINKS[1][1], "Text"),
        ("bob@example.com", "LinkClicked", LINKS[0][1], "HTML")]
    assert timeline[1]["Details"]["Summary"] == f"Tracked Link '{LINKS[1][1]}' was clicked from the TextBody."


async def test_the_legacy_open_hook_honours_post_first_open_only(h: Harness) -> None:
    answer = await h.api.put("/server", headers=h.headers,
                             json={"OpenHookUrl": "http://127.0.0.1:9/opens", "PostFirstOpenOnly": True,
                                   "ClickHookUrl": "http://127.0.0.1:9/clicks"})
    assert answer.status_code == 200, answer.text
    hooks = {r[0]: int(r[1]) for r in await h.store.query(
        "SELECT legacy, id FROM webhooks WHERE legacy IS NOT NULL")}
    message = await h.tracked("ann@example.com")
    for _ in range(2):
        await h.open(message.pixel("ann@example.com"), APPLE_MAIL)
    await h.click(message.link("ann@example.com", 1), CHROME)
    await h.hits(3)
    assert [p["FirstOpen"] for p in await h.posts(hooks["OpenHookUrl"])] == [True]
    assert [p["RecordType"] for p in await h.posts(hooks["ClickHookUrl"])] == ["Click"]

    answer = await h.api.put("/server", headers=h.headers, json={"PostFirstOpenOnly": False})
    assert answer.status_code == 200, answer.text
    await h.open(message.pixel("ann@example.com"), APPLE_MAIL)
    await h.hits(4)
    assert [p["FirstOpen"] for p in await h.posts(hooks["OpenHookUrl"])] == [True, False]


async def test_automated_fetches_are_kept_but_never_counted_or_first(h: Harness) -> None:
    every = await h.webhook(Open={"Enabled": True, "PostFirstOpenOnly": False})
    message = await h.tracked("ann@example.com")
    await h.open(message.pixel("ann@example.com"), "Mozilla/5.0")  # Apple Mail Privacy Protection's prefetch
    await h.hits(1)
    await h.open(message.pixel("ann@example.com"), GMAIL_PROXY)  # the reader, through Gmail's image proxy
    hits = await h.hits(2)
    assert [(x["first"], x["proxy"], x["automated"], x["platform"], x["client_name"]) for x in hits] == [
        (0, 1, 1, "Unknown", None), (1, 1, 0, "WebMail", "Gmail")]
    assert [(p["FirstOpen"], p["UserAgent"]) for p in await h.posts(every)] == [(False, "Mozilla/5.0"),
                                                                                 (True, GMAIL_PROXY)]
    counters = await h.counters()
    assert (counters["opens"], counters["opens.unique"], counters["opens.client:Gmail"]) == (1, 1, 1)
    assert [e["Details"]["Summary"] for e in await h.timeline(message.message_id)] == [
        f"Email opened with {GMAIL_PROXY}"]


async def test_made_up_tampered_and_misused_tokens_record_nothing(h: Harness) -> None:
    message = await h.tracked("ann@example.com")
    pixel, link = message.pixel("ann@example.com"), message.link("ann@example.com", 1)
    tampered = link[:5] + ("A" if link[5] != "A" else "B") + link[6:]
    assert (await h.click(tampered, CHROME)).status_code == 404
    assert (await h.click(pixel, CHROME)).status_code == 404  # the pixel's token names no link
    assert (await h.click(message.link("ann@example.com", 7), CHROME)).status_code == 404  # no such link stored
    assert (await h.click(link + "x", CHROME)).status_code == 404
    answer = await h.open(pixel[:-1] + ("A" if pixel[-1] != "A" else "B"), CHROME)
    assert answer.status_code == 200 and answer.content == PIXEL  # a broken image helps nobody: served, not recorded
    assert (await h.open(link, CHROME)).status_code == 200  # a link's token at /o/: not an open
    assert (await h.tracker.get("/x/" + link)).status_code == 404
    assert (await h.tracker.post(f"/c/{link}")).status_code == 405
    head = await h.tracker.head(f"/c/{link}")  # link checkers probe with HEAD: answered, not recorded
    assert head.status_code == 302 and head.headers["location"] == LINKS[0][1] and head.content == b""
    assert (await h.tracker.head(f"/o/{pixel}")).status_code == 200
    # Only a real click is recorded, so everything before it left no row.
    await h.click(link, CHROME)
    hits = await h.hits(1)
    assert [(x["kind"], x["link"]) for x in hits] == [("click", 1)]
    assert (await h.tracker.get("/healthz")).status_code == 503  # not every role of this runtime runs


async def test_hits_within_one_batch_tell_the_earliest_first(store: Store) -> None:
    async for h in harness(store):
        message = await h.tracked("ann@example.com")
        assert h.runtime.tracking is not None and h.runtime.tracking_recorder is not None
        h.runtime.tracking_recorder.stop()  # record by hand below, as one batch
        delivery = message.deliveries["ann@example.com"]
        service = h.runtime.tracking
        firsts = await service.record_batch([
            PendingHit("open", delivery, 2_000_000, CHROME, None),
            PendingHit("open", delivery, 1_000_000, CHROME, None),
            PendingHit("open", delivery, 3_000_000, SCANNER, None)])
        assert [f.open for f in firsts] == [False, True, False]
        again = await service.record_batch([PendingHit("open", delivery, 4_000_000, CHROME, None)])
        assert [f.open for f in again] == [False]
        assert await service.record_batch([PendingHit("open", 999_999, 1, CHROME, None)]) == []  # no such delivery
        counters = await h.counters()
        assert (counters["opens"], counters["opens.unique"]) == (3, 1)


async def test_a_full_queue_makes_the_listener_wait_and_loses_nothing(store: Store) -> None:
    key = await tracking_key(store)
    async for h in harness(store):
        message = await h.tracked("ann@example.com")
        service = TrackingService(store, key, queue_size=1)
        pixel = message.pixel("ann@example.com")
        assert await service.record_open(pixel, CHROME, None)
        waiting = asyncio.ensure_future(service.record_open(pixel, CHROME, None))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # back-pressure: the second hit waits for room, it is not dropped
        recorder = TrackingRecorder(service)
        task = asyncio.ensure_future(recorder.run())
        assert await waiting
        await h.hits(2)
        recorder.stop()
        await task
        assert recorder.recorded == 2


async def test_geo_from_a_trusted_proxys_forwarded_address(store: Store, tmp_path: Path) -> None:
    database = write_city_db(tmp_path / "city.mmdb")
    async for h in harness(store, geoip_database=str(database), tracking_trusted_proxies="127.0.0.0/8"):
        hook = await h.webhook(Open={"Enabled": True, "PostFirstOpenOnly": False})
        message = await h.tracked("ann@example.com")
        await h.open(message.pixel("ann@example.com"), CHROME, **{"X-Forwarded-For": "10.9.9.9, 188.2.95.4"})
        await h.open(message.pixel("ann@example.com"), GMAIL_PROXY, **{"X-Forwarded-For": "188.2.95.4"})
        hits = await h.hits(2)
        assert [(x["ip"], x["city"]) for x in hits] == [("188.2.95.4", "Novi Sad"), ("188.2.95.4", None)]
        geo = (await h.posts(hook))[0]["Geo"]
        assert geo == {"CountryISOCode": "RS", "Country": "Serbia", "RegionISOCode": "VO",
                       "Region": "Autonomna Pokrajina Vojvodina", "City": "Novi Sad", "Zip": "21000",
                       "Coords": "45.2517,19.8369", "IP": "188.2.95.4"}


async def test_an_untrusted_peers_forwarded_header_is_ignored(h: Harness) -> None:
    message = await h.tracked("ann@example.com")
    await h.open(message.pixel("ann@example.com"), CHROME, **{"X-Forwarded-For": "188.2.95.4"})
    assert [x["ip"] for x in await h.hits(1)] == ["127.0.0.1"]
