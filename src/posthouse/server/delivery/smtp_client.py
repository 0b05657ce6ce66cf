"""The outbound SMTP client: one connection to a relay or MX, pipelined, replies as values.

Two layers, as in aiosmtplib (protocol.py vs smtp.py):

- framing: `normalize_line_endings`, `stuff_dots` and `_ReplyProtocol` (an `asyncio.Protocol`
  that turns bytes into `Reply` values and owns the per-reply timer);
- conversation: `SMTPClient` (greeting, EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA, RSET, QUIT).

Every way a conversation can break (refused connection, TLS failure, timeout, dropped connection,
unparseable reply) is translated into `DeliveryError` in one place, `SMTPClient._failed`, and
leaves the client closed; a failure of the TLS handshake is its subclass `SMTPTLSError`, so that MX
delivery can tell it apart (opportunistic TLS then tries again in plaintext). A 4xx/5xx reply is a
value; only a refused AUTH raises (`SMTPAuthenticationError`, which carries the reply): the relay
cannot be used at all without it.

A client serves one conversation at a time; it is not safe to call `send` concurrently.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import re
import socket
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from posthouse.server.errors import DeliveryError

__all__ = [
    "Reply",
    "SMTPAuthenticationError",
    "SMTPClient",
    "SMTPTLSError",
    "SendResult",
    "normalize_line_endings",
    "stuff_dots",
]

log = logging.getLogger(__name__)

# "opportunistic": STARTTLS when offered, plaintext when it is not or is refused (RFC 3207 §4, RFC 7435);
# "starttls": STARTTLS or nothing; "implicit": TLS from the first byte (port 465).
TLSMode = Literal["none", "opportunistic", "starttls", "implicit"]

# RFC 5321 §4.5.3.1.5 allows reply lines of 512 octets; real servers send longer text. These
# bound what a hostile peer can make us buffer.
_MAX_LINE = 16 * 1024
_MAX_REPLY = 256 * 1024
# Large messages are written in chunks so that the timeout applies per chunk sent
# (RFC 5321 §4.5.3.2.5: a data block timeout, not one for the whole message).
_CHUNK = 1024 * 1024
# QUIT is a courtesy (RFC 5321 §4.1.1.10); never wait long for its reply.
_QUIT_TIMEOUT = 5.0

# RFC 3463 §2: class "." subject "." detail, at the start of the text (RFC 2034 §4).
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
# An address on a command line must not carry controls (CR/LF would inject commands, RFC 5321
# §4.1.2 forbids them anyway) nor angle brackets (they would end the path early).
_UNSAFE_ADDRESS = re.compile(r"[\x00-\x1f\x7f<>]")


# --- Replies and results -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply (RFC 5321 §4.2): the code, the lines' text, and the RFC 3463 code if any."""

    code: int
    text: str  # the reply lines' text joined with "\n", without the "250-"/"250 " prefix
    enhanced: str | None = None  # "5.1.1" when the first line's text starts with one

    def __str__(self) -> str:
        return f"{self.code} {self.text}" if self.text else str(self.code)

    @property
    def is_positive(self) -> bool:
        """2xx or 3xx (RFC 5321 §4.2.1)."""
        return 200 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        """4xx: try again later."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """5xx: do not repeat the same request."""
        return 500 <= self.code < 600


@dataclass(frozen=True, slots=True)
class SendResult:
    """What became of one transaction, per recipient.

    Every recipient passed to `send` has exactly one reply in `recipients`: its RCPT reply if it
    was refused; else the reply that ended the transaction for it (the final reply after the
    data, a refused DATA, a refused MAIL, or a 421). Replies we make up without asking the server
    have the same shape: 553 5.1.3 / 5.1.7 for an address that cannot be put on a command line,
    553 5.6.7 for a non-ASCII address the server cannot take (RFC 6531 §3.2).
    """

    mail_from: Reply  # the reply to MAIL FROM (or what stood in for it)
    recipients: dict[str, Reply]
    # The reply that ended the data phase: the final reply after ".", or a refused DATA command.
    # None when MAIL failed or no recipient was accepted.
    data: Reply | None


class SMTPAuthenticationError(DeliveryError):
    """The relay refused our credentials (or AUTH itself); `reply` is its answer."""

    def __init__(self, message: str, reply: Reply) -> None:
        super().__init__(message)
        self.reply = reply


class SMTPTLSError(DeliveryError):
    """The TLS handshake failed (or the peer hung up during it): the conversation is over."""


def _synthetic(code: int, enhanced: str, text: str) -> Reply:
    """A reply we make up ourselves, shaped like a server's so it is classified the same way."""
    return Reply(code, f"{enhanced} {text}", enhanced)


