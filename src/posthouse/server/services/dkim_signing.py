"""DKIM-signing what the delivery worker is about to send, for the domain of the message's From address.

Where it runs: inline on the event loop, up to 1 MB; larger messages on a thread. Measured with
`bench/dkim.py` (BENCHMARKS.md, "DKIM signing"): an event loop with 64 deliveries in flight, each 150 µs of
other Python work (the worker's own cost) and a signature of a 2 KB message, went at 1,998 messages/s
signing RSA-2048 inline against 1,900/s handing each signature to a thread (`asyncio.to_thread`), 499 against
525 µs of CPU a message (Ed25519: 4,074 against 3,803/s): the thread needs the GIL for the canonicalisation
and for handing the result back, and waits for it while the loop is busy. A large message is another
matter: signing it inline stops the loop for its whole time (1 MB: 4.2 ms; 10 MB: 40 ms), on a thread the
loop gets turns between its steps (2.7 and 29 ms at most), and the hand-off costs nothing at that size.

Where it runs since then: in a child process (services/signing_process.py) when the runtime gives one, up
to 1 MB; on the loop while that process starts or after it died.

A message that goes out unchanged to several recipients (one SMTP transaction each, with VERP) is signed
once: its signature fields are kept for a minute under the message's id and put on every copy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from posthouse.server.domain import dkim
from posthouse.server.domain.dkim_keys import DkimKey
from posthouse.server.errors import DeliveryError, OperationalError
from posthouse.server.services.clock import Clock
from posthouse.server.services.dkim_keys import SigningKeys
from posthouse.server.services.signing_process import SigningProcess

log = logging.getLogger("posthouse.dkim")
REUSE_SECONDS = 60.0
THREAD_ABOVE = 1 << 20  # bytes: larger messages are signed on a thread (see the module's docstring)


class MessageSigner:
    """Signs a delivery's bytes with the keys `SigningKeys` gives for its From domain; none, no signature."""

    def __init__(self, keys: SigningKeys, clock: Clock | None = None, *, cache_size: int = 4096,
                 process: SigningProcess | None = None) -> None:
        self.keys = keys
        self.process = process  # None: every signature is made in this process
        self.clock = clock or Clock()
        self.cache_size = cache_size
        # (shared name, keys) → (signature fields, when made, monotonic)
        self._made: OrderedDict[tuple[str, tuple[DkimKey, ...]], tuple[bytes, float]] = OrderedDict()

    async def close(self) -> None:
        """Stop the signing process, if there is one (it starts with the first signature asked of it)."""
        if self.process is not None:
            await self.process.close()

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
            if len(message) > THREAD_ABOVE:
                fields = await asyncio.to_thread(dkim.signature_fields, message, keys, timestamp=timestamp)
            else:
                child = await self.process.signature_fields(message, keys, timestamp) \
                    if self.process is not None else None
                fields = child if child is not None else dkim.signature_fields(message, keys, timestamp=timestamp)
        except ValueError as exc:
            log.error("DKIM signing for %s failed: %s", domain, exc)
            raise DeliveryError(f"DKIM signing for {domain} failed: {exc}") from exc
        if cache_key is not None:
            self._made[cache_key] = (fields, time.monotonic())
            if len(self._made) > self.cache_size:
                self._made.popitem(last=False)
        return fields + message
