"""Crash safety under load: kill -9 while HTTP and SMTP clients send, a flapping and refusing relay, a full disk.

What every test here holds the server to (docs/architecture.md §2, §3): a message acknowledged (HTTP 200 with a
MessageID, SMTP 250 "queued as") is in the store and reaches the relay at least once; a refusal
(5xx, 4xx) acknowledges nothing; a failed attempt is a `Transient` event, never a lost message.
"""

from __future__ import annotations

import errno
import os
import random
import re
import smtplib
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.crashes import KillLog
from integration.smtp_peers import ReceivedMessage, RecordingSink, SinkController
from support import ServerProcess, free_port, wait_for

FROM_ADDR = "app@example.com"
# Short retries and leases so the queue moves within a test; loopback clients submit without AUTH.
FAST_QUEUE = {
    "POSTHOUSE_RETRY_SCHEDULE": "200ms",
    "POSTHOUSE_POLL_INTERVAL": "200ms",
    "POSTHOUSE_LEASE_TIME": "2s",
    "POSTHOUSE_SMTP_TRUSTED_NETWORKS": "127.0.0.1/32=default",
}
QUEUED_AS = re.compile(r"^2\.0\.0 Ok: queued as (\S+)$")


def message_id_of(data: bytes) -> str | None:
    """The X-PM-Message-Id the server put in the header of a relayed message."""
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"x-pm-message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    return None


def arrived_ids(messages: Iterable[ReceivedMessage]) -> list[str]:
    return [mid for m in list(messages) if (mid := message_id_of(m.data)) is not None]


def arrivals(messages: Iterable[ReceivedMessage]) -> Counter[tuple[str, str]]:
    """How often each (MessageID, recipient) arrived. Each recipient is its own queue row with its own
    retry jitter, so after a failure a message's recipients may travel in separate transactions."""
    return Counter((message_id_of(m.data) or "?", rcpt) for m in list(messages) for rcpt in m.rcpt_tos)


def restarted(previous: ServerProcess) -> ServerProcess:
    """A new process on the same data dir, database, ports and token: clients just reconnect."""
    server = ServerProcess(previous.data_dir, previous.database_url, delivery=previous.delivery,
                           relay_url=previous.relay_url, env=previous.extra_env)
    server.port, server.smtp_port = previous.port, previous.smtp_port
    server.server_token = previous.server_token
    return server.start()


def details_status(client: httpx.Client, message_id: str) -> int:
    return client.get(f"/messages/outbound/{message_id}/details").status_code


def queued_count(server: ServerProcess) -> int:
    with server.client() as client:
        response = client.get("/messages/outbound", params={"count": 1, "offset": 0, "status": "queued"})
        assert response.status_code == 200, response.text
        return int(response.json()["TotalCount"])


def smtp_body(to: str, subject: str) -> str:
    return f"From: {FROM_ADDR}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nsent over SMTP\r\n"


# --- load generators ---------------------------------------------------------------------------


class HttpLoad(threading.Thread):
    """POST /email and small /email/batch calls until stopped; keeps the MessageIDs acknowledged."""

    def __init__(self, server: ServerProcess, index: int, stopping: threading.Event) -> None:
        super().__init__(daemon=True, name=f"http-load-{index}")
        self.base_url, self.token = server.base_url, server.server_token or ""
        self.index, self.stopping = index, stopping
        self.acknowledged: list[str] = []
        self.refused: Counter[int] = Counter()  # HTTP status → count, for the report
        self.errors = 0

    def run(self) -> None:
        headers = {"X-Postmark-Server-Token": self.token, "Accept": "application/json"}
        deadline = time.monotonic() + 60  # bounded even if never stopped
        n = 0
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=5) as client:
            while not self.stopping.is_set() and time.monotonic() < deadline:
                n += 1
                body = {"From": FROM_ADDR, "To": f"h{self.index}-{n}@example.com", "Subject": f"h{n}",
                        "TextBody": "sent over HTTP"}
                try:
                    if n % 4:
                        response = client.post("/email", json=body)
                        if response.status_code == 200:
                            self.acknowledged.append(response.json()["MessageID"])
                    else:
                        batch = [body, {**body, "To": f"h{self.index}-{n}b@example.com"}]
                        response = client.post("/email/batch", json=batch)
                        if response.status_code == 200:
                            self.acknowledged.extend(r["MessageID"] for r in response.json() if r["ErrorCode"] == 0)
                    if response.status_code != 200:
                        self.refused[response.status_code] += 1
                except httpx.HTTPError:
                    self.errors += 1
                    time.sleep(0.05)


