"""Inbound mail end to end: messages per second from SMTP in to the application's hook, beside Postfix.

Posthouse: `posthouse serve` with the inbound role; Postfix's smtp-source sends N messages to the server's inbound
address on the inbound listener; each is stored before its 250 and posted to a local HTTP hook; the clock runs
from the first connection until the hook holds N posts. The peer: a private Postfix instance takes the same N
messages from the same smtp-source (queued durably before its 250, as ours are) and relays each to Postfix's
smtp-sink; the clock runs until the sink counted N. Same machine, same run, loopback only, bounded in count.

    .venv/bin/python bench/inbound.py --messages 500 --rounds 2 [--database-url postgresql://…/postgres]

SPF is off for the run (the machine has no DNS to ask; a loopback zone would time only dnslib), spamd is not
configured. The ratio is Posthouse / Postfix (higher is better for Posthouse).
"""

from __future__ import annotations

import argparse
import http.server
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from harness import Posthouse, free_port, machine, print_table
from postfix_peer import PostfixInstance, SmtpSink, _tool, postfix_version

SENDER = "sender@example.com"


class Hook:
    """A local HTTP hook that answers 200 and counts posts (the application of the benchmark)."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with hook.lock:
                    hook.count += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/inbound"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def smtp_source(port: int, messages: int, sessions: int, size: int, recipient: str) -> None:
    command = [_tool("smtp-source"), "-s", str(sessions), "-m", str(messages), "-l", str(size), "-f", SENDER,
               "-t", recipient, f"127.0.0.1:{port}"]
    done = subprocess.run(command, capture_output=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"smtp-source failed: {done.stderr.decode(errors='replace')}")


def wait_until(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the messages to arrive")
        time.sleep(0.01)


def api(base_url: str, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(base_url + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"X-Postmark-Server-Token": token, "Accept": "application/json",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def posthouse_round(messages: int, sessions: int, size: int, database_url: str | None) -> float:
    hook = Hook()
    inbound_port = free_port()
    server = Posthouse(9, database_url, {
        "POSTHOUSE_ROLES": "api,worker,inbound", "POSTHOUSE_SMTP_INBOUND": f"127.0.0.1:{inbound_port}",
        "POSTHOUSE_INBOUND_SPF": "false", "POSTHOUSE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "POSTHOUSE_SMTP_HOSTNAME": "mx.bench.test", "POSTHOUSE_INBOUND_ADDRESS_DOMAIN": "inbound.bench.test"})
    try:
        api(server.base_url, server.token, "PUT", "/server", {"InboundHookUrl": hook.url})
        address = api(server.base_url, server.token, "GET", "/server")["InboundAddress"]
        started = time.monotonic()
        smtp_source(inbound_port, messages, sessions, size, address)
        wait_until(lambda: hook.count >= messages, 600)
        return messages / (time.monotonic() - started)
    finally:
        server.stop()
        hook.close()


def postfix_round(messages: int, sessions: int, size: int) -> float:
    with SmtpSink() as sink, PostfixInstance(relay_port=sink.port) as postfix:
        started = time.monotonic()
        smtp_source(postfix.listen_port, messages, sessions, size, "someone@example.net")
        wait_until(lambda: sink.count_received() >= messages, 600)
        return messages / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--size", type=int, default=4096, help="bytes per message (smtp-source -l)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server URL (default: SQLite)")
    args = parser.parse_args()
    if not 1 <= args.messages <= 100_000 or not 1 <= args.rounds <= 10:
        raise SystemExit("--messages must be 1..100000 and --rounds 1..10")
    ours, peer = [], []
    for _ in range(args.rounds):
        ours.append(posthouse_round(args.messages, args.sessions, args.size, args.database_url))
        peer.append(postfix_round(args.messages, args.sessions, args.size))
    print(f"machine: {machine()}; Postfix {postfix_version()}; database: "
          f"{'PostgreSQL' if args.database_url else 'SQLite'}")
    print(f"rounds (msg/s): Posthouse {[round(x, 1) for x in ours]}, Postfix {[round(x, 1) for x in peer]}")
    print_table(f"Inbound, {args.messages} messages of {args.size} B over {args.sessions} sessions (median of "
                f"{args.rounds})", [("SMTP in → posted to the hook (Postfix: → relayed to smtp-sink)",
                                     statistics.median(ours), statistics.median(peer), "msg/s")])


if __name__ == "__main__":
    main()
