"""DKIM signatures made in a child process, beside the delivery worker's event loop.

Why a process: signing is about a third of the worker's CPU per message with RSA-2048 (canonicalisation and
hashing in Python, then the RSA operation), and the worker is one event loop on one core. A thread does not
help (services/dkim_signing.py's docstring: the canonicalisation needs the GIL while the loop holds it); a
process has its own interpreter, so on a machine with a second core the signatures are made there while the
loop goes on taking and sending mail. The loop's cost per message falls to framing the request and reading
the answer. Measured with `bench/mx.py --dkim` (BENCHMARKS.md, "Direct MX delivery").

The protocol, over the child's stdin and stdout: frames of a 4-byte big-endian length and a pickle, requests
`(id, message, keys, timestamp)` and answers `(id, fields, error)`. Both ends are this module, one version,
so pickle carries nothing untrusted.

Failure never loses or unsigns mail: while the child starts, and after it died, `signature_fields` answers
None and the caller signs on its own loop; a dead child is started again after `RESTART_AFTER` seconds.
A child whose parent is gone sees its stdin close and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import signal
import sys
import time
from collections.abc import Sequence

from posthouse.server.domain.dkim_keys import DkimKey

log = logging.getLogger("posthouse.dkim")
RESTART_AFTER = 5.0  # seconds before a child that died is started again
_HEAD = 4
_DRAIN_ABOVE = 1 << 20  # bytes waiting in the pipe before a request waits for the child to read


class SigningProcess:
    """One child process making DKIM-Signature fields (`domain.dkim.signature_fields`) for the loop."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[tuple[bytes | None, str | None]]] = {}
        self._next_id = 0
        self._failed_at = float("-inf")
        self._closed = False

    @property
    def running(self) -> bool:
        return self._process is not None and self._reader is not None and not self._reader.done()

    def start(self) -> None:
        """Start the child in the background, unless it runs, is starting, or died less than RESTART_AFTER ago."""
        if self._closed or self.running or (self._starting is not None and not self._starting.done()):
            return
        if time.monotonic() - self._failed_at < RESTART_AFTER:
            return
        self._starting = asyncio.get_running_loop().create_task(self._start(), name="dkim-signing-process")

    async def _start(self) -> None:
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "posthouse.server.services.signing_process",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 24)
        except OSError as exc:
            self._failed_at = time.monotonic()
            log.warning("the DKIM signing process could not start (signing on the event loop): %s", exc)
            return
        if self._closed:  # closed while it started
            await _end(process)
            return
        self._process = process
        self._reader = asyncio.get_running_loop().create_task(self._read(process), name="dkim-signing-answers")

    async def signature_fields(self, message: bytes, keys: Sequence[DkimKey], timestamp: int) -> bytes | None:
        """The DKIM-Signature fields for `message` (CRLF-normalised), made by the child; None when the child
        is not running (starting, or gone): the caller then signs itself. ValueError for a key that cannot sign."""
        process = self._process
        if not self.running or process is None or process.stdin is None:
            self.start()
            return None
        self._next_id += 1
        ident = self._next_id
        future: asyncio.Future[tuple[bytes | None, str | None]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        frame = pickle.dumps((ident, message, tuple(keys), timestamp), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            process.stdin.write(len(frame).to_bytes(_HEAD, "big") + frame)
            if process.stdin.transport.get_write_buffer_size() > _DRAIN_ABOVE:
                await process.stdin.drain()
            fields, error = await future
        except (ConnectionError, BrokenPipeError):
            return None
        finally:
            self._pending.pop(ident, None)
        if error is not None:
            raise ValueError(error)
        return fields

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        try:
            while True:
                size = int.from_bytes(await process.stdout.readexactly(_HEAD), "big")
                ident, fields, error = pickle.loads(  # noqa: S301 — our own child's answer, over its own pipe
                    await process.stdout.readexactly(size))
                future = self._pending.get(ident)
                if future is not None and not future.done():
                    future.set_result((fields, error))
        except (asyncio.IncompleteReadError, ConnectionError, pickle.UnpicklingError) as exc:
            if not self._closed:
                self._failed_at = time.monotonic()
                log.warning("the DKIM signing process ended (%s); signing on the event loop, restarting in %.0f s",
                            exc.__class__.__name__, RESTART_AFTER)
        finally:
            self._process = None
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("the DKIM signing process ended"))
            await _end(process)

    async def close(self) -> None:
        """Stop the child: its stdin closes, it exits; what was asked of it is then signed by the callers."""
        self._closed = True
        if self._starting is not None:
            await asyncio.gather(self._starting, return_exceptions=True)
        process = self._process
        if process is not None and process.stdin is not None:
            process.stdin.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


async def _end(process: asyncio.subprocess.Process) -> None:
    """Wait for the child to exit once its stdin is closed; killed if it does not within 5 s."""
    if process.stdin is not None and not process.stdin.is_closing():
        process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), 5.0)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def _serve() -> None:
    """The child: answer each request in order until stdin closes."""
    from posthouse.server.domain import dkim

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides when to stop
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = requests.read(_HEAD)
        if len(head) < _HEAD:
            return
        # S301 below: the request comes from the parent that started this process, over its own pipe
        ident, message, keys, timestamp = pickle.loads(requests.read(int.from_bytes(head, "big")))  # noqa: S301
        try:
            answer: tuple[int, bytes | None, str | None] = (
                ident, dkim.signature_fields(message, keys, timestamp=timestamp), None)
        except ValueError as exc:
            answer = (ident, None, str(exc) or exc.__class__.__name__)
        frame = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        answers.write(len(frame).to_bytes(_HEAD, "big") + frame)
        answers.flush()


if __name__ == "__main__":
    _serve()