class SmtpLoad(threading.Thread):
    """SMTP sessions of several messages each until stopped; reconnects after any error.

    A message counts as acknowledged only with `250 2.0.0 Ok: queued as <MessageID>`."""

    def __init__(self, server: ServerProcess, index: int, stopping: threading.Event) -> None:
        super().__init__(daemon=True, name=f"smtp-load-{index}")
        self.port, self.index, self.stopping = server.smtp_port, index, stopping
        self.acknowledged: list[str] = []
        self.unparsed: list[str] = []  # 250 replies without a MessageID: always a failure
        self.refused: Counter[int] = Counter()  # final reply code → count, for the report
        self.errors = 0

    def run(self) -> None:
        deadline = time.monotonic() + 60
        n = 0
        while not self.stopping.is_set() and time.monotonic() < deadline:
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as smtp:
                    smtp.ehlo()
                    for _ in range(8):
                        if self.stopping.is_set():
                            break
                        n += 1
                        to = f"s{self.index}-{n}@example.com"
                        if smtp.mail(FROM_ADDR)[0] != 250 or smtp.rcpt(to)[0] != 250:
                            smtp.rset()
                            continue
                        code, reply = smtp.data(smtp_body(to, f"s{n}"))
                        if code != 250:
                            self.refused[code] += 1
                        elif match := QUEUED_AS.match(reply.decode()):
                            self.acknowledged.append(match.group(1))
                        else:
                            self.unparsed.append(reply.decode())
            except (smtplib.SMTPException, OSError):
                self.errors += 1
                time.sleep(0.05)


# --- 1. kill -9 under mixed load ---------------------------------------------------------------

# The default lease (5 minutes) on purpose: rows a killed process held must come back because its successor
# (or another node) knows it is gone, not because a short lease ran out.
CRASH_QUEUE = {k: v for k, v in FAST_QUEUE.items() if k != "POSTHOUSE_LEASE_TIME"}
WORKER_CONCURRENCY = 64  # the default of worker_concurrency: deliveries in flight per worker process


def acknowledged_by(loads: Iterable[HttpLoad | SmtpLoad]) -> list[str]:
    return [mid for load in loads for mid in list(load.acknowledged)]


