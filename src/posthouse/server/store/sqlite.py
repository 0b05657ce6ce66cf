"""The SQLite store: one writer thread with group commit, a few reader threads, WAL (docs/architecture.md §6).

The writer thread owns the only write connection. Each call to `transact` queues its statements;
the thread takes everything pending, runs each caller's statements inside its own SAVEPOINT (so one
failing caller does not fail the others) and commits once — one fsync for all of them with
`synchronous=FULL`. Callers are woken only after that commit. The event loop never blocks on SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from posthouse.server.errors import ConfigurationError, StoreError, StoreFullError
from posthouse.server.store import migrations
from posthouse.server.store.base import Stmt, Store, resolve_refs
from posthouse.server.store.sql import Counters, Then, expand, is_mergeable, merge

log = logging.getLogger("posthouse.store")
_MAX_GROUP = 2000  # callers per commit at most, to bound one transaction's size

# Planner statistics pinned for a large store (SQLite's sqlite_stat1 format: rows, then rows per key
# prefix). Without them SQLite guesses, and at a million messages it walks the time index checking a
# recipient or metadata filter row by row (140 ms) instead of looking the few matches up (0.1 ms);
# ANALYZE on a young database would teach it the same wrong lesson. A manual ANALYZE replaces them
# until the next start.
_PLANNER_STATS = (
    ("messages", None, "1000000"),
    ("messages", "sqlite_autoindex_messages_1", "1000000 1"),
    ("messages", "messages_by_time", "1000000 1000000 500000 1"),
    ("messages", "messages_by_tag", "1000000 1000000 500000 1000 1"),
    ("messages", "messages_by_sender", "1000000 1000000 500000 10000 1"),
    ("messages", "messages_by_status", "1000000 1000000 500000 300000 1 1"),
    ("messages", "messages_sandboxed", "10000 10000 5000 1"),  # partial: the sandboxed few (the inbox)
    ("deliveries", None, "1000000"),
    ("deliveries", "deliveries_due", "10000 1"),
    ("deliveries", "deliveries_by_message", "1000000 1"),
    ("deliveries", "deliveries_by_recipient", "1000000 10"),
    ("events", None, "3000000"),
    ("events", "events_by_message", "3000000 3"),
    ("message_metadata", None, "1000000"),
    ("message_metadata", "message_metadata_lookup", "1000000 1000000 100000 2"),
    ("bounces", None, "100000"),
    ("bounces", "bounces_by_time", "100000 100000 1"),
    # Without these, a message's opens would be found by walking the server's whole time-ordered index.
    ("tracking_hits", None, "10000000"),
    ("tracking_hits", "tracking_hits_by_server", "10000000 10000000 5000000 4000000 1 1"),
    ("tracking_hits", "tracking_hits_by_message", "10000000 3 2 1"),
    ("tracking_hits", "tracking_hits_by_recipient", "10000000 10000000 50 25 1"),
    ("stats_daily", None, "100000"),
    ("stats_daily", "sqlite_autoindex_stats_daily_1", "100000 100000 1000 500 100 1"),
    ("stats_daily", "stats_daily_by_metric", "100000 100000 1000 10 1 1 1"),
)


@dataclass(slots=True)
class _Job:
    stmts: Sequence[Stmt | Then]
    future: asyncio.Future[list[list[Sequence[Any]]]]
    loop: asyncio.AbstractEventLoop


def _store_error(exc: BaseException) -> StoreError:
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("full" in text or "disk" in text):
        return StoreFullError(f"database full: {text}")
    return StoreError(f"database error: {text}")


def _resolve(results: list[tuple[_Job, Any, BaseException | None]]) -> None:
    for job, value, error in results:
        if job.future.done():
            continue
        if error is None:
            job.future.set_result(value)
        else:
            job.future.set_exception(error)


class SqliteStore(Store):
    dialect = "sqlite"

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", allow_unsafe_synchronous: bool = False,
                 readers: int = 4, max_page_count: int | None = None) -> None:
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        if self.synchronous not in _SYNCHRONOUS:
            raise ConfigurationError(f"invalid SQLite synchronous level {synchronous!r}")
        # Below FULL a power cut can take commits already acknowledged (docs/architecture.md §2): only on request.
        if _SYNCHRONOUS[self.synchronous] < _SYNCHRONOUS["FULL"] and not allow_unsafe_synchronous:
            raise ConfigurationError(f"SQLite synchronous={self.synchronous} can lose acknowledged mail on power "
                                     "loss; it needs sqlite_allow_unsafe_synchronous=true")
        self.reader_count = readers
        self.max_page_count = max_page_count
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="sqlite-read")
        self._local = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._closing = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._checkpoint_conn: sqlite3.Connection | None = None
        self._checkpoint_lock = threading.Lock()  # the checkpoint thread's connection, shared with `connection_pragmas`
        self._open_error: BaseException | None = None
        # Split roles on one file: changes the hints depend on are announced through this file (see
        # `announce_change`); what it looked like when last seen.
        self._changes_file = self.path.with_name(self.path.name + "-changes")
        self._changes_seen: tuple[int, int, int] | None = None
        self._changes_looked_at = float("-inf")

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> SqliteStore:
        return cls(url.removeprefix("sqlite:///") or "posthouse.db", **kwargs)

    # -- connections --------------------------------------------------------------------------

    def _connect(self, role: str) -> sqlite3.Connection:
        """A connection for `role` ("writer", "reader", "checkpoint"), with the pragmas every connection
        carries: the durability level (checkpoints sync by it too), foreign keys, the busy timeout."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            # The message-id, recipient and sender indexes take keys in random order: a page cache that
            # holds their upper levels keeps inserts from re-reading them (SQLite's default is 2 MB).
            if role == "reader":
                conn.execute(f"PRAGMA cache_size = {-16 * 1024}")
                conn.execute("PRAGMA query_only = 1")
            elif role == "writer":
                conn.execute(f"PRAGMA cache_size = {-64 * 1024}")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":  # some file systems cannot share the WAL index (no mmap)
                    raise sqlite3.OperationalError(f"the database cannot use WAL mode here (it stays {mode!r})")
                # Checkpoints run on their own thread (`_checkpoint_loop`), not inside the writer's commits.
                conn.execute("PRAGMA wal_autocheckpoint = 0")
                if self.max_page_count:
                    conn.execute(f"PRAGMA max_page_count = {int(self.max_page_count)}")
        except BaseException:
            conn.close()
            raise
        return conn

    async def connection_pragmas(self) -> dict[str, dict[str, Any]]:
        """What is in force on every open connection, read back from each on its own thread: the writer,
        the checkpointer and every reader (all started). For tests and diagnostics."""
        writer = await self.transact([Stmt(f"PRAGMA {name}", fetch=True) for name in _REPORTED_PRAGMAS])
        found = {"writer": {name: rows[0][0] for name, rows in zip(_REPORTED_PRAGMAS, writer, strict=True)}}
        with self._checkpoint_lock:
            if self._checkpoint_conn is not None:
                found["checkpoint"] = _pragmas(self._checkpoint_conn)
        # One task per reader thread: each waits at the barrier until all run, so no thread takes two.
        barrier = threading.Barrier(self.reader_count)

        def read() -> dict[str, Any]:
            barrier.wait(timeout=30)
            return _pragmas(self._reader())

        loop = asyncio.get_running_loop()
        readers = await asyncio.gather(*(loop.run_in_executor(self._readers, read) for _ in range(self.reader_count)))
        found.update({f"reader-{i}": values for i, values in enumerate(readers)})
        return found

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"cannot create the data folder {self.path.parent}: {exc.strerror}") from None
        self._create_changes_file()
        self._writer = threading.Thread(target=self._write_loop, name="sqlite-writer", daemon=True)
        self._writer.start()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="sqlite-checkpoint", daemon=True)
        self._checkpointer.start()
        await asyncio.get_running_loop().run_in_executor(None, self._ready.wait)
        if self._open_error is not None:
            raise ConfigurationError(f"cannot open SQLite database {self.path}: {self._open_error}")
        if _SYNCHRONOUS[self.synchronous] < _SYNCHRONOUS["FULL"]:
            log.warning("SQLite runs with synchronous=%s (sqlite_allow_unsafe_synchronous): a power cut can lose "
                        "mail that was already acknowledged", self.synchronous)

    async def close(self) -> None:
        self._closing.set()
        if self._checkpointer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._checkpointer.join)
            self._checkpointer = None
        if self._writer is not None:
            self._jobs.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
            self._writer = None
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._reader_connections:
                conn.close()
            self._reader_connections.clear()

    # -- writes: group commit -----------------------------------------------------------------

    async def transact(self, stmts: Sequence[Stmt | Then]) -> list[list[Sequence[Any]]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[list[Sequence[Any]]]] = loop.create_future()
        self._jobs.put(_Job(stmts, future, loop))
        return await future

    def _run(self, conn: sqlite3.Connection, steps: Sequence[Stmt | Then],
             counters: Counters | None = None) -> list[list[Sequence[Any]]]:
        """Run a caller's statements; counter increments go to `counters` (run at the end) when given."""
        results: list[list[Sequence[Any]]] = []
        for step in steps:
            for stmt in expand(step, results):
                if stmt.additive and counters is not None and stmt.many is not None:
                    counters.add(stmt, [resolve_refs(row, results) for row in stmt.many])
                    results.append([])
                elif stmt.many is not None:
                    rows = [resolve_refs(row, results) for row in stmt.many]
                    for sql, args in _multirow(stmt.sql, rows):
                        conn.execute(sql, args)
                    results.append([])
                else:
                    cursor = conn.execute(stmt.sql, resolve_refs(stmt.args, results))
                    results.append(cursor.fetchall() if stmt.fetch else [])
        return results

    def subject_index(self, rows: list[tuple[str, str]]) -> list[Stmt]:
        return [Stmt("INSERT INTO message_subjects (subject, message_id) VALUES (?, ?)", many=rows)]

    def subject_filter(self, text: str) -> tuple[str, list[Any]]:
        # The trigram index takes LIKE without ESCAPE only (with one it scans), so it finds candidates
        # with the user's `%` and `_` as wildcards (a superset), and the exact test follows.
        clause, args = self.subject_test(text)
        return (f"message_id IN (SELECT message_id FROM message_subjects WHERE subject LIKE ?) AND {clause}",
                [f"%{text}%", *args])

    async def prune_subject_index(self, after: int, limit: int) -> tuple[int | None, int]:
        # The trigram table keeps its own copy of each subject (migration 0003), found here by its rowid (a
        # range FTS5 reads in order): reads find the rows whose message is gone, one write deletes them.
        rows = await self.query("SELECT rowid, message_id FROM message_subjects WHERE rowid > ? ORDER BY rowid "
                                "LIMIT ?", (after, limit))
        if not rows:
            return None, 0
        ids = sorted({str(r[1]) for r in rows})
        live = {r[0] for r in await self.query(
            f"SELECT message_id FROM messages WHERE message_id IN ({', '.join('?' * len(ids))})", ids)}
        orphans = [int(r[0]) for r in rows if r[1] not in live]
        if orphans:
            await self.transact([Stmt(
                f"DELETE FROM message_subjects WHERE rowid IN ({', '.join('?' * len(orphans))})", orphans)])
        return (int(rows[-1][0]) if len(rows) == limit else None), len(orphans)

    def finish_deliveries(self, rows: list[tuple[str, int, int, str, int, str, int]]) -> list[Stmt]:
        # One statement per chunk of rows (UPDATE … FROM VALUES, SQLite 3.33), for the reason `_multirow` gives.
        stmts = []
        for chunk in _chunks(rows, _MAX_ROWS_PER_STATEMENT):
            stmts.append(Stmt(
                "UPDATE deliveries SET state = v.column1, next_attempt_at = v.column2, lease_owner = NULL, "
                "updated_at = v.column3, last_reply = v.column4 FROM (VALUES "
                + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
                + ") AS v WHERE deliveries.id = v.column5 AND deliveries.lease_owner = v.column6 "
                "AND deliveries.attempts = v.column7 RETURNING deliveries.id",
                [value for row in chunk for value in row], fetch=True))
        return stmts

    def _write_loop(self) -> None:
        """Take every pending job, run them in one transaction, commit once, wake the callers.

        Stops when it takes `None` from the queue (after finishing what came before it).
        """
        try:
            conn = self._connect("writer")
        except sqlite3.Error as exc:
            self._open_error = exc
            self._ready.set()
            return
        self._ready.set()
        while True:
            job = self._jobs.get()
            if job is None:
                break
            batch = [job]
            stop = False
            while len(batch) < _MAX_GROUP:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            try:
                started = time.perf_counter()
                self._commit_batch(conn, batch)
                self._observe_commit(len(batch), time.perf_counter() - started)
            except Exception:  # the writer must outlive any one batch: its callers get an error
                log.exception("sqlite writer: a batch failed unexpectedly")
                error = StoreError("database error: the write failed unexpectedly")
                for job in batch:
                    failed: list[tuple[_Job, Any, BaseException | None]] = [(job, None, error)]
                    job.loop.call_soon_threadsafe(_resolve, failed)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            if stop:
                break
        conn.close()

    @property
    def pending_writes(self) -> int:
        return self._jobs.qsize()

    def _observe_commit(self, size: int, seconds: float) -> None:
        observer = self.on_commit
        if observer is not None:
            try:
                observer(size, seconds)
            except Exception:  # metrics must never cost a commit its callers
                log.exception("the commit observer failed")

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        """Run the batch in one transaction and commit it. First all together (`_run_merged`); if a
        statement fails, roll back and run each job inside its own SAVEPOINT, so only the failing
        job fails (`_run_isolated`)."""
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                outcomes = self._run_merged(conn, batch)
            # Not only SQL errors: a value the driver cannot bind (a lone surrogate, an int past 2**63)
            # raises UnicodeEncodeError or OverflowError, and must fail its caller, not the writer thread.
            except Exception as exc:
                if isinstance(exc, sqlite3.Error) and not conn.in_transaction:
                    raise  # SQLite itself rolled everything back (SQLITE_FULL, SQLITE_IOERR): see below
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                outcomes = self._run_isolated(conn, batch)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            # The commit itself failed (disk full, I/O error): nobody in this batch is acknowledged.
            log.error("sqlite commit failed: %s", exc)
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error as rollback_exc:
                    log.error("sqlite rollback failed: %s", rollback_exc)
            error = _store_error(exc)
            outcomes = [(job, None, error) for job in batch]
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Any, BaseException | None]]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].loop, []).append(outcome)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, items)
            except RuntimeError:
                log.warning("event loop closed before %d sqlite results were delivered", len(items))

    def _run_merged(self, conn: sqlite3.Connection, batch: list[_Job]) -> list[tuple[_Job, Any, BaseException | None]]:
        """Every job of the batch, without savepoints; jobs made only of plain multi-row statements
        with the same statement texts (concurrent acceptances, say) become one set of multi-row
        statements. Each statement execution hands the GIL to the event loop and back, so a hundred
        single-message requests cost four executions instead of six hundred. Raises on the first
        failure (the caller then isolates the jobs)."""
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        groups: dict[tuple[str, ...], list[_Job]] = {}
        counters = Counters()
        for job in batch:
            if is_mergeable(job.stmts):
                groups.setdefault(tuple(s.sql for s in job.stmts), []).append(job)
            else:
                outcomes.append((job, self._run(conn, job.stmts, counters), None))
        for texts, jobs in groups.items():
            self._run(conn, merge([cast(Sequence[Stmt], job.stmts) for job in jobs]), counters)  # all mergeable
            outcomes.extend((job, [[] for _ in texts], None) for job in jobs)
        self._run(conn, counters.statements())
        return outcomes

    def _run_isolated(self, conn: sqlite3.Connection, batch: list[_Job]
                      ) -> list[tuple[_Job, Any, BaseException | None]]:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        counters = Counters()  # only those of the jobs that succeed
        for job in batch:
            conn.execute("SAVEPOINT job")
            own = Counters()
            try:
                value = self._run(conn, job.stmts, own)
            except Exception as exc:
                if isinstance(exc, sqlite3.Error) and not conn.in_transaction:
                    # Some errors (SQLITE_FULL, SQLITE_IOERR) make SQLite roll back the whole
                    # transaction, not just the statement: every job of the batch is lost, none acked.
                    raise
                if not isinstance(exc, sqlite3.Error):
                    log.error("a write could not be run (its caller fails, the writer goes on): %r", exc)
                conn.execute("ROLLBACK TO job")
                outcomes.append((job, None, _store_error(exc)))
            else:
                outcomes.append((job, value, None))
                counters.absorb(own)
            conn.execute("RELEASE job")
        self._run(conn, counters.statements())
        return outcomes

    def _checkpoint_loop(self) -> None:
        """Copy the WAL back into the database file from this thread, so the writer's commits never
        wait for a checkpoint and the second core does that work. PASSIVE never blocks the writer
        or readers. Stops when the store closes, after a final TRUNCATE."""
        if not self._ready.wait(30) or self._open_error is not None:
            return
        try:
            conn = self._connect("checkpoint")
        except sqlite3.Error as exc:
            log.error("sqlite checkpoint connection failed: %s", exc)
            return
        with self._checkpoint_lock:
            self._checkpoint_conn = conn
        try:
            while not self._closing.wait(0.2):
                try:
                    # Once every frame is copied back, the next write starts the log over from its
                    # beginning, so PASSIVE alone keeps the WAL from growing; TRUNCATE (which waits for
                    # the writer) is left for shutdown.
                    with self._checkpoint_lock:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:
                    log.warning("sqlite checkpoint failed (retrying): %s", exc)
            try:
                with self._checkpoint_lock:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("final sqlite checkpoint failed: %s", exc)
        finally:
            with self._checkpoint_lock:
                self._checkpoint_conn = None
                conn.close()

    # -- changes other processes on this file made (services/hints.py) -------------------------

    def announce_change(self, kind: str) -> None:
        """Append a byte to the changes file, after the commit: every other process using this database
        file sees the file change at its next hint use and reloads (SQLite has no NOTIFY). Kept small:
        past 4 KiB it starts over, which changes it too."""
        try:
            fd = os.open(self._changes_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                if os.write(fd, kind[:1].encode()) and os.fstat(fd).st_size > 4096:
                    os.ftruncate(fd, 0)
            finally:
                os.close(fd)
        except OSError as exc:  # the hints of other processes then reload within their 1 s
            log.warning("cannot announce a %s change to other processes through %s: %s", kind, self._changes_file,
                        exc.strerror)

    def _create_changes_file(self) -> None:
        """The changes file, empty, unless it exists: `refresh_changes` then finds it on every look. A missing
        file raised FileNotFoundError on each look, several times per accepted message (about 5% of the SMTP
        path's event-loop time). Creating it announces nothing: an empty file is what no change looks like."""
        try:
            os.close(os.open(self._changes_file, os.O_WRONLY | os.O_CREAT, 0o644))
        except OSError as exc:  # refresh_changes copes with a missing file; only slower
            log.warning("cannot create %s: %s", self._changes_file, exc.strerror)

    def refresh_changes(self) -> None:
        """A stat of the changes file, at most every `_CHANGES_LOOK_INTERVAL`: if the file moved since last seen,
        another process (or this one) changed suppressions, webhooks or domains, and every hint reloads.

        Not on every hint use: a message takes several (suppressions, return paths, signing keys, webhooks),
        and each stat hands the GIL to another thread and waits to get it back. Changes made in this process
        move the epochs at their commit, not through here; another process's are seen within the interval,
        as PostgreSQL nodes see them within the time a NOTIFY takes."""
        now = time.monotonic()
        if now - self._changes_looked_at < _CHANGES_LOOK_INTERVAL:
            return
        self._changes_looked_at = now
        try:
            found = os.stat(self._changes_file)
        except OSError:
            return
        marker = (found.st_ino, found.st_size, found.st_mtime_ns)
        if marker != self._changes_seen:
            if self._changes_seen is not None or found.st_size:
                self.take_change("suppressions")
                self.take_change("webhooks")
                self.take_change("domains")
            self._changes_seen = marker

    # -- reads --------------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect("reader")
            self._local.conn = conn
            with self._lock:
                self._reader_connections.append(conn)
        return conn

    def _read(self, sql: str, args: Sequence[Any]) -> list[Sequence[Any]]:
        return self._reader().execute(sql, tuple(args)).fetchall()

    async def query(self, sql: str, args: Sequence[Any] = ()) -> list[Sequence[Any]]:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, self._read, sql, args)
        except sqlite3.Error as exc:
            raise _store_error(exc) from exc

    # -- migrations ---------------------------------------------------------------------------

    async def migrate(self, on_applied: Callable[[str, int, int], None] | None = None) -> list[str]:
        return await asyncio.get_running_loop().run_in_executor(None, self._migrate_sync, on_applied)

    def _migrate_sync(self, on_applied: Callable[[str, int, int], None] | None = None) -> list[str]:
        conn = self._connect("writer")
        applied: list[str] = []
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                         "name TEXT NOT NULL, applied_at INTEGER NOT NULL)")
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            pending = [m for m in migrations.load("sqlite") if m[0] not in done]
            for version, name, sql in pending:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _split_sql(sql):
                        conn.execute(statement)
                    conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                                 (version, name, int(time.time() * 1_000_000)))
                    conn.execute("COMMIT")
                except sqlite3.Error:
                    conn.execute("ROLLBACK")
                    raise
                applied.append(name)
                if on_applied is not None:
                    on_applied(name, len(applied), len(pending))
            self._pin_planner_stats(conn)
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot migrate SQLite database {self.path}: {exc}") from None
        finally:
            conn.close()
        return applied


    @staticmethod
    def _pin_planner_stats(conn: sqlite3.Connection) -> None:
        known = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        conn.execute("ANALYZE sqlite_schema")  # creates sqlite_stat1 if it does not exist yet
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM sqlite_stat1")
        conn.executemany("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)",
                         [row for row in _PLANNER_STATS if row[1] is None or row[1] in known])
        conn.execute("COMMIT")


