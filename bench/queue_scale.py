"""Scale of the queue: a million queued messages, delivery paused, then resumed.

1. A Posthouse process with only the `api` role (so delivery is paused) takes N messages through
   `POST /email/batch`; its resident memory is read, and `GET /messages/outbound` is timed with
   each filter (median of 7 calls each).
2. A process with only the `worker` role is started on the same database: the claim-and-deliver
   rate is the time for K messages to reach `smtp-sink`, measured from the first arrival, and its
   resident memory is sampled. Repeated for each round.
3. The same rate with only 1,000 messages queued (a fresh database each round), for the ratio.

Run: `.venv/bin/python bench/queue_scale.py --messages 1000000 --rounds 3`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from harness import Posthouse, Row, machine, print_table
from postfix_peer import SmtpSink

QUERIES = {
    "recipient": {"recipient": "user4242@example.com"},
    "tag": {"tag": "tag-17"},
    "fromemail": {"fromemail": "shop3@example.com"},
    "status": {"status": "queued"},
    "subject": {"subject": "order 99999"},
    "metadata": {"metadata_order": "123457"},
    "none": {},
}


def message(i: int) -> dict[str, object]:
    return {"From": f"shop{i % 10}@example.com", "To": f"user{i % 100_000}@example.com", "Subject": f"Your order {i}",
            "Tag": f"tag-{i % 100}", "TextBody": "x" * 300, "Metadata": {"order": str(i)}}


async def enqueue(server: Posthouse, total: int, clients: int = 4, per_call: int = 500) -> float:
    headers = {"X-Postmark-Server-Token": server.token}
    starts = iter(range(0, total, per_call))

    async def client_loop(client: httpx.AsyncClient) -> None:
        for start in starts:
            body = [message(i) for i in range(start, min(start + per_call, total))]
            response = await client.post("/email/batch", json=body)
            if response.status_code != 200 or any(r["ErrorCode"] for r in response.json()):
                raise SystemExit(f"enqueue failed: {response.status_code} {response.text[:200]}")

    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=300) as client:
        began = time.monotonic()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        return time.monotonic() - began


def time_queries(server: Posthouse, repeats: int = 7) -> dict[str, tuple[float, int]]:
    """Median milliseconds and TotalCount of GET /messages/outbound per filter."""
    result = {}
    with httpx.Client(base_url=server.base_url, headers={"X-Postmark-Server-Token": server.token},
                      timeout=60) as client:
        for name, params in QUERIES.items():
            times = []
            total = 0
            for _ in range(repeats):
                began = time.perf_counter()
                response = client.get("/messages/outbound", params={"count": 50, "offset": 0, **params})
                times.append((time.perf_counter() - began) * 1000)
                total = response.json()["TotalCount"]
            result[name] = (statistics.median(times), total)
    return result


def delivery_rate(sink: SmtpSink, count: int, data_dir: str, token: str, timeout: float = 600) -> tuple[float, float]:
    """Start a worker-only process; messages/s over `count` deliveries after the first, and its peak RSS."""
    worker = Posthouse(sink.port, None, {"POSTHOUSE_ROLES": "worker"}, data_dir=data_dir, token=token)
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], worker.rss_mib())
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        base = sink.count_received()
        deadline = time.monotonic() + timeout
        while sink.count_received() == base:
            if time.monotonic() > deadline:
                raise SystemExit("the worker delivered nothing")
            time.sleep(0.001)
        began, first = time.monotonic(), sink.count_received()
        while sink.count_received() < first + count:
            if time.monotonic() > deadline:
                raise SystemExit("the worker did not finish in time")
            time.sleep(0.001)
        return count / (time.monotonic() - began), peak[0]
    finally:
        stop.set()
        worker.stop()


def measure(rounds: int, messages: int = 1_000_000, timed: int = 20_000) -> list[Row]:
    with SmtpSink() as sink, tempfile.TemporaryDirectory(prefix="posthouse-scale-") as data_dir:
        api = Posthouse(sink.port, None, {"POSTHOUSE_ROLES": "api"}, data_dir=data_dir)
        try:
            seconds = asyncio.run(enqueue(api, messages))
            api_rss = api.rss_mib()
            queries = time_queries(api)
        finally:
            api.stop()
        print(f"  enqueued {messages:,} in {seconds:.0f} s ({messages / seconds:,.0f}/s)", flush=True)
        big = [delivery_rate(sink, timed, data_dir, api.token) for _ in range(rounds)]
    small = []
    for _ in range(rounds):
        with SmtpSink() as sink, tempfile.TemporaryDirectory(prefix="posthouse-scale-") as data_dir:
            api = Posthouse(sink.port, None, {"POSTHOUSE_ROLES": "api"}, data_dir=data_dir)
            try:
                asyncio.run(enqueue(api, 1000))
            finally:
                api.stop()
            small.append(delivery_rate(sink, 900, data_dir, api.token))
    big_rate = statistics.median(r for r, _ in big)
    small_rate = statistics.median(r for r, _ in small)
    print(f"  claim-and-deliver: {big_rate:,.0f}/s with {messages:,} queued, {small_rate:,.0f}/s with 1,000 "
          f"(ratio {big_rate / small_rate:.2f})", flush=True)
    rows: list[Row] = [
        (f"claim-and-deliver with {messages:,} queued (worker process)", big_rate, None, "msg/s"),
        ("claim-and-deliver with 1,000 queued (worker process)", small_rate, None, "msg/s"),
        (f"resident memory, API process holding {messages:,} queued", api_rss, None, "MiB"),
        (f"resident memory, worker process at {messages:,} queued (peak)", max(p for _, p in big), None, "MiB"),
    ]
    rows += [(f"GET /messages/outbound?{name} at {messages:,} (TotalCount {total:,})", ms, None, "ms")
             for name, (ms, total) in queries.items()]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measure", type=int, default=20_000, help="deliveries timed per round at scale")
    args = parser.parse_args()
    print_table(f"Queue scale, SQLite (synchronous=FULL), medians over {args.rounds} round(s), {machine()}",
                measure(args.rounds, args.messages, args.measure))


if __name__ == "__main__":
    main()
