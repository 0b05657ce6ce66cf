"""Independent DKIM verifiers for the tests: dkimpy (given the key records directly) and OpenDKIM's
`opendkim-testmsg` (which looks the key up in DNS: a dnslib server on a loopback address, named in a
resolv.conf that only the verifier's private mount namespace sees)."""

from __future__ import annotations

import logging
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dkim as dkimpy  # type: ignore[import-untyped]
import pytest
from dnslib import QTYPE, RCODE, RR, TXT  # type: ignore[import-untyped]
from dnslib.server import BaseResolver, DNSLogger, DNSServer  # type: ignore[import-untyped]
from hypothesis import strategies as st

from posthouse.server.domain.dkim_keys import DkimKey, txt_record

OPENDKIM_TESTMSG = shutil.which("opendkim-testmsg") or "/usr/sbin/opendkim-testmsg"


def records_for(*keys: DkimKey) -> dict[str, str]:
    """The TXT records publishing `keys`, by DNS name."""
    return {key.dns_name: txt_record(key.algorithm, key.private_key_pem) for key in keys}


def signature_count(message: bytes) -> int:
    head = message.split(b"\r\n\r\n", 1)[0]
    return sum(1 for line in head.split(b"\r\n") if line.lower().startswith(b"dkim-signature:"))


@dataclass
class DkimpyResult:
    ok: bool
    log: list[str]


def dkimpy_verify(message: bytes, records: Mapping[str, str], *, index: int = 0) -> DkimpyResult:
    """dkimpy's verdict on the `index`-th DKIM-Signature, with its log (why it failed)."""
    lines: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger(f"dkimpy-verify-{id(lines)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = _Collect()
    logger.addHandler(handler)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return records.get(name.decode().rstrip(".").lower(), "").encode()

    try:
        ok = dkimpy.DKIM(message, logger=logger).verify(idx=index, dnsfunc=dnsfunc)
    except dkimpy.DKIMException as exc:  # dkimpy raises for some failures (a body hash mismatch) instead of False
        lines.append(f"{exc.__class__.__name__}: {exc}")
        ok = False
    finally:
        logger.removeHandler(handler)
    return DkimpyResult(bool(ok), lines)


def assert_dkimpy_verifies_all(message: bytes, records: Mapping[str, str]) -> None:
    count = signature_count(message)
    assert count > 0, "no DKIM-Signature"
    for index in range(count):
        result = dkimpy_verify(message, records, index=index)
        assert result.ok, f"dkimpy refused signature {index}: {result.log}\n{message[:3000]!r}"


class _Zone(BaseResolver):  # type: ignore[misc]
    def __init__(self) -> None:
        self.txt: dict[str, str] = {}

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        value = self.txt.get(name)
        if request.q.qtype == QTYPE.TXT and value is not None:
            data = value.encode()
            # A TXT string holds 255 octets at most; a longer record is several strings (RFC 6376 §3.6.2.2).
            reply.add_answer(RR(request.q.qname, QTYPE.TXT, ttl=60,
                                rdata=TXT([data[i:i + 255] for i in range(0, len(data), 255)])))
        elif value is None:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class TestDns:
    """An authoritative-for-everything DNS server (UDP and TCP) on a random 127.x.y.z address, port 53."""

    __test__ = False

    def __init__(self) -> None:
        self.zone = _Zone()
        self.address = f"127.53.{random.randint(1, 254)}.{random.randint(1, 254)}"
        quiet = DNSLogger(logf=lambda _: None)
        self._servers = [DNSServer(self.zone, address=self.address, port=53, tcp=tcp, logger=quiet)
                         for tcp in (False, True)]

    def publish(self, records: Mapping[str, str]) -> None:
        self.zone.txt.update({name.lower(): value for name, value in records.items()})

    def __enter__(self) -> TestDns:
        for server in self._servers:
            server.start_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()


def require_opendkim() -> None:
    """Skip unless opendkim-testmsg is installed and this process may make a mount namespace (root)."""
    if not os.path.exists(OPENDKIM_TESTMSG):
        if os.environ.get("CI"):
            pytest.fail("opendkim-testmsg is missing (Debian's opendkim-tools; .ci/run installs it)")
        pytest.skip("opendkim-testmsg is not installed (Debian's opendkim-tools)")
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("opendkim-testmsg reads its DNS server from /etc/resolv.conf: replacing that file in a private "
                    "mount namespace needs root")


@contextmanager
def opendkim_dns() -> Iterator[OpenDkim]:
    """A test DNS server and a verifier that asks it."""
    with TestDns() as dns, tempfile.TemporaryDirectory(prefix="opendkim-") as folder:
        resolv = Path(folder) / "resolv.conf"
        # edns0: an RSA-2048 record with its query name may not fit the 512 octets of plain UDP.
        resolv.write_text(f"nameserver {dns.address}\noptions edns0\n")
        yield OpenDkim(dns, resolv)


@dataclass
class OpenDkim:
    dns: TestDns
    resolv: Path

    def verify(self, message: bytes) -> subprocess.CompletedProcess[bytes]:
        """opendkim-testmsg's verdict (returncode 0: every signature good; otherwise stderr says why).

        It resolves through the C library, which reads /etc/resolv.conf: a private mount namespace
        (`unshare --mount`, mounts private by default) gets our resolv.conf bound over it, for this one
        process; the machine's own file is not touched."""
        script = f'mount --bind "{self.resolv}" /etc/resolv.conf && exec "{OPENDKIM_TESTMSG}"'
        return subprocess.run(["unshare", "--mount", "--", "sh", "-c", script], input=message,
                              capture_output=True, timeout=30, check=False)


# --- Messy messages (hypothesis) ----------------------------------------------------------------------------

# RFC 5322 §3.6: at most one of each of these (and exactly one From and Date); OpenDKIM refuses more.
SINGLE_FIELDS = ["Subject", "To", "Cc", "Reply-To", "Message-ID", "In-Reply-To", "References", "Sender"]
REPEATABLE_FIELDS = ["Received", "X-Custom", "x-pm-tag", "List-Unsubscribe", "List-Unsubscribe-Post", "Feedback-ID",
                     "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Comments", "Keywords"]
_WSP = st.sampled_from([" ", "\t", "  ", " \t ", ""])
_WORD = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF, exclude_characters=":\r\n"), min_size=1,
                max_size=12)
