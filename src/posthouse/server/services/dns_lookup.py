"""DNS lookups for verifying sending domains: the TXT and CNAME records a domain owner publishes for us.

`DnsLookup` is the small interface domain verification needs; `DnsPythonLookup` implements it with
dnspython's async resolver, on the nameservers the `dns_nameservers` setting names (HOST:PORT, as the
`mx` delivery's resolver takes them) or the system's. Nothing is cached: an owner who has just published
a record and asks to verify it must be answered from DNS as it is now, not from a remembered "no".

An answer that says the name or record does not exist is a value (no records); a lookup that gets no
answer at all (timeout, SERVFAIL, refused) raises `DnsLookupError`, and verification then leaves what it
knew unchanged rather than turning a resolver outage into "not verified".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
import dns.rrset

from posthouse.server.errors import OperationalError


class DnsLookupError(OperationalError):
    """No usable answer came back (timeout, SERVFAIL, no nameserver reachable)."""


class DnsLookup(Protocol):
    async def txt(self, name: str) -> list[str]:
        """The TXT records at `name`, each record's strings joined (RFC 7208 §3.3); [] when there are none."""
        ...

    async def cname(self, name: str) -> str | None:
        """The target of the CNAME at `name`, lower-cased without the root dot; None when there is none."""
        ...


class DnsPythonLookup:
    """`DnsLookup` over dnspython's async resolver. `nameservers`: (host, port) pairs; empty: the system's."""

    def __init__(self, nameservers: Sequence[tuple[str, int]] = (), timeout: float = 5.0) -> None:
        self._resolver = dns.asyncresolver.Resolver(configure=not nameservers)
        if nameservers:
            self._resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in nameservers]
        # EDNS with a 1232-byte payload (the DNS flag day 2020 size): a 2048-bit key's record fits without TCP.
        self._resolver.use_edns(0, 0, 1232)
        self._resolver.lifetime = timeout
        self._resolver.timeout = min(2.0, timeout)

    async def _answer(self, name: str, rdtype: str) -> dns.rrset.RRset | None:
        try:
            answer = await self._resolver.resolve(name, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return None
        except dns.exception.DNSException as exc:  # timeout, no nameservers, SERVFAIL from all of them
            raise DnsLookupError(f"{rdtype} lookup of {name} failed: {exc.__class__.__name__}: {exc}") from None
        return answer.rrset

    async def txt(self, name: str) -> list[str]:
        rrset = await self._answer(name, "TXT")
        if rrset is None:
            return []
        return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in rrset]

    async def cname(self, name: str) -> str | None:
        rrset = await self._answer(name, "CNAME")
        if rrset is None:
            return None
        for rdata in rrset:
            return str(rdata.target).rstrip(".").lower()
        return None