def test_kill_9_repeatedly_under_http_and_smtp_load(tmp_path, database_url) -> None:  # type: ignore[no-untyped-def]
    """HTTP and SMTP clients send without pause while the server is killed 5 times at random moments: after
    each restart, every message acknowledged before the kill arrives within 30 s; every acknowledged
    message is stored and arrives; duplicates come only from a kill, at most what was in flight."""
    rng = random.Random(7)
    kills = 5
    stopping = threading.Event()
    with RecordingSink() as sink:
        log = KillLog(sink.messages)
        server = ServerProcess(tmp_path / "data", database_url, delivery="relay",
                               relay_url=f"smtp://127.0.0.1:{sink.port}", env=CRASH_QUEUE).start()
        try:
            loads: list[HttpLoad | SmtpLoad] = [HttpLoad(server, i, stopping) for i in range(2)]
            loads += [SmtpLoad(server, i, stopping) for i in range(3)]
            try:
                for load in loads:
                    load.start()
                for _ in range(kills):
                    time.sleep(rng.uniform(0.4, 1.2))  # a random moment, with mail in every stage
                    server.kill()
                    kill = log.killed(acknowledged_by(loads))
                    log.restarting(kill)
                    server = restarted(server)
                    log.up(kill)
                    log.wait_recovered(kill)  # while the clients go on sending to the new process
                time.sleep(0.5)  # the last incarnation takes load too
            finally:
                stopping.set()
                for load in loads:
                    load.join(10)
            assert not any(load.is_alive() for load in loads)
            http_acked = [mid for load in loads if isinstance(load, HttpLoad) for mid in load.acknowledged]
            smtp_acked = [mid for load in loads if isinstance(load, SmtpLoad) for mid in load.acknowledged]
            acknowledged = http_acked + smtp_acked
            assert [u for load in loads if isinstance(load, SmtpLoad) for u in load.unparsed] == []
            assert len(http_acked) > 20 and len(smtp_acked) > 20, "both load generators should have had mail acked"
            assert len(set(acknowledged)) == len(acknowledged), "a MessageID was acknowledged twice"

            try:
                wait_for(lambda: set(acknowledged) <= set(arrived_ids(sink.messages)), timeout=30, interval=0.1)
            finally:
                missing = set(acknowledged) - set(arrived_ids(sink.messages))
                print(f"\nacknowledged {len(acknowledged)} ({len(http_acked)} HTTP, {len(smtp_acked)} SMTP), "
                      f"missing {len(missing)}")
            # Nothing stays stuck in the queue either: rows held by killed processes came back and finished.
            wait_for(lambda: queued_count(server) == 0, timeout=20, interval=0.2)

            counts = arrivals(sink.messages)
            log.count_duplicates()
            duplicates = sum(counts.values()) - len(counts)
            unacknowledged = {mid for mid, _ in counts} - set(acknowledged)
            refusals = sum((load.refused for load in loads), Counter[int]())
            print(f"arrived {len(counts)} distinct, {duplicates} again, {len(unacknowledged)} arrived "
                  f"without an acknowledgement (answer lost in a kill); refusals {dict(refusals)}, "
                  f"client errors {sum(load.errors for load in loads)}\n{log.report()}")
            # A message is sent again only if a kill came between the relay's 250 and the recording of it:
            # never without a kill, once per kill at most, and no more than a worker has in flight per kill.
            assert log.duplicates_without_kill == 0
            assert max(counts.values()) <= 1 + kills
            assert all(kill.duplicates <= WORKER_CONCURRENCY for kill in log.kills), log.report()
            assert duplicates == sum(kill.duplicates for kill in log.kills)

            with server.client() as client:
                not_stored = [mid for mid in acknowledged if details_status(client, mid) != 200]
                assert not_stored == [], f"{len(not_stored)} acknowledged messages are not in the store"
                # What arrived without an acknowledgement was stored too: the relay never sees mail from nowhere.
                assert [mid for mid in unacknowledged if details_status(client, mid) != 200] == []
        finally:
            server.stop()  # the last incarnation; the killed ones are gone already