_SYNCHRONOUS = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}
_CHANGES_LOOK_INTERVAL = 0.01  # seconds between looks at the changes file (`refresh_changes`)
_BUSY_TIMEOUT_MS = 30_000
_REPORTED_PRAGMAS = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "query_only")


def _pragmas(conn: sqlite3.Connection) -> dict[str, Any]:
    return {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in _REPORTED_PRAGMAS}


# An upsert's `ON CONFLICT …` tail is kept after the rows (SQLite applies a multi-row upsert row by row).
_VALUES_TAIL = re.compile(r"^(INSERT INTO .+ VALUES )(\((?:\?, )*\?\))( ON CONFLICT .+)?$", re.S)
_MAX_ROWS_PER_STATEMENT = 256
_MAX_VARIABLES = 32766  # SQLITE_MAX_VARIABLE_NUMBER since SQLite 3.32


def _multirow(sql: str, rows: list[list[Any]]) -> list[tuple[str, list[Any]]]:
    """`executemany` as few multi-row statements: an INSERT of N rows becomes chunks of
    `INSERT … VALUES (…), (…), …`, so the writer thread releases and retakes the GIL once per chunk,
    not once per row. Under load the event loop holds the GIL, and each retake can wait for the
    interpreter's switch interval: measured here 2 ms per row with `executemany` against 78 µs with
    multi-row statements while another thread runs Python. Chunk sizes are powers of two so the
    connection's statement cache holds few distinct texts. Other statements run once per row."""
    match = _VALUES_TAIL.match(sql)
    if match is None or len(rows) == 1:
        return [(sql, list(row)) for row in rows]
    head, group, tail = match.groups()
    per_row = group.count("?")
    cap = min(_MAX_ROWS_PER_STATEMENT, _MAX_VARIABLES // per_row)
    return [(head + ", ".join([group] * len(chunk)) + (tail or ""), [value for row in chunk for value in row])
            for chunk in _chunks(rows, cap)]


def _chunks(rows: Sequence[Sequence[Any]], cap: int) -> list[Sequence[Sequence[Any]]]:
    """`rows` cut into pieces of at most `cap`, each a power of two long (few distinct statements)."""
    out = []
    start = 0
    while start < len(rows):
        size = min(cap, 1 << ((len(rows) - start).bit_length() - 1))
        out.append(rows[start:start + size])
        start += size
    return out


def _split_sql(script: str) -> list[str]:
    """Statements of a migration file (no semicolons inside literals in our migrations)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
