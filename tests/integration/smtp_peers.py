"""SMTP peers for tests on loopback: a recording aiosmtpd sink, a scripted raw peer, TLS contexts.

- `RecordingSink`: aiosmtpd in its own thread (port 0), records every accepted message; scripted
  DATA and per-recipient RCPT replies; optional STARTTLS, implicit TLS and AUTH PLAIN/LOGIN.
  aiosmtpd does not advertise PIPELINING, so a client talks to it one command at a time.
- `SinkController`: aiosmtpd's Controller for any handler, with port 0 and a stop that closes
  every open connection.
- `ScriptedPeer`: a raw asyncio server in the test's own event loop that advertises PIPELINING
  (by default), answers a whole read at once like a pipelining server (RFC 2920 §3.2), records
  each read as it arrived, and can answer any command from a script, hang, or hang up.
- `make_tls_contexts(directory)`: a self-signed certificate for 127.0.0.1 and localhost, as
  (server context, client context that trusts it).

    with RecordingSink() as sink:
        ...connect to sink.host, sink.port...
        assert sink.messages[0].data == b"..."

    async with ScriptedPeer(replies={"RCPT": ["421 4.3.2 bye", CLOSE]}) as peer:
        ...
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

__all__ = [
    "CLOSE",
    "HANG",
    "ReceivedMessage",
    "RecordingSink",
    "ScriptedPeer",
    "SinkController",
    "make_tls_contexts",
]


@dataclass
class ReceivedMessage:
    """A message as a peer accepted it: envelope and data, un-dot-stuffed (RFC 5321 §4.5.2)."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str] = field(default_factory=list)
    received_at: float = field(default_factory=time.time)  # wall clock when the sink accepted it
    tls: bool = False  # it came over TLS (STARTTLS or implicit)
    helo: str = ""  # the client's EHLO/HELO name
    peer: str = ""  # the client's address


# --- RecordingSink (aiosmtpd) -----------------------------------------------------------------


