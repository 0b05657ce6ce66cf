"""The mx transport: deliver each recipient domain's mail straight to its MX hosts (RFC 5321 §5).

For one envelope, recipients are split by domain and each domain is delivered on its own, at the
same time as the others (one SMTP transaction per domain, up to `recipients_per_transaction`
recipients in it); the replies are merged, each with the MX host and address that gave it.

For one domain, in order:

1. **Route** (`MxTransport.route`): the MX records (RFC 5321 §5.1), hosts by preference, random among
   equal preferences; no MX records → the domain's own A/AAAA (the implicit MX); a null MX (RFC 7505)
   → `556 5.1.10` without trying; a domain that does not exist, or whose MX hosts have no address →
   `550 5.1.2` / `550 5.4.4`; a DNS failure → `451 4.4.3` (retried). Each host gets its TLS policy:
   DANE when its TLSA records are DNSSEC-validated (RFC 7672, `delivery/dane.py`), else the domain's
   MTA-STS policy (RFC 8461, `delivery/mta_sts.py`): `enforce` refuses hosts the policy does not name
   and requires a valid certificate for the host name; `testing` tries that and logs what would have
   failed, then delivers anyway; else opportunistic STARTTLS without certificate checks (RFC 7435).
2. **Limits**: a slot among the domain's `connections` (waiting up to `destination_wait`, then the
   message is deferred with `451 4.4.5`), its rate, then per host address the same.
3. **Hosts**, in order, at most `max_addresses` addresses in all: a failure of the host (no connection,
   refused greeting or EHLO, TLS failure, a 421, a dropped connection) moves the recipients not yet
   answered on to the next address; a 4xx/5xx to a recipient is that recipient's result (greylisting
   is a 4xx like any other: the retry schedule handles it). When every host failed, the recipients
   left get a `451` naming the last failure.

Connections are kept per (address, source address, EHLO name, TLS policy) and reused for up to
`messages_per_connection` transactions; idle ones are closed after `idle_seconds`.

A reply is always a value: `send` never raises for a remote failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import random
import ssl
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from posthouse.server.config import DestinationLimit, DestinationLimits, SourceAddress, SourcePools
from posthouse.server.delivery import dane
from posthouse.server.delivery.base import AttemptResult, Envelope
from posthouse.server.delivery.dns import Answer, DnsStatus, MxRecord, Resolver, TlsaRecord, ascii_domain
from posthouse.server.delivery.mta_sts import MtaSts, StsMode, StsPolicy
from posthouse.server.delivery.smtp_client import Reply, SMTPClient, SMTPTLSError, TLSMode
from posthouse.server.errors import ConfigurationError, DeliveryError

__all__ = [
    "MxHost",
    "MxSettings",
    "MxTransport",
    "Route",
    "TlsPolicy",
    "choose_source",
    "is_null_mx",
    "order_mx",
    "split_by_domain",
]

log = logging.getLogger("posthouse.delivery.mx")

_TLS_DOWNGRADE_SECONDS = 3600.0  # after a failed opportunistic handshake, that address gets plaintext this long
# An address that could not be connected to (refused, unreachable, timed out) is not tried again for this long:
# the other hosts are tried at once instead of each message waiting out the same timeout (Postfix, too,
# marks a host dead for a while).
_DOWN_SECONDS = 60.0
_MAX_MX_HOSTS = 10  # MX records looked at per domain, in preference order
# A domain's route (its DNS answers and MTA-STS policy put together) is kept this long at most, and never past
# the TTL of an answer in it; so a new MTA-STS policy id is seen within this time.
_ROUTE_SECONDS = 30.0
_MAX_ROUTES = 10_000


class TlsPolicy(StrEnum):
    """What TLS a connection to one MX host must have."""

    OPPORTUNISTIC = "opportunistic"  # STARTTLS if offered, no certificate check; plaintext if it fails
    MTA_STS_TESTING = "mta-sts-testing"  # as MTA_STS, but a failure is logged and delivery goes on opportunistically
    MTA_STS = "mta-sts"  # STARTTLS with a certificate valid for the MX host name (RFC 8461 §4.2)
    DANE = "dane"  # STARTTLS with a certificate matching the host's TLSA records (RFC 7672 §3)


@dataclass(frozen=True, slots=True)
class MxHost:
    name: str
    preference: int
    addresses: tuple[str, ...]
    tls: TlsPolicy = TlsPolicy.OPPORTUNISTIC
    tlsa: tuple[TlsaRecord, ...] = ()
    refusal: str = ""  # why this host must not be used ("" when it may)


@dataclass(frozen=True, slots=True)
class Route:
    domain: str
    hosts: tuple[MxHost, ...]
    policy: StsPolicy | None = None


@dataclass(frozen=True, slots=True)
class MxSettings:
    ehlo_name: str
    port: int = 25
    ip_versions: tuple[int, ...] = (6, 4)
    limits: DestinationLimits = field(default_factory=lambda: DestinationLimits(
        DestinationLimit(20, 100), DestinationLimit(20, 100)))
    sources: SourcePools = field(default_factory=SourcePools)
    recipients_per_transaction: int = 50
    connect_timeout: float = 30.0
    command_timeout: float = 120.0
    idle_seconds: float = 10.0
    max_addresses: int = 5
    destination_wait: float = 60.0
    dane: bool = True
    ca_file: str = ""  # extra CA bundle for MTA-STS certificate checks


# --- Decisions (pure) ---------------------------------------------------------------------------


def _reply(code: int, enhanced: str, text: str) -> Reply:
    return Reply(code, f"{enhanced} {text}", enhanced)


def split_by_domain(recipients: Iterable[str]) -> tuple[dict[str, list[str]], dict[str, Reply]]:
    """Recipients grouped by their domain in DNS form (A-labels, lowercased), in first-seen order, and the
    replies for recipients whose domain cannot be looked up at all."""
    groups: dict[str, list[str]] = {}
    refused: dict[str, Reply] = {}
    for recipient in dict.fromkeys(recipients):
        _, at, domain = recipient.rpartition("@")
        try:
            if not at:
                raise ValueError("no domain")
            key = domain if domain.startswith("[") else ascii_domain(domain)
        except ValueError as exc:
            refused[recipient] = _reply(553, "5.1.2", f"Bad destination system address: {exc}")
            continue
        groups.setdefault(key, []).append(recipient)
    return groups, refused


def is_null_mx(records: Sequence[MxRecord]) -> bool:
    """RFC 7505 §3: a single MX record `0 .` says the domain takes no mail."""
    return len(records) == 1 and records[0].exchange == ""


def order_mx(records: Sequence[MxRecord], rng: random.Random | None = None) -> list[tuple[str, int]]:
    """(host, preference) in the order to try (RFC 5321 §5.1): lowest preference first, shuffled among
    equals; a null MX among real ones is ignored; a host listed twice is kept at its best preference."""
    rng = rng or random.Random()
    best: dict[str, int] = {}
    for record in records:
        if record.exchange and record.preference < best.get(record.exchange, 1 << 16):
            best[record.exchange] = record.preference
    by_preference: dict[int, list[str]] = {}
    for host, preference in best.items():
        by_preference.setdefault(preference, []).append(host)
    ordered: list[tuple[str, int]] = []
    for preference in sorted(by_preference):
        hosts = sorted(by_preference[preference])
        rng.shuffle(hosts)
        ordered += [(host, preference) for host in hosts]
    return ordered[:_MAX_MX_HOSTS]


def choose_source(pool: Sequence[SourceAddress], domain: str, version: int) -> SourceAddress | None:
    """The pool's address of that IP version for this domain: always the same one for a domain (a
    destination sees one sender address, which its reputation can follow); None when the pool has no
    address of that version (the MX address is then skipped, never reached from an unlisted address)."""
    candidates = [source for source in pool if source.version == version]
    if not candidates:
        return None
    return candidates[zlib.crc32(domain.encode()) % len(candidates)]


def host_tls_policy(host: str, policy: StsPolicy | None) -> tuple[TlsPolicy, str]:
    """The TLS policy for a host without DANE, and a refusal ("" when the host may be used)."""
    if policy is None:
        return TlsPolicy.OPPORTUNISTIC, ""
    if policy.mode is StsMode.ENFORCE:
        if not policy.matches(host):
            return TlsPolicy.MTA_STS, f"{host} is not an MX host of the domain's MTA-STS policy (id {policy.id})"
        return TlsPolicy.MTA_STS, ""
    if not policy.matches(host):
        log.warning("MTA-STS testing: %s is not named by the policy (id %s); delivering anyway", host, policy.id)
    return TlsPolicy.MTA_STS_TESTING, ""


def is_too_many_recipients(reply: Reply) -> bool:
    """RFC 5321 §4.5.3.1.10: 452 (4.5.3) for recipients past the server's limit; send them again."""
    return reply.code == 452 and (reply.enhanced == "4.5.3" or "too many" in reply.text.lower())


