"""Posthouse's SMTP path beside Postfix's, in the same run: `smtp-source` → relay → `smtp-sink`.

Each round drives both relays with the same load generator (Postfix's `smtp-source`, 20 sessions,
1 KB messages) and counts delivery at the same kind of final hop (Postfix's `smtp-sink`):

- Posthouse: smtp-source → `posthouse serve` SMTP (127.0.0.1 listed in `smtp_trusted_networks`, so
  no AUTH, like Postfix's mynetworks) → relay worker → smtp-sink;
- Postfix: smtp-source → a private Postfix instance (Debian defaults) → smtp-sink.

Both acknowledge a message only after it is on disk (Posthouse: SQLite `synchronous=FULL`, or
PostgreSQL with its defaults; Postfix: fsync before 250). Medians over the rounds, and the ratio.
Run: `.venv/bin/python bench/smtp_relay.py --rounds 3 [--database postgresql://…/empty_db]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import Posthouse
from postfix_peer import SmtpSink, measure_postfix_relay, postfix_version, run_smtp_source


def posthouse_round(messages: int, sessions: int, size: int, database_url: str | None) -> dict[str, float]:
    with SmtpSink() as sink:
        server = Posthouse(sink.port, database_url, {"POSTHOUSE_SMTP_TRUSTED_NETWORKS": "127.0.0.1/32=default"})
        try:
            start = time.monotonic()
            accept_seconds = run_smtp_source(server.smtp_port, messages, sessions=sessions, size=size)
            deadline = time.monotonic() + 600
            while sink.count_received() < messages:
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {sink.count_received()} of {messages} messages arrived")
                time.sleep(0.01)
            deliver_seconds = time.monotonic() - start
        finally:
            server.stop()
    return {"accepted_per_s": messages / accept_seconds, "delivered_per_s": messages / deliver_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--database", default=None, help="a postgresql:// URL of an EMPTY database (default SQLite)")
    args = parser.parse_args()
    if args.database and args.rounds > 1:
        print("note: with --database each round needs an empty database; using 1 round")
        args.rounds = 1
    ours: dict[str, list[float]] = {"accepted_per_s": [], "delivered_per_s": []}
    theirs: dict[str, list[float]] = {"accepted_per_s": [], "delivered_per_s": []}
    for n in range(args.rounds):
        mine = posthouse_round(args.messages, args.sessions, args.size, args.database)
        peer = measure_postfix_relay(messages=args.messages, sessions=args.sessions, size=args.size)
        for key in ours:
            ours[key].append(mine[key])
            theirs[key].append(peer[key])
        print(f"round {n + 1}: Posthouse accepted {mine['accepted_per_s']:,.0f}/s delivered "
              f"{mine['delivered_per_s']:,.0f}/s; Postfix accepted {peer['accepted_per_s']:,.0f}/s delivered "
              f"{peer['delivered_per_s']:,.0f}/s", flush=True)
    store = "PostgreSQL" if args.database else "SQLite (synchronous=FULL)"
    print(f"\nmedians over {args.rounds} round(s): smtp-source -s {args.sessions} -l {args.size}, "
          f"{args.messages} messages; Posthouse store {store}; peer Postfix {postfix_version()}; "
          f"{os.cpu_count()} cores")
    print(f"{'metric':32} {'Posthouse':>10} {'Postfix':>10} {'ratio':>8}")
    for key, label in (("accepted_per_s", "accepted msgs/s"), ("delivered_per_s", "delivered msgs/s end to end")):
        a, b = statistics.median(ours[key]), statistics.median(theirs[key])
        print(f"{label:32} {a:10,.0f} {b:10,.0f} {a / b:7.2f}x")


if __name__ == "__main__":
    main()
