"""Inbound mail scored by a real SpamAssassin (docs/postmark-api.md §10): spamd on loopback, started here, scores
what the inbound listener receives; the post carries X-Spam-Status and X-Spam-Score, and a server's
InboundSpamThreshold refuses (or, beside a server that takes it, blocks) mail at or above it. GTUBE is
SpamAssassin's standard test string: it scores 1000 whatever the rules' version. smtplib is the sending MTA,
the real runtime and both databases; .ci/run installs spamassassin as it installs swaks."""

from __future__ import annotations

import asyncio
import re
import shutil
import smtplib
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import WEBHOOKS_TO_LOOPBACK, async_wait_for, free_port, wait_for
from webhook_receiver import WebhookReceiver

SPAMD = shutil.which("spamd") or ("/usr/sbin/spamd" if Path("/usr/sbin/spamd").exists() else None)
pytestmark = pytest.mark.skipif(SPAMD is None, reason="spamd not installed (.ci/run installs spamassassin)")
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def spamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """spamd on a loopback port: local tests only (-L, no network lookups), no per-user configuration."""
    assert SPAMD is not None
    folder = tmp_path_factory.mktemp("spamd")
    port = free_port()
    log = (folder / "spamd.log").open("wb")
    process = subprocess.Popen(
        [SPAMD, "-L", "-x", f"--listen=127.0.0.1:{port}", "--max-children=1", "--syslog=stderr",
         f"--pidfile={folder / 'spamd.pid'}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: process.poll() is not None or _listening(port), timeout=90, interval=0.2)
        assert process.poll() is None, (folder / "spamd.log").read_text(errors="replace")
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


@pytest.fixture
def api_settings(spamd: int) -> dict[str, str]:
    return {**WEBHOOKS_TO_LOOPBACK, "smtp_hostname": "mx.posthouse.test", "inbound_spf": "false",
            "inbound_spamd": f"127.0.0.1:{spamd}", "inbound_spamd_timeout": "60s", "poll_interval": "200ms"}


class Listener:
    def __init__(self, api: Any, port: int, receiver: WebhookReceiver) -> None:
        self.api = api
        self.port = port
        self.receiver = receiver

    async def address(self, token: str) -> str:
        headers = {"X-Postmark-Server-Token": token, "Accept": "application/json"}
        return str((await self.api.client.get("/server", headers=headers)).json()["InboundAddress"])

    async def send(self, recipients: list[str], body: str, subject: str = "Hello") -> tuple[int, str]:
        data = (f"From: Ann <ann@sender.example>\r\nTo: {', '.join(recipients)}\r\nSubject: {subject}\r\n"
                "Message-ID: <m@sender.example>\r\nDate: Mon, 01 Jun 2026 10:00:00 +0000\r\n"
                f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()

        def send() -> tuple[int, str]:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=120) as client:
                try:
                    client.sendmail("ann@sender.example", recipients, data)
                except smtplib.SMTPDataError as exc:
                    error = exc.smtp_error
                    return exc.smtp_code, error.decode() if isinstance(error, bytes) else error
                return 250, ""

        return await asyncio.to_thread(send)


@pytest.fixture
async def listener(api: Any) -> Any:
    from posthouse.server.smtp.server import Listener as Bind

    with WebhookReceiver() as receiver:
        answer = await api.client.put("/server", json={"InboundHookUrl": receiver.url}, headers=api.server_headers)
        assert answer.status_code == 200, answer.text
        server = api.runtime.inbound_smtp_server()
        ((_, port),) = await server.start([Bind("127.0.0.1", 0)])
        await api.runtime.start_worker()
        try:
            yield Listener(api, port, receiver)
        finally:
            await server.stop(grace=1.0)


def spam_headers(post: Any) -> dict[str, str]:
    return {h["Name"]: h["Value"] for h in post.json["Headers"] if h["Name"].startswith("X-Spam-")}


async def posts(receiver: WebhookReceiver, count: int) -> list[Any]:
    async def arrived() -> bool:
        return len(receiver.requests) >= count

    await async_wait_for(arrived, timeout=60)
    return list(receiver.requests)


async def test_gtube_is_scored_and_posted_with_the_verdict(listener: Listener) -> None:
    to = await listener.address(listener.api.server_token)
    assert await listener.send([to], f"Buy now.\r\n{GTUBE}", subject="gtube") == (250, "")
    assert await listener.send([to], "Lunch on Friday? Let me know what suits you.", subject="ham") == (250, "")
    by_subject = {p.json["Subject"]: p for p in await posts(listener.receiver, 2)}
    spam, ham = spam_headers(by_subject["gtube"]), spam_headers(by_subject["ham"])
    assert spam["X-Spam-Status"] == "Yes" and float(spam["X-Spam-Score"]) >= 1000
    assert "GTUBE" in spam["X-Spam-Tests"].split(",")
    assert ham["X-Spam-Status"] == "No" and float(ham["X-Spam-Score"]) < 5 and "GTUBE" not in ham["X-Spam-Tests"]


async def test_inbound_spam_threshold_refuses_or_blocks_and_lets_ham_through(listener: Listener) -> None:
    api = listener.api
    answer = await api.client.put("/server", json={"InboundSpamThreshold": 5}, headers=api.server_headers)
    assert answer.status_code == 200 and answer.json()["InboundSpamThreshold"] == 5
    mine = await listener.address(api.server_token)
    # Nobody takes it: refused at the end of DATA, so the sender knows (a 5xx, not a silent drop).
    code, text = await listener.send([mine], GTUBE, subject="refused")
    assert code == 550 and text.startswith("5.7.1") and "threshold 5" in text
    assert await api.count("inbound_messages") == 0
    # Beside a server without a threshold: taken, posted there, Blocked (and not posted) here.
    other = await api.client.post("/servers", json={"Name": "lenient", "InboundHookUrl": listener.receiver.url},
                                  headers=api.account_headers)
    assert other.status_code == 200, other.text
    lenient = await listener.address(other.json()["ApiTokens"][0])
    assert await listener.send([mine, lenient], GTUBE, subject="split") == (250, "")
    assert await listener.send([mine], "See you at ten.", subject="ham") == (250, "")
    received = await posts(listener.receiver, 2)
    assert sorted((p.json["Subject"], p.json["OriginalRecipient"]) for p in received) == \
        [("ham", mine), ("split", lenient)]
    blocked = await api.client.get("/messages/inbound", params={"count": "10", "offset": "0", "status": "blocked"},
                                   headers=api.server_headers)
    (item,) = blocked.json()["InboundMessages"]
    details = await api.client.get(f"/messages/inbound/{item['MessageID']}/details", headers=api.server_headers)
    reason = re.fullmatch(r"Spam score ([\d.]+) is at or above the server's InboundSpamThreshold 5\.",
                          details.json()["BlockedReason"])
    assert reason is not None and float(reason.group(1)) >= 1000, details.json()["BlockedReason"]