# --- Limits --------------------------------------------------------------------------------------


class _Gate:
    """At most `limit` holders at once; waiting is bounded by the caller."""

    __slots__ = ("held", "limit", "waiters")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.waiters: list[asyncio.Future[None]] = []

    async def acquire(self, timeout: float) -> bool:
        if self.held < self.limit and not self.waiters:
            self.held += 1
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            if waiter in self.waiters:
                self.waiters.remove(waiter)
                return False
            # Handed the slot just as the wait ran out: keep it.
        except BaseException:
            if waiter in self.waiters:
                self.waiters.remove(waiter)
            elif not waiter.cancelled():
                self.release()  # handed over, but the holder is gone: pass it on
            raise
        return True

    def release(self) -> None:
        while self.waiters:
            waiter = self.waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the next waiter
                return
        self.held -= 1

    @property
    def idle(self) -> bool:
        return self.held == 0 and not self.waiters


class _Rate:
    """Spacing of 1/rate seconds between starts: a gentle per-destination message rate."""

    __slots__ = ("next_at", "rate")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.next_at = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        start = max(now, self.next_at)
        self.next_at = start + 1.0 / self.rate
        if start > now:
            await asyncio.sleep(start - now)


class _Limits:
    """Gates and rates by key (a domain, or an address), made on first use and dropped when idle."""

    def __init__(self) -> None:
        self.gates: dict[str, _Gate] = {}
        self.rates: dict[str, _Rate] = {}

    async def enter(self, key: str, limit: DestinationLimit, wait: float) -> bool:
        gate = self.gates.get(key)
        if gate is None:
            gate = self.gates[key] = _Gate(limit.connections)
        if not await gate.acquire(wait):
            return False
        if limit.rate > 0:
            rate = self.rates.get(key)
            if rate is None:
                if len(self.rates) > 10_000:  # forget rates whose spacing has passed
                    now = time.monotonic()
                    self.rates = {k: r for k, r in self.rates.items() if r.next_at > now}
                rate = self.rates[key] = _Rate(limit.rate)
            try:
                await rate.wait()
            except BaseException:
                self.leave(key)
                raise
        return True

    def leave(self, key: str) -> None:
        gate = self.gates[key]
        gate.release()
        if gate.idle:
            del self.gates[key]


