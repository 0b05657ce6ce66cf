"""What the stats counters cost acceptance, measured in the store alone: concurrent single-message
`insert_messages` with the counters and without them, rounds interleaved in one process.

The end-to-end comparison (`bench/compare.py`) moves by 10–30 % between rounds of one build on this
machine; this takes HTTP, the worker and the sink out, so the store's own difference shows.

Run: `.venv/bin/python bench/stats_cost.py [--rounds 4] [--database postgresql://…]` (a server URL: a fresh
database is made and dropped; SQLite in a temporary folder by default).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import machine

import posthouse.server.store.base as store_base
from posthouse import wire
from posthouse.server.domain.messages import compose
from posthouse.server.store import open_store_for
from posthouse.server.store.base import Store

MESSAGE = wire.EmailRequest(sender="bench@example.com", to="sink@example.com", subject="Benchmark", text_body="x" * 900)
COUNTING = store_base.bump_stats


async def admin(server_url: str, sql: str) -> None:
    """One statement on a PostgreSQL server (CREATE/DROP DATABASE cannot run in a transaction)."""
    import asyncpg

    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def one_round(store: Store, server_id: int, *, counters: bool, seconds: float, callers: int
                    ) -> tuple[float, float]:
    """(acceptances per second, median milliseconds per acceptance) for `seconds` of load."""
    store_base.bump_stats = COUNTING if counters else (lambda increments: [])  # type: ignore[assignment]
    stop = time.monotonic() + seconds
    took: list[float] = []

    async def caller() -> None:
        while time.monotonic() < stop:
            message = compose(MESSAGE, now=datetime.now(UTC), message_id_domain="bench")
            began = time.perf_counter()
            await store.insert_messages(server_id, [message], sandboxed=False, now=time.time_ns() // 1000)
            took.append(time.perf_counter() - began)

    await asyncio.gather(*(caller() for _ in range(callers)))
    return len(took) / seconds, statistics.median(took) * 1000


async def measure(database: str | None, rounds: int, seconds: float, callers: int) -> None:
    name = None
    folder = None
    if database:
        name = f"posthouse_cost_{time.time_ns()}"
        await admin(database, f'CREATE DATABASE "{name}"')
        url = database.rsplit("/", 1)[0] + "/" + name
    else:
        folder = tempfile.TemporaryDirectory(prefix="posthouse-cost-")
        url = f"sqlite:///{folder.name}/posthouse.db"
    store = open_store_for(url)
    await store.open()
    try:
        await store.migrate()
        server_id = await store.create_server("bench", {}, "hash", "hint", 0,
                                              [("outbound", "Default Transactional Stream", "Transactional", "None")])
        found: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for n in range(rounds):
            for counters in (False, True):
                found[counters].append(await one_round(store, server_id, counters=counters, seconds=seconds,
                                                       callers=callers))
                rate, p50 = found[counters][-1]
                print(f"  round {n + 1} {'counters' if counters else 'none':8}: {rate:,.0f}/s, p50 {p50:.2f} ms",
                      flush=True)
    finally:
        store_base.bump_stats = COUNTING
        await store.close()
        if name is not None:
            assert database is not None
            await admin(database, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if folder is not None:
            folder.cleanup()
    print(f"\n{'PostgreSQL' if database else 'SQLite'}, {callers} concurrent callers, medians of {rounds} rounds of "
          f"{seconds:g} s, {machine()}\n\n| counters | acceptances/s | p50 |\n|---|---:|---:|")
    for counters in (False, True):
        rates, p50s = zip(*found[counters], strict=True)
        print(f"| {'yes' if counters else 'no'} | {statistics.median(rates):,.0f} | {statistics.median(p50s):.2f} ms |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default=None, help="a postgresql:// server URL (default: SQLite)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--callers", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(measure(args.database, args.rounds, args.seconds, args.callers))


if __name__ == "__main__":
    main()
