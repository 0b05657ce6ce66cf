"""The SMTP submission server: listeners, and an `asyncio.Protocol` per connection around `SmtpSession`.

Two layers, as in the delivery client: `_Connection` moves bytes between the transport and the
sans-I/O `smtp.session.SmtpSession`, and carries out what the session asks (call the handler,
start TLS, close); every SMTP decision is the session's. The server keeps what outlives one
connection: the listeners, the connection counts (in all and per client address), and AUTH failures
per client address.

    server = SmtpServer(handler, SmtpServerConfig(), ssl_context)
    addresses = await server.start([Listener("127.0.0.1", 2525)])
    ...
    await server.stop()

Runs on asyncio's own loop and on uvloop (whose transports are not `asyncio.Transport`
subclasses, only alike: they are used through the methods both share).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
import ssl
import traceback
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from posthouse.server.metrics import SmtpTally
from posthouse.server.smtp import replies as r
from posthouse.server.smtp.handler import Peer, SmtpReply, SubmissionHandler
from posthouse.server.smtp.replies import encode_reply
from posthouse.server.smtp.session import (
    Action,
    Authenticate,
    Deliver,
    Output,
    SessionPolicy,
    SmtpSession,
    StartTLS,
)

__all__ = ["Listener", "SmtpServer", "SmtpServerConfig"]

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LOOPBACK: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
# While a request is out, pipelined input is held in the session; past this much, reading pauses
# until the request is answered (outside DATA nothing else can grow: lines are worked through as
# they come and a partial line is capped by the session).
_MAX_BACKLOG = 64 * 1024
# After "221"/"421" the connection closes once the reply is written; a client that never reads
# it is cut off after this long.
_CLOSE_LINGER = 10.0
# AUTH failures are remembered this long after the last one (per client address).
_AUTH_FAILURE_MEMORY = 15 * 60.0
_AUTH_FAILURE_ADDRESSES = 10_000  # past this many remembered addresses, stale ones are dropped
_CLIENT_ADDRESSES = 10_000  # client addresses whose parsed form is kept (`SmtpServer._client`); then started over

_W421_TOO_MANY_CONNECTIONS = encode_reply(r.S421_TOO_MANY_CONNECTIONS)
_W421_TOO_MANY_FROM_CLIENT = encode_reply(r.S421_TOO_MANY_FROM_CLIENT)
_W421_SHUTTING_DOWN = encode_reply(r.S421_SHUTTING_DOWN)


@functools.cache
def _local_fqdn() -> str:
    # Computed once per process: getfqdn() may block on a DNS lookup.
    return socket.getfqdn()


@dataclass(frozen=True, slots=True)
class Listener:
    """An address to listen on."""

    host: str
    port: int
    implicit_tls: bool = False  # port-465 style: TLS from the first byte (RFC 8314 §3.3)


@dataclass(frozen=True, slots=True)
class SmtpServerConfig:
    """The SMTP server's limits; each mirrors a `POSTHOUSE_SMTP_…` setting."""

    hostname: str = field(default_factory=_local_fqdn)  # in the greeting and the EHLO reply
    max_message_size: int = 10 * 1024 * 1024  # advertised as SIZE; beyond it 552 5.3.4
    max_recipients: int = 50  # per transaction; beyond it 452 4.5.3 (RFC 5321 §4.5.3.1.10)
    max_command_line: int = 512  # RFC 5321 §4.5.3.1.4; AUTH lines may reach 12288 (RFC 4954 §4)
    command_timeout: float = 300.0  # RFC 5321 §4.5.3.2.7: the server waits 5 minutes for a command
    data_timeout: float = 600.0  # for the whole DATA phase, from 354 to the end of data
    max_connections: int = 1000  # beyond it 421 4.7.0 at connect
    # One client address (an IPv6 /64) cannot take every connection (421 4.7.0 at connect beyond this).
    max_connections_per_client: int = 50
    # Before AUTH (or a trusted network) says who the client is, it may idle this long between commands,
    # not command_timeout: holding a connection must cost an unknown client more than a known one.
    unauthenticated_timeout: float = 60.0
    auth_requires_tls: bool = True  # AUTH only after STARTTLS or on implicit TLS …
    plaintext_auth_networks: tuple[IPNetwork, ...] = _LOOPBACK  # … except from these client networks
    auth_failure_free: int = 3  # AUTH failures per client address answered without delay
    auth_failure_max_delay: float = 10.0  # the delay doubles from 1 s per further failure, up to this
    max_errors: int = 20  # bad commands per session before 421 4.7.0 and close
    return_domain: str = ""  # mail for this domain (bounces to VERP return paths) needs no AUTH
    # … nor mail for these (sending domains' own Return-Path domains): a lower-cased domain → yes or no
    other_return_domain: Callable[[str], bool] | None = None
    # An inbound (MX) listener: no AUTH, and only these addresses (lower-cased → ours?) besides return paths
    inbound: bool = False
    inbound_recipient: Callable[[str], bool] | None = None

    def __post_init__(self) -> None:
        for name in ("command_timeout", "data_timeout", "max_connections", "max_connections_per_client",
                     "unauthenticated_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SmtpServerConfig.{name} must be positive")
        if self.auth_failure_free < 0 or self.auth_failure_max_delay < 0:
            raise ValueError("SmtpServerConfig.auth_failure_free and auth_failure_max_delay must not be negative")

    def session_policy(self) -> SessionPolicy:
        """What every session needs to know (raises ValueError for a bad hostname or limit)."""
        return SessionPolicy(
            hostname=self.hostname,
            max_message_size=self.max_message_size,
            max_recipients=self.max_recipients,
            max_command_line=self.max_command_line,
            max_errors=self.max_errors,
            return_domain=self.return_domain.lower(),
            **({"other_return_domain": self.other_return_domain} if self.other_return_domain is not None else {}),
            inbound=self.inbound,
            **({"inbound_recipient": self.inbound_recipient} if self.inbound_recipient is not None else {}),
        )


