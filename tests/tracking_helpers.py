"""Tracked messages for tests, until link rewriting puts tokens into mail: a message stored through the real
sending path, its links stored with the store's own function, and each recipient's tokens computed with
the installation's key, as the delivery worker computes them."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from mmdb_writer import MMDBWriter
from netaddr import IPSet  # type: ignore[import-untyped]

from posthouse.server.config import load_settings
from posthouse.server.domain.tracking import OPEN, TrackingToken, encode_token
from posthouse.server.runtime import Runtime
from posthouse.server.store.base import Store
from support import WEBHOOKS_TO_LOOPBACK, async_wait_for

# A mail client's and a browser's user agents: what a reader's software sends with the pixel and the click.
APPLE_MAIL = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
          "Safari/537.36")
IPHONE_SAFARI = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                 "Version/17.1 Mobile/15E148 Safari/604.1")
GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
SCANNER = "Barracuda Sentinel (EE)"


async def tracking_key(store: Store) -> bytes:
    """The installation's signing key, made on first use exactly as the server makes it."""
    return bytes.fromhex(await store.secret("tracking-key", secrets.token_hex(32)))


@dataclass
class TrackedMessage:
    message_id: str
    key: bytes
    deliveries: dict[str, int]  # recipient → delivery id
    links: list[tuple[int, str, str]]  # (link number, URL, location)

    def pixel(self, recipient: str) -> str:
        return encode_token(self.key, TrackingToken(self.deliveries[recipient], OPEN))

    def link(self, recipient: str, number: int) -> str:
        return encode_token(self.key, TrackingToken(self.deliveries[recipient], number))


async def track(store: Store, message_id: str, links: list[tuple[int, str, str]]) -> TrackedMessage:
    """Store `links` for an accepted message and return its recipients' delivery ids and the key."""
    await store.store_message_links(message_id, links)
    rows = await store.query("SELECT recipient, id FROM deliveries WHERE message_id = ?", (message_id,))
    return TrackedMessage(message_id, await tracking_key(store), {r[0]: int(r[1]) for r in rows}, links)


LINKS = [(1, "https://example.com/welcome?a=1&b=2", "HTML"), (2, "https://example.com/help", "Text")]


class Harness:
    def __init__(self, runtime: Runtime, api: httpx.AsyncClient, tracker: httpx.AsyncClient, token: str) -> None:
        self.runtime = runtime
        self.api = api
        self.tracker = tracker
        self.headers = {"X-Postmark-Server-Token": token, "Accept": "application/json"}

    @property
    def store(self) -> Store:
        return self.runtime.store

    async def send(self, to: str, **fields: Any) -> str:
        answer = await self.api.post("/email", headers=self.headers, json={
            "From": "app@example.com", "To": to, "Subject": "Tracked", "HtmlBody": "<p>Hello</p>",
            "TextBody": "Hello", "TrackOpens": True, "TrackLinks": "HtmlAndText", **fields})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["MessageID"])

    async def tracked(self, to: str, **fields: Any) -> TrackedMessage:
        return await track(self.store, await self.send(to, **fields), LINKS)

    async def webhook(self, **triggers: Any) -> int:
        answer = await self.api.post("/webhooks", headers=self.headers,
                                     json={"Url": "http://127.0.0.1:9/hook", "Triggers": triggers})
        assert answer.status_code == 200, answer.text
        return int(answer.json()["ID"])

    async def open(self, token: str, user_agent: str, **headers: str) -> httpx.Response:
        return await self.tracker.get(f"/o/{token}", headers={"User-Agent": user_agent, **headers})

    async def click(self, token: str, user_agent: str) -> httpx.Response:
        return await self.tracker.get(f"/c/{token}", headers={"User-Agent": user_agent})

    async def hits(self, count: int) -> list[dict[str, Any]]:
        """The recorded hits once there are `count` (waiting for the recorder), oldest first."""

        async def enough() -> list[dict[str, Any]] | None:
            rows = _rows(await self.store.query(
                "SELECT delivery_id, recipient, kind, first, proxy, automated, platform, client_name, client_family, "
                "os_name, user_agent, ip, link, url, click_location, city, occurred_at FROM tracking_hits ORDER BY id"))
            return rows if len(rows) >= count else None

        found = await async_wait_for(enough)
        assert len(found) == count, found
        return list(found)

    async def posts(self, webhook_id: int) -> list[dict[str, Any]]:
        """The payloads posted to a webhook, in the order of the events (one batch queues its posts by kind)."""
        rows = await self.store.query("SELECT payload FROM webhook_posts WHERE webhook_id = ?", (webhook_id,))
        return sorted((json.loads(r[0]) for r in rows), key=lambda p: p["ReceivedAt"])

    async def counters(self) -> dict[str, int]:
        """The opens and clicks counters (acceptance's own, Sent and Tracked, are not the recorder's)."""
        rows = await self.store.query("SELECT metric, sum(value) FROM stats_daily WHERE metric LIKE 'opens%' "
                                      "OR metric LIKE 'clicks%' GROUP BY metric")
        return {r[0]: int(r[1]) for r in rows}

    async def timeline(self, message_id: str) -> list[dict[str, Any]]:
        answer = await self.api.get(f"/messages/outbound/{message_id}/details", headers=self.headers)
        assert answer.status_code == 200, answer.text
        return [e for e in answer.json()["MessageEvents"] if e["Type"] in ("Opened", "LinkClicked")]


