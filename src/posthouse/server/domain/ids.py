"""Message ids: UUIDs in Postmark's format whose order follows time (UUIDv7, RFC 9562 §5.7).

Every index keyed by message id (the messages table, the queue's, the events', the metadata's) then
takes new keys at its end instead of at random places: at a million queued messages a random UUIDv4
key missed the page cache on nearly every insert and claim lookup (claim-and-deliver 24% slower than
with a thousand queued). A message id is a name, not a secret; what must not be guessed is signed.
"""

from __future__ import annotations

import random
import threading
import time

_lock = threading.Lock()
_last = [0, 0]  # (milliseconds, counter) of the last id made in this process


def new_message_id() -> str:
    """A UUIDv7: 48 bits of Unix milliseconds, a 12-bit counter (monotonic within a millisecond in this
    process, RFC 9562 §6.2 method 1) and 62 random bits."""
    millis = time.time_ns() // 1_000_000
    with _lock:
        if millis <= _last[0]:
            millis, counter = _last[0], _last[1] + 1
            if counter > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                millis, counter = millis + 1, 0
        else:
            counter = 0
        _last[0], _last[1] = millis, counter
    # From the `random` module, not os.urandom: a message id is not a secret, and a getrandom() system
    # call per message cost the SMTP path about 6% of its event-loop time (it also hands the GIL to the
    # SQLite writer and waits to get it back). The module's generator is seeded from the OS and re-seeded
    # in a forked child, so two processes never share a sequence.
    random_bits = random.getrandbits(62)
    value = (millis << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | random_bits
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
