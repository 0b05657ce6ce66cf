"""DNS for MX delivery: dnspython's async resolver behind a cache that keeps each answer for its TTL.

Every lookup gives an `Answer` value, never an exception: records, or why there are none. Positive
answers are kept for the smallest TTL of their records (CNAMEs included); "no such name" and "no
records of that type" are kept for the negative TTL of the zone's SOA (RFC 2308 §5: the smaller of
the SOA's own TTL and its MINIMUM field); failures (SERVFAIL, timeouts) are not kept. Lookups of the
same name and type that overlap share one query, so a burst of messages to a cold domain asks once.

`secure` is the AD bit of the answer (RFC 4035 §3.2.3), and is believed only when `dnssec` says the
resolver is a validating one we trust (a resolver on this host: RFC 7672 §1.3 and RFC 6698 §4.1, as
Postfix's `smtp_dns_support_level = dnssec` does). Otherwise it is always False.

This module owns dnspython (`import dns`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import idna

from posthouse.server.errors import ConfigurationError

__all__ = ["Answer", "DnsStatus", "MxRecord", "Resolver", "TlsaRecord", "ascii_domain"]

log = logging.getLogger("posthouse.dns")
T = TypeVar("T")

_MAX_TTL = 86_400.0  # keep nothing longer than a day, whatever the zone says
_MAX_NEGATIVE_TTL = 3_600.0  # RFC 2308 §5 suggests at most 1-3 hours for negative answers
_NEGATIVE_TTL_WITHOUT_SOA = 60.0  # a negative answer without an SOA (a broken server): a short while
_ADDRESS_TYPES = {4: dns.rdatatype.A, 6: dns.rdatatype.AAAA}


class DnsStatus(StrEnum):
    OK = "ok"  # records of the type asked for
    NODATA = "nodata"  # the name exists, without records of that type
    NXDOMAIN = "nxdomain"  # the name does not exist
    ERROR = "error"  # no answer could be had: SERVFAIL, timeout, refused (try again later)


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    name: str
    status: DnsStatus
    records: tuple[T, ...] = ()
    secure: bool = False  # validated by a trusted resolver (the AD bit, with dnssec on)
    error: str = ""  # for ERROR: what went wrong, for messages
    expires: float = 0.0  # until when (the resolver's clock) the answer holds; 0: it was not kept at all


@dataclass(frozen=True, slots=True)
class MxRecord:
    preference: int
    exchange: str  # lowercased, without the final dot; "" for the root (RFC 7505 null MX)


@dataclass(frozen=True, slots=True)
class TlsaRecord:
    """RFC 6698 §2.1: certificate usage, selector, matching type and the association data."""

    usage: int
    selector: int
    matching_type: int
    data: bytes


def ascii_domain(domain: str) -> str:
    """A domain as DNS knows it: lowercased, IDNA A-labels (UTS #46), no final dot. ValueError if invalid."""
    domain = domain.strip().rstrip(".").lower()
    if not domain:
        raise ValueError("empty domain")
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"invalid domain {domain!r}: {exc}") from None