_HIT_KEYS = ("delivery_id", "recipient", "kind", "first", "proxy", "automated", "platform", "client_name",
             "client_family", "os_name", "user_agent", "ip", "link", "url", "click_location", "city", "occurred_at")


def _rows(rows: list[Any]) -> list[dict[str, Any]]:
    return [dict(zip(_HIT_KEYS, r, strict=True)) for r in rows]


async def harness(store: Store, **settings: Any) -> AsyncIterator[Harness]:
    # The tests' webhooks point at a receiver on this machine, which the operator must allow.
    runtime = Runtime(load_settings({"delivery": "sandbox", **WEBHOOKS_TO_LOOPBACK, **settings}, environ={}), store)
    tokens = await runtime.accounts.bootstrap()
    assert tokens is not None
    app = await runtime.start_tracking()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.app), base_url="http://api.test") as api, \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://track.test") as tracker:
        yield Harness(runtime, api, tracker, tokens[0])
    await runtime.stop()


# -- a GeoIP database in GeoLite2-City's layout, made with mmdb-writer ------------------------------------------

NOVI_SAD = {
    "country": {"iso_code": "RS", "names": {"en": "Serbia", "de": "Serbien"}},
    "subdivisions": [{"iso_code": "VO", "names": {"en": "Autonomna Pokrajina Vojvodina"}}],
    "city": {"names": {"en": "Novi Sad"}},
    "postal": {"code": "21000"},
    "location": {"latitude": 45.2517, "longitude": 19.8369},
}
COUNTRY_ONLY = {"country": {"iso_code": "FR", "names": {"en": "France"}}}
REGISTERED_ONLY = {"registered_country": {"iso_code": "US", "names": {"en": "United States"}}}


def write_city_db(path: Path, *, ip_version: int = 6) -> Path:
    writer = MMDBWriter(ip_version=ip_version, database_type="GeoLite2-City", languages=["en"],
                        description="Posthouse test", ipv4_compatible=ip_version == 6)
    writer.insert_network(IPSet(["188.2.95.0/24"]), NOVI_SAD)
    writer.insert_network(IPSet(["90.0.0.0/8"]), COUNTRY_ONLY)
    writer.insert_network(IPSet(["100.64.0.0/10"] if ip_version == 4 else ["2001:db8::/32"]), NOVI_SAD)
    writer.insert_network(IPSet(["8.8.8.0/24"]), REGISTERED_ONLY)
    if ip_version == 6:
        writer.insert_network(IPSet(["2a02:2f0c::/32"]), COUNTRY_ONLY)
    writer.to_db_file(str(path))
    return path
