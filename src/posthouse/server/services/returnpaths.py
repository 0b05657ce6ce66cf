"""The installation's VERP return paths (`domain.verp`), with the key every node shares from the store, and
the sending domains' own Return-Path domains (docs/postmark-api.md §8.4).

A sending domain may have a custom Return-Path domain (`pm-bounces.example.com`) whose CNAME points at our
return-path domain. Once that CNAME is verified, mail from the domain goes out with its envelope sender
there (`pm_bounces+<token>@pm-bounces.example.com`), so SPF and DMARC see the sender's own domain, and its
bounces come back through the CNAME to our SMTP listener, which takes mail for every stored Return-Path
domain as for our own. The token names the delivery and carries the MAC, whatever the domain.

What this reads is cached as the signing keys are (services/dkim_keys.py): per sending domain for `ttl`
seconds, and dropped when the store's count of domain changes moves.
"""

from __future__ import annotations

import logging
import secrets
import time
from email.utils import parseaddr
from functools import lru_cache

from posthouse.server.domain.dns_records import domain_of
from posthouse.server.domain.verp import ReturnPath
from posthouse.server.errors import StoreError
from posthouse.server.services.accounts import TtlCache
from posthouse.server.services.single_flight import SingleFlight
from posthouse.server.store.base import Store

log = logging.getLogger(__name__)
CACHE_SECONDS = 5.0


@lru_cache(maxsize=4096)
def _sender_domain(sender: str) -> str | None:
    """The normalized domain of a From (`Name <address>` or an address): parsed once per sender, not per delivery."""
    return domain_of(parseaddr(sender)[1])


class ReturnPaths:
    """`ReturnPath` for this installation; the key is read (or made, by the first node) once."""

    def __init__(self, store: Store, local: str, domain: str, ttl: float = CACHE_SECONDS) -> None:
        self.store = store
        self.local = local
        self.domain = domain
        self.ttl = ttl
        self._return_path: ReturnPath | None = None
        self._by_sender_domain = TtlCache(10_000, ttl)
        self._custom: frozenset[str] = frozenset()
        self._custom_epoch = -1
        self._custom_loaded_at = float("-inf")
        self._epoch = -1
        self._custom_reads: SingleFlight[None] = SingleFlight()
        self._domain_reads: SingleFlight[str | None] = SingleFlight()

    async def get(self) -> ReturnPath:
        if self._return_path is None:
            key = await self.store.secret("verp-key", secrets.token_hex(32))
            self._return_path = ReturnPath(self.local, self.domain, bytes.fromhex(key))
        return self._return_path

    async def address_for(self, delivery_id: int, sender: str) -> str:
        """The envelope sender for one delivery of a message whose From is `sender` (`Name <address>` or an
        address): at the From domain's verified Return-Path domain if it has one, else at ours."""
        return (await self.get()).address_for(delivery_id, await self.custom_domain_for(sender))

    async def custom_domain_for(self, sender: str) -> str | None:
        """The verified Return-Path domain of the sender's domain, or None."""
        name = _sender_domain(sender)
        if name is None:
            return None
        self.store.refresh_changes()
        if self._epoch != self.store.domain_epoch:
            self._epoch = self.store.domain_epoch
            self._by_sender_domain.clear()
        found, value = self._by_sender_domain.get(name)
        if found:
            return value  # type: ignore[no-any-return]
        return await self._domain_reads.run((self._epoch, name), lambda: self._read_custom_domain(name))

    async def _read_custom_domain(self, name: str) -> str | None:
        epoch = self.store.domain_epoch
        value = await self.store.verified_return_path(name)
        if epoch == self.store.domain_epoch:  # a change committed meanwhile may not be in what was read
            self._by_sender_domain.put(name, value)
        return value

    async def refresh(self) -> None:
        """Bring the set of custom Return-Path domains up to date when it may have changed (the SMTP listener
        calls this as a client connects, so that `is_return_address`, which cannot wait, answers from it).
        A store failure keeps the set as it was: bounces to a domain added meanwhile get a 530 and come again."""
        self.store.refresh_changes()
        if self._custom_epoch == self.store.domain_epoch and time.monotonic() - self._custom_loaded_at < self.ttl:
            return
        # One read at a time: clients connecting meanwhile wait for it.
        await self._custom_reads.run(self.store.domain_epoch, self._read_custom)

    async def _read_custom(self) -> None:
        epoch = self.store.domain_epoch
        try:
            domains = await self.store.return_path_domains()
        except StoreError as exc:
            log.warning("the custom Return-Path domains could not be read; using the ones known: %s", exc)
            return
        self._custom, self._custom_epoch, self._custom_loaded_at = frozenset(domains), epoch, time.monotonic()

    @property
    def custom_domains(self) -> frozenset[str]:
        """The sending domains' Return-Path domains, as last read (`refresh`)."""
        return self._custom

    def is_return_domain(self, domain: str) -> bool:
        domain = domain.lower().rstrip(".")
        return domain == self.domain or domain in self._custom

    def is_return_address(self, address: str) -> bool:
        return self.is_return_domain(address.rpartition("@")[2])
