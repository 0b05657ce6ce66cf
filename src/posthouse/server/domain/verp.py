"""VERP return paths: `<local>+<token>@<domain>`, where the token names one delivery (a message to
one recipient) and proves we made it.

A bounce is attributed from the address it was sent back to, never from its body alone (the body of a
bounce is the sender's to write). The token is the delivery row's id and a truncated HMAC-SHA256 of it
under a key only Posthouse holds, so a forged or mistyped return path names nothing. Naming the
recipient, not just the message, matters: with one return path per message, one recipient could send
a report naming another recipient of the same message and suppress them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection
from dataclasses import dataclass

_TAG_CHARS = 13  # base32 characters of the MAC: 65 bits
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648 §6, lower-cased
_ID_HEX = re.compile(r"[0-9a-f]{1,16}")


@dataclass(frozen=True, slots=True)
class ReturnPath:
    """The return-path form of one installation: `local+token@domain` (RFC 5321 §4.1.2 local part ≤ 64)."""

    local: str
    domain: str
    key: bytes

    def _tag(self, hex_id: str) -> str:
        """The MAC's first 65 bits as 13 lower-case base32 characters (RFC 4648 §6): what
        `base64.b32encode(mac)[:13].lower()` gives, without encoding the whole MAC in Python for 13 of its
        characters (base64's base32 is pure Python)."""
        mac = hmac.digest(self.key, hex_id.encode("ascii"), hashlib.sha256)  # the one-shot C path
        bits = int.from_bytes(mac[:9], "big") >> (72 - 5 * _TAG_CHARS)
        return "".join(_BASE32[(bits >> shift) & 31] for shift in range(5 * (_TAG_CHARS - 1), -1, -5))

    def address_for(self, delivery_id: int, domain: str | None = None) -> str:
        """The envelope sender for one delivery (one recipient of one message), at `domain` when given (a
        sending domain's own Return-Path domain, whose CNAME points at ours): the token, not the domain,
        names the delivery, so the MAC covers the token alone."""
        hex_id = f"{delivery_id:x}"
        return f"{self.local}+{hex_id}{self._tag(hex_id)}@{domain or self.domain}"

    def is_return_address(self, address: str) -> bool:
        """Whether mail to `address` is for bounce processing (our domain), whatever its token."""
        return address.rpartition("@")[2].lower().rstrip(".") == self.domain.lower()

    def delivery_id_from(self, address: str, also: Collection[str] = ()) -> int | None:
        """The delivery a return address names, or None when it is not one of ours or the MAC fails. `also`:
        other domains bounces come back to (sending domains' Return-Path domains, lower-cased)."""
        local, _, domain = address.rpartition("@")
        domain = domain.lower().rstrip(".")
        if domain != self.domain.lower() and domain not in also:
            return None
        prefix, plus, token = local.partition("+")
        if not plus or prefix.lower() != self.local.lower():
            return None
        token = token.lower()
        hex_id, tag = token[:-_TAG_CHARS], token[-_TAG_CHARS:]
        if not _ID_HEX.fullmatch(hex_id) or not hmac.compare_digest(tag, self._tag(hex_id)):
            return None
        return int(hex_id, 16)
