"""Two builds of Posthouse side by side, rounds interleaved: the HTTP paths, or the SMTP relay path.

This machine's speed drifts by tens of percent over minutes, so a change is judged against its base in
the same run: each round runs the base, then the change, on fresh data dirs, and the medians and their
ratio are printed. The base is a git revision (checked out in a temporary worktree and put first on
PYTHONPATH); the change is the working tree, optionally with extra settings.

    .venv/bin/python bench/compare.py --base HEAD~1 --rounds 3
    .venv/bin/python bench/compare.py --base HEAD --env POSTHOUSE_WORKER_CONCURRENCY=128 --rounds 3
    .venv/bin/python bench/compare.py --base HEAD~1 --database postgresql://postgres@127.0.0.1:54330/postgres
    .venv/bin/python bench/compare.py --base HEAD~1 --scenario smtp --rounds 8   # bench/smtp_relay.py's round
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import relay_throughput
import smtp_relay
from harness import Posthouse, machine
from postfix_peer import SmtpSink

REPO = Path(__file__).resolve().parent.parent
FIGURES = {"http": ("accepted_per_s", "delivered_per_s", "requests_per_s", "p50_ms", "p99_ms"),
           "smtp": ("accepted_per_s", "delivered_per_s")}


def one_round(pythonpath: str | None, env: dict[str, str], messages: int, single_seconds: int,
              suppress: list[str], database: str | None = None, scenario: str = "http") -> dict[str, float]:
    saved = os.environ.get("PYTHONPATH")
    if pythonpath is not None:
        os.environ["PYTHONPATH"] = pythonpath
    try:
        if scenario == "smtp":  # smtp-source -s 20 -l 1024 → SMTP → relay → smtp-sink, as bench/smtp_relay.py
            return smtp_relay.posthouse_round(messages, 20, 1024, database, env)
        with SmtpSink() as sink:
            server = Posthouse(sink.port, database, env)
            try:
                if suppress:  # a stream with suppressions: every send must be checked against them
                    answer = httpx.post(server.base_url + "/message-streams/outbound/suppressions",
                                        headers={"X-Postmark-Server-Token": server.token},
                                        json={"Suppressions": [{"EmailAddress": e} for e in suppress]}, timeout=30)
                    answer.raise_for_status()
                figures = asyncio.run(relay_throughput.batch_round(server, sink, messages))
                figures.update(relay_throughput.single_round(server, sink, single_seconds))
                return figures
            finally:
                server.stop()
    finally:
        if pythonpath is not None:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the change's server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenario", choices=sorted(FIGURES), default="http")
    parser.add_argument("--messages", type=int, default=None, help="default 40,000 (http) or 5,000 (smtp)")
    parser.add_argument("--single-seconds", type=int, default=10)
    parser.add_argument("--suppress", action="append", default=[], help="an address to suppress before the load")
    parser.add_argument("--database", default=None,
                        help="a postgresql:// server URL: a fresh database per round for both builds (default SQLite)")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    figures_of = FIGURES[args.scenario]
    messages = args.messages or (5_000 if args.scenario == "smtp" else 40_000)
    with tempfile.TemporaryDirectory(prefix="posthouse-base-") as worktree:
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", worktree, args.base], check=True,
                       capture_output=True)
        try:
            results: dict[str, dict[str, list[float]]] = {"base": {}, "change": {}}
            for n in range(args.rounds):
                for name, pythonpath, extra in (("base", f"{worktree}/src", {}), ("change", None, env)):
                    figures = one_round(pythonpath, extra, messages, args.single_seconds, args.suppress,
                                        args.database, args.scenario)
                    for key in figures_of:
                        results[name].setdefault(key, []).append(figures[key])
                    print(f"  round {n + 1} {name}: " + ", ".join(f"{k}={figures[k]:,.1f}" for k in figures_of),
                          flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", worktree], check=False,
                           capture_output=True)
    print(f"\n{args.base} (base) against the working tree{' with ' + ' '.join(args.env) if args.env else ''}, "
          f"medians of {args.rounds} interleaved rounds, {machine()}\n")
    print("| figure | base | change | change / base |\n|---|---:|---:|---:|")
    for key in figures_of:
        base, change = statistics.median(results["base"][key]), statistics.median(results["change"][key])
        print(f"| {key} | {base:,.1f} | {change:,.1f} | {change / base:.2f}x |")


if __name__ == "__main__":
    main()
