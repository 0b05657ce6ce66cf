"""The HTTP listener's connection guard: a cap on open connections and deadlines for clients that send nothing.

The threat: uvicorn starts no timer on a new connection until it has answered a request, and any byte
received stops its keep-alive timer. A client that connects and sends nothing (or one header byte a
minute) holds a socket and a file descriptor for ever; 20,000 such sockets exhausted the process's
file limit and took the SMTP listener down with the API. `limit_concurrency` does not help: it still
accepts and keeps every connection, and only answers 503 once a request's headers are in.

So each connection here has one deadline while it is not serving a request:

- from connect, its request's headers must be complete within `header_timeout`;
- after a response, the next request must start within `keep_alive_timeout` and, once its first
  byte is in, its headers must be complete within `header_timeout`;

and the listener holds at most `max_connections`. A new connection past the cap takes the place of
the connection idle for longest (closed at once: it was not serving anyone); when every connection
is busy with a request, the new one hears 503 with Postmark's error body and is closed.
A body that stops arriving is the request's business: `api.limits` times it out.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["ConnectionGuard"]

log = logging.getLogger("posthouse.api")

_BUSY_BODY = msgspec.json.encode({"ErrorCode": 100, "Message": "The server has too many open connections; "
                                                                 "retry in a few seconds."})
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nx-pm-apierrorcode: 100\r\n"
         b"retry-after: 1\r\nconnection: close\r\ncontent-length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n"
         + _BUSY_BODY)


class ConnectionGuard:
    """The connections of one HTTP listener: how many are open, and which are idle, longest-idle first."""

    def __init__(self, *, max_connections: int, header_timeout: float, keep_alive_timeout: float) -> None:
        if max_connections < 1 or header_timeout <= 0 or keep_alive_timeout <= 0:
            raise ValueError("max_connections and the timeouts must be positive")
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.keep_alive_timeout = keep_alive_timeout
        self.open: set[_GuardedProtocol] = set()
        self._idle: OrderedDict[_GuardedProtocol, None] = OrderedDict()
        self.refused = 0  # connections answered 503 at connect, since start
        self.evicted = 0  # idle connections closed to make room, since start
        self.timed_out = 0  # connections closed for sending no (complete) request in time, since start

    def protocol_factory(self) -> Callable[..., asyncio.Protocol]:
        """What to give uvicorn as its `http` protocol class."""

        def make(**kwargs: Any) -> asyncio.Protocol:
            return _GuardedProtocol(self, **kwargs)

        return make

    # -- for the protocol ----------------------------------------------------------------------

    def admit(self, connection: _GuardedProtocol) -> bool:
        """Room for a new connection, closing the longest-idle one if need be; False when all are busy."""
        if len(self.open) >= self.max_connections:
            if not self._idle:
                self.refused += 1
                return False
            oldest, _ = self._idle.popitem(last=False)
            self.open.discard(oldest)
            self.evicted += 1
            oldest.evict()
        self.open.add(connection)
        self._idle[connection] = None
        return True

    def idle(self, connection: _GuardedProtocol) -> None:
        if connection in self.open:
            self._idle[connection] = None
            self._idle.move_to_end(connection)

    def busy(self, connection: _GuardedProtocol) -> None:
        self._idle.pop(connection, None)

    def forget(self, connection: _GuardedProtocol) -> None:
        self.open.discard(connection)
        self._idle.pop(connection, None)


class _GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the guard's cap and deadlines (see the module docstring)."""

    def __init__(self, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._guard = guard
        self._deadline: asyncio.TimerHandle | None = None
        self._refused = False
        self._waiting_for_request = False  # idle after a response: the next request has not begun

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if not self._guard.admit(self):
            self._refused = True
            # Not a warning: a flood of connections must not become a flood of log lines.
            log.info("HTTP: refusing a connection: %d open, all busy (http_max_connections)", len(self._guard.open))
            transport.write(_BUSY)
            transport.close()
            return
        super().connection_made(transport)
        self._arm(self._guard.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return  # uvicorn never knew of it
        self._disarm()
        self._guard.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._waiting_for_request:
            # The first byte of a kept-alive connection's next request: its headers get the header timeout.
            self._waiting_for_request = False
            self._arm(self._guard.header_timeout)

    def on_headers_complete(self) -> None:
        self._disarm()
        self._waiting_for_request = False
        self._guard.busy(self)
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return  # closing, or a pipelined request has just started
        self._guard.idle(self)
        self._waiting_for_request = True
        self._arm(self._guard.keep_alive_timeout)

    def evict(self) -> None:
        """Closed to make room for a new connection: it was serving no request."""
        self._disarm()
        if self.transport is not None:
            self.transport.abort()

    # -- the deadline --------------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # serving a request after all; the response re-arms the deadline
        self._guard.timed_out += 1
        self._guard.forget(self)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
