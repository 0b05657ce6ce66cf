"""Crash recovery (issue 12): the leases of a worker process that is gone come back in seconds, those of a
live one stay, on SQLite and PostgreSQL (workers/presence.py, store/workers.py)."""

from __future__ import annotations

import logging
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_queue import T0, enqueue, make_server, webhook_record

from posthouse.server.domain.statuses import DeliveryState, EventType
from posthouse.server.services.clock import Clock
from posthouse.server.store.base import DeliveryUpdate, Stmt, Store
from posthouse.server.store.bulk import BulkRecord
from posthouse.server.store.webhooks import WebhookEvent, webhook_fanout
from posthouse.server.workers.presence import WorkerPresence

LEASE = 300_000_000  # the default lease_time (5 m), in µs: nothing here may wait for it
_HOLDER = ("import fcntl, os, sys, time\n"
           "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
           "fcntl.flock(fd, fcntl.LOCK_EX)\n"
           "print('locked', flush=True)\n"
           "time.sleep(120)\n")


class AtT0(Clock):
    """The queue helpers' fixed "now" (heartbeats are judged by the database's own clock, not this one)."""

    def micros(self) -> int:
        return T0


class LockHolder:
    """Another process holding a lock file, as a worker process does for its lifetime; `kill()` is kill -9."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.process = subprocess.Popen([sys.executable, "-c", _HOLDER, self.path], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 20)
        assert ready and self.process.stdout.readline().strip() == "locked"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        assert self.process.stdout is not None
        self.process.stdout.close()


def exists(path: str) -> bool:
    return Path(path).exists()


def presence(store: Store, tmp_path: Path, owner: str = "me", **options: float) -> WorkerPresence:
    return WorkerPresence(store, AtT0(), owner=owner, lock_dir=tmp_path / "workers",
                          lease_seconds=LEASE / 1_000_000, **options)  # type: ignore[arg-type]


async def leased(store: Store) -> dict[str | None, list[int]]:
    """The ids of the queue rows in `sending`, by lease owner."""
    rows = await store.query("SELECT lease_owner, id FROM deliveries WHERE state = 'sending' ORDER BY id")
    found: dict[str | None, list[int]] = {}
    for owner, row_id in rows:
        found.setdefault(owner, []).append(int(row_id))
    return found


async def registered(store: Store) -> list[str]:
    return [w.owner for w in await store.list_workers()]


async def make_silent(store: Store, owner: str, seconds: float) -> None:
    """Age a worker's heartbeat, as if it had not renewed it for `seconds`."""
    await store.transact([Stmt("UPDATE workers SET heartbeat_at = heartbeat_at - ? WHERE owner = ?",
                               (int(seconds * 1_000_000), owner))])


async def test_a_killed_workers_leases_come_back_at_once_and_a_live_ones_stay(store: Store, tmp_path: Path) -> None:
    """Two worker processes on this machine hold leases; one is killed -9. A starting worker releases the
    dead one's rows at once (due now, the attempt counted) and keeps its hands off the live one's, even
    though neither has sent a heartbeat for a minute: on one machine the lock file decides."""
    server_id = await make_server(store)
    await enqueue(store, server_id, 6)
    live, dead = LockHolder(tmp_path / "live.lock"), LockHolder(tmp_path / "dead.lock")
    try:
        now = T0
        for owner, holder in (("live", live), ("dead", dead)):
            assert not await store.heartbeat_worker(owner, holder.path, LEASE)  # registered anew
            await make_silent(store, owner, 60)
        live_rows = await store.claim_deliveries("live", now, 3, now + LEASE)
        dead_rows = await store.claim_deliveries("dead", now, 3, now + LEASE)
        dead.kill()

        me = presence(store, tmp_path)
        await me.start()
        assert me.released.deliveries == 3
        assert await leased(store) == {"live": sorted(d.id for d in live_rows)}
        assert sorted(await registered(store)) == ["live", "me"]
        assert not exists(dead.path)  # the dead one's lock file is cleared away with its row

        again = await store.claim_deliveries("other", T0, 10, T0 + LEASE)
        assert sorted(d.id for d in again) == sorted(d.id for d in dead_rows)
        assert {d.attempts for d in again} == {2}  # the attempt the dead worker held counts, as an expired lease's does
        # The dead worker's result can never count now: its claim token (owner, attempt) is gone for good.
        await store.record_attempts([DeliveryUpdate(d, "dead", DeliveryState.DELIVERED, now, "250 ok",
                                                    EventType.DELIVERED, {}, now) for d in dead_rows])
        assert set((await leased(store))["other"]) == {d.id for d in dead_rows}
        await me.close()
    finally:
        live.kill()
        dead.kill()


