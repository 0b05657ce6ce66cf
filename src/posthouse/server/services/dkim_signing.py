"""DKIM-signing what the delivery worker is about to send, for the domain of the message's From address.

Where it runs: inline, on the event loop, measured (`bench/dkim.py`, BENCHMARKS.md "DKIM signing"). An
event loop with 64 deliveries in flight, each 150 µs of other Python work (the worker's own cost) and a
signature of a 2 KB message, went at 2,125 messages/s signing RSA-2048 inline and 2,022/s handing it to a
thread (`asyncio.to_thread`), 471 against 495 µs of CPU a message; Ed25519 4,161/s against 3,600/s. OpenSSL
releases the GIL for the RSA operation, but the canonicalisation and hashing around it need it, and getting
it back from a loop that is busy costs more than the signature saves. For a large message a thread barely
shortens the loop's longest stall either (1 MB: 3.0 against 4.3 ms; 10 MB: 33 against 37 ms): the work is
a few long C calls (byte searches, the whitespace regex) that hold the GIL throughout.

A message that goes out unchanged to several recipients (one SMTP transaction each, with VERP) is signed
once: its signature fields are kept for a minute under the message's id and put on every copy.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from posthouse.server.domain import dkim
from posthouse.server.domain.dkim_keys import DkimKey
from posthouse.server.errors import DeliveryError, OperationalError
from posthouse.server.services.clock import Clock
from posthouse.server.services.dkim_keys import SigningKeys

log = logging.getLogger("posthouse.dkim")
REUSE_SECONDS = 60.0


class MessageSigner:
    """Signs a delivery's bytes with the keys `SigningKeys` gives for its From domain; none, no signature."""

    def __init__(self, keys: SigningKeys, clock: Clock | None = None, *, cache_size: int = 4096) -> None:
        self.keys = keys
        self.clock = clock or Clock()
        self.cache_size = cache_size
        # (shared name, keys) → (signature fields, when made, monotonic)
        self._made: OrderedDict[tuple[str, tuple[DkimKey, ...]], tuple[bytes, float]] = OrderedDict()

    async def sign(self, content: bytes, from_email: str, *, shared_as: str | None = None) -> bytes:
        """`content` as it goes out (CRLF line endings) with a DKIM-Signature per key at the top; without a
        key for the From domain, `content` itself, unsigned.

        `shared_as` names content that goes out unchanged to several recipients (the message id of untracked
        content): its signature is made once and reused for the others. Raises DeliveryError when the keys
        cannot be had or cannot sign: the delivery is then retried later, never sent unsigned by accident."""
        domain = from_email.rpartition("@")[2].strip().lower()
        if not domain:
            return content
        try:
            keys = tuple(await self.keys.for_domain(domain))
        except OperationalError as exc:
            raise DeliveryError(f"the DKIM keys of {domain} could not be read: {exc}") from exc
        if not keys:
            return content
        message = dkim.normalize_line_endings(content)
        cache_key = (shared_as, keys) if shared_as is not None else None
        if cache_key is not None:
            made = self._made.get(cache_key)
            if made is not None and time.monotonic() - made[1] < REUSE_SECONDS:
                self._made.move_to_end(cache_key)
                return made[0] + message
        timestamp = self.clock.micros() // 1_000_000
        try:
            fields = dkim.signature_fields(message, keys, timestamp=timestamp)
        except ValueError as exc:
            log.error("DKIM signing for %s failed: %s", domain, exc)
            raise DeliveryError(f"DKIM signing for {domain} failed: {exc}") from exc
        if cache_key is not None:
            self._made[cache_key] = (fields, time.monotonic())
            if len(self._made) > self.cache_size:
                self._made.popitem(last=False)
        return fields + message