def test_kill_9_of_one_worker_node_the_other_delivers_what_it_held(tmp_path, database_url) -> None:  # type: ignore[no-untyped-def]
    """Two nodes share PostgreSQL; clients send to node A while both deliver. A's relay never answers, so
    every row A claims is still in flight when A is killed -9 (and stays down). Node B cannot see A's lock
    file (as on another machine), so only A's silence tells it A is gone: every message A acknowledged
    arrives through B within 30 s of the crash (worker_dead_after 15 s, heartbeats every 3 s), with the
    default 5-minute lease."""
    if not database_url.startswith("postgresql"):
        pytest.skip("several nodes share PostgreSQL; one SQLite file is one machine (its lock files tell at once)")
    stopping = threading.Event()
    with RecordingSink() as sink, socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(64)  # connections are taken by the kernel and never answered
        log = KillLog(sink.messages)
        node_a = ServerProcess(tmp_path / "a", database_url, delivery="relay",
                               relay_url=f"smtp://127.0.0.1:{black_hole.getsockname()[1]}", env=CRASH_QUEUE)
        node_b = ServerProcess(tmp_path / "b", database_url, delivery="relay", relay_url=f"smtp://127.0.0.1:{sink.port}",
                               env={**CRASH_QUEUE, "POSTHOUSE_ROLES": "api,worker"})
        try:
            node_a.start()
            node_b.server_token = node_a.server_token
            node_b.start()
            hidden = list((tmp_path / "a" / "workers").glob("*.lock"))
            assert len(hidden) == 1, hidden
            hidden[0].unlink()  # A keeps its lock, on a file no other process can open any more
            loads: list[HttpLoad | SmtpLoad] = [HttpLoad(node_a, 0, stopping), SmtpLoad(node_a, 0, stopping)]
            try:
                for load in loads:
                    load.start()
                time.sleep(2.0)
                node_a.kill()
                kill = log.killed(acknowledged_by(loads))
            finally:
                stopping.set()
                for load in loads:
                    load.join(10)
            assert len(kill.acknowledged) > 20, "the clients should have had mail acknowledged by node A"
            held = kill.acknowledged - log.arrived()
            assert held, "node A should have held undelivered mail when it was killed"
            log.wait_recovered(kill)
            log.count_duplicates()
            print(f"\n{len(held)} messages were held by node A when it was killed\n{log.report()}")
            assert log.duplicates_without_kill == 0
            assert kill.duplicates == 0  # nothing A held ever reached a relay
            assert kill.recovered_after is not None and kill.recovered_after > 5, \
                "A's leases must wait for its silence (worker_dead_after), not be released at once"
            assert set(acknowledged_by(loads)) <= log.arrived()
            wait_for(lambda: queued_count(node_b) == 0, timeout=20, interval=0.2)
        finally:
            node_a.stop()
            node_b.stop()


# --- 2. a relay that flaps and refuses ---------------------------------------------------------

TRY_LATER = "451 4.3.0 try later"
CLOSING = "421 4.3.2 closing"


class RefusingRelay:
    """An aiosmtpd handler that answers the end of DATA from a seeded script, shared by every
    incarnation of the relay: a 4xx reply, or None to accept and record the message.

    RecordingSink's `script` cannot interleave acceptances (a scripted "250" is answered but the
    message is not recorded), hence this handler. Refusals are recorded per (MessageID, recipient).
    """

    def __init__(self, script: list[str | None]) -> None:
        self.script = script
        self.messages: list[ReceivedMessage] = []
        self.refusals: Counter[tuple[str, str, str]] = Counter()  # (MessageID, recipient, reply) → count

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # No await in here: the reply is written in the same loop step as the decision, so stopping
        # the relay cannot separate a recorded refusal (or acceptance) from its reply.
        reply = self.script.pop(0) if self.script else None
        message_id = message_id_of(envelope.original_content) or "?"
        if reply is not None:
            for rcpt in envelope.rcpt_tos:
                self.refusals[(message_id, rcpt, reply)] += 1
            return reply
        self.messages.append(ReceivedMessage(envelope.mail_from, list(envelope.rcpt_tos),
                                             envelope.original_content, list(envelope.mail_options)))
        return "250 2.0.0 Ok"


def relay_up(handler: RefusingRelay, port: int) -> SinkController:
    controller = SinkController(handler, hostname="127.0.0.1", port=port)
    controller.start()
    return controller