class Resolver:
    """Lookups for MX delivery and MTA-STS; see the module docstring. One per process."""

    def __init__(self, nameservers: Sequence[tuple[str, int]] = (), *, timeout: float = 10.0, dnssec: bool = False,
                 max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        """`nameservers` as (address, port) pairs; none: the system's (/etc/resolv.conf)."""
        try:
            resolver = dns.asyncresolver.Resolver(configure=not nameservers)
        except dns.resolver.NoResolverConfiguration as exc:
            raise ConfigurationError(f"no DNS servers in /etc/resolv.conf; set dns_nameservers ({exc})") from None
        if nameservers:
            resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in nameservers]
        if dnssec:
            # RFC 6840 §5.7: AD in the query asks a validating resolver to say whether it validated;
            # DO (RFC 3225) asks for the DNSSEC records that let it.
            resolver.flags = dns.flags.RD | dns.flags.AD
            resolver.use_edns(0, dns.flags.DO, 1232)
        self.dnssec = dnssec
        self.timeout = timeout
        self.queries = 0  # queries sent (cache misses), for tests and the bench
        self._resolver = resolver
        self._clock = clock
        self._max_entries = max_entries
        self._cache: OrderedDict[tuple[str, dns.rdatatype.RdataType], tuple[float, Answer[Any]]] = OrderedDict()
        self._pending: dict[tuple[str, dns.rdatatype.RdataType], asyncio.Task[tuple[Answer[Any], float]]] = {}

    # Typed lookups -------------------------------------------------------------------------------

    async def mx(self, domain: str) -> Answer[MxRecord]:
        return await self._lookup(domain, dns.rdatatype.MX)

    async def addresses(self, name: str, versions: Sequence[int] = (6, 4)) -> Answer[str]:
        """A and AAAA records (in `versions` order) as one answer: OK if either has addresses."""
        kinds = [_ADDRESS_TYPES[version] for version in versions]
        cached = [self._cached(name, kind) for kind in kinds]
        if all(answer is not None for answer in cached):
            answers: list[Answer[str]] = cached  # type: ignore[assignment]
        else:  # both lookups at once: a cold name costs one round trip, not two
            answers = list(await asyncio.gather(*(self._lookup(name, kind) for kind in kinds)))
        records = tuple(record for answer in answers for record in answer.records)
        secure = all(answer.secure for answer in answers)
        expires = min(answer.expires for answer in answers)
        if records:
            return Answer(name, DnsStatus.OK, records, secure, expires=expires)
        errors = [answer for answer in answers if answer.status is DnsStatus.ERROR]
        if errors:
            return errors[0]
        if any(answer.status is DnsStatus.NXDOMAIN for answer in answers):
            return Answer(name, DnsStatus.NXDOMAIN, (), secure, expires=expires)
        return Answer(name, DnsStatus.NODATA, (), secure, expires=expires)

    async def txt(self, name: str) -> Answer[str]:
        """TXT records, each one's strings joined (RFC 7208 §3.3 and RFC 8461 §3.1 read them so)."""
        return await self._lookup(name, dns.rdatatype.TXT)

    async def tlsa(self, name: str) -> Answer[TlsaRecord]:
        return await self._lookup(name, dns.rdatatype.TLSA)

    def forget(self) -> None:
        """Drop every cached answer (tests that change their zone)."""
        self._cache.clear()

    # The cache ------------------------------------------------------------------------------------

    def _cached(self, name: str, rdtype: dns.rdatatype.RdataType) -> Answer[Any] | None:
        key = (name.lower().rstrip("."), rdtype)
        cached = self._cache.get(key)
        if cached is None:
            return None
        if cached[0] > self._clock():
            self._cache.move_to_end(key)
            return cached[1]
        del self._cache[key]
        return None

    async def _lookup(self, name: str, rdtype: dns.rdatatype.RdataType) -> Answer[Any]:
        cached = self._cached(name, rdtype)
        if cached is not None:
            return cached
        key = (name.lower().rstrip("."), rdtype)
        task = self._pending.get(key)
        if task is None:
            task = asyncio.ensure_future(self._query(*key))
            self._pending[key] = task
            task.add_done_callback(lambda _: self._pending.pop(key, None))
        # Shielded: one caller giving up (cancelled) must not cancel the query the others wait for.
        answer, ttl = await asyncio.shield(task)
        if ttl <= 0:
            return answer
        kept = self._cache.get(key)
        if kept is not None:  # another caller of the same query stored it first
            return kept[1]
        expires = self._clock() + ttl
        answer = dataclasses.replace(answer, expires=expires)
        self._cache[key] = (expires, answer)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
        return answer

    async def _query(self, name: str, rdtype: dns.rdatatype.RdataType) -> tuple[Answer[Any], float]:
        """Ask the resolver; the answer and how long it may be kept (0: not at all)."""
        self.queries += 1
        text = dns.rdatatype.to_text(rdtype)
        try:
            qname = dns.name.from_text(name)
            result = await self._resolver.resolve(qname, rdtype, raise_on_no_answer=False, lifetime=self.timeout,
                                                  search=False)
        except dns.resolver.NXDOMAIN as exc:
            responses = list(exc.responses().values())  # type: ignore[no-untyped-call]
            response = responses[-1] if responses else None
            return Answer(name, DnsStatus.NXDOMAIN, (), self._secure(response)), _negative_ttl(response)
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.YXDOMAIN,
                dns.resolver.NoRootSOA) as exc:
            return Answer(name, DnsStatus.ERROR, error=f"{text} lookup of {name} failed: {exc}"), 0.0
        except dns.exception.DNSException as exc:  # a malformed name or answer: as good as a failure
            log.info("%s lookup of %s failed: %r", text, name, exc)
            return Answer(name, DnsStatus.ERROR, error=f"{text} lookup of {name} failed: {exc}"), 0.0
        secure = self._secure(result.response)
        if result.rrset is None:
            return Answer(name, DnsStatus.NODATA, (), secure), _negative_ttl(result.response)
        records = tuple(_convert(rdtype, rdata) for rdata in result.rrset)
        # The smallest TTL along the way, CNAMEs included.
        ttl = min((rrset.ttl for rrset in result.response.answer), default=result.rrset.ttl)
        return Answer(name, DnsStatus.OK, records, secure), min(float(ttl), _MAX_TTL)

    def _secure(self, response: dns.message.Message | None) -> bool:
        return self.dnssec and response is not None and bool(response.flags & dns.flags.AD)


def _convert(rdtype: dns.rdatatype.RdataType, rdata: Any) -> Any:
    if rdtype == dns.rdatatype.MX:
        exchange: dns.name.Name = rdata.exchange
        host = "" if exchange == dns.name.root else exchange.to_text(omit_final_dot=True).lower()
        return MxRecord(int(rdata.preference), host)
    if rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        return str(rdata.address)
    if rdtype == dns.rdatatype.TXT:
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if rdtype == dns.rdatatype.TLSA:
        return TlsaRecord(int(rdata.usage), int(rdata.selector), int(rdata.mtype), bytes(rdata.cert))
    raise ValueError(f"unexpected record type {rdtype}")


def _negative_ttl(response: dns.message.Message | None) -> float:
    """RFC 2308 §5: min(SOA TTL, SOA MINIMUM) from the authority section."""
    if response is None:
        return _NEGATIVE_TTL_WITHOUT_SOA
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return float(min(rrset.ttl, rrset[0].minimum, _MAX_NEGATIVE_TTL))
    return _NEGATIVE_TTL_WITHOUT_SOA
