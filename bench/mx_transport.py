"""The mx transport's own cost: CPU per message in one process, beside the relay transport, same sinks.

N messages (1 KB, one recipient each, 64 at once as the worker sends them) go through `MxTransport` to
10 domains whose MX hosts are Postfix `smtp-sink`s on 127.X.Y.n:25 (a dnslib server answers for them;
DNS answers and routes are cached after the first message), then through `RelayTransport` to one of the
same sinks. Process CPU time per message, and messages/s, median of the rounds. Needs root (port 25).

Run: `.venv/bin/python bench/mx_transport.py --messages 4000 --rounds 3`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import machine

from mx_peers import AuthoritativeDns, SmtpSinkProcess, loopback_prefix
from posthouse.server.config import RelayTarget
from posthouse.server.delivery.base import Envelope, Transport
from posthouse.server.delivery.dns import Resolver
from posthouse.server.delivery.mta_sts import MtaSts
from posthouse.server.delivery.mx import MxSettings, MxTransport
from posthouse.server.delivery.relay import RelayTransport

MESSAGE = b"From: app@example.com\r\nTo: someone@example.net\r\nSubject: bench\r\n\r\n" + b"x" * 900 + b"\r\n"
DOMAINS = 10


async def run(transport: Transport, messages: int, spread: bool) -> tuple[float, float]:
    """(µs CPU per message, messages/s) after one warm-up message."""
    slots = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        async with slots:
            domain = f"d{i % DOMAINS if spread else 0}.bench.example.net"
            result = await transport.send(Envelope(f"bounces+{i}@example.com", [f"u{i}@{domain}"], MESSAGE, "outbound"))
            if not all(reply.code == 250 for reply in result.replies.values()):
                raise SystemExit(f"not delivered: {result.replies}")

    await one(0)
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(1, messages + 1)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await transport.close()
    return cpu / messages * 1e6, messages / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    prefix = loopback_prefix()
    records = []
    for k in range(DOMAINS):
        records += [f"d{k}.bench.example.net. 300 IN MX 10 mx.d{k}.bench.example.net.",
                    f"mx.d{k}.bench.example.net. 300 IN A {prefix}.{k + 1}"]
    figures: dict[str, list[tuple[float, float]]] = {"mx": [], "relay": []}
    with AuthoritativeDns(records) as dns:
        sinks = [SmtpSinkProcess(f"{prefix}.{k + 1}").start() for k in range(DOMAINS)]
        try:
            for _ in range(args.rounds):
                resolver = Resolver([("127.0.0.1", dns.port)])
                mx = MxTransport(MxSettings(ehlo_name="bench.example.net"), resolver, MtaSts(resolver))
                figures["mx"].append(asyncio.run(run(mx, args.messages, spread=True)))
                relay = RelayTransport(RelayTarget(f"{prefix}.1", 25, "none", None, None))
                figures["relay"].append(asyncio.run(run(relay, args.messages, spread=False)))
        finally:
            for sink in sinks:
                sink.stop()
    print(f"\nTransports in-process, {args.messages} messages, medians of {args.rounds} rounds, {machine()}\n")
    print("| transport | CPU per message | messages/s |")
    print("|---|---:|---:|")
    for name, label in (("mx", f"mx, {DOMAINS} domains"), ("relay", "relay, one smarthost")):
        cpu = statistics.median(c for c, _ in figures[name])
        rate = statistics.median(r for _, r in figures[name])
        print(f"| {label} | {cpu:.0f} µs | {rate:,.0f} |")


if __name__ == "__main__":
    main()