def test_relay_flapping_and_refusing_still_delivers_everything(tmp_path, database_url) -> None:  # type: ignore[no-untyped-def]
    """The relay is down, comes and goes three times, and while up refuses some DATA with 451 or 421.
    Every message arrives, each refusal and each refused connection is a Transient event, and every
    recipient ends with exactly one Delivered event."""
    rng = random.Random(11)
    script: list[str | None] = [rng.choice([TRY_LATER, CLOSING, None, None, None]) for _ in range(150)]
    assert TRY_LATER in script[:20] and CLOSING in script[:20]  # the seed does refuse early: both kinds are used
    handler = RefusingRelay(script)
    port = free_port()  # nothing listens yet: connection refused
    server = ServerProcess(tmp_path / "data", database_url, delivery="relay",
                           relay_url=f"smtp://127.0.0.1:{port}", env=FAST_QUEUE).start()
    sent: dict[str, list[str]] = {}  # MessageID → recipients

    def send(count: int) -> None:
        with server.client() as client:
            for _ in range(count):
                n = len(sent)
                to = [f"f{n}@example.com"] + ([f"f{n}-cc@example.com"] if n % 4 == 0 else [])
                response = client.post("/email", json={"From": FROM_ADDR, "To": ", ".join(to),
                                                       "Subject": f"flap {n}", "TextBody": "x"})
                assert response.status_code == 200, response.text
                sent[response.json()["MessageID"]] = to

    def history(client: httpx.Client, message_id: str) -> list[dict[str, Any]]:
        response = client.get(f"/messages/outbound/{message_id}/details")
        assert response.status_code == 200, response.text
        return list(response.json()["MessageEvents"])

    relay: SinkController | None = None
    try:
        send(15)
        first = next(iter(sent))
        with server.client() as client:
            refused_connection = wait_for(
                lambda: [e for e in history(client, first) if e["Type"] == "Transient"], timeout=10)
        assert refused_connection[0]["Details"]["DeliveryMessage"].startswith("451 4.4.0"), refused_connection
        for _ in range(3):
            relay = relay_up(handler, port)
            send(15)
            time.sleep(rng.uniform(0.3, 0.8))  # a random moment to go down, deliveries in flight
            relay.stop()
            relay = None
            time.sleep(rng.uniform(0.2, 0.5))
        assert len(sent) == 60
        relay = relay_up(handler, port)  # back for good
        expected = {(mid, rcpt) for mid, rcpts in sent.items() for rcpt in rcpts}

        wait_for(lambda: expected <= set(arrivals(handler.messages)), timeout=30, interval=0.1)
        wait_for(lambda: queued_count(server) == 0, timeout=15, interval=0.1)

        with server.client() as client:
            histories = {mid: history(client, mid) for mid in sent}
    finally:
        if relay is not None:
            relay.stop()
        server.stop()

    consumed = sum(handler.refusals.values())
    transient = scripted = 0
    for mid, rcpts in sent.items():
        for rcpt in rcpts:
            types = [e["Type"] for e in histories[mid] if e["Recipient"] == rcpt]
            assert types.count("Delivered") == 1 and types[-1] == "Delivered", (mid, rcpt, types)
            assert set(types) <= {"Transient", "Delivered"}, (mid, rcpt, types)
            replies = [e["Details"]["DeliveryMessage"] for e in histories[mid]
                       if e["Recipient"] == rcpt and e["Type"] == "Transient"]
            transient += len(replies)
            for reply in (TRY_LATER, CLOSING):
                # Each scripted refusal of this message, for this recipient, is one Transient event with its words.
                assert sum(r.startswith(reply) for r in replies) == handler.refusals[(mid, rcpt, reply)], \
                    (mid, rcpt, reply, replies)
                scripted += handler.refusals[(mid, rcpt, reply)]
    counts = arrivals(handler.messages)
    print(f"\nrefusals consumed {consumed} ({len(script)} script entries left), Transient events {transient} "
          f"({transient - scripted} from a relay that was down or went away), "
          f"{sum(counts.values()) - len(counts)} recipients got a message twice; relay down: "
          f"{refused_connection[0]['Details']['DeliveryMessage']!r}")
    assert consumed > 0 and transient >= consumed == scripted
    assert transient > scripted, "connections refused while the relay was down are Transient events too"
    # No process died here, so nothing may arrive twice: the relay's 250 was always heard and recorded.
    assert set(counts) == expected and set(counts.values()) == {1}, counts.most_common(3)


