"""Database size under steady traffic with retention: weeks of mail compressed into minutes.

A real Runtime (the API over ASGI, the delivery worker in sandbox mode, the housekeeper's pass) on a fresh
SQLite file (or a PostgreSQL URL), with a clock the bench moves. Each simulated day takes `--per-day`
messages through `POST /email/batch` in four 6-hour slices; after each slice the worker delivers them, the
clock moves 6 hours and the housekeeper makes one pass (idempotency keys, retention in bounded batches,
data removals), as `posthouse serve` does on its interval. The server keeps `--retention` days (7, the
shortest allowed, so that a few simulated weeks cross the window several times).

The figure: the database's size once the window is full (day `--retention`) against its size at the end.
With retention working the size stays flat: SQLite reuses the pages freed by the deletes (the file does
not shrink, it stops growing); without it the size would grow with every day.

    .venv/bin/python bench/retention.py [--days 21] [--per-day 2000] [--retention 7] [--database URL]

Bounded: days × per-day messages, and `--max-seconds` of wall time (the run stops early and says so).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from posthouse.server.config import load_settings
from posthouse.server.runtime import Runtime
from posthouse.server.services.clock import Clock, to_micros
from posthouse.server.store import open_store_for
from posthouse.server.store.base import Store

SLICES_PER_DAY = 4
BATCH = 500  # Postmark's batch limit


class MovedClock(Clock):
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def micros(self) -> int:
        return to_micros(self.moment)


async def size_of(store: Store, path: Path | None) -> tuple[int, int]:
    """(bytes on disk, bytes in use): SQLite's file (+ WAL) and its pages not on the free list; PostgreSQL's
    pg_database_size twice (it has no free list to subtract)."""
    if path is None:
        row = await store.query_one("SELECT pg_database_size(current_database())")
        assert row is not None
        return int(row[0]), int(row[0])
    wal = path.with_name(path.name + "-wal")

    def files() -> int:
        return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    on_disk = await asyncio.to_thread(files)
    pages = await store.query_one("SELECT * FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()")
    assert pages is not None
    return on_disk, (int(pages[0]) - int(pages[1])) * int(pages[2])


async def count(store: Store, sql: str) -> int:
    row = await store.query_one(sql)
    assert row is not None
    return int(row[0])


async def run(args: argparse.Namespace) -> int:
    folder = Path(tempfile.mkdtemp(prefix="posthouse-retention-"))
    url = args.database or f"sqlite:///{folder / 'posthouse.db'}"
    path = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
    store = open_store_for(url)
    await store.open()
    await store.migrate()
    clock = MovedClock(datetime(2030, 1, 1, tzinfo=UTC))
    settings = load_settings({"delivery": "sandbox", "data_dir": str(folder), "retention_days": args.retention},
                             environ={})
    runtime = Runtime(settings, store, clock=clock)
    tokens = await runtime.accounts.bootstrap()
    assert tokens is not None
    await runtime.start_worker()
    assert runtime.housekeeper is not None
    headers = {"X-Postmark-Server-Token": tokens[0], "Accept": "application/json"}
    body = "Thanks for your order. " * 40  # about 1 KB of text, and the same as HTML
    started = time.monotonic()
    print(f"{'day':>4} {'messages kept':>14} {'on disk MB':>11} {'in use MB':>10} {'removed':>8}")
    sizes: dict[int, tuple[int, int]] = {}
    day = 0
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.app), base_url="http://api") as api:
            for day in range(1, args.days + 1):
                removed = 0
                for _ in range(SLICES_PER_DAY):
                    left = args.per_day // SLICES_PER_DAY
                    while left > 0:
                        n = min(BATCH, left)
                        answer = await api.post("/email/batch", headers=headers, json=[
                            {"From": "shop@example.com", "To": f"customer{i}@example.com", "Subject": f"Order {i}",
                             "TextBody": body, "HtmlBody": f"<p>{body}</p>", "Tag": "receipt",
                             "Metadata": {"order": str(i)}} for i in range(n)])
                        assert answer.status_code == 200, answer.text
                        left -= n
                    runtime.wakeup.notify()
                    while await count(store, "SELECT count(*) FROM deliveries WHERE state IN "  # noqa: ASYNC110
                                             "('queued', 'deferred', 'sending')"):  # nothing signals "all sent"
                        await asyncio.sleep(0.05)
                    clock.moment += timedelta(hours=24 / SLICES_PER_DAY)
                    removed += await runtime.housekeeper.sweep()
                kept = await count(store, "SELECT count(*) FROM messages")
                sizes[day] = await size_of(store, path)
                print(f"{day:>4} {kept:>14,} {sizes[day][0] / 1e6:>11.1f} {sizes[day][1] / 1e6:>10.1f} "
                      f"{removed:>8,}", flush=True)
                if time.monotonic() - started > args.max_seconds:
                    print(f"stopped after {args.max_seconds:g} s of wall time (day {day} of {args.days})")
                    break
    finally:
        await runtime.stop()
        await store.close()
    full = min(args.retention + 1, day)
    if full in sizes and day > full:
        (disk_full, used_full), (disk_end, used_end) = sizes[full], sizes[day]
        print(f"window full (day {full}): {disk_full / 1e6:.1f} MB on disk, {used_full / 1e6:.1f} MB in use; "
              f"day {day}: {disk_end / 1e6:.1f} MB on disk ({disk_end / disk_full - 1:+.1%}), "
              f"{used_end / 1e6:.1f} MB in use ({used_end / used_full - 1:+.1%}); "
              f"{args.per_day * day:,} messages sent in {time.monotonic() - started:.0f} s")
    shutil.rmtree(folder, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--per-day", type=int, default=2000)
    parser.add_argument("--retention", type=int, default=7)
    parser.add_argument("--database", help="a PostgreSQL URL (default: a new SQLite file)")
    parser.add_argument("--max-seconds", type=float, default=600)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
