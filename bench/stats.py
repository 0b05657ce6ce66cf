"""Stats at scale: ten million opens and clicks, every stats endpoint and the Opens/Clicks searches timed.

1. `posthouse serve` with only the `api` role, on a fresh SQLite file (default) or a fresh PostgreSQL
   database (`--database postgresql://…`, a server URL).
2. A bulk loader writes N events of one server (`--events`, 10,000,000 by default: three opens to one
   click) over 90 days, spread over 2 streams × 5 tags with skewed weights, into `tracking_hits`, and
   their rollups into `stats_daily` as the recorder counts them (opens, unique opens, per client, platform
   and read time; clicks, unique clicks, per browser, platform and location), beside the counters the
   send path keeps (sent, tracked, bounces by type, spam complaints). The hits' indexes are dropped for
   the load and rebuilt after it with the migrations' own definitions; PostgreSQL is vacuumed and analysed
   (as autovacuum leaves a settled table), SQLite keeps the planner statistics the server pins.
3. Every `/stats/outbound` endpoint is timed through HTTP, over all time and with a tag and a 30-day
   range (the overview also per stream), and the Opens and Clicks searches with and without filters:
   the median of `--repeats` calls after one warm-up each. The target is < 50 ms for every stats endpoint.

Run: `.venv/bin/python bench/stats.py [--events 10000000] [--database postgresql://postgres@127.0.0.1:54330/postgres]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from harness import Posthouse, Row, machine, print_table

from posthouse.server.domain.stats import Family, Metric, family_metric
from posthouse.server.store.hits import HIT_COLUMNS

DAY_US = 86_400_000_000
DAYS = 90
STREAMS = (("outbound", 8), ("broadcast", 2))
TAGS = (("receipt", 5), ("welcome", 3), ("reset", 2), ("digest", 2), ("", 1))
PLATFORMS = (("Desktop", 40), ("Mobile", 35), ("WebMail", 20), ("Unknown", 5))
CLIENTS = (("Apple Mail", "Apple", "Apple Mail"), ("Gmail", "Google", "Gmail"),
           ("Outlook 2016", "Microsoft", "Outlook"), ("Outlook.com", "Microsoft", "Outlook.com"),
           ("Yahoo! Mail", "Yahoo!", "Yahoo! Mail"),
           ("Thunderbird", "Mozilla", "Thunderbird"), ("Samsung Email", "Samsung", "Samsung Email"),
           ("Chrome", "Google", "Chrome"), ("Firefox", "Mozilla", "Firefox"), ("Mobile Safari", "Apple", "Safari"),
           ("Edge", "Microsoft", "Edge"), ("Windows Mail", "Microsoft", "Windows Mail"))
SYSTEMS = (("OS X 14 Sonoma", "Apple Computer, Inc.", "OS X"), ("iOS 17", "Apple Inc.", "iOS"),
           ("Windows 10", "Microsoft Corporation", "Windows"), ("Windows 11", "Microsoft Corporation", "Windows"),
           ("Android 14", "Google Inc.", "Android"), ("Linux", None, "Linux"))
AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/42.0.2311.135 Safari/537.36 "
    "Edge/12.246 Microsoft Outlook 16.0.17328",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile "
    "Safari/537.36",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
)
PLACES = (("US", "United States", "NY", "New York", "New York", "10001", "40.7128,-74.0060"),
          ("US", "United States", "CA", "California", "San Francisco", "94107", "37.7749,-122.4194"),
          ("GB", "United Kingdom", "ENG", "England", "London", "EC1A", "51.5072,-0.1276"),
          ("DE", "Germany", "BE", "Berlin", "Berlin", "10115", "52.5200,13.4050"),
          ("DK", "Denmark", "84", "Capital Region", "Copenhagen", "1050", "55.6761,12.5683"),
          ("FR", "France", "IDF", "Ile-de-France", "Paris", "75001", "48.8566,2.3522"),
          ("BR", "Brazil", "SP", "Sao Paulo", "Sao Paulo", "01000", "-23.5505,-46.6333"),
          ("IN", "India", "MH", "Maharashtra", "Mumbai", "400001", "19.0760,72.8777"),
          ("JP", "Japan", "13", "Tokyo", "Tokyo", "100-0001", "35.6762,139.6503"),
          (None, None, None, None, None, None, None))
READ_TIMES = ("0s", "1s", "2s", "3s", "4s", "5s", "6s", "7s", "8s", "9s", "10s", "11s-15s", "16s-20s", "20s+")
RECIPIENTS = 200_000
ENGAGED_MESSAGE_HITS = (30, 10)  # opens, clicks of the one message sent through the API (per-message searches)


def weighted(pairs: Sequence[tuple[Any, int]]) -> list[Any]:
    return [value for value, weight in pairs for _ in range(weight)]


def profiles(rng: random.Random, count: int = 4096) -> list[tuple[Any, ...]]:
    """Who opened or clicked, how and where: (platform, client ×3, os ×3, user agent, ip, geo ×7)."""
    platforms = weighted(PLATFORMS)
    found = []
    for _ in range(count):
        client, system, place = rng.choice(CLIENTS), rng.choice(SYSTEMS), rng.choice(PLACES)
        ip = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        found.append((rng.choice(platforms), *client, *system, rng.choice(AGENTS), ip, *place))
    return found


class Events:
    """N events of one server, in time order, and what the recorder's counters would say of them."""

    def __init__(self, server_id: int, total: int, first_day: int, seed: int = 13) -> None:
        self.server_id = server_id
        self.total = total
        self.first_day = first_day
        self.rng = random.Random(seed)
        self.profiles = profiles(self.rng)
        self.combos = [(s, t) for s in weighted(STREAMS) for t in weighted(TAGS)]
        self.tally: Counter[tuple[int, str, str, str]] = Counter()  # (day, stream, tag, metric) → count
        self.links = [f"https://shop.example.com/p/{n}?utm_source=email" for n in range(60)]
        self.made = 0

    def rows(self, chunk: int = 100_000) -> Iterator[list[tuple[Any, ...]]]:
        rng, sid = self.rng, self.server_id
        span = DAYS * DAY_US
        start = self.first_day * DAY_US
        made = self.made = 0
        while made < self.total:
            size = min(chunk, self.total - made)
            moments = sorted(start + int(made * span / self.total) + rng.randrange(int(size * span / self.total) + 1)
                             for _ in range(size))
            profile_ids = rng.choices(range(len(self.profiles)), k=size)
            combo_ids = rng.choices(range(len(self.combos)), k=size)
            people = rng.choices(range(RECIPIENTS), k=size)
            rolls = rng.choices(range(1000), k=size)
            batch = []
            for at, p, c, person, roll in zip(moments, profile_ids, combo_ids, people, rolls, strict=True):
                stream, tag = self.combos[c]
                profile = self.profiles[p]
                day = at // DAY_US
                message = uuid.UUID(int=(person << 32) | day).hex
                recipient = f"user{person}@example.com"
                click = roll < 250
                first = roll % 10 < 4
                proxy = profile[7] in (AGENTS[6], AGENTS[7])
                if click:
                    link = roll % 60
                    tail: tuple[Any, ...] = (link + 1, self.links[link], "Text" if roll % 5 == 0 else "HTML")
                else:
                    tail = (None, None, None)
                batch.append((sid, stream, message, person * 1000 + day % 1000, recipient, tag or None,
                              "click" if click else "open", at, int(first), int(proxy), *profile, *tail))
                self.count(day, stream, tag, click, first, profile, tail[2], roll)
            made = self.made = made + size
            yield batch

    def count(self, day: int, stream: str, tag: str, click: bool, first: bool, profile: tuple[Any, ...],
              location: str | None, roll: int) -> None:
        tally = self.tally
        if click:
            tally[day, stream, tag, Metric.CLICKS.value] += 1
            tally[day, stream, tag, family_metric(Family.CLICK_BROWSER, profile[3])] += 1
            tally[day, stream, tag, family_metric(Family.CLICK_PLATFORM, "Mobile" if profile[0] == "Mobile"
                                                  else "Desktop")] += 1
            tally[day, stream, tag, family_metric(Family.CLICK_LOCATION, location or "HTML")] += 1
            if first:
                tally[day, stream, tag, Metric.UNIQUE_CLICKS.value] += 1
                tally[day, stream, tag, Metric.UNIQUE_LINKS_CLICKED.value] += 1
            return
        tally[day, stream, tag, Metric.OPENS.value] += 1
        if first:
            tally[day, stream, tag, Metric.UNIQUE_OPENS.value] += 1
            tally[day, stream, tag, Metric.WITH_PLATFORM_RECORDED.value] += 1
            tally[day, stream, tag, Metric.WITH_CLIENT_RECORDED.value] += 1
            tally[day, stream, tag, Metric.WITH_READ_TIME_RECORDED.value] += 1
        tally[day, stream, tag, family_metric(Family.OPEN_PLATFORM, profile[0])] += 1
        tally[day, stream, tag, family_metric(Family.OPEN_CLIENT, profile[1])] += 1
        tally[day, stream, tag, family_metric(Family.OPEN_READ_TIME, READ_TIMES[roll % len(READ_TIMES)])] += 1

    def rollups(self) -> list[tuple[int, int, str, str, str, int]]:
        """stats_daily rows: the engagement tally, and per day and stream × tag what sending counted."""
        rows = [(self.server_id, day, stream, tag, metric, value)
                for (day, stream, tag, metric), value in self.tally.items()]
        rng = random.Random(7)
        for day in range(self.first_day, self.first_day + DAYS):
            for stream, tag in {combo for combo in self.combos}:
                sent = rng.randrange(2_000, 20_000)
                for metric, value in ((Metric.SENT, sent), (Metric.TRACKED, sent * 9 // 10),
                                      (Metric.WITH_OPEN_TRACKING, sent * 9 // 10),
                                      (Metric.WITH_LINK_TRACKING, sent // 2),
                                      (Metric.TRACKED_LINKS_SENT, sent * 3), (Metric.SPAM_COMPLAINTS, sent // 5000),
                                      (Metric.SMTP_API_ERRORS, sent // 2000)):
                    rows.append((self.server_id, day, stream, tag, metric.value, value))
                for kind, share in (("HardBounce", 100), ("SoftBounce", 300), ("Transient", 200),
                                    ("DnsError", 2000), ("AutoResponder", 500)):
                    rows.append((self.server_id, day, stream, tag, family_metric(Family.BOUNCES, kind),
                                 sent // share))
        return [r for r in rows if r[5]]


# -- loading --------------------------------------------------------------------------------------

TABLES = ("tracking_hits", "stats_daily")


def load_sqlite(path: str, events: Events, extra: list[tuple[Any, ...]]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")
    indexes = conn.execute(f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND "
                           f"tbl_name IN {TABLES}").fetchall()
    # DROP INDEX deletes an index's planner statistics: keep the ones the server pinned, put them back after.
    pinned = conn.execute(f"SELECT tbl, idx, stat FROM sqlite_stat1 WHERE tbl IN {TABLES}").fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    insert = f"INSERT INTO tracking_hits ({', '.join(HIT_COLUMNS)}) VALUES ({', '.join('?' * len(HIT_COLUMNS))})"
    for batch in events.rows():
        conn.execute("BEGIN")
        conn.executemany(insert, batch)
        conn.execute("COMMIT")
        progress(events)
    conn.execute("BEGIN")
    conn.executemany(insert, extra)
    conn.execute("DELETE FROM stats_daily")  # the rollups stand for all sending, the one API send's counts too
    conn.executemany("INSERT INTO stats_daily (server_id, day, stream, tag, metric, value) VALUES (?, ?, ?, ?, ?, ?)",
                     events.rollups())
    conn.execute("COMMIT")
    began = time.monotonic()
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute(f"DELETE FROM sqlite_stat1 WHERE tbl IN {TABLES}")
    conn.executemany("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)", pinned)
    print(f"  indexes rebuilt in {time.monotonic() - began:.0f} s", flush=True)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def load_postgres(url: str, events: Events, extra: list[tuple[Any, ...]]) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            indexes = await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY($1) "
                                       "AND indexname NOT LIKE '%_pkey'", list(TABLES))
            for row in indexes:
                await conn.execute(f'DROP INDEX "{row["indexname"]}"')
            for batch in events.rows():
                await conn.copy_records_to_table("tracking_hits", records=batch, columns=list(HIT_COLUMNS))
                progress(events)
            await conn.copy_records_to_table("tracking_hits", records=extra, columns=list(HIT_COLUMNS))
            await conn.execute("DELETE FROM stats_daily")  # the rollups stand for all sending, the API send's too
            await conn.copy_records_to_table("stats_daily", records=events.rollups(),
                                             columns=["server_id", "day", "stream", "tag", "metric", "value"])
            began = time.monotonic()
            await conn.execute("SET maintenance_work_mem = '512MB'")
            for row in indexes:
                await conn.execute(row["indexdef"])
            print(f"  indexes rebuilt in {time.monotonic() - began:.0f} s", flush=True)
            # What autovacuum does to a settled table: statistics, and the visibility map index-only scans need.
            await conn.execute("VACUUM ANALYZE tracking_hits")
            await conn.execute("VACUUM ANALYZE stats_daily")
        finally:
            await conn.close()

    asyncio.run(run())


_last = [0.0]


def progress(events: Events) -> None:
    if time.monotonic() - _last[0] > 30:
        _last[0] = time.monotonic()
        print(f"  {events.made:,} of {events.total:,} events loaded ({datetime.now(UTC):%H:%M:%S})", flush=True)


# -- timing ---------------------------------------------------------------------------------------

SERIES = ("sends", "bounces", "spam", "tracked", "opens", "opens/platforms", "opens/emailclients", "opens/readtimes",
          "clicks", "clicks/browserfamilies", "clicks/platforms", "clicks/location")


def timed(client: httpx.Client, path: str, params: dict[str, Any], repeats: int) -> tuple[float, Any]:
    answer = client.get(path, params=params)  # warm-up
    if answer.status_code != 200:
        raise SystemExit(f"GET {path} {params}: {answer.status_code} {answer.text[:300]}")
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        answer = client.get(path, params=params)
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), answer.json()


def measure(events_total: int, database: str | None, repeats: int) -> list[Row]:
    server = Posthouse(9, database, {"POSTHOUSE_ROLES": "api"})
    rows: list[Row] = []
    try:
        headers = {"X-Postmark-Server-Token": server.token}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=120) as client:
            server_id = client.get("/server").json()["ID"]
            sent = client.post("/email", json={"From": "shop@example.com", "To": "vip@example.com", "Subject": "x",
                                               "HtmlBody": "<p>x</p>", "TrackOpens": True}).json()["MessageID"]
            today = datetime.now(UTC).date()
            first_day = (today - timedelta(days=DAYS - 1) - datetime(1970, 1, 1, tzinfo=UTC).date()).days
            events = Events(server_id, events_total, first_day)
            now_us = int(time.time() * 1_000_000)
            profile = events.profiles[0]
            link = (1, "https://shop.example.com/vip", "HTML")
            extra = [(server_id, "outbound", sent, 1, "vip@example.com", None, kind, now_us - n * 1_000_000,
                      int(n == 0), 0, *profile, *(link if kind == "click" else (None,) * 3))
                     for kind, count in (("open", ENGAGED_MESSAGE_HITS[0]), ("click", ENGAGED_MESSAGE_HITS[1]))
                     for n in range(count)]
            began = time.monotonic()
            if database:
                assert server.postgres is not None
                load_postgres(database.rsplit("/", 1)[0] + "/" + server.postgres[1], events, extra)
            else:
                load_sqlite(str(Path(server.data_dir) / "posthouse.db"), events, extra)
            loaded = time.monotonic() - began
            stats_rows = len(events.rollups())
            print(f"  loaded {events_total:,} events and {stats_rows:,} counter rows in {loaded:.0f} s; "
                  f"load average {os.getloadavg()[0]:.2f}", flush=True)

            month = {"fromdate": (today - timedelta(days=29)).isoformat(), "todate": today.isoformat()}
            for label, params in (("all time", {}), ("tag receipt, 30 days", {"tag": "receipt", **month}),
                                  ("stream broadcast", {"messagestream": "broadcast"})):
                ms, body = timed(client, "/stats/outbound", params, repeats)
                rows.append((f"GET /stats/outbound, {label} (Opens {body['Opens']:,})", ms, None, "ms"))
            for name in SERIES:
                for label, params in (("all time", {}), ("tag receipt, 30 days", {"tag": "receipt", **month})):
                    ms, body = timed(client, f"/stats/outbound/{name}", params, repeats)
                    rows.append((f"GET /stats/outbound/{name}, {label} ({len(body['Days'])} days)", ms, None, "ms"))
            page = {"count": 50, "offset": 0}
            for kind in ("opens", "clicks"):
                for label, params in (("first page", page), ("page at offset 9,950", {"count": 50, "offset": 9950}),
                                      ("recipient", {**page, "recipient": "user4242@example.com"}),
                                      ("platform and country", {**page, "platform": "Mobile", "country": "Denmark"}),
                                      ("tag, 7 days", {**page, "tag": "welcome",
                                                       "fromdate": (today - timedelta(days=6)).isoformat()})):
                    ms, body = timed(client, f"/messages/outbound/{kind}", params, repeats)
                    rows.append((f"GET /messages/outbound/{kind}, {label} (TotalCount {body['TotalCount']:,})",
                                 ms, None, "ms"))
                ms, body = timed(client, f"/messages/outbound/{kind}/{sent}", page, repeats)
                rows.append((f"GET /messages/outbound/{kind}/{{id}} (TotalCount {body['TotalCount']:,})", ms, None,
                             "ms"))
    finally:
        server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--database", default=None, help="a postgresql:// server URL (default: SQLite)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    store = "PostgreSQL" if args.database else "SQLite"
    print(f"load average before: {os.getloadavg()}", flush=True)
    rows = measure(args.events, args.database, args.repeats)
    print(f"load average after: {os.getloadavg()}", flush=True)
    print_table(f"Stats at {args.events:,} events, {store}, median of {args.repeats} calls each, {machine()}", rows)


if __name__ == "__main__":
    main()