def test_a_retried_message_keeps_its_recipients_in_one_transaction(tmp_path, database_url, sink) -> None:  # type: ignore[no-untyped-def]
    """README "Delivery" (docs/architecture.md §3): without VERP the rows of one message are sent in one SMTP
    transaction, so after a 451 the retry still carries every recipient of the message in one
    MAIL/RCPT.../DATA. (With VERP, the default, each recipient has its own return path and transaction.)"""
    sink.script.extend([TRY_LATER] * 20)  # the first attempt of each message is refused
    env = {**FAST_QUEUE, "POSTHOUSE_RETRY_SCHEDULE": "1s", "POSTHOUSE_RETURN_PATH": "off"}
    rcpts = {}
    with ServerProcess(tmp_path / "data", database_url, delivery="relay", relay_url=f"smtp://127.0.0.1:{sink.port}",
                       env=env) as server, server.client() as client:
        for n in range(20):
            to = [f"r{n}-{i}@example.com" for i in range(3)]
            response = client.post("/email", json={"From": FROM_ADDR, "To": ", ".join(to), "Subject": f"r{n}",
                                                   "TextBody": "x"})
            assert response.status_code == 200, response.text
            rcpts[response.json()["MessageID"]] = sorted(to)
        expected = {(mid, rcpt) for mid, to in rcpts.items() for rcpt in to}
        wait_for(lambda: expected <= set(arrivals(sink.messages)), timeout=20, interval=0.1)
    assert sink.script == []
    transactions = [(message_id_of(m.data), sorted(m.rcpt_tos)) for m in sink.messages]
    split = {mid for mid, to in transactions if to != rcpts[mid]}
    example = [to for mid, to in transactions if mid == min(split, default=None)]
    # Each row draws its own retry jitter (workers/delivery.py `_outcome`), so after the 451 the rows of
    # one message come due at different moments and are claimed, and sent, apart.
    assert not split, f"{len(split)} of {len(rcpts)} messages were retried in several transactions, e.g. {example}"


