"""Where the delivery worker gets the DKIM keys to sign a message from a domain with (issue 14).

`SigningKeys` is the seam: the worker codes against it, and the store-backed implementation (keys made
and verified through the Domains API, cached, invalidated on change) is wired in `runtime.py`.
`StaticSigningKeys` is the store-less one: keys given up front, or read once at start from a folder
(`dkim_key_dir`) laid out as OpenDKIM's `opendkim-genkey -D <dir>/<domain>` leaves it, for keys an
operator manages outside Posthouse, and for tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from posthouse.server.domain.dkim import algorithm_of
from posthouse.server.domain.dkim_keys import DkimKey
from posthouse.server.errors import ConfigurationError

KEY_SUFFIXES = (".private", ".pem")  # opendkim-genkey writes <selector>.private; a PEM file may be .pem


class SigningKeys(Protocol):
    async def for_domain(self, domain: str) -> Sequence[DkimKey]:
        """The keys to sign a message from `domain` (lowercase) with; [] when the domain has none."""
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