# --- Framing -----------------------------------------------------------------------------------


def normalize_line_endings(data: bytes) -> bytes:
    """Make every line end in CRLF, the last one included (RFC 5321 §2.3.8 forbids bare CR and LF).

    Bare CR is converted too, not only bare LF: a receiver that takes "\\r.\\r\\n" or "\\n.\\n" as
    the end of data would otherwise let a message smuggle a second one (SMTP smuggling,
    CVE-2023-51766). An empty message becomes one empty line, as aiosmtplib sends it.
    """
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def stuff_dots(data: bytes) -> bytes:
    """Double a leading "." on every line (RFC 5321 §4.5.2); `data` must be CRLF-normalized."""
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..")


class _ProtocolError(Exception):
    """The peer broke SMTP framing or sequencing; the conversation cannot go on."""


def _parse_reply(lines: list[bytes]) -> Reply:
    code = int(lines[0][:3])
    raw = lines[0][4:] if len(lines) == 1 else b"\n".join([line[4:] for line in lines])
    text = raw.decode("utf-8", "replace")
    match = _ENHANCED.match(text)
    return Reply(code, text, match.group() if match else None)


class _ReplyProtocol(asyncio.Protocol):
    """Bytes in, `Reply` values out, in order; commands out. Knows nothing of SMTP commands.

    Replies that arrive before anyone waits for them (all of a pipelined group, RFC 2920 §3.1)
    are queued. Errors (dropped connection, malformed reply) are kept and raised to the reader
    after any reply that arrived before them.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._lines: list[bytes] = []  # the lines of a multi-line reply read so far
        self._reply_size = 0
        self._replies: deque[Reply] = deque()
        self._waiter: asyncio.Future[Reply] | None = None
        self._error: Exception | None = None
        self._paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer_ip: str | None = str(peer[0]) if peer else None

    def data_received(self, data: bytes) -> None:
        if self._error is not None:
            return
        if self._buffer:
            data = self._buffer + data
        end = data.rfind(b"\n")
        if end < 0:
            self._buffer = data
        else:
            self._buffer = data[end + 1 :]
            try:
                for line in data[:end].split(b"\n"):
                    self._feed_line(line)
            except _ProtocolError as exc:
                self._fail(exc)
                return
        if len(self._buffer) > _MAX_LINE:
            self._fail(_ProtocolError(f"reply line longer than {_MAX_LINE} octets"))
            return
        waiter = self._waiter
        if waiter is not None and self._replies and not waiter.done():
            waiter.set_result(self._replies.popleft())

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._error is None:
            error = ConnectionResetError("connection closed by the peer")
            error.__cause__ = exc
            self._error = error
        self._transport = None
        self._wake(self._error)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # Framing

    def _feed_line(self, line: bytes) -> None:
        # RFC 5321 §4.2: Reply-code [ SP textstring ] CRLF, or Reply-code "-" textstring CRLF for
        # all lines but the last; §4.2.1: every line of a reply carries the same code.
        if line.endswith(b"\r"):
            line = line[:-1]
        code = line[:3]
        separator = line[3:4]
        if (
            len(code) != 3
            or not code.isdigit()
            or code[0] not in b"2345"
            or separator not in (b" ", b"-", b"")
            or (self._lines and self._lines[0][:3] != code)
        ):
            raise _ProtocolError(f"malformed reply line {line[:80]!r}")
        if len(line) > _MAX_LINE:
            raise _ProtocolError(f"reply line longer than {_MAX_LINE} octets")
        self._reply_size += len(line)
        if self._reply_size > _MAX_REPLY:
            raise _ProtocolError(f"reply longer than {_MAX_REPLY} octets")
        if separator == b"-":
            self._lines.append(line)
            return
        if self._lines:
            self._lines.append(line)
            reply = _parse_reply(self._lines)
            self._lines = []
        else:
            reply = _parse_reply([line])
        self._reply_size = 0
        self._replies.append(reply)

    def _fail(self, exc: Exception) -> None:
        self._error = exc
        self._wake(exc)
        if self._transport is not None:
            self._transport.abort()

    def _wake(self, exc: Exception) -> None:
        for waiter in (self._waiter, self._drain_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)

    # What the client uses

    @property
    def is_open(self) -> bool:
        transport = self._transport
        return self._error is None and transport is not None and not transport.is_closing()

    @property
    def has_buffered_input(self) -> bool:
        """True if the peer sent anything that nobody has read yet."""
        return bool(self._replies or self._lines or self._buffer)

    def write(self, data: bytes) -> None:
        transport = self._transport
        if self._error is not None:
            raise self._error
        if transport is None or transport.is_closing():
            raise ConnectionResetError("connection closed")
        transport.write(data)

    def pop_reply(self) -> Reply | None:
        """The oldest reply already received, if any, without waiting."""
        return self._replies.popleft() if self._replies else None

    async def read_reply(self, seconds: float, command: str) -> Reply:
        """The next reply; TimeoutError if none comes within `seconds` of this call."""
        if self._replies:
            return self._replies.popleft()
        if self._error is not None:
            raise self._error
        waiter: asyncio.Future[Reply] = self._loop.create_future()
        self._waiter = waiter
        timer = self._loop.call_later(seconds, _expire, waiter, f"no reply to {command}", seconds)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def drain(self, seconds: float) -> None:
        """Wait until the transport's write buffer is below its high-water mark again."""
        if self._error is not None:
            raise self._error
        if not self._paused:
            return
        waiter = self._loop.create_future()
        self._drain_waiter = waiter
        what = "message data not taken"
        timer = self._loop.call_later(seconds, _expire, waiter, what, seconds)
        try:
            await waiter
        finally:
            timer.cancel()
            self._drain_waiter = None

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str, seconds: float) -> None:
        transport = self._transport
        if transport is None:
            raise ConnectionResetError("connection closed")
        tls_transport = await self._loop.start_tls(
            transport, self, context, server_hostname=server_hostname, ssl_handshake_timeout=seconds
        )
        if tls_transport is None:  # the loop returns None only if the connection went away
            raise ConnectionResetError("connection closed during the TLS handshake")
        self._transport = tls_transport

    def close(self) -> None:
        """Close after sending what is buffered (after QUIT)."""
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Drop the connection now, discarding anything unsent."""
        if self._transport is not None:
            self._transport.abort()


def _expire(waiter: asyncio.Future[Any], what: str, timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError(f"{what} within {timeout:g} s"))


# --- The conversation --------------------------------------------------------------------------


@functools.cache
def _local_fqdn() -> str:
    # Computed once per process: getfqdn() may block on a DNS lookup.
    return socket.getfqdn()


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    # Shared: loading the system CA store costs milliseconds per context.
    return ssl.create_default_context()


@functools.cache
def _opportunistic_ssl_context() -> ssl.SSLContext:
    # RFC 7435 opportunistic security: encrypt what can be, authenticate nothing (RFC 7672 §1.3).
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _parse_ehlo(reply: Reply) -> dict[str, str]:
    """EHLO keywords (lowercased) → parameters (RFC 5321 §4.1.1.1); line one is the greeting."""
    extensions: dict[str, str] = {}
    for line in reply.text.split("\n")[1:]:
        word, _, params = line.strip().partition(" ")
        keyword = word.lower()
        if keyword.startswith("auth="):
            # Pre-RFC 4954 servers advertise "AUTH=LOGIN PLAIN"; merge it with "AUTH".
            params = f"{word[5:]} {params}".strip()
            keyword = "auth"
            if "auth" in extensions:
                params = f"{extensions['auth']} {params}"
        if keyword:
            extensions[keyword] = params.strip()
    return extensions


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class SMTPClient:
    """One SMTP connection to `host:port`: connect, send transactions (pipelined if offered), quit.

    `connect()` returns the greeting when the session is ready; if the server refuses it (a
    non-2xx greeting, EHLO and HELO, or STARTTLS), it returns that refusal instead and the client
    is closed: check `reply.is_positive`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: TLSMode = "none",
        ssl_context: ssl.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
        helo_name: str | None = None,
        connect_timeout: float = 30,
        command_timeout: float = 300,
        tls_hostname: str | None = None,
        source_address: str | None = None,
    ) -> None:
        """`tls_hostname`: the name sent as SNI and checked in the certificate when `host` is an address
        (MX delivery connects to an address but the certificate names the MX host); default `host`.
        `source_address`: the local address to connect from (default: the system's choice)."""
        if tls not in ("none", "opportunistic", "starttls", "implicit"):
            raise ValueError(f"tls must be 'none', 'opportunistic', 'starttls' or 'implicit', not {tls!r}")
        if (username is None) != (password is None):
            raise ValueError("username and password go together")
        helo_name = helo_name or _local_fqdn()
        if not helo_name.isascii() or not helo_name.isprintable() or " " in helo_name:
            raise ValueError(f"helo_name must be a domain or an address literal, not {helo_name!r}")
        self.host = host
        self.port = port
        self.tls = tls
        self.username = username
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.helo_name = helo_name
        self.tls_hostname = tls_hostname or host
        self.source_address = source_address
        self.messages_sent = 0  # MAIL transactions started on this connection
        self._ssl_context = ssl_context
        self._password = password
        self._protocol: _ReplyProtocol | None = None
        self._extensions: dict[str, str] = {}
        self._needs_reset = False  # a transaction is open on the server (RFC 5321 §4.1.1.5)
        self._busy = False

    def __repr__(self) -> str:
        state = "connected" if self.is_connected else "closed"
        return f"<SMTPClient {self.host}:{self.port} tls={self.tls} {state}>"

    @property
    def is_connected(self) -> bool:
        return self._protocol is not None and self._protocol.is_open

    @property
    def peer_ip(self) -> str | None:
        """The address this connection reached (for `DestinationIP`), or None when not connected."""
        return getattr(self._protocol, "peer_ip", None) if self._protocol is not None else None

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        """The TLS session of this connection (its peer certificate, version), None in plaintext."""
        protocol = self._protocol
        transport = protocol._transport if protocol is not None else None
        return transport.get_extra_info("ssl_object") if transport is not None else None

    @property
    def extensions(self) -> dict[str, str]:
        """EHLO keywords (lowercased) → parameters, from the latest EHLO."""
        return dict(self._extensions)

    # Connecting

    async def connect(self) -> Reply:
        """Greeting, EHLO (HELO if refused), STARTTLS and EHLO again, AUTH; see the class docstring.

        Raises DeliveryError if the conversation fails or STARTTLS/AUTH was asked for and is not
        offered, SMTPAuthenticationError if the credentials are refused.
        """
        if self.is_connected:
            raise RuntimeError("SMTPClient.connect() called on a connected client")
        self.close()  # whatever is left of a connection the server ended
        self._extensions = {}
        self._needs_reset = False
        self.messages_sent = 0
        try:
            greeting = await self._open()
            # RFC 5321 §4.3.2: 220 to go on, 554 (or 421) to refuse.
            if not self._check_positive(greeting, "greeting"):
                return await self._refused(greeting)
            refusal = await self._hello()
            if refusal is not None:
                return await self._refused(refusal)
            if self.tls == "starttls" or (self.tls == "opportunistic" and "starttls" in self._extensions):
                refusal = await self._start_tls()
                if refusal is not None:
                    return await self._refused(refusal)
            if self.username is not None:
                await self._authenticate()
        except (OSError, _ProtocolError) as exc:
            raise self._failed(exc, "connect") from exc
        except BaseException:
            self.close()
            raise
        return greeting

    async def _open(self) -> Reply:
        loop = asyncio.get_running_loop()
        context = self._context() if self.tls == "implicit" else None
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: _ReplyProtocol(loop),
                    self.host,
                    self.port,
                    ssl=context,
                    server_hostname=self.tls_hostname if context is not None else None,
                    local_addr=(self.source_address, 0) if self.source_address else None,
                )
                self._protocol = protocol
                return await protocol.read_reply(self.connect_timeout, "the greeting")
        except TimeoutError as exc:
            raise TimeoutError(f"no greeting within {self.connect_timeout:g} s") from exc

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is not None:
            return self._ssl_context
        return _opportunistic_ssl_context() if self.tls == "opportunistic" else _default_ssl_context()

    def _check_positive(self, reply: Reply, command: str) -> bool:
        """True for 2xx; False for 4xx/5xx; a 3xx where none belongs breaks the protocol."""
        if reply.code < 300:
            return True
        if reply.code < 400:
            raise _ProtocolError(f"unexpected reply to {command}: {reply}")
        return False

    async def _refused(self, reply: Reply) -> Reply:
        # RFC 5321 §3.1: after a refusing greeting the client should still QUIT; after 421 the
        # server is closing anyway.
        if reply.code == 421:
            self.close()
        else:
            await self.quit()
        return reply

    async def _command(self, line: str, command: str) -> Reply:
        protocol = self._require_protocol()
        protocol.write(line.encode())
        return await protocol.read_reply(self.command_timeout, command)

    async def _hello(self) -> Reply | None:
        """EHLO, falling back to HELO on 5xx (RFC 5321 §3.2); the refusal, or None when ready."""
        reply = await self._command(f"EHLO {self.helo_name}\r\n", "EHLO")
        if self._check_positive(reply, "EHLO"):
            self._extensions = _parse_ehlo(reply)
            return None
        if not reply.is_permanent:
            return reply
        self._extensions = {}
        reply = await self._command(f"HELO {self.helo_name}\r\n", "HELO")
        return None if self._check_positive(reply, "HELO") else reply

    async def _start_tls(self) -> Reply | None:
        if "starttls" not in self._extensions:
            raise SMTPTLSError(f"{self.host}:{self.port} does not offer STARTTLS")
        reply = await self._command("STARTTLS\r\n", "STARTTLS")
        if not self._check_positive(reply, "STARTTLS"):
            if self.tls == "opportunistic":
                # RFC 3207 §4: after a refusal the session goes on as before, in plaintext.
                log.info("%s:%s refused STARTTLS (%s); going on in plaintext", self.host, self.port, reply)
                return None
            return reply
        protocol = self._require_protocol()
        if protocol.has_buffered_input:
            # Anything sent after "220" in plaintext would be read as if it came over TLS
            # (STARTTLS command injection, CERT VU#555316).
            raise _ProtocolError("data after the STARTTLS reply, before the TLS handshake")
        try:
            await protocol.start_tls(self._context(), self.tls_hostname, self.command_timeout)
        except (OSError, ssl.CertificateError) as exc:
            # A peer hanging up or timing out in the handshake fails TLS as much as a bad certificate does.
            self.close()
            raise SMTPTLSError(f"{self.host}:{self.port}: connect failed: TLS: {exc or type(exc).__name__}") from exc
        # RFC 3207 §4.2: forget everything learned before TLS and ask again.
        self._extensions = {}
        return await self._hello()

    async def _authenticate(self) -> None:
        assert self.username is not None
        assert self._password is not None
        if "auth" not in self._extensions:
            raise DeliveryError(f"{self.host}:{self.port} does not offer AUTH")
        mechanisms = self._extensions["auth"].upper().split()
        user = self.username.encode()
        password = self._password.encode()
        # RFC 4954 with RFC 4616 PLAIN (initial response); LOGIN when PLAIN is not offered.
        if "PLAIN" in mechanisms:
            mechanism = "PLAIN"
            credentials = _b64(b"\0" + user + b"\0" + password)
            reply = await self._command(f"AUTH PLAIN {credentials}\r\n", "AUTH PLAIN")
            if reply.code == 334:  # the server ignored the initial response and asks for it
                reply = await self._command(f"{credentials}\r\n", "AUTH PLAIN")
        elif "LOGIN" in mechanisms:
            mechanism = "LOGIN"
            reply = await self._command("AUTH LOGIN\r\n", "AUTH LOGIN")
            if reply.code == 334:
                reply = await self._command(f"{_b64(user)}\r\n", "AUTH LOGIN username")
            if reply.code == 334:
                reply = await self._command(f"{_b64(password)}\r\n", "AUTH LOGIN password")
        else:
            raise DeliveryError(
                f"{self.host}:{self.port} offers no AUTH mechanism we speak "
                f"({' '.join(mechanisms) or 'none'}; we speak PLAIN and LOGIN)"
            )
        if reply.code != 235:
            await self._refused(reply)
            raise SMTPAuthenticationError(f"{self.host}:{self.port} refused AUTH {mechanism}: {reply}", reply)

    # Transactions

    async def send(self, mail_from: str, recipients: Sequence[str], data: bytes) -> SendResult:
        """One transaction: MAIL FROM, RCPT TO each recipient, DATA; replies as values.

        `data` is a complete RFC 5322 message; line endings are normalized and dots stuffed here.
        An empty `mail_from` is the null reverse path. Duplicate recipients are sent once.
        Raises DeliveryError if the conversation breaks (the client is then closed).
        """
        protocol = self._protocol
        if protocol is None or not protocol.is_open:
            raise DeliveryError(f"{self.host}:{self.port}: not connected")
        if self._busy:
            raise RuntimeError("SMTPClient.send() called while another call is in progress")
        rcpts = list(dict.fromkeys(recipients))
        if not rcpts:
            raise ValueError("send() needs at least one recipient")
        self._busy = True
        try:
            return await self._transact(protocol, mail_from, rcpts, data)
        except (OSError, _ProtocolError) as exc:
            raise self._failed(exc, "send") from exc
        except BaseException:
            # Cancelled or a bug mid-conversation: the server's state is unknown.
            self.close()
            raise
        finally:
            self._busy = False

    async def _transact(self, protocol: _ReplyProtocol, mail_from: str, rcpts: list[str], data: bytes) -> SendResult:
        if protocol.has_buffered_input:
            # Something nobody asked for: a 421 on idle timeout (RFC 5321 §3.8), or a broken peer.
            reply = protocol.pop_reply()
            if reply is not None and reply.code == 421:
                self.close()
                return SendResult(reply, dict.fromkeys(rcpts, reply), None)
            raise _ProtocolError(f"unsolicited data from the server: {reply or 'partial reply'}")

        if _UNSAFE_ADDRESS.search(mail_from):
            reply = _synthetic(553, "5.1.7", "Bad sender address syntax")
            return SendResult(reply, dict.fromkeys(rcpts, reply), None)
        refused: dict[str, Reply] = {}
        sendable: list[str] = []
        for rcpt in rcpts:
            if not rcpt or _UNSAFE_ADDRESS.search(rcpt):
                refused[rcpt] = _synthetic(553, "5.1.3", "Bad destination address syntax")
            else:
                sendable.append(rcpt)

        extensions = self._extensions
        params = ""
        if not (mail_from.isascii() and all(rcpt.isascii() for rcpt in sendable)):
            if "smtputf8" not in extensions:
                # RFC 6531 §3.2: without SMTPUTF8 a non-ASCII address cannot be sent at all.
                reply = _synthetic(553, "5.6.7", "Non-ASCII address and no SMTPUTF8 on the server")
                return SendResult(reply, dict.fromkeys(rcpts, reply), None)
            params = " SMTPUTF8"
        if not sendable:
            reply = next(iter(refused.values()))
            return SendResult(reply, refused, None)

        message = normalize_line_endings(data)
        if "size" in extensions:
            # RFC 1870 §4: octets with CRLFs, without dot-stuffing and the final ".".
            params += f" SIZE={len(message)}"
        if "8bitmime" in extensions and not message.isascii():
            params += " BODY=8BITMIME"  # RFC 6152 §3
        payload = stuff_dots(message) + b".\r\n"

        timeout = self.command_timeout
        pipelined = "pipelining" in extensions
        reset = self._needs_reset
        mail_line = f"MAIL FROM:<{mail_from}>{params}\r\n"
        rcpt_lines = [f"RCPT TO:<{rcpt}>\r\n" for rcpt in sendable]
        if pipelined:
            # RFC 2920 §3.1: RSET, MAIL and RCPT may be grouped; DATA ends the group; the data
            # itself waits for 354.
            head = "RSET\r\n" if reset else ""
            protocol.write(f"{head}{mail_line}{''.join(rcpt_lines)}DATA\r\n".encode())
        elif reset:
            protocol.write(b"RSET\r\n")
        self.messages_sent += 1

        if reset:
            reply = await protocol.read_reply(timeout, "RSET")
            if reply.code == 421:
                return self._closing(reply, rcpts, refused, reply)
            self._needs_reset = False

        if not pipelined:
            protocol.write(mail_line.encode())
        mail_reply = await protocol.read_reply(timeout, "MAIL FROM")
        if mail_reply.code == 421:
            return self._closing(mail_reply, rcpts, refused, mail_reply)
        if mail_reply.code >= 300:
            if pipelined:
                await self._drain_group(protocol, len(sendable))
            return SendResult(mail_reply, self._outcome(rcpts, refused, mail_reply), None)
        self._needs_reset = True  # a transaction is open until the final reply

        accepted = 0
        for rcpt, line in zip(sendable, rcpt_lines, strict=True):
            if not pipelined:
                protocol.write(line.encode())
            reply = await protocol.read_reply(timeout, "RCPT TO")
            if reply.code == 421:
                return self._closing(reply, rcpts, refused, mail_reply)
            if reply.code < 300:
                accepted += 1
            else:
                refused[rcpt] = reply

        if not accepted:
            if pipelined:
                await self._drain_group(protocol, 0)
            # The open transaction is reset before the next one (pipelined with it).
            return SendResult(mail_reply, refused, None)
        if not pipelined:
            protocol.write(b"DATA\r\n")
        data_reply = await protocol.read_reply(timeout, "DATA")
        if data_reply.code == 421:
            return self._closing(data_reply, rcpts, refused, mail_reply, data_reply)
        if data_reply.code != 354:
            return SendResult(mail_reply, self._outcome(rcpts, refused, data_reply), data_reply)

        if len(payload) <= _CHUNK:
            protocol.write(payload)
        else:
            for start in range(0, len(payload), _CHUNK):
                protocol.write(payload[start : start + _CHUNK])
                await protocol.drain(timeout)
        # RFC 5321 §4.5.3.2.6 gives the final reply 10 minutes against 5 for commands.
        final = await protocol.read_reply(2 * timeout, "the end of data")
        self._needs_reset = False
        if final.code == 421:
            self.close()
        return SendResult(mail_reply, self._outcome(rcpts, refused, final), final)

    async def _drain_group(self, protocol: _ReplyProtocol, rcpt_replies: int) -> None:
        """Read the rest of a pipelined group whose transaction failed, to stay in step.

        The RCPT replies and the DATA reply carry no news (503 "need MAIL/RCPT", RFC 2920 §3.1);
        a broken server that answers DATA with 354 anyway gets an empty message ended at once.
        """
        timeout = self.command_timeout
        for _ in range(rcpt_replies):
            reply = await protocol.read_reply(timeout, "RCPT TO")
            if reply.code == 421:
                self.close()
                return
        reply = await protocol.read_reply(timeout, "DATA")
        if reply.code == 354:
            protocol.write(b".\r\n")
            reply = await protocol.read_reply(2 * timeout, "the end of data")
            self._needs_reset = False
        if reply.code == 421:
            self.close()

    @staticmethod
    def _outcome(rcpts: list[str], refused: dict[str, Reply], reply: Reply) -> dict[str, Reply]:
        return {rcpt: refused.get(rcpt, reply) for rcpt in rcpts}

    def _closing(
        self,
        reply: Reply,
        rcpts: list[str],
        refused: dict[str, Reply],
        mail_reply: Reply | None = None,
        data_reply: Reply | None = None,
    ) -> SendResult:
        """A 421 mid-transaction (RFC 5321 §3.8): it answers every recipient not refused already."""
        self.close()
        return SendResult(mail_reply or reply, self._outcome(rcpts, refused, reply), data_reply)

    async def reset(self) -> None:
        """RSET (RFC 5321 §4.1.1.5). A 421 or a refusal leaves the client closed, not raising."""
        try:
            reply = await self._command("RSET\r\n", "RSET")
        except (OSError, _ProtocolError) as exc:
            raise self._failed(exc, "RSET") from exc
        except BaseException:
            self.close()
            raise
        if reply.code < 300:
            self._needs_reset = False
        else:
            log.info("%s:%s answered RSET with %s; closing", self.host, self.port, reply)
            self.close()

    async def quit(self) -> None:
        """QUIT and close (RFC 5321 §4.1.1.10); never raises."""
        protocol = self._protocol
        if protocol is None:
            return
        try:
            if protocol.is_open:
                protocol.write(b"QUIT\r\n")
                await protocol.read_reply(min(self.command_timeout, _QUIT_TIMEOUT), "QUIT")
        except (OSError, _ProtocolError) as exc:
            # The session is over either way; a peer that hangs up before "221" loses nothing.
            log.debug("%s:%s: QUIT not answered: %s", self.host, self.port, exc)
        finally:
            self._protocol = None
            protocol.close()

    def close(self) -> None:
        """Drop the connection without QUIT."""
        protocol = self._protocol
        self._protocol = None
        if protocol is not None:
            protocol.abort()

    def _require_protocol(self) -> _ReplyProtocol:
        protocol = self._protocol
        if protocol is None:
            raise ConnectionResetError("not connected")
        return protocol

    def _failed(self, exc: Exception, stage: str) -> DeliveryError:
        """The one translation of a broken conversation into DeliveryError; closes the client."""
        self.close()
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, ssl.SSLError | ssl.CertificateError):
            # Implicit TLS: the handshake is part of connecting.
            return SMTPTLSError(f"{self.host}:{self.port}: {stage} failed: TLS: {reason}")
        return DeliveryError(f"{self.host}:{self.port}: {stage} failed: {reason}")
