"""Inbound mail end to end: messages per second from SMTP in to the application's hook, beside Postfix.

Posthouse: `posthouse serve` with the inbound role; Postfix's smtp-source sends N messages to the server's inbound
address on the inbound listener; each is stored before its 250 and posted to a local HTTP hook; the clock runs
from the first connection until the hook holds N posts. The peer: a private Postfix instance takes the same N
messages from the same smtp-source (queued durably before its 250, as ours are) and delivers each into a maildir
with virtual(8) (the issue's peer: "Postfix accepting the same messages into a maildir"); the clock runs until
the maildir's new/ holds N. For reference the same instance is also timed relaying to Postfix's smtp-sink.
The hook is a raw asyncio HTTP/1.1 server in its own process (`Hook`), answering 200 at once.
Same machine, same run, loopback only, bounded in count.

    .venv/bin/python bench/inbound.py --messages 500 --rounds 2 [--database-url postgresql://…/postgres]

SPF is off for the run (the machine has no DNS to ask; a loopback zone would time only dnslib), spamd is not
configured. The ratio is Posthouse / Postfix (higher is better for Posthouse).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import pwd
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from harness import Posthouse, free_port, machine, print_table
from postfix_peer import PostfixInstance, SmtpSink, _tool, postfix_version

SENDER = "sender@example.com"


class Hook:
    """The application of the benchmark: a local HTTP hook that answers every POST with 200 and counts them.

    A raw asyncio HTTP/1.1 server (keep-alive honoured, `Connection: close` too) in a process of its own, so
    it neither shares the bench's GIL nor costs a thread per connection; it answers in well under a
    millisecond, so the figure is Posthouse's, not the hook's.
    """

    def __init__(self) -> None:
        self._count = multiprocessing.Value("q", 0)
        ready = multiprocessing.Event()
        port = multiprocessing.Value("i", 0)
        self.process = multiprocessing.Process(target=_serve_hook, args=(self._count, port, ready), daemon=True)
        self.process.start()
        if not ready.wait(10):
            raise SystemExit("the bench's hook did not start")
        self.url = f"http://127.0.0.1:{port.value}/inbound"

    @property
    def count(self) -> int:
        return int(self._count.value)

    def close(self) -> None:
        self.process.terminate()
        self.process.join(10)


def _serve_hook(count: Any, port: Any, ready: Any) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length, close = 0, False
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                    elif name.strip().lower() == b"connection" and value.strip().lower() == b"close":
                        close = True
                await reader.readexactly(length)
                with count.get_lock():
                    count.value += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + (b"Connection: close\r\n" if close else b"")
                             + b"\r\n")
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=256)
        port.value = server.sockets[0].getsockname()[1]
        ready.set()
        await server.serve_forever()

    asyncio.run(serve())


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


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used (/proc/<pid>/stat, utime + stime)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def posthouse_round(messages: int, sessions: int, size: int, database_url: str | None,
                    profile: Path | None = None) -> float:
    hook = Hook()
    inbound_port = free_port()
    server = Posthouse(9, database_url, {
        "POSTHOUSE_ROLES": "api,worker,inbound", "POSTHOUSE_SMTP_INBOUND": f"127.0.0.1:{inbound_port}",
        "POSTHOUSE_INBOUND_SPF": "false", "POSTHOUSE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "POSTHOUSE_SMTP_HOSTNAME": "mx.bench.test", "POSTHOUSE_INBOUND_ADDRESS_DOMAIN": "inbound.bench.test"})
    try:
        api(server.base_url, server.token, "PUT", "/server", {"InboundHookUrl": hook.url})
        address = api(server.base_url, server.token, "GET", "/server")["InboundAddress"]
        spy = None
        if profile is not None:
            spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                                    str(server.process.pid), "--rate", "250", "--format", "raw", "--nonblocking",
                                    "-o", str(profile)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        cpu_before = _cpu_seconds(server.process.pid)
        started = time.monotonic()
        smtp_source(inbound_port, messages, sessions, size, address)
        accepted = time.monotonic() - started
        wait_until(lambda: hook.count >= messages, 600)
        elapsed = time.monotonic() - started
        cpu_ms = (_cpu_seconds(server.process.pid) - cpu_before) * 1000 / messages
        print(f"  Posthouse: all accepted after {accepted:.2f} s, all posted after {elapsed:.2f} s; server CPU "
              f"{cpu_ms:.2f} ms per message", file=sys.stderr)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        return messages / elapsed
    finally:
        server.stop()
        hook.close()


def postfix_relay_round(messages: int, sessions: int, size: int) -> float:
    """Postfix queues each message (fsync before its 250) and relays it to smtp-sink."""
    with SmtpSink() as sink, PostfixInstance(relay_port=sink.port) as postfix:
        started = time.monotonic()
        smtp_source(postfix.listen_port, messages, sessions, size, "someone@example.net")
        wait_until(lambda: sink.count_received() >= messages, 600)
        return messages / (time.monotonic() - started)


MAILDIR_DOMAIN = "inbound.bench.test"


def postfix_maildir_round(messages: int, sessions: int, size: int) -> float:
    """Postfix queues each message (fsync before its 250) and delivers it into one maildir with virtual(8),
    which writes each file to tmp/, fsyncs it and renames it into new/; the clock stops when new/ holds N."""
    nobody = pwd.getpwnam("nobody")
    with tempfile.TemporaryDirectory(prefix="posthouse-maildir-") as base:
        os.chmod(base, 0o755)
        mail = Path(base) / "mail"
        mail.mkdir()
        os.chown(mail, nobody.pw_uid, nobody.pw_gid)
        extra = (f"virtual_mailbox_domains = {MAILDIR_DOMAIN}\nvirtual_mailbox_base = {mail}\n"
                 f"virtual_mailbox_maps = static:box/\nvirtual_uid_maps = static:{nobody.pw_uid}\n"
                 f"virtual_gid_maps = static:{nobody.pw_gid}\n")
        new = mail / "box" / "new"

        def delivered() -> int:
            try:
                return len(os.listdir(new))
            except FileNotFoundError:
                return 0

        with SmtpSink() as sink, PostfixInstance(relay_port=sink.port, extra_config=extra) as postfix:
            started = time.monotonic()
            smtp_source(postfix.listen_port, messages, sessions, size, f"someone@{MAILDIR_DOMAIN}")
            wait_until(lambda: delivered() >= messages, 600)
            elapsed = time.monotonic() - started
            if sink.count_received():
                raise SystemExit("Postfix relayed mail that was meant for the maildir")
            return messages / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--size", type=int, default=4096, help="bytes per message (smtp-source -l)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server URL (default: SQLite)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="write py-spy samples (raw, folded stacks) of Posthouse's server here (needs root)")
    args = parser.parse_args()
    if not 1 <= args.messages <= 100_000 or not 1 <= args.rounds <= 10:
        raise SystemExit("--messages must be 1..100000 and --rounds 1..10")
    ours, maildir, relay = [], [], []
    for _ in range(args.rounds):
        ours.append(posthouse_round(args.messages, args.sessions, args.size, args.database_url, args.profile))
        maildir.append(postfix_maildir_round(args.messages, args.sessions, args.size))
        relay.append(postfix_relay_round(args.messages, args.sessions, args.size))
    print(f"machine: {machine()}; Postfix {postfix_version()}; database: "
          f"{'PostgreSQL' if args.database_url else 'SQLite'}")
    print(f"rounds (msg/s): Posthouse {[round(x, 1) for x in ours]}, Postfix into a maildir "
          f"{[round(x, 1) for x in maildir]}, Postfix relaying to smtp-sink {[round(x, 1) for x in relay]}")
    ratios = [round(o / p, 2) for o, p in zip(ours, maildir, strict=True)]
    print(f"ratios per round (Posthouse / Postfix maildir): {ratios}")
    print_table(f"Inbound, {args.messages} messages of {args.size} B over {args.sessions} sessions (median of "
                f"{args.rounds})", [
                    ("SMTP in → posted to the hook (Postfix: → its maildir)", statistics.median(ours),
                     statistics.median(maildir), "msg/s"),
                    ("SMTP in → posted to the hook (Postfix: → relayed to smtp-sink)", statistics.median(ours),
                     statistics.median(relay), "msg/s")])

if __name__ == "__main__":
    main()
