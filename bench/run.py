"""Every benchmark, one table: Posthouse beside Postfix in the same run, medians of at least 3 rounds.

`make bench` installs the peers (Debian's postfix and wrk) and runs this. Options select fewer
scenarios or a PostgreSQL store for the throughput scenarios (an empty database each).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import latency
import queue_scale
import relay_throughput
import smtp_relay
from harness import Row, machine, print_table
from postfix_peer import postfix_version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="http,smtp,latency,scale", help="comma-separated: http,smtp,latency,scale")
    parser.add_argument("--scale-messages", type=int, default=1_000_000)
    parser.add_argument("--postgres", default=None, help="postgresql://… server URL: run http and smtp on "
                        "PostgreSQL (a fresh database per round) instead of SQLite")
    args = parser.parse_args()
    chosen = set(args.only.split(","))
    rows: list[Row] = []
    began = time.monotonic()
    if "http" in chosen:
        rows += relay_throughput.measure(args.rounds, database=args.postgres)
    if "smtp" in chosen:
        rows += smtp_relay.measure(args.rounds, database=args.postgres)
    if "latency" in chosen:
        rows += latency.measure(args.rounds)
    if "scale" in chosen:
        rows += queue_scale.measure(args.rounds, args.scale_messages)
    store = "PostgreSQL store" if args.postgres else "SQLite store (synchronous=FULL)"
    print_table(f"Posthouse vs Postfix {postfix_version()}, {store}, medians of "
                f"{args.rounds} rounds, {machine()}; {time.monotonic() - began:.0f} s", rows)


if __name__ == "__main__":
    main()