class _AuthThrottle:
    """AUTH failures per client address, across sessions: how long to hold the next failure reply.

    Guards against password guessing: after `free` failures each further one is answered after
    1 s, 2 s, 4 s … up to `max_delay`. A success, or 15 minutes without a failure, clears the
    count. IPv6 clients are counted per /64, the block one subscriber usually holds.
    """

    def __init__(self, free: int, max_delay: float) -> None:
        self._free = free
        self._max_delay = max_delay
        self._failures: dict[str, tuple[int, float]] = {}  # key → (count, time of the last one)

    @staticmethod
    def key(host: str) -> str:
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return host
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
            return str(ipaddress.ip_network((address, 64), strict=False))
        return str(address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else address)

    def failed(self, key: str, now: float) -> float:
        """Count a failure; the delay (seconds) before answering it."""
        count, last = self._failures.get(key, (0, now))
        if now - last > _AUTH_FAILURE_MEMORY:
            count = 0
        count += 1
        self._failures[key] = (count, now)
        if len(self._failures) > _AUTH_FAILURE_ADDRESSES:
            self._failures = {k: v for k, v in self._failures.items() if now - v[1] <= _AUTH_FAILURE_MEMORY}
        if count <= self._free:
            return 0.0
        return min(self._max_delay, 2.0 ** min(count - self._free - 1, 32))

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