# --- 3. a full disk ----------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path, database_url: str) -> Iterator[Path]:
    """A 16 MiB tmpfs (no blocks reserved for root, unlike ext4) for a SQLite data dir, unmounted after."""
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL keeps its data on its own server's disk, not in Posthouse's data dir")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        reason = result.stderr.strip()
        if os.geteuid() != 0 or re.search(r"permission denied|not permitted|only root", reason, re.I):
            pytest.skip(f"cannot mount a small tmpfs to fill (needs root / CAP_SYS_ADMIN): {reason}")
        pytest.fail(f"mount failed: {reason}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def fill(path: Path) -> int:
    """Write zeros to `path` until the file system says ENOSPC; leave the file; bytes written."""
    chunk = bytes(1 << 16)
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            try:
                written += os.write(fd, chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return written
                chunk = chunk[: len(chunk) // 16 or 1]
    finally:
        os.close(fd)


def test_disk_full_refuses_then_recovers_without_losing_acknowledged_mail(small_disk: Path) -> None:
    """With the data dir's disk full: HTTP 5xx with {ErrorCode, Message}, SMTP 4xx at the end of DATA once
    the store has no space, nothing refused stored, the process alive. Space back: sends succeed, and all
    acknowledged mail arrives."""
    port = free_port()  # the relay is down: acknowledged mail stays queued
    data_dir = small_disk / "data"
    # A slow retry keeps the queue quiet while the disk is full; the lease brings back rows whose
    # results could not be recorded.
    env = {**FAST_QUEUE, "POSTHOUSE_RETRY_SCHEDULE": "1s"}
    server = ServerProcess(data_dir, f"sqlite:///{data_dir / 'posthouse.db'}", delivery="relay",
                           relay_url=f"smtp://127.0.0.1:{port}", env=env)
    body = {"From": FROM_ADDR, "To": "before@example.com", "Subject": "disk", "TextBody": "x"}
    acknowledged: list[str] = []
    filler = small_disk / "filler"
    sink: RecordingSink | None = None
    try:
        server.start()
        with server.client() as client:
            for i in range(20):
                response = client.post("/email", json={**body, "To": f"before{i}@example.com"})
                assert response.status_code == 200, response.text
                acknowledged.append(response.json()["MessageID"])
        stored_before = len(acknowledged)

        filled = fill(filler)
        assert os.statvfs(small_disk).f_bavail == 0
        # SQLite may still commit into WAL space it already owns (checkpoints let it reuse the log),
        # and what it commits there is durable: that may be acknowledged. So send until the store
        # refuses, over HTTP and SMTP alternately, and hold every acknowledgement to delivery below.
        http_refusals: list[tuple[int, Any]] = []
        smtp_refusals: list[tuple[int, str]] = []
        with server.client() as client, smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
            smtp.ehlo()
            for i in range(2000):
                if http_refusals and smtp_refusals:
                    break
                if i % 2 == 0 or smtp_refusals:
                    response = client.post("/email", json={**body, "To": f"during{i}@example.com"})
                    if response.status_code == 200:
                        acknowledged.append(response.json()["MessageID"])
                    else:
                        http_refusals.append((response.status_code, response.json()))
                else:
                    assert smtp.mail(FROM_ADDR)[0] == 250 and smtp.rcpt(f"during{i}@example.com")[0] == 250
                    code, reply = smtp.data(smtp_body(f"during{i}@example.com", "disk"))
                    if code == 250:
                        match = QUEUED_AS.match(reply.decode())
                        assert match, reply
                        acknowledged.append(match.group(1))
                    else:
                        smtp_refusals.append((code, reply.decode()))
        print(f"\nfiller {filled} bytes; acknowledged into owned space while full: "
              f"{len(acknowledged) - stored_before}; HTTP refusals {http_refusals[:2]}; SMTP {smtp_refusals[:2]}")
        assert http_refusals and smtp_refusals, "the store never refused while the disk was full"
        for status, payload in http_refusals:
            assert status >= 500, (status, payload)
            assert isinstance(payload, dict) and set(payload) == {"ErrorCode", "Message"}, payload
        for code, reply in smtp_refusals:
            assert 400 <= code < 500, (code, reply)
        assert server.process is not None and server.process.poll() is None, "the server died on a full disk"
        with server.client() as client:
            assert client.get("/healthz").status_code == 200
            listed = client.get("/messages/outbound", params={"count": 1, "offset": 0}).json()
        # Nothing refused was stored, and everything acknowledged was.
        assert listed["TotalCount"] == len(acknowledged), "a refused message was stored, or an acknowledged one lost"

        filler.unlink()
        with server.client() as client:
            response = client.post("/email", json={**body, "To": "after@example.com"})
            assert response.status_code == 200, response.text
            acknowledged.append(response.json()["MessageID"])
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
            smtp.ehlo()
            assert smtp.mail(FROM_ADDR)[0] == 250 and smtp.rcpt("after-smtp@example.com")[0] == 250
            code, reply = smtp.data(smtp_body("after-smtp@example.com", "disk"))
        match = QUEUED_AS.match(reply.decode())
        assert code == 250 and match, (code, reply)
        acknowledged.append(match.group(1))

        sink = RecordingSink()
        sink._controller.port = port  # the address the server keeps retrying
        sink.start()
        wait_for(lambda: set(acknowledged) <= set(arrived_ids(sink.messages)), timeout=60, interval=0.1)
        assert len(set(arrived_ids(sink.messages))) == len(acknowledged)  # nothing refused was delivered
    finally:
        if sink is not None:
            sink.stop()
        server.stop()  # the process is gone before the fixture unmounts its disk