class SinkController(Controller):
    """aiosmtpd's Controller, with two fixes for tests.

    - Port 0: aiosmtpd 1.4.6 pokes `self.port` to check the server is up; with port 0 that is the
      wrong port, so the bound one is read first.
    - Stopping closes every connection. aiosmtpd's stop closes the listener but leaves open
      connections to the garbage collector, whose ResourceWarning then fails whichever later test
      the collection happens to run in. A client that just hung up gets a moment to be seen
      hanging up; whatever is still open after that is cut.
    """

    def __init__(self, handler: Any, **options: Any) -> None:
        super().__init__(handler, **options)
        self.sessions: set[_TrackedSMTP] = set()  # sessions whose connection is not yet lost
        self.connections = 0  # connections accepted, ever

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()

    def factory(self) -> SMTP:
        return _TrackedSMTP(self, self.handler, **self.SMTP_kwargs)

    def stop(self, no_assert: bool = False) -> None:
        if self.server is not None:  # first stop accepting: a client reconnecting meanwhile must not slip in
            self.loop.call_soon_threadsafe(self.server.close)
        self._wait_closed(0.25)
        # Close (a reply already written still goes out first), then cut what will not close.
        for cut in (False, True, True):
            if not self.sessions:
                break
            for session in list(self.sessions):
                self.loop.call_soon_threadsafe(session.abort if cut else session.close)
            self._wait_closed(2.0)
        super().stop(no_assert)

    def _wait_closed(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.sessions and time.monotonic() < deadline:
            time.sleep(0.005)


class _TrackedSMTP(SMTP):
    """aiosmtpd's session, in its controller's `sessions` while its connection is open."""

    def __init__(self, controller: SinkController, handler: Any, **options: Any) -> None:
        super().__init__(handler, **options)
        self._controller = controller

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self._original_transport is None and self.transport is None  # not the STARTTLS re-entry
        super().connection_made(transport)
        if first:
            self._controller.connections += 1
        self._controller.sessions.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._controller.sessions.discard(self)
        super().connection_lost(error)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        for transport in (self.transport, self._original_transport):
            if transport is not None:
                transport.abort()


class _SinkHandler:
    def __init__(self, sink: RecordingSink) -> None:
        self._sink = sink

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        reply = self._sink.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self._sink.script:
            return self._sink.script.pop(0)
        self._sink.messages.append(
            ReceivedMessage(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                data=envelope.original_content,
                mail_options=list(envelope.mail_options),
                tls=session.ssl is not None or bool(getattr(server, "_tls_protocol", None)),
                helo=session.host_name or "",
                peer=str(session.peer[0]) if session.peer else "",
            )
        )
        return "250 2.0.0 Ok"


class RecordingSink:
    """An aiosmtpd server on 127.0.0.1, port 0, that records what it accepts.

    Usable as `with` (or start()/stop()) from sync and async tests alike: the server runs its
    own loop in its own thread.

    - `messages`: every accepted message, in order.
    - `script`: replies to give at the end of DATA instead of accepting, popped one per message
      (e.g. ["451 4.3.0 try later"]); when empty, messages are accepted with "250 2.0.0 Ok".
    - `rcpt_replies`: per recipient, a reply that refuses it (e.g. {"x@y": "550 5.1.1 No such
      user"}); other recipients are accepted.
    - `tls_context` (server side) enables STARTTLS, `require_starttls` makes it mandatory;
      `implicit_tls` wraps every connection in TLS at accept (port 465 style) instead.
    - `auth` (user → password) enables AUTH with `auth_mechanisms`, offered only over TLS unless
      `auth_require_tls` is False; `require_auth` refuses mail without it (not with
      `implicit_tls`). `logins` records each successful AUTH as (mechanism, user).
    """

    def __init__(
        self,
        *,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        implicit_tls: bool = False,
        auth: dict[str, str] | None = None,
        auth_mechanisms: Sequence[str] = ("PLAIN", "LOGIN"),
        auth_require_tls: bool = True,
        require_auth: bool = False,
        idle_timeout: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """`host`/`port`: where to listen (MX delivery tests use loopback addresses on port 25)."""
        if (require_starttls or implicit_tls) and tls_context is None:
            raise ValueError("require_starttls and implicit_tls need a tls_context")
        if implicit_tls and require_auth:
            # aiosmtpd 1.4.6 does not count implicit TLS as TLS for AUTH; it would have to be
            # told auth_require_tls=False, and then warns about require_auth.
            raise ValueError("require_auth is not supported with implicit_tls")
        self.host = host
        self.port = port
        self.messages: list[ReceivedMessage] = []
        self.script: list[str] = []
        self.rcpt_replies: dict[str, str] = {}
        self.logins: list[tuple[str, str]] = []  # (mechanism, user) for each successful AUTH
        self._auth = auth
        options: dict[str, Any] = {}
        if idle_timeout is not None:
            options["timeout"] = idle_timeout  # aiosmtpd answers 421 and hangs up on a connection idle that long
        if implicit_tls:
            options["ssl_context"] = tls_context
        elif tls_context is not None:
            options["tls_context"] = tls_context
            options["require_starttls"] = require_starttls
        if auth is not None:
            options["authenticator"] = self._authenticate
            # Implicit TLS is TLS, but aiosmtpd only counts STARTTLS.
            options["auth_require_tls"] = auth_require_tls and not implicit_tls
            options["auth_required"] = require_auth
            options["auth_exclude_mechanism"] = [m for m in ("PLAIN", "LOGIN") if m not in auth_mechanisms]
        self._controller = SinkController(_SinkHandler(self), hostname=self.host, port=port, **options)

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        assert self._auth is not None
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode()
            if self._auth.get(user) == auth_data.password.decode():
                self.logins.append((mechanism, user))
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    @property
    def connections(self) -> int:
        """Connections accepted since start (not counting aiosmtpd's own check that the server is up)."""
        return self._controller.connections - self._started_with

    def start(self) -> RecordingSink:
        self._controller.start()
        self._started_with = self._controller.connections
        self.port = self._controller.port
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> RecordingSink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- ScriptedPeer (raw asyncio) ---------------------------------------------------------------

CLOSE = "<close>"  # in a script: send the replies so far, then hang up instead of answering
HANG = "<hang>"  # in a script: never answer this or anything after it on this connection

_DEFAULT_EXTENSIONS = ("PIPELINING", "SIZE 10485760", "8BITMIME", "ENHANCEDSTATUSCODES")


class ScriptedPeer:
    """A raw SMTP server in the caller's event loop, for what aiosmtpd cannot do.

    Protocol: greeting, EHLO/HELO, MAIL, RCPT, DATA (strict "<CRLF>.<CRLF>" end, dots
    un-stuffed), RSET, NOOP, QUIT; STARTTLS and AUTH are refused unless scripted. All complete
    lines of one read are answered with one write, like a pipelining server.

    - `extensions`: EHLO keywords to advertise (PIPELINING among the defaults).
    - `replies`: per command ("GREETING", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "." for the
      end of data, "RSET", "QUIT", "STARTTLS", "AUTH", ...), replies to give instead of the
      default, popped one per use. A reply may hold several lines ("250-a\\r\\n250 b") or be
      CLOSE or HANG.
    - `rcpt_replies`: per recipient, a reply that refuses it.
    - `drop_in_data`: hang up (RST) at the first bytes of message data.
    - Records: `reads` (every chunk read, in order, across connections), `commands` (command
      lines without CRLF), `messages` (accepted ones), `connections` (how many were accepted).
    """

    def __init__(
        self,
        *,
        extensions: Iterable[str] = _DEFAULT_EXTENSIONS,
        replies: dict[str, list[str]] | None = None,
        rcpt_replies: dict[str, str] | None = None,
        drop_in_data: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.host = host
        self.port = port
        self.extensions = list(extensions)
        self.replies: dict[str, list[str]] = replies if replies is not None else {}
        self.rcpt_replies: dict[str, str] = rcpt_replies if rcpt_replies is not None else {}
        self.drop_in_data = drop_in_data
        self.reads: list[bytes] = []
        self.commands: list[str] = []
        self.messages: list[ReceivedMessage] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> ScriptedPeer:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await asyncio.sleep(0)  # let the closed connections' connection_lost callbacks run
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> ScriptedPeer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _scripted(self, command: str) -> str | None:
        queue = self.replies.get(command)
        return queue.pop(0) if queue else None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            await self._converse(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client hung up, or the test is over
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _PeerSession(self)
        greeting = self._scripted("GREETING") or "220 peer.test ESMTP"
        if greeting == HANG:
            await reader.read()
            return
        if greeting.endswith(CLOSE):
            writer.write(f"{greeting[: -len(CLOSE)]}\r\n".encode())
            return
        writer.write(f"{greeting}\r\n".encode())
        buffer = b""
        while not session.done:
            chunk = await reader.read(65536)
            if not chunk:
                return
            self.reads.append(chunk)
            if session.in_data and self.drop_in_data:
                writer.transport.abort()
                return
            buffer += chunk
            out, buffer = session.feed(buffer)
            if out:
                writer.write(out)
                await writer.drain()
        if session.hang:
            await reader.read()


class _PeerSession:
    """One connection's SMTP state for ScriptedPeer."""

    def __init__(self, peer: ScriptedPeer) -> None:
        self.peer = peer
        self.in_data = False
        self.done = False
        self.hang = False
        self.mail_from: str | None = None
        self.mail_options: list[str] = []
        self.rcpt_tos: list[str] = []
        self.data: list[bytes] = []

    def feed(self, buffer: bytes) -> tuple[bytes, bytes]:
        """Consume complete lines; return (the replies to write at once, the unconsumed rest)."""
        out: list[str] = []
        while not self.done:
            end = buffer.find(b"\r\n")
            if end < 0:
                break
            line, buffer = buffer[:end], buffer[end + 2 :]
            reply = self._data_line(line) if self.in_data else self._command(line.decode("utf-8", "surrogateescape"))
            if reply is None:
                continue
            if reply == HANG:
                self.done = self.hang = True
            elif reply.endswith(CLOSE):
                if reply != CLOSE:
                    out.append(reply[: -len(CLOSE)].rstrip("\r\n"))
                self.done = True
            else:
                out.append(reply)
        data = "".join(f"{reply}\r\n" for reply in out).encode("utf-8", "surrogateescape")
        return data, buffer

    def _data_line(self, line: bytes) -> str | None:
        if line != b".":
            self.data.append(line[1:] if line.startswith(b".") else line)
            return None
        self.in_data = False
        reply = self.peer._scripted(".") or "250 2.0.0 Ok: queued"
        if reply.startswith("2"):
            data = b"".join(line + b"\r\n" for line in self.data)
            self.peer.messages.append(ReceivedMessage(self.mail_from or "", self.rcpt_tos, data, self.mail_options))
        self._reset()
        return reply

    def _reset(self) -> None:
        self.mail_from = None
        self.mail_options = []
        self.rcpt_tos = []
        self.data = []

    def _command(self, line: str) -> str:
        self.peer.commands.append(line)
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        scripted = self.peer._scripted(verb)
        if verb == "EHLO":
            lines = ["peer.test", *self.peer.extensions]
            default = "\r\n".join(f"250{' ' if i == len(lines) - 1 else '-'}{text}" for i, text in enumerate(lines))
        elif verb == "HELO":
            default = "250 peer.test"
        elif verb == "MAIL":
            path, _, options = arg[len("FROM:") :].partition(" ")
            self.mail_from = path.strip("<>")
            self.mail_options = options.split()
            default = "250 2.1.0 Ok"
        elif verb == "RCPT":
            address = arg[len("TO:") :].strip().strip("<>")
            default = self.peer.rcpt_replies.get(address) or "250 2.1.5 Ok"
            if self.mail_from is None:
                default = "503 5.5.1 Error: need MAIL command"
            if (scripted or default).startswith("2"):
                self.rcpt_tos.append(address)
        elif verb == "DATA":
            if self.mail_from is None:
                default = "503 5.5.1 Error: need MAIL command"
            elif not self.rcpt_tos:
                default = "554 5.5.1 Error: no valid recipients"
            else:
                default = "354 End data with <CR><LF>.<CR><LF>"
        elif verb == "RSET":
            self._reset()
            default = "250 2.0.0 Ok"
        elif verb == "NOOP":
            default = "250 2.0.0 Ok"
        elif verb == "QUIT":
            default = f"221 2.0.0 Bye{CLOSE}"
        elif verb == "STARTTLS":
            default = "454 4.7.0 TLS not available"
        else:
            default = "502 5.5.2 Error: command not recognized"
        reply = scripted if scripted is not None else default
        if verb == "MAIL" and not reply.startswith("2"):
            self.mail_from = None
        if verb == "DATA" and reply.startswith("354"):
            self.in_data = True
        return reply


# --- TLS --------------------------------------------------------------------------------------


def make_tls_contexts(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 and localhost, made with openssl in `directory`.

    Returns (server context, client context that trusts exactly this certificate).
    """
    cert = directory / "cert.pem"
    key = directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client
