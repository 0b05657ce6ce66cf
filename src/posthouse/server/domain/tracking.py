"""Tracking tokens: the signed names in open-pixel and click URLs, and the placeholders they replace.

A token names one delivery (one recipient of one message) and what was tracked: the open pixel
(link 0) or link n (n ≥ 1, the message's n-th tracked link). It is `base64url(payload || mac)`:

    payload = version (1 byte) || delivery id (8 bytes, big-endian) || link (2 bytes, big-endian)
    mac     = HMAC-SHA256(key, payload)[:10]   (80 bits: a forger gets one guess per request)

28 characters, no padding. The MAC is what makes a click safe: a token can only be made by the
holder of the key, so `/c/<token>` redirects only to a link Posthouse itself rewrote (the URL comes
from the message's stored links, never from the request), and a tampered or made-up token is a 404
(docs/architecture.md §5). Delivery ids are sequential; they are names, not secrets.

A message's content is stored once for all its recipients, but every recipient's copy needs its own
tokens. So the stored content carries *placeholders* of exactly the token's length, made only of
characters that quoted-printable never encodes and that need no escaping in HTML or URLs; the
delivery worker swaps each for the recipient's token just before sending (`personalize`). Same
length means the MIME structure, line lengths and quoted-printable soft breaks stay valid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

TOKEN_LENGTH = 28
OPEN = 0  # the link number of the open pixel
MAX_LINKS = 9999  # links tracked per message at most; the rest stay as they were

_VERSION = 1
_PAYLOAD = 1 + 8 + 2
_MAC = 10
_TOKEN = re.compile(r"[A-Za-z0-9_-]{28}")

# "phtrk" + four digits (the link number) + 19 "x": 28 characters of [a-z0-9], which quoted-printable
# leaves alone (RFC 2045 §6.7 (2)) and HTML and URLs carry as they are.
_PLACEHOLDER_PREFIX = b"phtrk"
PLACEHOLDER = re.compile(rb"phtrk([0-9]{4})x{19}")


def new_key() -> bytes:
    """A fresh signing key (32 random bytes), made once per installation and shared by every node."""
    return secrets.token_bytes(32)


@dataclass(frozen=True, slots=True)
class TrackingToken:
    """What a token names: one delivery, and the open pixel (`link == OPEN`) or the n-th tracked link."""

    delivery_id: int
    link: int

    @property
    def is_open(self) -> bool:
        return self.link == OPEN


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:_MAC]


def encode_token(key: bytes, token: TrackingToken) -> str:
    if not 0 <= token.link <= MAX_LINKS or not 0 < token.delivery_id < 1 << 63:
        raise ValueError(f"cannot encode {token!r}")
    payload = bytes([_VERSION]) + token.delivery_id.to_bytes(8, "big") + token.link.to_bytes(2, "big")
    return base64.urlsafe_b64encode(payload + _mac(key, payload)).decode("ascii")


def decode_token(key: bytes, text: str) -> TrackingToken | None:
    """The token's contents, or None for anything this key did not sign (never an exception)."""
    if len(text) != TOKEN_LENGTH or not _TOKEN.fullmatch(text):
        return None
    raw = base64.urlsafe_b64decode(text)
    payload, mac = raw[:_PAYLOAD], raw[_PAYLOAD:]
    if payload[0] != _VERSION or not hmac.compare_digest(mac, _mac(key, payload)):
        return None
    return TrackingToken(int.from_bytes(payload[1:9], "big"), int.from_bytes(payload[9:11], "big"))


def placeholder(link: int) -> str:
    """The stand-in for link `link`'s token (OPEN for the pixel) in stored content."""
    if not 0 <= link <= MAX_LINKS:
        raise ValueError(f"link number out of range: {link}")
    text = f"phtrk{link:04d}" + "x" * 19
    assert len(text) == TOKEN_LENGTH
    return text


def has_placeholders(content: bytes) -> bool:
    return PLACEHOLDER.search(content) is not None


def personalize(content: bytes, key: bytes, delivery_id: int) -> bytes:
    """`content` with every placeholder replaced by this delivery's token (same length, so the MIME
    structure is untouched). Content without placeholders comes back as it is."""
    if _PLACEHOLDER_PREFIX not in content:
        return content
    tokens: dict[bytes, bytes] = {}

    def token_for(match: re.Match[bytes]) -> bytes:
        found = tokens.get(match.group(1))
        if found is None:
            link = int(match.group(1))
            found = tokens[match.group(1)] = encode_token(key, TrackingToken(delivery_id, link)).encode("ascii")
        return found

    return PLACEHOLDER.sub(token_for, content)
