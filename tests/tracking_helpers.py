"""Tracked messages for tests, until link rewriting puts tokens into mail: a message stored through the real
sending path, its links stored with the store's own function, and each recipient's tokens computed with
the installation's key, as the delivery worker computes them."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from posthouse.server.domain.tracking import OPEN, TrackingToken, encode_token
from posthouse.server.store.base import Store

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
