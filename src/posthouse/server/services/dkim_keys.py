"""Where the delivery worker's DKIM signing keys come from: a domain's active keys, cached.

`SigningKeys` is the seam the signer codes against (one call per message, on the hot path);
`StoredSigningKeys` is the real one, reading the domains' keys (store/domains.py) through a small cache:
each domain's answer is kept `ttl` seconds, and the whole cache is dropped when the store's count of domain
changes moves. That count moves at the commit of a change made in this process, and when another process
announces its change (PostgreSQL NOTIFY in the changing transaction; on SQLite, the changes file), as for
the webhook hints (services/hints.py): a rotation verified on one node signs with the new key on every node
within milliseconds, `ttl` being only the backstop should an announcement be lost.

Which keys sign (docs/postmark-api.md §8.4, rotation): the active ones only. A pending key, new or rotated
in, is published first and signs once verification has seen it in DNS; until then the key it replaces
keeps signing. A domain with no verified key yet gets none, and its mail goes out unsigned.

`StaticSigningKeys` is the store-less one: keys given up front, or read once at start from a folder
(`dkim_key_dir`) laid out as OpenDKIM's `opendkim-genkey -D <dir>/<domain>` leaves it, for keys an
operator manages outside Posthouse (it takes the place of the stored keys when set), and for tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from posthouse.server.domain.dkim import algorithm_of
from posthouse.server.domain.dkim_keys import DkimAlgorithm, DkimKey, generate_private_key
from posthouse.server.domain.dns_records import DomainNameError, normalize_domain, selector_for
from posthouse.server.errors import ConfigurationError
from posthouse.server.services.accounts import TtlCache
from posthouse.server.services.single_flight import SingleFlight
from posthouse.server.store.base import Store
from posthouse.server.store.domains import NewKey

KEY_SUFFIXES = (".private", ".pem")  # opendkim-genkey writes <selector>.private; a PEM file may be .pem
CACHE_SECONDS = 5.0
CACHE_SIZE = 10_000  # domains remembered at most (LRU); asking for unknown domains must not grow the process

# `dkim_keys` setting → the algorithms of one key generation: RSA-2048 (what every verifier knows), Ed25519
# (RFC 8463), or both, each under its own selector, both signing (receivers use the one they can verify).
KEY_KINDS: dict[str, tuple[DkimAlgorithm, ...]] = {
    "rsa": (DkimAlgorithm.RSA_SHA256,),
    "ed25519": (DkimAlgorithm.ED25519_SHA256,),
    "both": (DkimAlgorithm.RSA_SHA256, DkimAlgorithm.ED25519_SHA256),
}


class SigningKeys(Protocol):
    async def for_domain(self, domain: str) -> Sequence[DkimKey]:
        """The keys to sign a message from `domain` with; [] when the domain has no verified key."""
        ...


class StaticSigningKeys:
    """Keys fixed for the life of the process, by domain (case-insensitive)."""

    def __init__(self, keys: Iterable[DkimKey]) -> None:
        self._by_domain: dict[str, list[DkimKey]] = {}
        for key in keys:
            self._by_domain.setdefault(key.domain.lower(), []).append(key)

    async def for_domain(self, domain: str) -> Sequence[DkimKey]:
        return self._by_domain.get(domain.lower(), [])

    @classmethod
    def from_directory(cls, directory: str | Path) -> StaticSigningKeys:
        """Every `<directory>/<domain>/<selector>.private` (or `.pem`) as a key of that domain and selector;
        the algorithm is the key's own (RSA: rsa-sha256, Ed25519: ed25519-sha256). All of a domain's keys sign
        its mail (an RSA and an Ed25519 key: two signatures, RFC 8463 §4). Read once: a change needs a restart.

        Raises ConfigurationError for a folder that cannot be read or a file that is not such a key."""
        root = Path(directory)
        if not root.is_dir():
            raise ConfigurationError(f"dkim_key_dir {str(root)!r} is not a folder")
        keys = []
        try:
            for domain_dir in sorted(p for p in root.iterdir() if p.is_dir()):
                for path in sorted(p for p in domain_dir.iterdir() if p.suffix in KEY_SUFFIXES and p.is_file()):
                    keys.append(_key_file(domain_dir.name.lower(), path))
        except OSError as exc:
            raise ConfigurationError(f"cannot read DKIM keys in {str(root)!r}: {exc}") from None
        return cls(keys)


def _key_file(domain: str, path: Path) -> DkimKey:
    pem = path.read_bytes()
    try:
        algorithm = algorithm_of(pem)
    except ValueError as exc:
        raise ConfigurationError(f"DKIM key {str(path)!r}: {exc}") from None
    return DkimKey(domain, path.stem, algorithm, pem)


class StoredSigningKeys:
    """`SigningKeys` from the store, cached per domain (see the module docstring)."""

    def __init__(self, store: Store, ttl: float = CACHE_SECONDS, size: int = CACHE_SIZE,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self._cache = TtlCache(size, ttl, now)
        self._epoch = -1
        self._loads: SingleFlight[tuple[DkimKey, ...]] = SingleFlight()  # misses for one domain share one read

    async def for_domain(self, domain: str) -> Sequence[DkimKey]:
        try:
            name = normalize_domain(domain)
        except DomainNameError:
            return ()
        self.store.refresh_changes()
        if self._epoch != self.store.domain_epoch:
            self._epoch = self.store.domain_epoch
            self._cache.clear()
        found, keys = self._cache.get(name)
        if found:
            return keys  # type: ignore[no-any-return]
        return await self._loads.run((self._epoch, name), lambda: self._load(name))

    async def _load(self, name: str) -> tuple[DkimKey, ...]:
        epoch = self.store.domain_epoch
        records = await self.store.active_keys(name)
        keys = tuple(DkimKey(name, k.selector, DkimAlgorithm(k.algorithm), k.private_key_pem) for k in records)
        if epoch == self.store.domain_epoch:  # a change committed meanwhile may not be in what was read
            self._cache.put(name, keys)
        return keys


async def generate_keys(kinds: Sequence[DkimAlgorithm], when: datetime, taken: set[str]) -> list[NewKey]:
    """One generation of new keys, each with a fresh selector. RSA key generation takes tens of milliseconds
    of CPU, so it runs in a thread, off the event loop."""
    keys: list[NewKey] = []
    for algorithm in kinds:
        selector = selector_for(algorithm, when, taken | {k.selector for k in keys})
        pem = await asyncio.to_thread(generate_private_key, algorithm)
        keys.append(NewKey(selector, algorithm.value, pem))
    return keys
