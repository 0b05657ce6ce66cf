"""SPF checks of inbound mail (RFC 7208) with pyspf, asking the nameservers the settings name.

pyspf is the one SPF implementation here; its DNS goes through `_lookup`, which asks a dnspython resolver made
for this checker (nameservers and port from `inbound_dns_servers`, so tests point it at a dnslib server on
loopback). pyspf is blocking: a check runs on a thread, and which resolver a lookup uses travels with it in a
context variable, so checkers with different resolvers never mix. The result is told, never enforced: the
Received-SPF header goes to the application, as Postmark passes it on (docs/postmark-api.md §10).
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.resolver

with warnings.catch_warnings():
    # pyspf 2.0.14's source has invalid escape sequences in docstrings; compiling it warns (a SyntaxWarning
    # from 3.12), which the test run's warnings-as-errors would turn into an import failure.
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", SyntaxWarning)
    import spf

__all__ = ["SpfChecker", "SpfVerdict"]

log = logging.getLogger("posthouse.inbound")
_resolver: contextvars.ContextVar[dns.resolver.Resolver] = contextvars.ContextVar("spf_resolver")


@dataclass(frozen=True, slots=True)
class SpfVerdict:
    result: str  # pass, fail, softfail, neutral, none, permerror, temperror
    header: str  # the Received-SPF value (RFC 7208 §9.1)


def _lookup(name: str, qtype: str, strict: bool = True, timeout: float = 20) -> list[tuple[tuple[str, str], Any]]:
    """pyspf's DNSLookup hook, answered by this thread's resolver, in the shape pyspf expects: the records of
    `qtype` keyed by the name asked (dnspython follows CNAMEs itself)."""
    resolver = _resolver.get(None) or dns.resolver.get_default_resolver()
    try:
        answer = resolver.resolve(name, qtype, lifetime=timeout, raise_on_no_answer=False, search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as exc:  # timeouts, no nameserver answering, a malformed answer
        raise spf.TempError(f"DNS {exc}") from None
    answers: list[tuple[tuple[str, str], Any]] = []
    for rdata in answer.rrset or ():
        if qtype in ("A", "AAAA"):
            answers.append(((name, qtype), rdata.address))
        elif qtype == "MX":
            answers.append(((name, qtype), (rdata.preference, rdata.exchange)))
        elif qtype == "PTR":
            answers.append(((name, qtype), rdata.target.to_text(True)))
        elif qtype in ("TXT", "SPF"):
            answers.append(((name, qtype), rdata.strings))
    return answers


spf.DNSLookup = _lookup  # every lookup pyspf makes, in this process, goes through the checker's resolver


class SpfChecker:
    """Checks a client's right to send for its MAIL FROM (or its HELO name, for the null sender)."""

    def __init__(self, *, receiver: str, nameservers: Sequence[tuple[str, int]] = (), timeout: float = 5.0) -> None:
        self.receiver = receiver
        self.timeout = timeout
        if nameservers:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [host for host, _ in nameservers]
            resolver.nameserver_ports = {host: port for host, port in nameservers}
        else:
            resolver = dns.resolver.Resolver()
        resolver.lifetime = timeout
        resolver.timeout = min(timeout, 2.0)
        self._resolver = resolver

    async def check(self, client_ip: str, mail_from: str, helo: str) -> SpfVerdict:
        """Never raises: a check that cannot finish is `temperror` (RFC 7208 §2.6.6)."""
        address = _plain_ip(client_ip)
        context = contextvars.copy_context()
        context.run(_resolver.set, self._resolver)
        try:
            return await asyncio.get_running_loop().run_in_executor(
                None, context.run, self._check, address, mail_from, helo)
        except Exception:  # pyspf on hostile DNS data; the message goes on, the failure is logged
            log.warning("SPF check for %s from %s failed; recorded as temperror", mail_from or "<>", address,
                        exc_info=True)
            return SpfVerdict("temperror", f"temperror (SPF check failed) receiver={self.receiver}; "
                                           f"client-ip={address}; envelope-from=\"{mail_from}\"")

    def _check(self, address: str, mail_from: str, helo: str) -> SpfVerdict:
        query = spf.query(i=address, s=mail_from, h=helo or "unknown", receiver=self.receiver,
                          timeout=self.timeout, querytime=self.timeout)
        result, _code, _explanation = query.check()
        header = query.get_header(result, self.receiver)
        return SpfVerdict(str(result), str(header).removeprefix("Received-SPF:").strip())


def _plain_ip(host: str) -> str:
    """An IPv4 client seen by a dual-stack listener (::ffff:a.b.c.d) is checked as IPv4."""
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)
