"""What logs and metrics cost the API's send path: `POST /email` requests per second with them on and off,
rounds interleaved in one run, medians and their ratio.

- on: what an operator runs, `log_format = "json"` at `log_level = "info"` (a line per request and per
  delivery attempt, written to a file as a log shipper would read it) and every metric counted, /metrics
  scraped every `--scrape-interval` seconds during the round;
- off: `log_level = "warning"` (no line per request or attempt) and the registry's hot-path methods
  replaced by no-ops in the server process (there is no setting that stops the counting: `metrics_enabled`
  only hides the endpoint), /metrics not served.

Each round starts a fresh server per variant (order alternating), relays to Postfix's smtp-sink, drives
`POST /email` with wrk for `--seconds`, and waits until the sink has every message, so no backlog leaks
into the next measurement.

Run: `.venv/bin/python bench/observe_cost.py [--rounds 3] [--seconds 8] [--database postgresql://…]`
(needs wrk and Postfix's smtp-sink: bench/install-peers.sh).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import relay_throughput
from harness import Posthouse, machine
from postfix_peer import SmtpSink

ON_ENV = {"POSTHOUSE_LOG_FORMAT": "json", "POSTHOUSE_LOG_LEVEL": "info", "POSTHOUSE_METRICS_ENABLED": "true"}
OFF_ENV = {"POSTHOUSE_LOG_LEVEL": "warning", "POSTHOUSE_METRICS_ENABLED": "false"}


def serve(mode: str, log_file: str) -> None:
    """Inside the server process: stderr (the log) to `log_file`, the metrics off if asked, then `serve`."""
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115 — the process's stderr from here on
    if mode == "off":
        from posthouse.server import metrics

        for name in ("count_messages", "observe_delivered", "observe_attempt", "observe_http",
                     "observe_webhook_post", "observe_commit"):
            setattr(metrics.Metrics, name, lambda self, *args, **kwargs: None)
    from posthouse.server.cli import main

    sys.argv = ["posthouse", "serve"]
    main()


def scraper(server: Posthouse, interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        try:
            httpx.get(server.base_url + "/metrics", timeout=10).raise_for_status()
        except httpx.HTTPError as exc:
            print(f"scrape failed: {exc}", file=sys.stderr)


def one_round(mode: str, seconds: int, database: str | None, scrape_interval: float) -> tuple[float, int]:
    """(requests per second, log lines written) for one fresh server."""
    with tempfile.TemporaryDirectory(prefix="posthouse-observe-") as folder, SmtpSink() as sink:
        log_file = str(Path(folder) / "posthouse.log")
        argv = [sys.executable, __file__, "--serve", mode, "--log-file", log_file]
        server = Posthouse(sink.port, database, ON_ENV if mode == "on" else OFF_ENV, argv=argv)
        stop = threading.Event()
        thread = threading.Thread(target=scraper, args=(server, scrape_interval, stop), daemon=True)
        try:
            if mode == "on":
                thread.start()
            figures = relay_throughput.single_round(server, sink, seconds)
        finally:
            stop.set()
            if thread.is_alive():
                thread.join(15)
            server.stop()
        with open(log_file) as lines:
            return figures["requests_per_s"], sum(1 for _ in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8, help="of wrk load per variant and round")
    parser.add_argument("--database", help="a PostgreSQL server URL (a fresh database per server); SQLite if unset")
    parser.add_argument("--scrape-interval", type=float, default=5.0)
    parser.add_argument("--serve", choices=["on", "off"], help=argparse.SUPPRESS)
    parser.add_argument("--log-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.log_file)
        return
    if not 1 <= args.rounds <= 20 or not 1 <= args.seconds <= 120:
        raise SystemExit("--rounds 1..20 and --seconds 1..120")
    results: dict[str, list[float]] = {"on": [], "off": []}
    started = time.monotonic()
    for n in range(args.rounds):
        for mode in ("on", "off") if n % 2 == 0 else ("off", "on"):
            rate, lines = one_round(mode, args.seconds, args.database, args.scrape_interval)
            results[mode].append(rate)
            print(f"round {n + 1} {mode:>3}: {rate:8.0f} requests/s, {lines} log lines", flush=True)
    on, off = statistics.median(results["on"]), statistics.median(results["off"])
    print(f"\n{machine()}; {'PostgreSQL' if args.database else 'SQLite'}; wrk -t2 -c64 POST /email; "
          f"{args.rounds} rounds of {args.seconds} s; {time.monotonic() - started:.0f} s in all")
    print(f"median requests/s: logs+metrics on {on:.0f}, off {off:.0f}; on/off = {on / off:.3f} "
          f"({(on / off - 1) * 100:+.1f} %)")


if __name__ == "__main__":
    main()