class SmtpServer:
    """SMTP submission (RFC 6409 style) for Posthouse; policy is the handler's.

    `ssl_context` is the server side of TLS: with it STARTTLS is offered and implicit-TLS
    listeners are possible; without it neither.
    """

    def __init__(
        self, handler: SubmissionHandler, config: SmtpServerConfig, ssl_context: ssl.SSLContext | None,
        *, tally: SmtpTally | None = None,
    ) -> None:
        self.config = config
        self.tally = tally  # connections, commands and replies counted for /metrics
        self._handler = handler
        self._ssl_context = ssl_context
        self._policy = config.session_policy()
        self._throttle = _AuthThrottle(config.auth_failure_free, config.auth_failure_max_delay)
        self._servers: list[asyncio.Server] = []
        self._connections: set[_Connection] = set()
        self._per_client: dict[str, int] = {}  # open connections by _AuthThrottle.key of the client address
        self._clients: dict[str, tuple[str, bool]] = {}  # host → (_AuthThrottle.key, plaintext AUTH allowed)
        self._tasks: set[asyncio.Task[None]] = set()  # handler calls and TLS handshakes in flight
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._idle: asyncio.Event | None = None  # set when stopping and nothing is left

    @property
    def connection_count(self) -> int:
        """Open client connections (refused ones not counted)."""
        return len(self._connections)

    async def start(self, listeners: Sequence[Listener]) -> list[tuple[str, int]]:
        """Listen on each address; returns the bound (host, port) pairs. OSError as raised by bind."""
        for listener in listeners:
            self._check_tls(listener.implicit_tls)
        loop = self._bind_loop()
        started: list[asyncio.Server] = []
        try:
            for listener in listeners:
                started.append(
                    await loop.create_server(
                        self._factory(listener.implicit_tls),
                        listener.host,
                        listener.port,
                        reuse_address=True,
                        **self._tls_options(listener.implicit_tls),
                    )
                )
        except BaseException:
            for server in started:
                server.close()
                await server.wait_closed()
            raise
        self._servers.extend(started)
        return [sock.getsockname()[:2] for server in started for sock in server.sockets]

    async def start_on_sockets(self, sockets: Sequence[tuple[socket.socket, bool]]) -> None:
        """Serve on sockets bound (and listening or not) by the caller: (socket, implicit_tls)."""
        for _, implicit_tls in sockets:
            self._check_tls(implicit_tls)
        loop = self._bind_loop()
        for sock, implicit_tls in sockets:
            server = await loop.create_server(self._factory(implicit_tls), sock=sock, **self._tls_options(implicit_tls))
            self._servers.append(server)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop listening and end every session.

        Sessions between commands hear 421 4.3.2 and are closed now. A session whose handler call
        (authenticate, deliver) is in flight gets the call's answer first, then the 421. After
        `grace` seconds whatever is left is cut off and its tasks cancelled.
        """
        self._stopping = True
        self._idle = asyncio.Event()
        for server in self._servers:
            server.close()
        for connection in list(self._connections):
            connection.shut_down()
        self._check_idle()
        try:
            async with asyncio.timeout(grace):
                await self._idle.wait()
        except TimeoutError:
            log.warning("SMTP: %d connections still busy after %g s; cutting them off", len(self._connections), grace)
        for connection in list(self._connections):
            connection.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    # --- For connections ------------------------------------------------------------------------

    def _check_tls(self, implicit_tls: bool) -> None:
        if implicit_tls and self._ssl_context is None:
            raise ValueError("an implicit-TLS listener needs an ssl_context")

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop and self._servers:
            raise RuntimeError("SmtpServer already serves on another event loop")
        self._loop = loop
        self._stopping = False  # a stopped server may be started again
        self._idle = None
        return loop

    def _factory(self, implicit_tls: bool) -> functools.partial[_Connection]:
        return functools.partial(_Connection, self, implicit_tls)

    def _tls_options(self, implicit_tls: bool) -> dict[str, Any]:
        if not implicit_tls:
            return {}
        return {"ssl": self._ssl_context, "ssl_handshake_timeout": self.config.command_timeout}

    def _client(self, host: str) -> tuple[str, bool]:
        """What a connection needs to know of its client address: its key for the per-client counts and AUTH
        throttle, and whether it may AUTH without TLS. Parsed once per address: a client (a relay, an
        application server) opens connection after connection from the same one."""
        known = self._clients.get(host)
        if known is None:
            if len(self._clients) >= _CLIENT_ADDRESSES:
                self._clients.clear()
            known = self._clients[host] = (_AuthThrottle.key(host), self._allows_plaintext_auth(host))
        return known

    def _allows_plaintext_auth(self, host: str) -> bool:
        if not self.config.auth_requires_tls:
            return True
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d
        return any(address in network for network in self.config.plaintext_auth_networks)

    def _start_task(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._idle is not None:
            self._check_idle()

    def _connection_closed(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        key = connection.client_key
        if key is not None:
            connection.client_key = None
            left = self._per_client.get(key, 1) - 1
            if left > 0:
                self._per_client[key] = left
            else:
                self._per_client.pop(key, None)
        if self._idle is not None:
            self._check_idle()

    def _count(self, result: str) -> None:
        tally = self.tally
        if tally is not None:
            tally.connections[result] = tally.connections.get(result, 0) + 1
            if result != "accepted":  # the 421 written here, not by a session
                tally.replies[b"421"] = tally.replies.get(b"421", 0) + 1

    def _check_idle(self) -> None:
        if self._idle is not None and not self._connections and not self._tasks:
            self._idle.set()


class _Connection(asyncio.Protocol):
    """One client connection: its bytes to the session, the session's requests to the handler.

    Reading pauses while the client does not take our replies (pause_writing), during the TLS
    handshake, and while a request is out and the pipelined backlog exceeds _MAX_BACKLOG.
    """

    def __init__(self, server: SmtpServer, implicit_tls: bool) -> None:
        assert server._loop is not None
        self._server = server
        self._config = server.config
        self._loop = server._loop
        self._transport: asyncio.Transport | None = None
        self._session: SmtpSession | None = None
        self._peer = Peer("", 0, implicit_tls)
        self._throttle_key = ""
        self.client_key: str | None = None  # counted in the server's per-client connections under this key
        self._task: asyncio.Task[None] | None = None  # the request out, if any
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # when the timer fires
        self._last_activity = 0.0
        self._data_started: float | None = None
        self._reading_paused = False
        self._write_paused = False
        self._backlog_paused = False
        self._tls_pending = False
        self._tls_early: list[bytes] = []  # decrypted input that came before start_tls() returned
        self._closing = False

    # --- asyncio.Protocol callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self._transport = cast(asyncio.Transport, transport)
        server = self._server
        if server._stopping:
            server._count("refused_stopping")
            self._transport.write(_W421_SHUTTING_DOWN)
            self._transport.close()
            return
        if len(server._connections) >= self._config.max_connections:
            server._count("refused_busy")
            # Not a warning: a flood of connections must not become a flood of log lines.
            log.info("SMTP: refusing a connection: %d open (max_connections)", len(server._connections))
            self._transport.write(_W421_TOO_MANY_CONNECTIONS)
            self._transport.close()
            return
        peername = transport.get_extra_info("peername")
        host, port = (str(peername[0]), int(peername[1])) if isinstance(peername, tuple) else ("", 0)
        key, plaintext_auth = server._client(host)
        if server._per_client.get(key, 0) >= self._config.max_connections_per_client:
            server._count("refused_client")
            log.info("SMTP: refusing a connection from %s: %d open from it (max_connections_per_client)", host,
                     server._per_client[key])
            self._transport.write(_W421_TOO_MANY_FROM_CLIENT)
            self._transport.close()
            return
        server._count("accepted")
        server._connections.add(self)
        server._per_client[key] = server._per_client.get(key, 0) + 1
        self.client_key = key
        is_tls = self._peer.is_tls
        self._peer = Peer(host, port, is_tls)
        self._throttle_key = key
        self._session = SmtpSession(
            server._policy,
            tls=is_tls,
            starttls=server._ssl_context is not None,
            auth_without_tls=plaintext_auth,
            tally=server.tally,
        )
        now = self._loop.time()
        self._last_activity = now
        self._arm_timer(now + self._idle_timeout())
        # Input that comes before the greeting is held by the session (it greets first).
        self._task = server._start_task(self._identify())

    def data_received(self, data: bytes) -> None:
        session = self._session
        transport = self._transport
        if session is None or transport is None:
            return  # a refused connection, closing
        if self._tls_pending:
            # Reading was paused when STARTTLS was answered, so this came through the TLS layer:
            # the client's first command over TLS, passed up as soon as the handshake finished
            # and before start_tls() returned. Kept for tls_started().
            self._tls_early.append(data)
            return
        self._last_activity = self._loop.time()
        out, action = session.receive(data)
        if out:
            transport.write(out)
        if action is not None:
            self._act(action)
        elif self._task is not None and session.backlog > _MAX_BACKLOG:
            self._backlog_paused = True
            self._update_reading()
        self._track_data_phase(session)

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    # --- What the server asks ---------------------------------------------------------------------

    def shut_down(self) -> None:
        """421 4.3.2 and close now, or once the request in flight is answered."""
        session = self._session
        if session is None or self._transport is None:
            return
        self._apply(session.shut_down())

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _forget(self) -> None:
        """The connection is gone: no timer, no place in the server's count. Idempotent."""
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._server._connection_closed(self)

    # --- Carrying out the session's output ------------------------------------------------------

    def _apply(self, output: Output) -> None:
        data, action = output
        if data and self._transport is not None:
            self._transport.write(data)
        if action is not None:
            self._act(action)

    def _act(self, action: Action) -> None:
        kind = type(action)
        if kind is Deliver:
            self._task = self._server._start_task(self._deliver(cast(Deliver, action)))
        elif kind is Authenticate:
            self._task = self._server._start_task(self._authenticate(cast(Authenticate, action)))
        elif kind is StartTLS:
            # Stop reading at once: from here on the client's bytes belong to the handshake.
            self._tls_pending = True
            self._update_reading()
            self._task = self._server._start_task(self._start_tls(cast(StartTLS, action)))
        else:
            self._close()

    def _finish(self, output: Output) -> None:
        """A request was answered: write the session's output and go on."""
        self._task = None
        session = self._session
        if self._transport is None or session is None:
            return  # the client went away meanwhile; the answer has no one to go to
        self._last_activity = self._loop.time()
        self._apply(output)
        if self._backlog_paused and self._task is None:
            self._backlog_paused = False
            self._update_reading()
        self._track_data_phase(session)
        # While the request was out the timer waited for the handler; the client's clock runs again now,
        # and it may be the short pre-AUTH one (after a failed AUTH, or a STARTTLS that reset the AUTH).
        deadline = self._last_activity + self._idle_timeout()
        if not self._closing and self._task is None and self._transport is not None and \
                (self._timer is None or self._timer_at > deadline):
            self._arm_timer(deadline)

    def _idle_timeout(self) -> float:
        """How long the client may stay silent between commands now."""
        config = self._config
        session = self._session
        if session is not None and session.is_identified:
            return config.command_timeout
        return min(config.command_timeout, config.unauthenticated_timeout)

    def _track_data_phase(self, session: SmtpSession) -> None:
        if not session.in_data:
            self._data_started = None
        elif self._data_started is None:
            self._data_started = self._last_activity
            if self._config.data_timeout < self._config.command_timeout:
                self._arm_timer(self._last_activity + self._config.data_timeout)

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        paused = self._write_paused or self._backlog_paused or self._tls_pending
        if paused != self._reading_paused:
            self._reading_paused = paused
            if paused:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _close(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.close()
            self._arm_timer(self._loop.time() + _CLOSE_LINGER)

    # --- Timeouts ------------------------------------------------------------------------------------

    def _arm_timer(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        """Check the session's deadlines; re-armed for the next one unless the session timed out.

        The timer is not reset on every read (that would cost a timer per read): it fires at the
        earliest possible deadline and looks at when the client was last heard from.
        """
        self._timer = None
        transport = self._transport
        session = self._session
        if transport is None or session is None:
            return
        if self._closing:
            transport.abort()  # the client did not take our last reply
            return
        now = self._loop.time()
        config = self._config
        if self._task is not None:
            # The handler or the TLS handshake is slow, not the client.
            self._arm_timer(now + config.command_timeout)
            return
        deadline = self._last_activity + self._idle_timeout()
        if self._data_started is not None:
            deadline = min(deadline, self._data_started + config.data_timeout)
        if now < deadline:
            self._arm_timer(deadline)
            return
        log.info("SMTP: %s timed out%s", self._peer.host, " in DATA" if session.in_data else "")
        self._apply(session.timed_out())

    # --- Requests -----------------------------------------------------------------------------------

    async def _identify(self) -> None:
        session = self._session
        assert session is not None
        try:
            identity = await self._server._handler.identify_network(self._peer)
        except Exception:
            log.exception("SMTP: identify_network() failed for %s; answered 421", self._peer.host)
            output = session.call_failed()
        else:
            output = session.connected(identity)
        self._finish(output)

    async def _authenticate(self, action: Authenticate) -> None:
        session = self._session
        assert session is not None
        server = self._server
        try:
            identity = await server._handler.authenticate(self._peer, action.mechanism, action.username,
                                                          action.password)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - answered 454 and logged below
            # Not log.exception: the message may quote the credentials (a KeyError on the token).
            where = "".join(traceback.format_tb(exc.__traceback__))
            log.error("SMTP: authenticate() raised %s for %s (message withheld: it may hold credentials); "
                      "answered 454\n%s", type(exc).__name__, self._peer.host, where)  # fmt: skip
            output = session.call_failed()
        else:
            # Neither the user name nor the password is logged: with Postmark-style credentials
            # both are the server token.
            if identity is None:
                delay = server._throttle.failed(self._throttle_key, self._loop.time())
                log.info("SMTP: AUTH %s failed for %s", action.mechanism, self._peer.host)
                if delay:
                    await asyncio.sleep(delay)
            else:
                server._throttle.succeeded(self._throttle_key)
            output = session.authenticated(identity)
        self._finish(output)

    async def _deliver(self, action: Deliver) -> None:
        session = self._session
        assert session is not None
        try:
            peer = Peer(self._peer.host, self._peer.port, self._peer.is_tls, action.helo)
            reply = await self._server._handler.deliver(action.identity, action.mail_from, action.recipients,
                                                        action.data, peer)  # fmt: skip
            if not isinstance(reply, SmtpReply) or reply.code // 100 not in (2, 4, 5):
                raise TypeError(f"deliver() must return an SmtpReply with a 2xx, 4xx or 5xx code, not {reply!r}")
        except Exception:
            # Never a 250 for what may not be stored (docs/architecture.md §2): the client retries after a 451.
            log.exception("SMTP: deliver() failed for a message from %s; answered 451", self._peer.host)
            output = session.call_failed()
        else:
            output = session.delivered(reply)
        self._finish(output)

    async def _start_tls(self, action: StartTLS) -> None:
        session = self._session
        transport = self._transport
        context = self._server._ssl_context
        assert session is not None and transport is not None and context is not None
        if action.discarded:
            log.warning("SMTP: %s sent %d octets after STARTTLS, before the handshake; discarded "
                        "(STARTTLS command injection, CVE-2011-0411)", self._peer.host, action.discarded)  # fmt: skip
        try:
            tls_transport = await self._loop.start_tls(
                transport, self, context, server_side=True, ssl_handshake_timeout=self._config.command_timeout
            )
        except Exception as exc:  # noqa: BLE001 - a failed handshake ends this connection only; logged
            log.info("SMTP: TLS handshake with %s failed: %s", self._peer.host, exc or type(exc).__name__)
            self._task = None
            transport.abort()
            self._forget()  # connection_lost may not reach us: the TLS layer owned the transport
            return
        if tls_transport is None:  # the connection went away during the handshake
            self._task = None
            self._forget()
            return
        self._transport = tls_transport
        self._tls_pending = False
        self._reading_paused = False  # the TLS transport starts out reading
        self._peer = Peer(self._peer.host, self._peer.port, True)
        self._finish(session.tls_started())
        if self._tls_early:
            early = b"".join(self._tls_early)
            self._tls_early.clear()
            self.data_received(early)
