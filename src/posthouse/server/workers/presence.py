"""Worker presence: each worker process proves it is alive for as long as it runs, and releases the leases
of worker processes that are gone, so their work is due again in seconds (issue 12) instead of when the
leases expire (`lease_time`, 5 minutes by default).

Two proofs, one table (`store/workers.py`):

- A lock file, held with `flock` for the life of the process (the kernel drops it when the process dies,
  however it dies). Its path is in the process's `workers` row, so any process that can open that path
  (the same machine: SQLite, split roles on one database file, several PostgreSQL workers on one host)
  knows for certain: if it can lock the file, the owner is dead; if not, it is alive however slow it is,
  and keeps its claims.
- A heartbeat, renewed every `worker_heartbeat_interval` by the database's clock. A row whose lock file
  cannot be opened here (a worker on another machine, sharing PostgreSQL) is dead once its heartbeat is
  older than `worker_dead_after`. A worker silent for that long (stopped, partitioned) loses its leases
  even if it comes back; its late results are then refused by the claim guard (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import re
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from posthouse.server.errors import PosthouseError
from posthouse.server.services.clock import Clock
from posthouse.server.store.base import Store
from posthouse.server.store.workers import ReleasedLeases, WorkerRecord

log = logging.getLogger("posthouse.presence")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class Liveness(Enum):
    ALIVE = "alive"  # its lock is held: the process runs
    DEAD = "dead"  # we hold its lock now: the process is gone
    UNKNOWN = "unknown"  # its lock file cannot be opened here (another machine, or none)


def lock_file_name(owner: str) -> str:
    return _UNSAFE.sub("_", owner) + ".lock"


def try_lock(path: str) -> tuple[Liveness, int | None]:
    """Whether the owner of the lock file at `path` is alive; with DEAD, the descriptor now holding it."""
    if not path:
        return Liveness.UNKNOWN, None
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return Liveness.UNKNOWN, None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return Liveness.ALIVE, None
        return Liveness.UNKNOWN, None
    return Liveness.DEAD, fd


class WorkerPresence:
    """This worker process's lock file and heartbeat, and the sweep that releases the leases of gone ones."""

    def __init__(self, store: Store, clock: Clock, *, owner: str, lock_dir: Path | None, lease_seconds: float,
                 heartbeat_seconds: float = 3.0, dead_after_seconds: float = 15.0,
                 on_released: Callable[[], None] | None = None) -> None:
        self.store = store
        self.clock = clock
        self.owner = owner
        self.lock_dir = lock_dir
        self.lease_micros = int(lease_seconds * 1_000_000)
        self.heartbeat_seconds = heartbeat_seconds
        self.dead_after_micros = int(dead_after_seconds * 1_000_000)
        self.on_released = on_released  # leases were released: their work is due now
        self.lock_file = ""
        self._lock_fd: int | None = None
        self._stopping = asyncio.Event()
        self.released = ReleasedLeases(0, 0, 0)  # everything this process has released, for logs and tests

    async def start(self) -> None:
        """Take the lock file, register, and release the leases of every worker found gone: before this
        process claims anything, so a restart picks up what its predecessor held at once."""
        self._take_lock()
        await self.store.heartbeat_worker(self.owner, self.lock_file, self.lease_micros)
        await self.sweep()
        await self._clean_lock_dir()

    async def run(self) -> None:
        """Every heartbeat interval: renew this worker's row, then sweep. A failure is logged and the
        next interval tries again. Stops when `stop()` is called."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.heartbeat_seconds)
            if self._stopping.is_set():
                break
            try:
                if not await self.store.heartbeat_worker(self.owner, self.lock_file, self.lease_micros):
                    log.warning("worker %s was silent for longer than worker_dead_after and its leases were "
                                "released; registered again", self.owner)
                await self.sweep()
            except PosthouseError as exc:
                log.error("worker heartbeat failed, retrying at the next interval: %s", exc)
            except Exception:  # a bug here must not end the heartbeat: this worker would be declared dead
                log.exception("worker heartbeat failed unexpectedly, retrying at the next interval")

    async def sweep(self) -> int:
        """Release the leases of every registered worker that is gone; how many leases were released."""
        total = 0
        for worker in await self.store.list_workers():
            if worker.owner != self.owner:
                total += await self._release_if_gone(worker)
        if total and self.on_released is not None:
            self.on_released()
        return total

    async def _release_if_gone(self, worker: WorkerRecord) -> int:
        liveness, fd = try_lock(worker.lock_file)
        if liveness is Liveness.ALIVE:
            return 0  # alive on this machine, however long since its heartbeat: it keeps its claims
        if liveness is Liveness.UNKNOWN and worker.heartbeat_age <= self.dead_after_micros:
            return 0
        try:
            released = await self.store.release_worker(
                worker.owner, self.clock.micros(),
                silent_for=None if liveness is Liveness.DEAD else self.dead_after_micros)
        finally:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.unlink(worker.lock_file)
                os.close(fd)
        if released is None:
            return 0
        how = "its lock file is free" if liveness is Liveness.DEAD else \
            f"no heartbeat for {worker.heartbeat_age / 1_000_000:.1f} s"
        log.warning("worker %s is gone (%s): released %d deliveries, %d webhook posts and %d bulk requests it held",
                    worker.owner, how, released.deliveries, released.webhook_posts, released.bulk_requests)
        self.released = ReleasedLeases(self.released.deliveries + released.deliveries,
                                       self.released.webhook_posts + released.webhook_posts,
                                       self.released.bulk_requests + released.bulk_requests)
        return released.total

    def stop(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        """After the workers stopped: give back whatever this process still holds (a bulk request between
        chunks, results that could not be recorded), forget its row, drop its lock file."""
        self._stopping.set()
        try:
            released = await self.store.release_worker(self.owner, self.clock.micros())
            if released is not None and released.total:
                log.info("stopping worker %s gave back %d leases", self.owner, released.total)
        except PosthouseError as exc:
            log.warning("stopping worker %s could not give back its leases (they expire): %s", self.owner, exc)
        finally:
            if self._lock_fd is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self.lock_file)
                os.close(self._lock_fd)
                self._lock_fd = None

    # -- the lock file ----------------------------------------------------------------------------

    def _take_lock(self) -> None:
        """Create this process's lock file already locked: it is made under a temporary name, locked, then
        renamed, so no other process can ever find it unlocked while this one lives."""
        if self.lock_dir is None:
            return
        final = self.lock_dir / lock_file_name(self.owner)
        temporary = final.with_suffix(".new")
        fd: int | None = None
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, f"{self.owner}\n".encode())
            os.rename(temporary, final)
        except OSError as exc:  # not writable, or a file system without flock: the heartbeat still works
            if fd is not None:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
            log.warning("no worker lock file in %s (%s): a crash of this worker is noticed by its heartbeat "
                        "only, after worker_dead_after", self.lock_dir, exc.strerror or exc)
            return
        self._lock_fd, self.lock_file = fd, str(final.resolve())

    async def _clean_lock_dir(self) -> None:
        """Remove lock files of dead processes that no sweep will look at any more (their rows are gone,
        released by a node that could not see the file): only unregistered ones this process can lock."""
        if self.lock_dir is None or self._lock_fd is None:
            return
        registered = {worker.lock_file for worker in await self.store.list_workers()}
        for path in self.lock_dir.glob("*.lock"):
            if str(path.resolve()) in registered:
                continue
            liveness, fd = try_lock(str(path))
            if fd is not None:
                with contextlib.suppress(OSError):
                    path.unlink()
                os.close(fd)
                log.debug("removed the lock file of a gone worker: %s (%s)", path, liveness.value)
