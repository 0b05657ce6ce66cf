"""A minimal SMTP sink that notes when each message arrived, by its `X-Bench-Id` header.

For latency benchmarks only: it runs its own event loop in a thread, speaks just enough ESMTP
(EHLO with PIPELINING, MAIL, RCPT, DATA, RSET, NOOP, QUIT) and accepts everything.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time

_BENCH_ID = re.compile(rb"\r\nX-Bench-Id:\s*(\S+)", re.IGNORECASE)


class _Session(asyncio.Protocol):
    def __init__(self, sink: TimingSink) -> None:
        self.sink = sink
        self.buffer = b""
        self.in_data = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(b"220 timing-sink ESMTP\r\n")  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        replies = []
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    break
                content, self.buffer = self.buffer[:end], self.buffer[end + 5 :]
                found = _BENCH_ID.search(b"\r\n" + content)
                if found:
                    self.sink.arrivals[found.group(1).decode()] = time.monotonic()
                self.in_data = False
                replies.append(b"250 2.0.0 Ok\r\n")
                continue
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                break
            line, self.buffer = self.buffer[:line_end], self.buffer[line_end + 2 :]
            verb = line[:4].upper()
            if verb == b"EHLO":
                replies.append(b"250-timing-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 52428800\r\n")
            elif verb == b"DATA":
                self.in_data = True
                replies.append(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                replies.append(b"221 2.0.0 Bye\r\n")
                assert self.transport is not None
                self.transport.write(b"".join(replies))
                self.transport.close()
                return
            else:
                replies.append(b"250 2.0.0 Ok\r\n")
        if replies and self.transport is not None:
            self.transport.write(b"".join(replies))


class TimingSink:
    """`with TimingSink() as sink:` listens on 127.0.0.1:`sink.port`; `sink.arrivals` maps id → time."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        server = self._loop.run_until_complete(self._loop.create_server(lambda: _Session(self), sock=sock))
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    def __enter__(self) -> TimingSink:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
