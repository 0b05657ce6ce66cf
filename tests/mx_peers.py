"""Real peers for MX delivery tests and the bench, all on loopback.

- `AuthoritativeDns`: a dnslib server on 127.0.0.1 (a free UDP and TCP port) answering for the test
  zone from records given as zone-file lines; NXDOMAIN/NODATA carry the zone's SOA (negative TTL);
  names listed in `secure` get the AD bit, as a validating resolver would set it for a signed zone.
- `TestCA`: a certificate authority made with `cryptography`, issuing server certificates.
- `PolicyServer`: an HTTPS server (asyncio, TLS from the test CA) serving MTA-STS policy files by Host.
- `SmtpSinkProcess`: Postfix's `smtp-sink` on ADDRESS:25, counting the messages it received.
- `loopback_prefix()`: a random 127.X.Y prefix, so that concurrent runs do not fight over port 25.

Port 25 and 443 need root (the tests run as root here and in CI; `requires_root` skips them otherwise).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import random
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dnslib import QTYPE, RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSServer

IS_ROOT = os.geteuid() == 0
requires_root = pytest.mark.skipif(
    not IS_ROOT and not os.environ.get("CI"),
    reason="MX delivery tests listen on 127.x.y.z:25 and :443, which needs root (the tests run as root in CI)")


def loopback_prefix() -> str:
    """'127.X.Y' with X, Y random: the whole 127/8 is loopback on Linux."""
    return f"127.{random.randint(20, 250)}.{random.randint(1, 250)}"


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


# --- DNS ------------------------------------------------------------------------------------------


class _QuietLogger:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class _ZoneResolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, dns: AuthoritativeDns) -> None:
        self.dns = dns

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        question = request.q
        name = str(question.qname).lower()
        qtype = QTYPE[question.qtype]
        with self.dns.lock:
            self.dns.queries[(name.rstrip("."), qtype)] += 1
            records = list(self.dns.records)
            secure = set(self.dns.secure)
            failing = set(self.dns.failing)
        if name.rstrip(".") in failing:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        chain = name
        for _ in range(8):  # follow CNAMEs within the zone
            cnames = [rr for rr in records if str(rr.rname).lower() == chain and rr.rtype == QTYPE.CNAME]
            if not cnames or qtype == "CNAME":
                break
            reply.add_answer(*cnames)
            chain = str(cnames[0].rdata.label).lower()
        answers = [rr for rr in records if str(rr.rname).lower() == chain and QTYPE[rr.rtype] == qtype]
        if answers:
            reply.add_answer(*answers)
        elif not reply.rr:
            if not any(str(rr.rname).lower() == chain for rr in records):
                reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(RR.fromZone(self.dns.soa)[0])
        reply.header.aa = 1
        # What a validating resolver sets for an answer it validated (RFC 4035 §3.2.3); dnslib's reply()
        # copies the query's flags, and the query carries AD (RFC 6840 §5.7), so it is set either way here.
        reply.header.ad = 1 if name.rstrip(".") in secure else 0
        return reply


class AuthoritativeDns:
    """dnslib serving `records` (zone-file lines) on 127.0.0.1:<port>, UDP and TCP."""

    def __init__(self, records: Iterable[str] = (), *, negative_ttl: int = 60, port: int = 0) -> None:
        """`port` 0: a free one (tests); the bench's network namespace uses 53."""
        self.lock = threading.Lock()
        self.records: list[RR] = []
        self.secure: set[str] = set()  # names answered with AD
        self.failing: set[str] = set()  # names answered with SERVFAIL
        self.queries: Counter[tuple[str, str]] = Counter()
        self.soa = f"test. {negative_ttl} IN SOA ns.test. hostmaster.test. 1 3600 600 86400 {negative_ttl}"
        self.add(*records)
        self.port = port
        self._servers: list[DNSServer] = []

    def add(self, *lines: str) -> None:
        with self.lock:
            for line in lines:
                self.records.extend(RR.fromZone(line))

    def remove(self, name: str, qtype: str | None = None) -> None:
        name = name.lower().rstrip(".") + "."
        with self.lock:
            self.records = [rr for rr in self.records if not (
                str(rr.rname).lower() == name and (qtype is None or QTYPE[rr.rtype] == qtype))]

    def start(self) -> AuthoritativeDns:
        resolver = _ZoneResolver(self)
        for _ in range(5):
            port = self.port or _free_udp_tcp_port()
            try:
                servers = [DNSServer(resolver, address="127.0.0.1", port=port, tcp=tcp, logger=_QuietLogger())
                           for tcp in (False, True)]
            except OSError:
                continue
            self.port = port
            self._servers = servers
            for server in servers:
                # A short poll interval: stop() waits for the serving loop to notice.
                server.thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.05},
                                                 daemon=True)
                server.thread.start()
            return self
        raise RuntimeError("no free port for the test DNS server")

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()
        self._servers = []

    def __enter__(self) -> AuthoritativeDns:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_udp_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", 0))
        port = int(tcp.getsockname()[1])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", port))
    return port


