"""Direct-to-MX delivery: Posthouse `delivery = "mx"` beside Postfix delivering to MX hosts, same DNS, same run.

N messages to M destination domains, each domain with its own MX host on loopback (`d<k>.bench.example.net`
→ `mx.d<k>…` → 127.0.1.<k>:25, where Postfix's `smtp-sink` takes and counts the mail). Each round:

- Posthouse: `smtp-source` (one per domain, 20 sessions in all, 1 KB) → `posthouse serve` SMTP (127.0.0.1 in
  `smtp_trusted_networks`) → SQLite `synchronous=FULL` → the delivery worker, `mx` transport → MX lookup →
  the domain's smtp-sink;
- Postfix: the same `smtp-source` runs → a private Postfix instance (Debian defaults; no relayhost, so it looks
  MX records up and delivers to them; fsync before 250) → the same sinks.

Delivered/s runs from the start of the smtp-source runs to the last arrival, counted by smtp-sink itself. Both
MTAs take mail over SMTP faster than they deliver it only by a little, so that figure is mostly the
acceptance path (Posthouse: its SMTP server and SQLite). Two more scenarios isolate delivery:

- queued: the same load is accepted first with delivery held (Posthouse: an `api,smtp` process, then a
  `worker` process on the same database; Postfix: `defer_transports = smtp`, then emptied, `postfix reload`,
  `postqueue -f`), and the delivery rate is timed from the first arrival to the last;
- HTTP batch: `POST /email/batch` (500 per call, 4 clients), Posthouse's own API, to the last arrival,
  beside the same Postfix SMTP round (as bench/relay_throughput.py does for the relay).

The figures are medians over the rounds, and the ratio Posthouse / Postfix.

**How both MTAs get the same DNS.** Postfix's SMTP client asks the system resolver (libc, /etc/resolv.conf,
port 53 only); it cannot be pointed at a DNS server on another port. So the whole benchmark runs in a
network namespace and a mount namespace of its own (`unshare --net --mount`, which is why it needs root):
there, loopback is private, a dnslib authoritative server answers on 127.0.0.1:53 for the bench zone, and
/etc/resolv.conf is a bind mount naming 127.0.0.1 (the host's file is not touched). Posthouse is left at
`dns_nameservers = ""` and so reads the same resolv.conf: both MTAs ask the same server the same questions
(Posthouse also asks for AAAA and for `_mta-sts` TXT records, which Postfix without an MTA-STS resolver does
not). PostgreSQL on the host is not reachable from inside, so the store is SQLite.

`--dkim` signs Posthouse's mail (issue 14's DKIM, once it is merged): the sender domain is created through
the account API (`POST /domains`), its DKIM record published in the bench DNS and verified (`PUT
/domains/{id}/verifyDkim`); Postfix does not sign (no milter), which favours Postfix.

Run: `.venv/bin/python bench/mx.py --rounds 3 [--messages 5000 --domains 10] [--dkim]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' dnslib server and smtp-sink
import profile as bench_profile

from harness import Posthouse, Row, machine, print_table
from postfix_peer import PostfixInstance, postfix_version

from mx_peers import AuthoritativeDns, SmtpSinkProcess

SENDER = "sender@example.com"
POSTHOUSE_ENV = {"POSTHOUSE_DELIVERY": "mx", "POSTHOUSE_SMTP_TRUSTED_NETWORKS": "127.0.0.1/32=default",
                 "POSTHOUSE_SMTP_HOSTNAME": "bench.example.net", "POSTHOUSE_MX_EHLO_NAME": "bench.example.net"}
ZONE_TTL = 3600
_SESSIONS = 20
_TIMEOUT = 600.0  # every wait is bounded


def domain(k: int) -> str:
    return f"d{k}.bench.example.net"


def mx_address(k: int) -> str:
    return f"127.0.1.{k + 1}"


# --- Postfix delivering to MX hosts ---------------------------------------------------------------------

_MX_MAIN_CF = """\
# Written by bench/mx.py; see postconf(5). No relayhost: mail goes to the recipient domains' MX hosts.
compatibility_level = 3.6
queue_directory = {directory}/spool
data_directory = {directory}/data
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
# Opportunistic TLS, as Posthouse's default (smtp-sink offers no STARTTLS, so neither uses it).
smtp_tls_security_level = may
smtpd_tls_security_level = none
maillog_file_prefixes = {directory}
maillog_file = {directory}/maillog
syslog_name = postfix-bench
"""


class PostfixMx(PostfixInstance):
    """bench/postfix_peer.py's private instance, configured to deliver by MX instead of relaying; with
    `hold`, mail is accepted and queued but not delivered until `release()`."""

    def __init__(self, hold: bool = False) -> None:
        super().__init__(relay_port=0)
        self.hold = hold

    def _write_config(self) -> None:
        super()._write_config()  # master.cf as the relay peer's; its main.cf is replaced here
        main_cf = _MX_MAIN_CF.format(directory=self._require_directory())
        if self.hold:
            main_cf += "# Queued, not delivered, until bench/mx.py releases it.\ndefer_transports = smtp\n"
        (self.config_directory / "main.cf").write_text(main_cf)

    def release(self) -> None:
        """Deliver what is queued: defer_transports emptied, the daemons reloaded, the queue flushed."""
        config = str(self.config_directory)
        for command in (["postconf", "-c", config, "-e", "defer_transports ="], ["postfix", "-c", config, "reload"],
                        ["postqueue", "-c", config, "-f"]):
            subprocess.run([postfix_tool(command[0]), *command[1:]], check=True, capture_output=True, timeout=60)


# --- The load: smtp-source, one per domain -------------------------------------------------------------


def smtp_source_path() -> str:
    path = shutil.which("smtp-source", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if path is None:
        raise SystemExit("smtp-source not found: apt-get install postfix")
    return path


def split(messages: int, domains: int) -> list[int]:
    return [messages // domains + (1 if k < messages % domains else 0) for k in range(domains)]


def send_load(port: int, counts: list[int], size: int) -> float:
    """Run one smtp-source per domain at once; seconds until the last one exits (every message had its 250)."""
    sessions = max(1, _SESSIONS // len(counts))
    started = time.perf_counter()
    processes = [subprocess.Popen([smtp_source_path(), "-s", str(sessions), "-m", str(count), "-l", str(size),
                                   "-f", SENDER, "-t", f"user{k}@{domain(k)}", f"127.0.0.1:{port}"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for k, count in enumerate(counts) if count]
    for process in processes:
        output, _ = process.communicate(timeout=_TIMEOUT)
        if process.returncode != 0:
            raise SystemExit(f"smtp-source failed: {output.decode(errors='replace').strip()[-300:]}")
    return time.perf_counter() - started


def postfix_tool(name: str) -> str:
    path = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if path is None:
        raise SystemExit(f"{name} not found: apt-get install postfix")
    return path


def drain_rate(sinks: list[SmtpSinkProcess], baseline: list[int], counts: list[int], what: str) -> float:
    """Messages/s from the first arrival to the last, for a queue released at once: the MTA's delivery rate
    alone, without its start (a process starting, a queue being scanned)."""
    deadline = time.monotonic() + _TIMEOUT

    def arrived() -> int:
        return sum(sink.count_received() - base for sink, base in zip(sinks, baseline, strict=True))

    while (first := arrived()) == 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: nothing delivered within {_TIMEOUT:.0f} s")
        time.sleep(0.001)
    began = time.perf_counter()
    elapsed = wait_delivered(sinks, baseline, counts, began, what)
    return (sum(counts) - first) / elapsed


def wait_delivered(sinks: list[SmtpSinkProcess], baseline: list[int], counts: list[int], started: float,
                   what: str) -> float:
    deadline = time.monotonic() + _TIMEOUT
    while True:
        got = [sink.count_received() - base for sink, base in zip(sinks, baseline, strict=True)]
        if sum(got) >= sum(counts):
            elapsed = time.perf_counter() - started
            if got != counts:
                raise SystemExit(f"{what}: messages reached the wrong MX hosts: {got} against {counts}")
            return elapsed
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: {sum(got)} of {sum(counts)} messages delivered within {_TIMEOUT:.0f} s")
        time.sleep(0.01)


# --- Rounds ------------------------------------------------------------------------------------------


def enable_dkim(server: Posthouse, dns: AuthoritativeDns) -> None:
    """The sender's domain through Postmark's account API, its DKIM key published in the bench DNS and verified."""
    headers = {"X-Postmark-Account-Token": server.account_token, "Accept": "application/json"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
        created = client.post("/domains", json={"Name": SENDER.split("@")[1]})
        if created.status_code == 404:
            raise SystemExit("--dkim needs the Domains API and DKIM signing (issue 14, M1 and M3) merged")
        created.raise_for_status()
        body = created.json()
        host = body.get("DKIMPendingHost") or body.get("DKIMHost")
        value = body.get("DKIMPendingTextValue") or body.get("DKIMTextValue")
        chunks = " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))
        dns.add(f"{host}. {ZONE_TTL} IN TXT {chunks}")
        verified = client.put(f"/domains/{body['ID']}/verifyDkim")
        verified.raise_for_status()
        if not verified.json().get("DKIMVerified"):
            raise SystemExit(f"the DKIM record was published but did not verify: {verified.text[:300]}")


def posthouse_round(sinks: list[SmtpSinkProcess], counts: list[int], size: int, dkim: bool,
                    dns: AuthoritativeDns, profile: Path | None = None) -> dict[str, float]:
    server = Posthouse(0, None, POSTHOUSE_ENV)
    try:
        if dkim:
            enable_dkim(server, dns)
        baseline = [sink.count_received() for sink in sinks]
        spy = bench_profile.record(server.process.pid, 600, profile) if profile is not None else None
        started = time.perf_counter()
        accept = send_load(server.smtp_port, counts, size)
        deliver = wait_delivered(sinks, baseline, counts, started, "Posthouse")
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
            spy.wait(60)
    finally:
        server.stop()
    total = sum(counts)
    return {"accepted_per_s": total / accept, "delivered_per_s": total / deliver}


def posthouse_http_round(sinks: list[SmtpSinkProcess], counts: list[int], size: int) -> float:
    """POST /email/batch (500 per call, 4 clients; Posthouse's own API) → mx: delivered/s to the last arrival."""
    server = Posthouse(0, None, POSTHOUSE_ENV)
    try:
        messages = [{"From": SENDER, "To": f"user{k}@{domain(k)}", "Subject": "Benchmark", "TextBody": "x" * size}
                    for k, count in enumerate(counts) for _ in range(count)]
        calls = [messages[i:i + 500] for i in range(0, len(messages), 500)]
        baseline = [sink.count_received() for sink in sinks]
        started = time.perf_counter()

        def client_loop() -> None:
            with httpx.Client(base_url=server.base_url, headers={"X-Postmark-Server-Token": server.token},
                              timeout=120) as client:
                while calls:
                    body = calls.pop()
                    response = client.post("/email/batch", json=body)
                    if response.status_code != 200 or any(r["ErrorCode"] for r in response.json()):
                        raise SystemExit(f"POST /email/batch failed: {response.text[:300]}")

        clients = [threading.Thread(target=client_loop) for _ in range(4)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        return sum(counts) / wait_delivered(sinks, baseline, counts, started, "Posthouse (HTTP)")
    finally:
        server.stop()


def posthouse_drain_round(sinks: list[SmtpSinkProcess], counts: list[int], size: int) -> float:
    """smtp-source into an `api,smtp` process (nothing delivered), then a `worker` process delivers the queue."""
    env = POSTHOUSE_ENV
    with tempfile.TemporaryDirectory(prefix="posthouse-bench-mx-") as data_dir:
        front = Posthouse(0, None, {**env, "POSTHOUSE_ROLES": "api,smtp"}, data_dir=data_dir)
        try:
            send_load(front.smtp_port, counts, size)
        finally:
            front.stop()
        baseline = [sink.count_received() for sink in sinks]
        worker = Posthouse(0, None, {**env, "POSTHOUSE_ROLES": "worker"}, data_dir=data_dir, token=front.token)
        try:
            return drain_rate(sinks, baseline, counts, "Posthouse (queued)")
        finally:
            worker.stop()


def postfix_drain_round(sinks: list[SmtpSinkProcess], counts: list[int], size: int) -> float:
    with PostfixMx(hold=True) as postfix:
        send_load(postfix.listen_port, counts, size)
        baseline = [sink.count_received() for sink in sinks]
        postfix.release()
        return drain_rate(sinks, baseline, counts, f"Postfix (queued; see {postfix.maillog_file})")


def postfix_round(sinks: list[SmtpSinkProcess], counts: list[int], size: int) -> dict[str, float]:
    with PostfixMx() as postfix:
        baseline = [sink.count_received() for sink in sinks]
        started = time.perf_counter()
        accept = send_load(postfix.listen_port, counts, size)
        deliver = wait_delivered(sinks, baseline, counts, started, f"Postfix (see {postfix.maillog_file})")
    total = sum(counts)
    return {"accepted_per_s": total / accept, "delivered_per_s": total / deliver}


def measure(rounds: int, messages: int, domains: int, size: int, dkim: bool, profile: Path | None = None
            ) -> list[Row]:
    records = []
    for k in range(domains):
        records += [f"{domain(k)}. {ZONE_TTL} IN MX 10 mx.{domain(k)}.",
                    f"mx.{domain(k)}. {ZONE_TTL} IN A {mx_address(k)}"]
    counts = split(messages, domains)
    keys = ("accepted_per_s", "delivered_per_s", "drain_per_s", "http_per_s")
    ours: dict[str, list[float]] = {key: [] for key in keys}
    theirs: dict[str, list[float]] = {key: [] for key in keys}
    sinks = [SmtpSinkProcess(mx_address(k)) for k in range(domains)]
    with AuthoritativeDns(records, port=53) as dns:
        try:
            for sink in sinks:
                sink.start()
            for n in range(rounds):
                # Alternate who goes first, so neither always meets a machine warmed by the other.
                order = ("posthouse", "postfix") if n % 2 == 0 else ("postfix", "posthouse")
                figures: dict[str, dict[str, float]] = {}
                for who in order:
                    figures[who] = (posthouse_round(sinks, counts, size, dkim, dns, profile) if who == "posthouse"
                                    else postfix_round(sinks, counts, size))
                if not dkim:  # (the queued scenario starts its own processes; DKIM is set up in the first only)
                    for who in order:
                        drain = posthouse_drain_round if who == "posthouse" else postfix_drain_round
                        figures[who]["drain_per_s"] = drain(sinks, counts, size)
                    # Posthouse's own API as the source, beside the same Postfix SMTP round.
                    figures["posthouse"]["http_per_s"] = posthouse_http_round(sinks, counts, size)
                    figures["postfix"]["http_per_s"] = figures["postfix"]["delivered_per_s"]
                for key in ours:
                    if key in figures["posthouse"]:
                        ours[key].append(figures["posthouse"][key])
                        theirs[key].append(figures["postfix"][key])
                print(f"  mx round {n + 1}: Posthouse accepted {figures['posthouse']['accepted_per_s']:,.0f}/s "
                      f"delivered {figures['posthouse']['delivered_per_s']:,.0f}/s; Postfix accepted "
                      f"{figures['postfix']['accepted_per_s']:,.0f}/s delivered "
                      f"{figures['postfix']['delivered_per_s']:,.0f}/s; queued, delivered "
                      f"{figures['posthouse'].get('drain_per_s', 0):,.0f}/s vs "
                      f"{figures['postfix'].get('drain_per_s', 0):,.0f}/s; HTTP batch delivered "
                      f"{figures['posthouse'].get('http_per_s', 0):,.0f}/s", flush=True)
        finally:
            for sink in sinks:
                sink.stop()
    label = f"{messages} msgs to {domains} domains, smtp-source -s {_SESSIONS} -l {size}"
    signed = ", Posthouse DKIM-signed" if dkim else ""
    rows: list[Row] = [
        (f"MX delivery accepted ({label})", statistics.median(ours["accepted_per_s"]),
         statistics.median(theirs["accepted_per_s"]), "msg/s"),
        (f"MX delivery delivered end to end ({label}{signed})", statistics.median(ours["delivered_per_s"]),
         statistics.median(theirs["delivered_per_s"]), "msg/s"),
    ]
    if ours["drain_per_s"]:
        rows.append((f"MX delivery of {messages} queued msgs to {domains} domains, first to last arrival",
                     statistics.median(ours["drain_per_s"]), statistics.median(theirs["drain_per_s"]), "msg/s"))
        rows.append((f"HTTP batch (500/call, 4 clients) → MX delivered, vs Postfix SMTP → MX delivered ({label})",
                     statistics.median(ours["http_per_s"]), statistics.median(theirs["http_per_s"]), "msg/s"))
    return rows


# --- The namespaces ------------------------------------------------------------------------------------


def enter_namespaces(argv: list[str]) -> None:
    """Run this script again inside new network and mount namespaces (see the module docstring)."""
    if os.geteuid() != 0:
        raise SystemExit("bench/mx.py needs root: it makes a network namespace and listens on ports 25 and 53")
    if shutil.which("unshare") is None:
        raise SystemExit("unshare (util-linux) is needed")
    command = ["unshare", "--net", "--mount", "--fork", sys.executable, str(Path(__file__).resolve()), "--inside",
               *argv]
    raise SystemExit(subprocess.run(command, check=False).returncode)


def prepare_namespace(directory: Path) -> None:
    """Loopback up; /etc/resolv.conf (only in this mount namespace) naming the bench DNS on 127.0.0.1:53."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    resolv = directory / "resolv.conf"
    resolv.write_text("# bench/mx.py: the dnslib server on 127.0.0.1:53, in this namespace only\n"
                      "nameserver 127.0.0.1\noptions timeout:2 attempts:2\n")
    subprocess.run(["mount", "--bind", str(resolv), "/etc/resolv.conf"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--domains", type=int, default=10)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--dkim", action="store_true", help="Posthouse signs (needs issue 14's M1 and M3 merged)")
    parser.add_argument("--profile", action="store_true", help="py-spy samples of posthouse serve (last round)")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.domains <= 250 or args.messages < args.domains:
        raise SystemExit("--domains must be 1..250 and --messages at least --domains")
    if not args.inside:
        enter_namespaces([a for a in sys.argv[1:] if a != "--inside"])
    with tempfile.TemporaryDirectory(prefix="posthouse-bench-mx-") as directory:
        prepare_namespace(Path(directory))
        profile = Path(directory) / "profile.txt" if args.profile else None
        rows = measure(args.rounds, args.messages, args.domains, args.size, args.dkim, profile)
        if profile is not None and profile.exists():
            print("\nposthouse serve, py-spy (the last Posthouse round):")
            bench_profile.summarize(profile, top=25)
    print_table(f"MX delivery, medians over {args.rounds} round(s), store SQLite (synchronous=FULL), peer Postfix "
                f"{postfix_version()}, {machine()}", rows)


if __name__ == "__main__":
    main()
