"""Posthouse's HTTP → relay throughput beside Postfix's SMTP → relay, measured in the same run.

Each round starts a fresh Posthouse (relay mode) and a fresh Postfix instance, both relaying to
Postfix's `smtp-sink` on loopback, and measures:

- batch: `POST /email/batch` (500 per call) from 4 concurrent clients → accepted/s and delivered/s;
- single: `POST /email` from 64 concurrent connections (wrk) → requests/s, p50 and p99 latency;
- Postfix: `smtp-source` (20 sessions, 1 KB) → Postfix → `smtp-sink` → accepted/s and delivered/s.

The figures are medians over the rounds; ratios are Posthouse / Postfix. Run: `make bench` or
`.venv/bin/python bench/relay_throughput.py --rounds 3 [--database postgresql://…]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from harness import Posthouse, Row, machine, print_table
from postfix_peer import SmtpSink, measure_postfix_relay, postfix_version

MESSAGE = {"From": "bench@example.com", "To": "sink@example.com", "Subject": "Benchmark",
           "TextBody": "x" * 900}


async def wait_delivered(sink: SmtpSink, total: int, timeout: float) -> float:
    """Delivered means received by the sink: counted by smtp-sink itself, as for Postfix."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sink.count_received() >= total:
            return time.monotonic()
        await asyncio.sleep(0.02)
    raise SystemExit(f"not all {total} messages were delivered within {timeout} s")


async def batch_round(server: Posthouse, sink: SmtpSink, messages: int, clients: int = 4, per_call: int = 500
                      ) -> dict[str, float]:
    headers = {"X-Postmark-Server-Token": server.token}
    calls = messages // per_call
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(calls):
        queue.put_nowait(i)
    body = [MESSAGE] * per_call

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            queue.get_nowait()
            response = await client.post("/email/batch", json=body)
            assert response.status_code == 200 and all(r["ErrorCode"] == 0 for r in response.json())

    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=120) as client:
        already = sink.count_received()
        start = time.monotonic()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        accepted_at = time.monotonic()
        delivered_at = await wait_delivered(sink, already + calls * per_call, timeout=600)
    total = calls * per_call
    return {"accepted_per_s": total / (accepted_at - start), "delivered_per_s": total / (delivered_at - start)}


def _ms(text: str) -> float:
    """wrk's latency figures ("850.00us", "16.65ms", "1.02s") in milliseconds."""
    for suffix, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def single_round(server: Posthouse, sink: SmtpSink, seconds: int, connections: int = 64) -> dict[str, float]:
    """`wrk` (a C load generator, so the client does not eat the server's CPU) posting /email."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed for the single-message path: apt-get install wrk")
    body = json.dumps(MESSAGE)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                     'wrk.headers["Content-Type"] = "application/json"\n'
                     f'wrk.headers["X-Postmark-Server-Token"] = "{server.token}"\n')
    try:
        output = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name,
             server.base_url + "/email"], capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    finally:
        os.unlink(script.name)
    figures: dict[str, float] = {}
    for line in output.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            figures["requests_per_s"] = float(parts[1])
        elif parts[:1] == ["50%"]:
            figures["p50_ms"] = _ms(parts[1])
        elif parts[:1] == ["99%"]:
            figures["p99_ms"] = _ms(parts[1])
        elif "Non-2xx" in line:
            raise SystemExit(f"wrk saw failed requests: {line.strip()}")

    async def drain() -> None:
        headers = {"X-Postmark-Server-Token": server.token}
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=60) as client:
            total = (await client.get("/messages/outbound", params={"count": 1, "offset": 0})).json()["TotalCount"]
        await wait_delivered(sink, int(total), timeout=600)

    asyncio.run(drain())
    return figures


def measure(rounds: int, messages: int = 20000, single_seconds: int = 10, postfix_messages: int = 5000,
            database: str | None = None) -> list[Row]:
    """Medians over `rounds` of the HTTP batch and single paths, beside Postfix's SMTP relay figures."""
    results: dict[str, list[float]] = {}
    for n in range(rounds):
        with SmtpSink() as sink:
            server = Posthouse(sink.port, database)
            try:
                figures = asyncio.run(batch_round(server, sink, messages))
                figures.update(single_round(server, sink, single_seconds))
            finally:
                server.stop()
        postfix = measure_postfix_relay(messages=postfix_messages, sessions=20, size=1024)
        figures["postfix_accepted_per_s"] = postfix["accepted_per_s"]
        figures["postfix_delivered_per_s"] = postfix["delivered_per_s"]
        print(f"  http round {n + 1}: " + ", ".join(f"{k}={v:,.1f}" for k, v in figures.items()), flush=True)
        for key, value in figures.items():
            results.setdefault(key, []).append(value)
    m = {k: statistics.median(v) for k, v in results.items()}
    return [
        ("HTTP batch (500/call, 4 clients) accepted, vs Postfix SMTP accepted", m["accepted_per_s"],
         m["postfix_accepted_per_s"], "msg/s"),
        ("HTTP batch delivered to smtp-sink, vs Postfix delivered", m["delivered_per_s"],
         m["postfix_delivered_per_s"], "msg/s"),
        ("POST /email, 64 connections (wrk), vs Postfix SMTP accepted", m["requests_per_s"],
         m["postfix_accepted_per_s"], "req/s"),
        ("POST /email p50 latency at that load", m["p50_ms"], None, "ms"),
        ("POST /email p99 latency at that load", m["p99_ms"], None, "ms"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=20000, help="messages per batch round")
    parser.add_argument("--single-seconds", type=int, default=10, help="seconds of POST /email load per round")
    parser.add_argument("--postfix-messages", type=int, default=5000)
    parser.add_argument("--database", default=None,
                        help="a postgresql:// server URL: a fresh database per round (default SQLite)")
    args = parser.parse_args()
    rows = measure(args.rounds, args.messages, args.single_seconds, args.postfix_messages, args.database)
    store = "PostgreSQL" if args.database else "SQLite (synchronous=FULL)"
    print_table(f"HTTP paths, medians over {args.rounds} round(s), store {store}, peer Postfix {postfix_version()}, "
                f"{machine()}", rows)


if __name__ == "__main__":
    main()