async def test_a_silent_worker_on_another_machine_loses_its_leases_after_worker_dead_after(
        store: Store, tmp_path: Path) -> None:
    """A worker whose lock file is not on this machine is judged by its heartbeat alone: kept while it is
    younger than worker_dead_after, released once it is older. Its webhook posts and bulk request too."""
    server_id = await make_server(store)
    await enqueue(store, server_id, 2)
    webhook_id = await store.create_webhook(webhook_record(server_id))
    assert webhook_id is not None
    now = T0
    await store.transact(webhook_fanout([WebhookEvent(server_id, "outbound", "Delivery", "evt-1", "{}", now)]))
    await store.insert_bulk(BulkRecord("bulk-1", server_id, "Accepted", 10, 0, 0, 0, None, "{}", now, now))
    remote = "/nonexistent/elsewhere/remote.lock"  # another machine's path: cannot be opened here
    await store.heartbeat_worker("remote", remote, LEASE)
    rows = await store.claim_deliveries("remote", now, 10, now + LEASE)
    posts = await store.claim_webhook_posts("remote", now, 10, now + LEASE)
    bulk = await store.claim_bulk("remote", now, now + LEASE)
    assert len(rows) == 2 and len(posts) == 1 and bulk is not None

    me = presence(store, tmp_path, dead_after_seconds=15.0)
    await me.start()
    await make_silent(store, "remote", 10)
    assert await me.sweep() == 0
    assert set(await leased(store)) == {"remote"}

    await make_silent(store, "remote", 10)  # 20 s now
    assert await me.sweep() == 4
    assert (me.released.deliveries, me.released.webhook_posts, me.released.bulk_requests) == (2, 1, 1)
    assert await leased(store) == {}
    assert await registered(store) == ["me"]
    later = T0
    assert len(await store.claim_deliveries("me", later, 10, later + LEASE)) == 2
    (post,) = await store.claim_webhook_posts("me", later, 10, later + LEASE)
    assert post.attempts == 2
    taken = await store.claim_bulk("me", later, later + LEASE)
    assert taken is not None and taken.id == "bulk-1"
    await me.close()


async def test_a_heartbeat_that_lands_first_keeps_the_leases(store: Store) -> None:
    """The silence is checked in the statement that removes the row: a worker whose heartbeat was renewed
    after another node judged it silent keeps everything it holds."""
    server_id = await make_server(store)
    await enqueue(store, server_id, 1)
    now = T0
    await store.heartbeat_worker("slow", "", LEASE)
    await store.claim_deliveries("slow", now, 1, now + LEASE)
    assert await store.release_worker("slow", now, silent_for=15_000_000) is None
    assert set(await leased(store)) == {"slow"}
    assert await registered(store) == ["slow"]
    assert await store.heartbeat_worker("slow", "", LEASE)  # still registered: renewed, not registered anew


async def test_a_worker_released_as_silent_registers_again_at_its_next_heartbeat(store: Store, tmp_path: Path) -> None:
    me = presence(store, tmp_path)
    await me.start()
    assert me.lock_file and exists(me.lock_file)
    assert await store.release_worker("me", T0) is not None  # another node took it for dead
    assert await registered(store) == []
    assert not await store.heartbeat_worker("me", me.lock_file, LEASE)
    assert await registered(store) == ["me"]
    await me.close()