# --- Certificates ---------------------------------------------------------------------------------


class TestCA:
    """A CA for the test run: `ca_file` to trust, `issue(names)` for server certificates (PEM files)."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, directory: Path, name: str = "Posthouse Test CA") -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.certificate = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256()))
        self.ca_file = directory / f"ca-{id(self)}.pem"
        self.ca_file.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        self._issued = 0

    def issue(self, names: Iterable[str], *, expired: bool = False) -> tuple[Path, Path, x509.Certificate]:
        """A server certificate for DNS names / IP addresses: (chain file, key file, certificate)."""
        names = list(names)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        start = now - datetime.timedelta(days=3) if expired else now - datetime.timedelta(hours=1)
        end = now - datetime.timedelta(days=1) if expired else now + datetime.timedelta(days=1)
        alt: list[x509.GeneralName] = []
        for name in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.certificate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256()))
        self._issued += 1
        cert_file = self.directory / f"server-{id(self)}-{self._issued}.pem"
        key_file = self.directory / f"server-{id(self)}-{self._issued}.key"
        cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM)
                              + self.certificate.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_file, key_file, certificate

    def server_context(self, names: Iterable[str], *, expired: bool = False) -> ssl.SSLContext:
        cert_file, key_file, _ = self.issue(names, expired=expired)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
        return context


def self_signed_context(directory: Path, name: str) -> ssl.SSLContext:
    """A server context with a certificate nobody trusts (its own CA)."""
    return TestCA(directory, "Untrusted CA").server_context([name])


# --- MTA-STS policy server ------------------------------------------------------------------------


class PolicyServer:
    """HTTPS on ADDRESS:443: `policies[host] = (status, content type, body)`; `requests` lists Host headers."""

    def __init__(self, address: str, context: ssl.SSLContext, port: int = 443) -> None:
        self.address = address
        self.port = port
        self.context = context
        self.policies: dict[str, tuple[int, str, str]] = {}
        self.requests: list[str] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> PolicyServer:
        self._server = await asyncio.start_server(self._serve, self.address, self.port, ssl=self.context)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            host = next((line.split(":", 1)[1].strip().lower() for line in lines[1:]
                         if line.lower().startswith("host:")), "")
            host = host.split(":")[0]
            self.requests.append(host)
            status, media_type, body = self.policies.get(host, (404, "text/plain", "not found"))
            if path != "/.well-known/mta-sts.txt" or method != "GET":
                status, media_type, body = 404, "text/plain", "not found"
            data = body.encode()
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: {media_type}\r\nContent-Length: {len(data)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + data)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, ssl.SSLError):
            pass  # a client that went away, or failed the handshake (the tests look at what it did)
        finally:
            writer.close()


# --- Postfix's smtp-sink --------------------------------------------------------------------------


def smtp_sink_path() -> str | None:
    return shutil.which("smtp-sink", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


class SmtpSinkProcess:
    """`smtp-sink -c ADDRESS:PORT`: accepts every message; `count_received()` reads its own counters."""

    def __init__(self, address: str, port: int = 25, backlog: int = 256) -> None:
        self.address = address
        self.port = port
        self.backlog = backlog
        self._process: subprocess.Popen[bytes] | None = None
        self._counters: IO[bytes] | None = None

    def start(self, timeout: float = 10.0) -> SmtpSinkProcess:
        sink = smtp_sink_path()
        if sink is None:
            raise RuntimeError("smtp-sink not found (apt-get install postfix)")
        self._counters = tempfile.TemporaryFile()  # noqa: SIM115 — lives as long as the sink
        command = [sink, "-c"] + (["-u", "nobody"] if IS_ROOT else []) + [f"{self.address}:{self.port}",
                                                                         str(self.backlog)]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._counters,
                                         stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"smtp-sink on {self.address}:{self.port} exited")
            try:
                with socket.create_connection((self.address, self.port), timeout=1) as probe:
                    if probe.makefile("rb").readline().startswith(b"220"):
                        probe.sendall(b"QUIT\r\n")
                        self._baseline = 0
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"smtp-sink did not start on {self.address}:{self.port}")

    def count_received(self) -> int:
        if self._counters is None:
            return 0
        size = os.fstat(self._counters.fileno()).st_size
        tail = os.pread(self._counters.fileno(), 256, max(0, size - 256))
        for record in reversed(tail.split(b"\r")[:-1]):
            for item in record.split():
                if item.startswith(b"mesg="):
                    return int(item[5:])
        return 0

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._process = None
        if self._counters is not None:
            self._counters.close()
            self._counters = None

    def __enter__(self) -> SmtpSinkProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
