"""Scheduled sending at scale: 100,000 messages scheduled for the same second, released and delivered.

Each round starts a fresh Posthouse relaying to Postfix's `smtp-sink`, schedules N messages (batches
of 500 from 4 clients, all with one `SendAt` far enough ahead that acceptance finishes first), then
watches the sink: nothing may arrive before the time; the release latency is the first arrival after
it; the drain rate is N over the time from the release to the last arrival. The peer is Posthouse
itself in the same round: the same N sent without SendAt, so the ratio says what scheduling costs.
Run: `.venv/bin/python bench/scheduled.py --rounds 3 [--messages 100000] [--database postgresql://…]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from harness import Posthouse, machine
from postfix_peer import SmtpSink

MESSAGE = {"From": "bench@example.com", "To": "sink@example.com", "Subject": "Scheduled", "TextBody": "x" * 900}


async def post_all(server: Posthouse, total: int, send_at: str | None, clients: int = 4) -> float:
    """Send `total` messages in batches of 500; the seconds it took."""
    body = [{**MESSAGE, **({"SendAt": send_at} if send_at else {})}] * 500
    calls = asyncio.Queue[int]()
    for i in range(total // 500):
        calls.put_nowait(i)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not calls.empty():
            calls.get_nowait()
            answer = await client.post("/email/batch", json=body)
            assert answer.status_code == 200 and all(r["ErrorCode"] == 0 for r in answer.json()), answer.text[:200]

    began = time.monotonic()
    async with httpx.AsyncClient(base_url=server.base_url, headers={"X-Postmark-Server-Token": server.token},
                                 timeout=120) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
    return time.monotonic() - began


async def watch(sink: SmtpSink, start_count: int, total: int, due: float, timeout: float) -> tuple[float, float]:
    """(first arrival, last arrival) as wall-clock times; fails if anything arrives before `due`."""
    first = None
    deadline = time.time() + timeout
    while time.time() < deadline:
        count = sink.count_received() - start_count
        now = time.time()
        if count and first is None:
            if now < due:
                raise SystemExit(f"{count} scheduled messages arrived {due - now:.3f} s before their time")
            first = now
        if count >= total:
            assert first is not None
            return first, now
        await asyncio.sleep(0.005)
    raise SystemExit(f"not all {total} scheduled messages arrived within {timeout} s")


async def one_round(total: int, database: str | None) -> dict[str, float]:
    with SmtpSink() as sink:
        server = Posthouse(sink.port, database, {"POSTHOUSE_POLL_INTERVAL": "1s"})
        try:
            # The peer: the same messages, not scheduled.
            start = sink.count_received()
            began = time.time()
            await post_all(server, total, None)
            _, last = await watch(sink, start, total, 0.0, 600)
            immediate_rate = total / (last - began)
            # Scheduled for one second, far enough ahead that all are accepted before it.
            margin = max(20.0, 3 * total / 10_000)
            due = time.time() + margin
            send_at = datetime.fromtimestamp(due, UTC).isoformat()
            start = sink.count_received()
            accepted_in = await post_all(server, total, send_at)
            if time.time() >= due:
                raise SystemExit(f"accepting took {accepted_in:.1f} s, past the scheduled time: raise the margin")
            first, last = await watch(sink, start, total, due, 600)
        finally:
            server.stop()
    return {"release_ms": (first - due) * 1000, "drain_per_s": total / (last - due), "immediate_per_s": immediate_rate,
            "accepted_per_s": total / accepted_in}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--database", default=None)
    args = parser.parse_args()
    results = []
    for n in range(args.rounds):
        result = asyncio.run(one_round(args.messages, args.database))
        print(f"  round {n + 1}: " + ", ".join(f"{k}={v:,.1f}" for k, v in result.items()), flush=True)
        results.append(result)
    median = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(f"\n{args.messages:,} messages scheduled for one second, medians of {args.rounds} rounds, {machine()}\n")
    print("| scenario | scheduled | the same, not scheduled (same run) | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| accepted (batches of 500, 4 clients) | {median['accepted_per_s']:,.0f} msg/s | | |")
    print(f"| first arrival after SendAt (release latency) | {median['release_ms']:,.0f} ms | | |")
    print(f"| delivered, from SendAt to the last arrival | {median['drain_per_s']:,.0f} msg/s | "
          f"{median['immediate_per_s']:,.0f} msg/s | {median['drain_per_s'] / median['immediate_per_s']:.2f}x |")


if __name__ == "__main__":
    main()
