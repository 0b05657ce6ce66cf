"""An authoritative DNS server on loopback for the tests (dnslib), answering what a test publishes in it.

Posthouse's resolver is pointed at it with the `dns_nameservers` setting (`ZoneServer.nameserver`), so domain
verification meets a real DNS server over real UDP: a name with no records is NXDOMAIN, a name with records of
other types answers NOERROR with none, and a name marked `failing` answers SERVFAIL.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from dnslib import CNAME, QTYPE, RCODE, RR, TXT, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class _Resolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, zone: ZoneServer) -> None:
        self.zone = zone

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        with self.zone.lock:
            self.zone.queries.append((name, qtype))
            if name in self.zone.failing:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            records = self.zone.records.get(name, [])
            if not records:
                reply.header.rcode = RCODE.NXDOMAIN
                return reply
            for rtype, rdata in records:
                if rtype == qtype or (rtype == "CNAME" and qtype != "CNAME"):
                    reply.add_answer(RR(name + ".", getattr(QTYPE, rtype), rdata=rdata, ttl=60))
        return reply


class ZoneServer:
    """Records by name (lower case, no root dot); `queries` lists what was asked, in order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: dict[str, list[tuple[str, Any]]] = {}
        self.failing: set[str] = set()
        self.queries: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self._server = DNSServer(_Resolver(self), address="127.0.0.1", port=0,
                                 logger=DNSLogger("-request,-reply,-truncated", prefix=False,
                                                  logf=self.errors.append))

    @property
    def port(self) -> int:
        return int(self._server.server.server_address[1])

    @property
    def nameserver(self) -> str:
        """The `dns_nameservers` setting that points at this server."""
        return f"127.0.0.1:{self.port}"

    def txt(self, name: str, *values: str) -> None:
        """Publish TXT records at `name`, each split into strings of at most 255 octets (RFC 1035 §3.3.14)."""
        with self.lock:
            for value in values:
                data = value.encode()
                self.records.setdefault(name.lower(), []).append(
                    ("TXT", TXT([data[i:i + 255] for i in range(0, len(data), 255)] or [b""])))

    def cname(self, name: str, target: str) -> None:
        with self.lock:
            self.records.setdefault(name.lower(), []).append(("CNAME", CNAME(target + ".")))

    def remove(self, name: str) -> None:
        with self.lock:
            self.records.pop(name.lower(), None)

    def start(self) -> ZoneServer:
        self._server.start_thread()
        return self

    def stop(self) -> None:
        self._server.stop()
        self._server.server.server_close()

    def __enter__(self) -> ZoneServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