# --- The transport --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PoolKey:
    address: str
    source: str
    helo: str
    mode: TLSMode
    tls: TlsPolicy
    host: str  # the MX name the certificate was checked against ("" when it was not)


@dataclass(slots=True)
class _Session:
    client: SMTPClient
    key: _PoolKey
    last_used: float = 0.0


@dataclass(slots=True)
class _Attempt:
    """What one address did for the recipients given to it."""

    replies: dict[str, Reply]
    pending: list[str]  # not answered: on to the next address
    failure: Reply | None = None  # why the rest are pending


def _version(address: str) -> int:
    return ipaddress.ip_address(address).version


def _literal_address(domain: str) -> str | None:
    """The address of an address-literal domain (RFC 5321 §4.1.3: `[192.0.2.1]`, `[IPv6:2001:db8::1]`)."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    text = domain[1:-1]
    if text.lower().startswith("ipv6:"):
        text = text[5:]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


class MxTransport:
    """Direct delivery to recipients' MX hosts; see the module docstring."""

    name = "mx"

    def __init__(self, settings: MxSettings, resolver: Resolver, mta_sts: MtaSts | None = None, *,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.resolver = resolver
        self.mta_sts = mta_sts
        self.connections_opened = 0  # SMTP connections made, for tests and the bench
        self._rng = rng or random.Random()
        self._clock = clock
        self._domains = _Limits()
        self._hosts = _Limits()
        self._idle: dict[_PoolKey, list[_Session]] = {}
        self._downgraded: dict[tuple[str, TlsPolicy], float] = {}  # (address, policy) → until
        self._down: dict[str, tuple[float, Reply]] = {}  # address → (until, why)
        self._sweeper: asyncio.Task[None] | None = None
        self._routes: dict[str, tuple[float, Route | Reply]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False
        self._verify_context = ssl.create_default_context()
        self._verify_context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8461 §4.2, RFC 7672 §8.1
        if settings.ca_file:
            try:
                self._verify_context.load_verify_locations(settings.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigurationError(f"cannot load mx_tls_ca_file {settings.ca_file}: {exc}") from None
        self._dane_context = ssl.create_default_context()
        self._dane_context.check_hostname = False
        self._dane_context.verify_mode = ssl.CERT_NONE  # the chain is checked against TLSA records after
        self._dane_context.minimum_version = ssl.TLSVersion.TLSv1_2

    # Sending -------------------------------------------------------------------------------------

    async def send(self, envelope: Envelope) -> AttemptResult:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep(), name="mx-idle-sweeper")
        groups, replies = split_by_domain(envelope.recipients)
        destinations: dict[str, tuple[str, str]] = {}
        results: list[tuple[dict[str, Reply], dict[str, tuple[str, str]]] | BaseException]
        if len(groups) == 1:  # the usual case (one recipient with VERP): no task to make
            ((domain, rcpts),) = groups.items()
            try:
                results = [await self._deliver_domain(domain, rcpts, envelope)]
            except Exception as exc:  # noqa: BLE001 — as gather's return_exceptions: logged below, a 451
                results = [exc]
        else:
            results = await asyncio.gather(*(self._deliver_domain(domain, rcpts, envelope)
                                             for domain, rcpts in groups.items()), return_exceptions=True)
        for (domain, rcpts), result in zip(groups.items(), results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # cancelled: the worker is stopping
                log.error("delivery to %s failed unexpectedly", domain, exc_info=result)
                failure = _reply(451, "4.3.0", f"internal error delivering to {domain}: {type(result).__name__}")
                replies.update(dict.fromkeys(rcpts, failure))
                continue
            domain_replies, domain_destinations = result
            replies.update(domain_replies)
            destinations.update(domain_destinations)
        # One server/ip for the attempt as a whole: the first delivered recipient's, else the first one's.
        server, ip = next((destinations[r] for r in envelope.recipients
                           if r in destinations and replies[r].is_positive),
                          next(iter(destinations.values()), ("", "")))
        return AttemptResult(replies, server, ip, destinations=destinations)

    async def _deliver_domain(self, domain: str, rcpts: list[str], envelope: Envelope
                              ) -> tuple[dict[str, Reply], dict[str, tuple[str, str]]]:
        route = await self.route(domain)
        if isinstance(route, Reply):
            return dict.fromkeys(rcpts, route), {}
        limit = self.settings.limits.for_domain(domain)
        if not await self._domains.enter(domain, limit, self.settings.destination_wait):
            busy = _reply(451, "4.4.5", f"{domain}: all {limit.connections} connections busy; deferred")
            return dict.fromkeys(rcpts, busy), {}
        try:
            return await self._deliver_route(route, rcpts, envelope, limit)
        finally:
            self._domains.leave(domain)

    async def _deliver_route(self, route: Route, rcpts: list[str], envelope: Envelope, limit: DestinationLimit
                             ) -> tuple[dict[str, Reply], dict[str, tuple[str, str]]]:
        replies: dict[str, Reply] = {}
        destinations: dict[str, tuple[str, str]] = {}
        pending = rcpts
        failure = _reply(451, "4.4.4", f"{route.domain}: no MX host could be tried")
        last: tuple[str, str] = ("", "")
        tried = 0
        for host in route.hosts:
            if host.refusal:
                failure = _reply(451, "4.7.5" if host.tls is not TlsPolicy.OPPORTUNISTIC else "4.4.4", host.refusal)
                log.info("%s: skipping %s: %s", route.domain, host.name, host.refusal)
                continue
            for address in host.addresses:
                if tried >= self.settings.max_addresses:
                    break
                tried += 1
                last = (host.name, address)
                attempt = await self._try_address(route, host, address, pending, envelope, limit)
                for rcpt, reply in attempt.replies.items():
                    replies[rcpt] = reply
                    destinations[rcpt] = last
                pending = attempt.pending
                if not pending:
                    return replies, destinations
                if attempt.failure is not None:
                    failure = attempt.failure
                    log.info("%s: %s[%s] failed: %s; %d recipient(s) left", route.domain, host.name, address,
                             failure, len(pending))
        for rcpt in pending:
            replies[rcpt] = failure
            if last[0]:
                destinations[rcpt] = last
        return replies, destinations

    async def _try_address(self, route: Route, host: MxHost, address: str, rcpts: list[str], envelope: Envelope,
                           domain_limit: DestinationLimit) -> _Attempt:
        settings = self.settings
        where = f"{host.name}[{address}]"
        source: SourceAddress | None = None
        pool = settings.sources.for_stream(envelope.stream)
        if pool:
            source = choose_source(pool, route.domain, _version(address))
            if source is None:
                return _Attempt({}, rcpts, _reply(451, "4.4.4", f"{where}: no IPv{_version(address)} source "
                                                  f"address for stream {envelope.stream or '(default)'}"))
        down = self._down.get(address)
        if down is not None:
            if down[0] > self._clock():
                return _Attempt({}, rcpts, down[1])
            del self._down[address]
        host_limit = settings.limits.for_host(host.name)
        if not await self._hosts.enter(address, host_limit, settings.destination_wait):
            return _Attempt({}, rcpts, _reply(451, "4.4.5", f"{where}: all {host_limit.connections} connections "
                                              "busy"))
        try:
            per_connection = min(domain_limit.messages_per_connection, host_limit.messages_per_connection)
            return await self._converse(route, host, address, source, rcpts, envelope, per_connection)
        finally:
            self._hosts.leave(address)


    async def _converse(self, route: Route, host: MxHost, address: str, source: SourceAddress | None,
                        rcpts: list[str], envelope: Envelope, per_connection: int) -> _Attempt:
        session = self._take_idle(host, address, source)
        if session is not None:
            attempt = await self._transact(session, host, address, rcpts, envelope, per_connection, reused=True)
            if attempt is not None:
                return attempt
        opened = await self._open(host, address, source)
        if isinstance(opened, Reply):
            return _Attempt({}, rcpts, opened)
        attempt = await self._transact(opened, host, address, rcpts, envelope, per_connection, reused=False)
        assert attempt is not None
        return attempt

    async def _transact(self, session: _Session, host: MxHost, address: str, rcpts: list[str], envelope: Envelope,
                        per_connection: int, *, reused: bool) -> _Attempt | None:
        """The recipients' transactions over one session; None when a kept session turns out to have been
        closed by the server meanwhile (nothing was sent: the caller opens a new one)."""
        where = f"{host.name}[{address}]"
        client = session.client
        replies: dict[str, Reply] = {}
        todo = list(rcpts)
        limit = self.settings.recipients_per_transaction
        first = True
        while todo:
            chunk, todo = todo[:limit], todo[limit:]
            try:
                result = await client.send(envelope.mail_from, chunk, envelope.data)
            except DeliveryError as exc:
                if reused and first:
                    return None
                return _Attempt(replies, chunk + todo, _reply(451, "4.4.2", f"{where}: {exc}"))
            if reused and first and result.mail_from.code == 421:
                return None  # the 421 a server sends when it times out an idle client (RFC 5321 §3.8)
            first = False
            again: list[str] = []
            failed: list[str] = []
            failure: Reply | None = None
            for rcpt in chunk:
                reply = result.recipients[rcpt]
                if reply.code == 421:
                    # RFC 5321 §3.8: the host is closing; the message was not taken. The next host may.
                    failed.append(rcpt)
                    failure = _reply(451, reply.enhanced or "4.4.2", f"{where} said: {reply}")
                elif (is_too_many_recipients(reply) and result.data is not None and result.data.is_positive
                      and reply is not result.data):
                    again.append(rcpt)
                else:
                    replies[rcpt] = reply
            todo = again + todo
            if failed or not client.is_connected:
                self._release(session, per_connection)
                return _Attempt(replies, failed + todo,
                                failure or _reply(451, "4.4.2", f"{where} closed the connection"))
        self._release(session, per_connection)
        return _Attempt(replies, [])

    # Connections -----------------------------------------------------------------------------------

    def _modes(self, host: MxHost, address: str) -> list[tuple[TLSMode, TlsPolicy]]:
        """The connection attempts for a host, in order, each (client TLS mode, policy it satisfies)."""
        policy = host.tls
        if policy in (TlsPolicy.MTA_STS_TESTING, TlsPolicy.OPPORTUNISTIC):
            now = self._clock()
            if policy is TlsPolicy.MTA_STS_TESTING and self._downgraded.get((address, policy), 0) <= now:
                return [("starttls", policy), ("opportunistic", TlsPolicy.OPPORTUNISTIC),
                        ("none", TlsPolicy.OPPORTUNISTIC)]
            if self._downgraded.get((address, TlsPolicy.OPPORTUNISTIC), 0) <= now:
                return [("opportunistic", TlsPolicy.OPPORTUNISTIC), ("none", TlsPolicy.OPPORTUNISTIC)]
            return [("none", TlsPolicy.OPPORTUNISTIC)]
        return [("starttls", policy)]

    def _key(self, host: MxHost, address: str, source: SourceAddress | None, mode: TLSMode, policy: TlsPolicy
             ) -> _PoolKey:
        helo = (source.ehlo_name if source is not None else "") or self.settings.ehlo_name
        checked = host.name if policy in (TlsPolicy.MTA_STS, TlsPolicy.DANE) else ""
        return _PoolKey(address, source.address if source is not None else "", helo, mode, policy, checked)

    def _take_idle(self, host: MxHost, address: str, source: SourceAddress | None) -> _Session | None:
        now = self._clock()
        for mode, policy in self._modes(host, address):
            idle = self._idle.get(self._key(host, address, source, mode, policy))
            while idle:
                session = idle.pop()
                if session.client.is_connected and now - session.last_used < self.settings.idle_seconds:
                    return session
                self._quit_later(session.client)
        return None

    async def _open(self, host: MxHost, address: str, source: SourceAddress | None) -> _Session | Reply:
        """A new session with the host, in the first TLS mode that works; else the failure as a reply."""
        where = f"{host.name}[{address}]"
        settings = self.settings
        failure = _reply(451, "4.4.1", f"{where}: not tried")
        for mode, policy in self._modes(host, address):
            key = self._key(host, address, source, mode, policy)
            context = None
            if mode == "starttls":
                context = self._dane_context if policy is TlsPolicy.DANE else self._verify_context
            client = SMTPClient(address, settings.port, tls=mode, ssl_context=context, helo_name=key.helo,
                                connect_timeout=settings.connect_timeout, command_timeout=settings.command_timeout,
                                tls_hostname=host.name, source_address=key.source or None)
            self.connections_opened += 1
            try:
                greeting = await client.connect()
            except SMTPTLSError as exc:
                failure = _reply(451, "4.7.5", f"{where}: {exc}")
                if policy is TlsPolicy.MTA_STS_TESTING:
                    log.warning("MTA-STS testing: %s would have been refused (%s); delivering without the check",
                                where, exc)
                elif policy is TlsPolicy.OPPORTUNISTIC and mode == "opportunistic":
                    log.info("%s: TLS failed (%s); plaintext for %.0f s", where, exc, _TLS_DOWNGRADE_SECONDS)
                else:
                    return failure
                self._downgraded[(address, policy)] = self._clock() + _TLS_DOWNGRADE_SECONDS
                continue
            except DeliveryError as exc:
                failure = _reply(451, "4.4.1", f"{where}: {exc}")
                self._down[address] = (self._clock() + _DOWN_SECONDS, failure)
                return failure
            if not greeting.is_positive:
                # A refused greeting or EHLO (RFC 5321 §3.1, §4.3.2): this host will not take mail now.
                return _reply(451, greeting.enhanced or "4.4.2", f"{where} refused the session: {greeting}")
            if policy is TlsPolicy.DANE:
                ssl_object = client.ssl_object
                problem = dane.check_chain(host.tlsa, dane.peer_chain(ssl_object), host.name) \
                    if ssl_object is not None else "no TLS session"
                if problem is not None:
                    await client.quit()
                    return _reply(451, "4.7.5", f"{where}: DANE: {problem}")
            return _Session(client, key)
        return failure

    def _release(self, session: _Session, per_connection: int) -> None:
        """Keep the session for the next message, unless it is closed or has carried its share."""
        if session.client.is_connected and session.client.messages_sent < per_connection:
            session.last_used = self._clock()
            self._idle.setdefault(session.key, []).append(session)
        else:
            self._quit_later(session.client)

    def _quit_later(self, client: SMTPClient) -> None:
        """QUIT without holding up the delivery that let the connection go."""
        if not client.is_connected:
            client.close()
            return
        task = asyncio.ensure_future(client.quit())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _sweep(self) -> None:
        """Close connections idle longer than idle_seconds, checking twice as often; runs until close()."""
        interval = max(0.05, self.settings.idle_seconds / 2)
        while True:
            await asyncio.sleep(interval)
            now = self._clock()
            for key in list(self._idle):
                kept = []
                for session in self._idle[key]:
                    if session.client.is_connected and now - session.last_used < self.settings.idle_seconds:
                        kept.append(session)
                    else:
                        self._quit_later(session.client)
                if kept:
                    self._idle[key] = kept
                else:
                    del self._idle[key]
            self._downgraded = {k: until for k, until in self._downgraded.items() if until > now}
            self._down = {k: entry for k, entry in self._down.items() if entry[0] > now}

    def forget(self) -> None:
        """Drop the routes, DNS answers and down hosts kept (tests that change their zone)."""
        self._routes.clear()
        self._down.clear()
        self.resolver.forget()

    @property
    def idle_connections(self) -> int:
        return sum(len(clients) for clients in self._idle.values())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        idle, self._idle = self._idle, {}
        for sessions in idle.values():
            for session in sessions:
                self._quit_later(session.client)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if self.mta_sts is not None and not self._closed:
            await self.mta_sts.close()
        self._closed = True

    # Routes ----------------------------------------------------------------------------------------

    async def route(self, domain: str) -> Route | Reply:
        """Where mail for `domain` goes, host by host with its TLS policy; or the reply for every recipient."""
        now = self._clock()
        cached = self._routes.get(domain)
        if cached is not None and cached[0] > now:
            return cached[1]
        route, expires = await self._resolve_route(domain)
        expires = min(expires, now + _ROUTE_SECONDS)
        if expires > now:
            if len(self._routes) >= _MAX_ROUTES:
                self._routes = {d: entry for d, entry in self._routes.items() if entry[0] > now}
                while len(self._routes) >= _MAX_ROUTES:
                    del self._routes[next(iter(self._routes))]
            self._routes[domain] = (expires, route)
        return route

    async def _resolve_route(self, domain: str) -> tuple[Route | Reply, float]:
        """The route and until when it holds (the earliest expiry of the DNS answers it was made from)."""
        literal = _literal_address(domain)
        if literal is not None:
            return Route(domain, (MxHost(literal, 0, (literal,)),)), math.inf
        policy_task = asyncio.ensure_future(self.mta_sts.policy(domain)) if self.mta_sts is not None else None
        try:
            mx = await self.resolver.mx(domain)
            names, implicit = self._mx_names(domain, mx)
            if isinstance(names, Reply):
                return names, mx.expires
            versions = self.settings.ip_versions
            answers = await asyncio.gather(*(self.resolver.addresses(name, versions) for name, _ in names))
            policy = await policy_task if policy_task is not None else None
        finally:
            if policy_task is not None and not policy_task.done():
                policy_task.cancel()
        found = [(name, preference, answer) for (name, preference), answer in zip(names, answers, strict=True)]
        expires = min([mx.expires] + [answer.expires for _, _, answer in found])
        if not any(answer.records for _, _, answer in found):
            errors = [answer for _, _, answer in found if answer.status is DnsStatus.ERROR]
            if errors:
                return _reply(451, "4.4.3", f"{domain}: {errors[0].error}"), 0.0
            if implicit:
                return _reply(550, "5.4.4", f"{domain} has no MX and no address record"), expires
            names_text = ", ".join(name for name, _, _ in found)
            return _reply(550, "5.4.4", f"{domain}: its MX hosts ({names_text}) have no address record"), expires
        mx_secure = mx.secure and (not implicit or all(answer.secure for _, _, answer in found))
        hosts = await asyncio.gather(*(self._host(name, preference, answer, mx_secure, policy)
                                       for name, preference, answer in found))
        for _, _, answer in found:
            if answer.status is DnsStatus.ERROR:
                expires = 0.0  # a host whose address could not be had: ask again next time
        return Route(domain, tuple(host for host, _ in hosts), policy), min([expires] + [e for _, e in hosts])

    def _mx_names(self, domain: str, mx: Answer[MxRecord]) -> tuple[list[tuple[str, int]] | Reply, bool]:
        """The hosts to look up, and whether they are the implicit MX (the domain itself)."""
        if mx.status is DnsStatus.ERROR:
            return _reply(451, "4.4.3", f"{domain}: {mx.error}"), False
        if mx.status is DnsStatus.NXDOMAIN:
            return _reply(550, "5.1.2", f"{domain}: no such domain"), False
        if mx.status is DnsStatus.OK:
            if is_null_mx(mx.records):
                # RFC 7505 §4.1, RFC 7504 §3: the domain takes no mail; say so without trying.
                return _reply(556, "5.1.10", f"{domain} does not accept mail (null MX)"), False
            ordered = order_mx(mx.records, self._rng)
            if ordered:
                return ordered, False
        # RFC 5321 §5.1: no MX records, the domain itself is the implicit MX with preference 0.
        return [(domain, 0)], True

    async def _host(self, name: str, preference: int, answer: Answer[str], mx_secure: bool,
                    policy: StsPolicy | None) -> tuple[MxHost, float]:
        """The host with its TLS policy, and until when that holds (the TLSA answer's expiry, if asked)."""
        addresses = answer.records
        if not addresses:
            return MxHost(name, preference, (), refusal=f"{name}: {answer.error or 'no address record'}"), math.inf
        if (self.settings.dane and self.resolver.dnssec and mx_secure and answer.secure):
            # RFC 7672 §2.2: TLSA records count only when MX and address answers were validated.
            tlsa = await self.resolver.tlsa(f"_{self.settings.port}._tcp.{name}")
            if tlsa.status is DnsStatus.ERROR:
                # §2.2: a validated MX host whose TLSA lookup fails cannot be used securely (nor downgraded).
                return MxHost(name, preference, addresses, TlsPolicy.DANE,
                              refusal=f"{name}: TLSA lookup failed: {tlsa.error}"), 0.0
            usable = dane.usable_records(tlsa.records) if tlsa.secure else ()
            if usable:
                return MxHost(name, preference, addresses, TlsPolicy.DANE, usable), tlsa.expires
            tls, refusal = host_tls_policy(name, policy)
            return MxHost(name, preference, addresses, tls, refusal=refusal), tlsa.expires
        tls, refusal = host_tls_policy(name, policy)
        return MxHost(name, preference, addresses, tls, refusal=refusal), math.inf
