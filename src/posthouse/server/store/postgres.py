"""The PostgreSQL store: asyncpg pool, group-committed writes, `FOR UPDATE SKIP LOCKED` claims.

Writes are queued and taken by a few committer tasks; each takes everything pending and runs it in
one transaction, each caller inside its own savepoint, so concurrent requests share one commit as
on SQLite (docs/architecture.md §2). Several committers keep the pool busy while one waits for its fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import asyncpg

from posthouse.server.errors import ConfigurationError, StoreError, StoreFullError
from posthouse.server.store import migrations
from posthouse.server.store.base import Stmt, Store, resolve_refs
from posthouse.server.store.sql import Counters, Then, expand, is_mergeable, merge

log = logging.getLogger("posthouse.store")
_PLACEHOLDER = re.compile(r"\?")
_MAX_GROUP = 500
_MIGRATION_LOCK = 0x706F7374  # advisory lock id: one node migrates at a time
WORK_CHANNEL = "posthouse_work"
CHANGES_CHANNEL = "posthouse_changes"  # payload: what changed ("suppressions", "webhooks", "domains"), for the hints
_CHANGE_KINDS = ("suppressions", "webhooks", "domains")


def numbered(sql: str) -> str:
    """`?` placeholders → `$1, $2, …` (our SQL has no `?` inside literals)."""
    counter = iter(range(1, 1_000_000))
    return _PLACEHOLDER.sub(lambda _m: f"${next(counter)}", sql)


def _store_error(exc: BaseException) -> StoreError:
    if isinstance(exc, asyncpg.DiskFullError | asyncpg.InsufficientResourcesError):
        return StoreFullError(f"database full: {exc}")
    return StoreError(f"database error: {exc}")


class PostgresStore(Store):
    dialect = "postgresql"
    claim_lock_clause = "FOR UPDATE SKIP LOCKED"
    row_lock_clause = "FOR UPDATE"
    db_clock = "(extract(epoch from clock_timestamp()) * 1000000)::bigint"

    def __init__(self, url: str, *, pool_size: int = 10, committers: int = 3) -> None:
        self.url = url
        self.pool_size = pool_size
        self.committers = committers
        self._pool: asyncpg.Pool | None = None
        self._pending: asyncio.Queue[tuple[Sequence[Stmt | Then], asyncio.Future[Any]] | None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sql_cache: dict[str, str] = {}
        self._listener: asyncpg.Connection | None = None

    def _sql(self, sql: str) -> str:
        cached = self._sql_cache.get(sql)
        if cached is None:
            cached = self._sql_cache[sql] = numbered(sql)
        return cached

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(self.url, min_size=2, max_size=self.pool_size, timeout=10)
        except (OSError, asyncpg.PostgresError, TimeoutError, ValueError) as exc:
            raise ConfigurationError(f"cannot connect to PostgreSQL at {_redact(self.url)}: {exc}") from None
        self._pending = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._commit_loop(), name=f"pg-commit-{i}")
                       for i in range(self.committers)]
        # Other nodes' suppressions and webhooks reach this node's hints as they commit (issue 12).
        await self._listen(CHANGES_CHANNEL, lambda *args: self._changed_elsewhere(args[-1]),
                           "changes made on other nodes reach this one's hints within their 1 s reload")

    def work_notice(self) -> list[Stmt]:
        # NOTIFY is delivered at commit, so a worker on another node never wakes before the rows exist.
        return [Stmt(f"SELECT pg_notify('{WORK_CHANNEL}', '')")]

    def change_notice(self, kind: str) -> list[Stmt]:
        assert kind in _CHANGE_KINDS  # a literal in the statement: argument-less, so group commit runs it once
        return [Stmt(f"SELECT pg_notify('{CHANGES_CHANNEL}', '{kind}')")]

    def _changed_elsewhere(self, payload: object) -> None:
        if payload in _CHANGE_KINDS:
            self.take_change(str(payload))

    async def listen_for_work(self, callback: Callable[[], None]) -> None:
        """LISTEN for new work (docs/architecture.md §3: wake-ups across nodes)."""
        await self._listen(WORK_CHANNEL, lambda *_: callback(), "polling only for new work")

    async def _listen(self, channel: str, callback: Callable[..., None], degraded: str) -> None:
        """LISTEN on `channel` over the one dedicated listening connection (opened at the first call)."""
        try:
            if self._listener is None:
                self._listener = await asyncpg.connect(self.url, timeout=10)
                self._listener.add_termination_listener(self._listener_lost)
            await self._listener.add_listener(channel, callback)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.warning("cannot LISTEN on %s: %s; %s", channel, exc, degraded)

    def _listener_lost(self, _connection: object) -> None:
        if self._listener is not None:  # not closed by us
            log.warning("the LISTEN connection was lost: new work is found by polling, and changes made on other "
                        "nodes reach this one's hints within their 1 s reload")

    async def close(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await listener.close()
        if self._pending is not None:
            for _ in self._tasks:
                self._pending.put_nowait(None)
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the store is not open")
        return self._pool

    def finish_deliveries(self, rows: list[tuple[str, int, int, str, int, str, int]]) -> list[Stmt]:
        # One statement for the whole batch: the rows as arrays, unnested into a join (one round trip).
        columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [() for _ in range(7)]
        return [Stmt(
            "UPDATE deliveries SET state = v.state, next_attempt_at = v.next_attempt_at, lease_owner = NULL, "
            "updated_at = v.updated_at, last_reply = v.last_reply FROM unnest(?::text[], ?::bigint[], ?::bigint[], "
            "?::text[], ?::bigint[], ?::text[], ?::bigint[]) AS v(state, next_attempt_at, updated_at, last_reply, "
            "id, lease_owner, attempts) WHERE deliveries.id = v.id AND deliveries.lease_owner = v.lease_owner "
            "AND deliveries.attempts = v.attempts RETURNING deliveries.id",
            [list(column) for column in columns], fetch=True)]

    # -- writes -------------------------------------------------------------------------------

    async def transact(self, stmts: Sequence[Stmt | Then]) -> list[list[Sequence[Any]]]:
        if self._pending is None:
            raise StoreError("the store is not open")
        future: asyncio.Future[list[list[Sequence[Any]]]] = asyncio.get_running_loop().create_future()
        self._pending.put_nowait((stmts, future))
        return await future

    async def _run(self, conn: asyncpg.Connection, steps: Sequence[Stmt | Then],
                   counters: Counters | None = None) -> list[list[Sequence[Any]]]:
        """Run a caller's statements; counter increments go to `counters` (run at the end) when given."""
        results: list[list[Sequence[Any]]] = []
        for step in steps:
            for stmt in expand(step, results):
                sql = self._sql(stmt.sql)
                if stmt.additive and counters is not None and stmt.many is not None:
                    counters.add(stmt, [resolve_refs(row, results) for row in stmt.many])
                    results.append([])
                elif stmt.many is not None:
                    if stmt.many:
                        await conn.executemany(sql, [resolve_refs(row, results) for row in stmt.many])
                    results.append([])
                elif stmt.fetch:
                    results.append(list(await conn.fetch(sql, *resolve_refs(stmt.args, results))))
                else:
                    await conn.execute(sql, *resolve_refs(stmt.args, results))
                    results.append([])
        return results

    async def _run_merged(self, conn: asyncpg.Connection, jobs: list[Sequence[Stmt | Then]]
                          ) -> list[list[list[Sequence[Any]]]]:
        """Every job's statements; jobs of one mergeable shape (concurrent acceptances) share one
        `executemany` per statement: a round trip per statement, not per statement and caller."""
        values: list[list[list[Sequence[Any]]] | None] = [None] * len(jobs)
        groups: dict[tuple[str, ...], list[int]] = {}
        counters = Counters()
        for index, stmts in enumerate(jobs):
            if len(jobs) > 1 and is_mergeable(stmts):
                groups.setdefault(tuple(s.sql for s in stmts), []).append(index)
            else:
                values[index] = await self._run(conn, stmts, counters)
        for texts, members in groups.items():
            await self._run(conn, merge([cast(Sequence[Stmt], jobs[i]) for i in members]), counters)  # all mergeable
            for i in members:
                values[i] = [[] for _ in texts]
        await self._run(conn, counters.statements())  # last, in key order: see `Counters`
        return [v if v is not None else [] for v in values]

    async def _commit_loop(self) -> None:
        """Take every pending write, run them in one transaction (a savepoint each), commit once.

        Stops when it takes `None`.
        """
        assert self._pending is not None
        while True:
            item = await self._pending.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < _MAX_GROUP and not self._pending.empty():
                nxt = self._pending.get_nowait()
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            await self._commit_batch(batch)
            if stop:
                return

    async def _commit_batch(self, batch: list[tuple[Sequence[Stmt | Then], asyncio.Future[Any]]]) -> None:
        """One transaction for the whole batch; if it fails, each caller again on its own.

        Savepoints per caller would cost two round trips each on every commit; failures are rare
        (writes are inserts of fresh ids and guarded updates), so the retry is the cheaper path.
        """
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                values = await self._run_merged(conn, [stmts for stmts, _ in batch])
        except asyncpg.PostgresError as exc:
            if len(batch) == 1:
                self._settle(batch[0][1], None, _store_error(exc))
                return
            for item in batch:
                await self._commit_batch([item])
            return
        except (OSError, asyncpg.InterfaceError, ValueError, OverflowError, TypeError) as exc:
            # ValueError/OverflowError/TypeError: a value the driver cannot encode; its callers fail.
            if len(batch) > 1 and not isinstance(exc, OSError | asyncpg.InterfaceError):
                for item in batch:
                    await self._commit_batch([item])
                return
            log.error("postgresql commit failed: %s", exc)
            for _, future in batch:
                self._settle(future, None, _store_error(exc))
            return
        except Exception as exc:  # a bug in a caller's statements (a `Then` builder): it fails, the committer lives
            if len(batch) > 1:
                for item in batch:
                    await self._commit_batch([item])
                return
            log.exception("a write could not be run (its caller fails, the committer goes on)")
            self._settle(batch[0][1], None, StoreError(f"database error: the write failed unexpectedly: {exc!r}"))
            return
        for (_, future), value in zip(batch, values, strict=True):
            self._settle(future, value, None)

    @staticmethod
    def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)

    # -- reads --------------------------------------------------------------------------------

    async def query(self, sql: str, args: Sequence[Any] = ()) -> list[Sequence[Any]]:
        try:
            return list(await self.pool.fetch(self._sql(sql), *args))
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
            raise _store_error(exc) from exc

    # -- migrations ---------------------------------------------------------------------------

    async def migrate(self) -> list[str]:
        applied: list[str] = []
        try:
            async with self.pool.acquire() as conn:
                await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
                try:
                    await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, "
                                       "name TEXT NOT NULL, applied_at BIGINT NOT NULL)")
                    done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
                    for version, name, sql in migrations.load("postgresql"):
                        if version in done:
                            continue
                        async with conn.transaction():
                            await conn.execute(sql)
                            await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2, $3)",
                                               version, name, int(time.time() * 1_000_000))
                        applied.append(name)
                finally:
                    with contextlib.suppress(asyncpg.PostgresError, OSError):
                        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        except asyncpg.PostgresError as exc:
            raise ConfigurationError(f"cannot migrate PostgreSQL database: {exc}") from None
        return applied


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
