"""Light-load latency: from the acknowledgement to arrival at the next hop, Posthouse beside Postfix.

At a steady 100 messages/s for 10 s, each message carries an `X-Bench-Id` header; a timing sink on
loopback notes when it arrives. Posthouse: `POST /email` answered 200 → relay worker → sink.
Postfix: SMTP `250` → its queue manager → smtp client → the same kind of sink. Reported: the median
and p99 of (arrival − acknowledgement), median over the rounds.
Run: `.venv/bin/python bench/latency.py --rounds 3`.
"""

from __future__ import annotations

import argparse
import smtplib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from harness import Posthouse, Row, machine, print_table
from postfix_peer import PostfixInstance, postfix_version
from timing_sink import TimingSink


def paced(rate: float, count: int, send: Callable[[str], None]) -> dict[str, float]:
    """Call `send(bench_id)` `count` times at `rate` per second; the acknowledgement time of each."""
    acked: dict[str, float] = {}
    began = time.monotonic()
    for i in range(count):
        target = began + i / rate
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        bench_id = f"b{i}"
        send(bench_id)
        acked[bench_id] = time.monotonic()
    return acked


def latencies(sink: TimingSink, acked: dict[str, float], timeout: float = 60) -> list[float]:
    deadline = time.monotonic() + timeout
    while len(sink.arrivals) < len(acked) and time.monotonic() < deadline:
        time.sleep(0.05)
    missing = len(acked) - len(sink.arrivals)
    if missing:
        raise SystemExit(f"{missing} messages did not arrive")
    return sorted((sink.arrivals[i] - t) * 1000 for i, t in acked.items())


def posthouse_round(rate: float, count: int) -> list[float]:
    with TimingSink() as sink:
        server = Posthouse(sink.port, None)
        try:
            with httpx.Client(base_url=server.base_url, headers={"X-Postmark-Server-Token": server.token}) as client:
                def send(bench_id: str) -> None:
                    response = client.post("/email", json={
                        "From": "bench@example.com", "To": "sink@example.com", "Subject": "latency",
                        "TextBody": "x" * 900, "Headers": [{"Name": "X-Bench-Id", "Value": bench_id}]})
                    assert response.status_code == 200

                acked = paced(rate, count, send)
            return latencies(sink, acked)
        finally:
            server.stop()


def postfix_round(rate: float, count: int) -> list[float]:
    with TimingSink() as sink, PostfixInstance(relay_port=sink.port) as postfix:
        with smtplib.SMTP("127.0.0.1", postfix.listen_port) as client:
            def send(bench_id: str) -> None:
                client.sendmail("bench@example.com", ["sink@example.com"],
                                f"From: bench@example.com\r\nTo: sink@example.com\r\nSubject: latency\r\n"
                                f"X-Bench-Id: {bench_id}\r\n\r\n{'x' * 900}\r\n")

            acked = paced(rate, count, send)
        return latencies(sink, acked)


def measure(rounds: int, rate: float = 100.0, seconds: float = 10.0) -> list[Row]:
    count = int(rate * seconds)
    ours: list[tuple[float, float]] = []
    theirs: list[tuple[float, float]] = []
    for n in range(rounds):
        mine = posthouse_round(rate, count)
        peer = postfix_round(rate, count)
        ours.append((statistics.median(mine), mine[int(len(mine) * 0.99)]))
        theirs.append((statistics.median(peer), peer[int(len(peer) * 0.99)]))
        print(f"  latency round {n + 1}: Posthouse median {ours[-1][0]:.1f} ms p99 {ours[-1][1]:.1f} ms; "
              f"Postfix median {theirs[-1][0]:.1f} ms p99 {theirs[-1][1]:.1f} ms", flush=True)
    return [
        (f"acknowledged → at the next hop, median, {rate:.0f} msg/s (HTTP 200 vs SMTP 250)",
         statistics.median(m for m, _ in ours), statistics.median(m for m, _ in theirs), "ms"),
        (f"acknowledged → at the next hop, p99, {rate:.0f} msg/s",
         statistics.median(p for _, p in ours), statistics.median(p for _, p in theirs), "ms"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print_table(f"Light-load latency, medians over {args.rounds} round(s), peer Postfix {postfix_version()}, "
                f"{machine()}", measure(args.rounds, args.rate, args.seconds))


if __name__ == "__main__":
    main()