async def test_a_stopping_worker_gives_back_what_it_holds_and_leaves_no_trace(store: Store, tmp_path: Path) -> None:
    server_id = await make_server(store)
    now = T0
    await store.insert_bulk(BulkRecord("bulk-1", server_id, "Accepted", 10, 0, 0, 0, None, "{}", now, now))
    me = presence(store, tmp_path)
    await me.start()
    assert await store.claim_bulk("me", now, now + LEASE) is not None
    await me.close()
    assert await registered(store) == []
    assert list((tmp_path / "workers").iterdir()) == []
    assert await store.claim_bulk("next", now, now + LEASE) is not None  # not after its 5 minutes: now


async def test_a_live_workers_lock_is_proof_for_other_presences_too(store: Store, tmp_path: Path) -> None:
    """Two live worker presences in one process (as in split tests) each see the other's lock held."""
    first, second = presence(store, tmp_path, "first"), presence(store, tmp_path, "second")
    await first.start()
    await second.start()
    await make_silent(store, "first", 3600)
    assert await second.sweep() == 0
    assert sorted(await registered(store)) == ["first", "second"]
    await first.close()
    await second.close()
    assert await registered(store) == []


async def test_lock_files_left_by_dead_unregistered_workers_are_removed_at_start(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "workers"
    folder.mkdir()
    orphan = LockHolder(folder / "gone_1.lock")
    orphan.kill()  # its row was released long ago by a node that could not see this file
    alive = LockHolder(folder / "alive_2.lock")
    try:
        me = presence(store, tmp_path)
        await me.start()
        assert sorted(p.name for p in folder.iterdir()) == sorted(["alive_2.lock", Path(me.lock_file).name])
        await me.close()
    finally:
        alive.kill()


async def test_without_a_writable_lock_folder_a_worker_runs_on_its_heartbeat_alone(
        store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the data dir should be")
    me = WorkerPresence(store, AtT0(), owner="me", lock_dir=blocked / "workers", lease_seconds=60.0)
    with caplog.at_level(logging.WARNING, logger="posthouse.presence"):
        await me.start()
    assert me.lock_file == ""
    assert any("heartbeat only" in r.getMessage() for r in caplog.records)
    assert [(w.owner, w.lock_file) for w in await store.list_workers()] == [("me", "")]
    await me.close()


async def test_a_row_that_keeps_dying_with_its_workers_waits_instead_of_coming_back_at_once(
        store: Store, tmp_path: Path) -> None:
    """A message that crashes every worker sending it must not hold the queue: from its third claim on, a
    crash-released row is due CRASH_LOOP_DELAY later instead of at once."""
    from posthouse.server.store.workers import CRASH_LOOP_ATTEMPTS, CRASH_LOOP_DELAY

    server_id = await make_server(store)
    await enqueue(store, server_id, 1)
    now = T0
    for round_ in range(1, CRASH_LOOP_ATTEMPTS + 1):
        holder = LockHolder(tmp_path / f"w{round_}.lock")
        assert not await store.heartbeat_worker(f"w{round_}", holder.path, LEASE)
        [claimed] = await store.claim_deliveries(f"w{round_}", now, 1, now + LEASE)
        assert claimed.attempts == round_
        holder.kill()
        released = await store.release_worker(f"w{round_}", now)
        assert released is not None and released.deliveries == 1
        [(attempts, due)] = await store.query("SELECT attempts, next_attempt_at FROM deliveries")
        if round_ < CRASH_LOOP_ATTEMPTS:
            assert int(due) <= now  # due at once: one crash is no reason to wait
        else:
            assert int(attempts) == CRASH_LOOP_ATTEMPTS and int(due) == now + CRASH_LOOP_DELAY
        now += 1_000_000
