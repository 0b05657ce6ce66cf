"""Posthouse's SMTP path beside Postfix's, in the same run: `smtp-source` → relay → `smtp-sink`.

Each round drives both relays with the same load generator (Postfix's `smtp-source`, 20 sessions,
1 KB messages) and counts delivery at the same kind of final hop (Postfix's `smtp-sink`):

- Posthouse: smtp-source → `posthouse serve` SMTP (127.0.0.1 listed in `smtp_trusted_networks`, so
  no AUTH, like Postfix's mynetworks) → relay worker → smtp-sink;
- Postfix: smtp-source → a private Postfix instance (Debian defaults) → smtp-sink.

Both acknowledge a message only after it is on disk (Posthouse: SQLite `synchronous=FULL`, or
PostgreSQL with its defaults; Postfix: fsync before 250). Medians over the rounds, and the ratio.
Run: `.venv/bin/python bench/smtp_relay.py --rounds 3 [--database postgresql://user@host:port/postgres]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import Posthouse, Row, machine, print_table
from postfix_peer import SmtpSink, measure_postfix_relay, postfix_version, run_smtp_source


def posthouse_round(messages: int, sessions: int, size: int, database_url: str | None,
                    env: dict[str, str] | None = None) -> dict[str, float]:
    """One round through `posthouse serve`; `env`: more settings for it (bench/compare.py)."""
    with SmtpSink() as sink:
        server = Posthouse(sink.port, database_url,
                           {"POSTHOUSE_SMTP_TRUSTED_NETWORKS": "127.0.0.1/32=default", **(env or {})})
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


def measure(rounds: int, messages: int = 5000, sessions: int = 20, size: int = 1024,
            database: str | None = None) -> list[Row]:
    """Medians over `rounds` of the SMTP relay path, Posthouse beside Postfix."""
    ours: dict[str, list[float]] = {"accepted_per_s": [], "delivered_per_s": []}
    theirs: dict[str, list[float]] = {"accepted_per_s": [], "delivered_per_s": []}
    for n in range(rounds):
        mine = posthouse_round(messages, sessions, size, database)
        peer = measure_postfix_relay(messages=messages, sessions=sessions, size=size)
        for key in ours:
            ours[key].append(mine[key])
            theirs[key].append(peer[key])
        print(f"  smtp round {n + 1}: Posthouse accepted {mine['accepted_per_s']:,.0f}/s delivered "
              f"{mine['delivered_per_s']:,.0f}/s; Postfix accepted {peer['accepted_per_s']:,.0f}/s delivered "
              f"{peer['delivered_per_s']:,.0f}/s", flush=True)
    label = f"smtp-source -s {sessions} -l {size}"
    return [
        (f"SMTP relay accepted ({label})", statistics.median(ours["accepted_per_s"]),
         statistics.median(theirs["accepted_per_s"]), "msg/s"),
        (f"SMTP relay delivered end to end ({label})", statistics.median(ours["delivered_per_s"]),
         statistics.median(theirs["delivered_per_s"]), "msg/s"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--database", default=None,
                        help="a postgresql:// server URL: a fresh database per round (default SQLite)")
    args = parser.parse_args()
    rows = measure(args.rounds, args.messages, args.sessions, args.size, args.database)
    store = "PostgreSQL" if args.database else "SQLite (synchronous=FULL)"
    print_table(f"SMTP path, medians over {args.rounds} round(s), store {store}, peer Postfix {postfix_version()}, "
                f"{machine()}", rows)


if __name__ == "__main__":
    main()
