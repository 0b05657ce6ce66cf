"""The sender policy (`sender_policy` setting): which From addresses mail may be accepted from.

- `any` (the default, for self-hosting): every From address; nothing is looked up.
- `verified`: as Postmark, only an address on a domain whose DKIM has been verified (docs/postmark-api.md
  §8.4), or one with a confirmed sender signature. Anything else is refused before it is stored: ErrorCode
  400 with Postmark's words ("… is not a Sender Signature on your account …"), or 401 when the address has
  a signature not confirmed yet; over SMTP, `554 5.7.1` with the same words (services/submission.py).

Checked on every acceptance path with a server (`SendingService`: `/email`, batches, templates, bulk, SMTP).
The test token (`POSTMARK_API_TEST`) is not checked: it needs no account, and answering it would tell anyone
which senders an installation has. A domain "verified" means its own name: a verified `example.com` does not
cover `mail.example.com`. The configured operator address (sender confirmation mail) is always allowed.

Answers are cached per address for `ttl` seconds and dropped when the store's count of domain changes moves
(a change on any node; see services/dkim_keys.py), so a newly confirmed signature can send at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from posthouse.server.domain.dns_records import domain_of
from posthouse.server.errors import SenderNotAllowedError
from posthouse.server.services.accounts import TtlCache
from posthouse.server.store.base import Store

POLICIES = ("any", "verified")
CACHE_SECONDS = 5.0


def not_a_signature(shown: str) -> str:
    """Postmark's ErrorCode 400 text; `shown` is the From as the sender wrote it."""
    return (f"The 'From' address you supplied ({shown}) is not a Sender Signature on your account. Please add and "
            "confirm this address in order to be able to use it in the 'From' field of your messages.")


def not_confirmed(shown: str) -> str:
    """The ErrorCode 401 text (Postmark's title for it: "Sender signature not confirmed")."""
    return (f"The 'From' address you supplied ({shown}) has a Sender Signature that is not confirmed yet. Please "
            "confirm it (follow the link in the confirmation email) to use it in the 'From' field of your messages.")


class SenderPolicy:
    def __init__(self, store: Store, mode: str = "any", always_allowed: Iterable[str] = (),
                 ttl: float = CACHE_SECONDS, now: Callable[[], float] = time.monotonic) -> None:
        if mode not in POLICIES:
            raise ValueError(f"sender policy must be one of {POLICIES}, not {mode!r}")
        self.store = store
        self.mode = mode
        self.always_allowed = frozenset(a.lower() for a in always_allowed if a)
        self._cache = TtlCache(10_000, ttl, now)
        self._epoch = -1

    async def check(self, address: str, shown: str) -> None:
        """Raise SenderNotAllowedError unless mail from `address` (the From's addr-spec) may be accepted."""
        if self.mode == "any" or address.lower() in self.always_allowed:
            return
        domain = domain_of(address)
        if domain is None:
            raise SenderNotAllowedError(400, not_a_signature(shown))
        self.store.refresh_changes()
        if self._epoch != self.store.domain_epoch:
            self._epoch = self.store.domain_epoch
            self._cache.clear()
        key = address.lower()
        found, standing = self._cache.get(key)
        if not found:
            epoch = self._epoch
            standing = await self.store.sender_standing(address, domain)
            if epoch == self.store.domain_epoch:
                self._cache.put(key, standing)
        domain_verified, confirmed = standing
        if domain_verified or confirmed:
            return
        if confirmed is False:
            raise SenderNotAllowedError(401, not_confirmed(shown))
        raise SenderNotAllowedError(400, not_a_signature(shown))