_BODY_LINE = st.lists(st.one_of(_WSP, st.binary(min_size=1, max_size=20).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").decode("latin-1"))), max_size=8).map("".join)


@st.composite
def _field(draw: st.DrawFn, name: str, obsolete_colon: bool) -> bytes:
    words = draw(st.lists(_WORD, max_size=8))
    value = ""
    for word in words:
        # Folding: a line break before whitespace (RFC 5322 §2.2.3); otherwise whitespace of any kind and length.
        value += draw(st.sampled_from(["\r\n ", "\r\n\t", "\r\n  "])) if value and draw(st.booleans()) else \
            draw(_WSP) or " "
        value += word
    # Whitespace before the colon is obsolete syntax (RFC 5322 §4.5.x) that dkimpy cannot parse.
    before_colon = draw(st.sampled_from(["", " ", "  "])) if obsolete_colon else ""  # OpenDKIM: no tab there
    return f"{name}{before_colon}:{value}{draw(_WSP)}".encode()


@st.composite
def messy_messages(draw: st.DrawFn, *, rfc5322_counts: bool = False, obsolete_colon: bool = False) -> bytes:
    """Folded and unfolded fields with runs of spaces and tabs, trailing whitespace, 8-bit text; bodies with
    trailing whitespace, empty lines at the end, 8-bit octets, or nothing. `rfc5322_counts`: exactly one From
    and Date and at most one of `SINGLE_FIELDS` (else repeats and odd cases of any field)."""
    if rfc5322_counts:
        names = draw(st.lists(st.sampled_from(SINGLE_FIELDS), unique=True, max_size=len(SINGLE_FIELDS)))
        names += draw(st.lists(st.sampled_from(REPEATABLE_FIELDS), max_size=5))
        names = draw(st.permutations([*names, "Date"]))
    else:
        names = draw(st.lists(st.sampled_from([*SINGLE_FIELDS, *REPEATABLE_FIELDS, "From", "SUBJECT", "date"]),
                              max_size=10))
    fields = [draw(_field(name, obsolete_colon)) for name in names]
    fields.insert(draw(st.integers(0, len(fields))), b"From: someone@example.com")
    lines = draw(st.lists(_BODY_LINE, max_size=12))
    ending = draw(st.sampled_from(["", "\r\n", "\r\n\r\n", "\r\n \r\n\t\r\n"]))
    body = "\r\n".join(lines).encode("latin-1") + ending.encode()
    return b"\r\n".join(fields) + b"\r\n\r\n" + body
