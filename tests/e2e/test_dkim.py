"""DKIM end to end: the real `posthouse serve` with keys in a key folder (`dkim_key_dir`), relaying to a
recording sink; what arrives is checked by dkimpy. Mail in through the API (postmarker, tracked and untracked)
and through SMTP submission (a messy message as a program might write it)."""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from postmarker.core import PostmarkClient  # type: ignore[import-untyped]

from dkim_support import assert_dkimpy_verifies_all, records_for, signature_count
from integration.smtp_peers import RecordingSink
from posthouse.server.domain.dkim_keys import DkimAlgorithm, DkimKey, generate_private_key
from support import ServerProcess, free_port, wait_for

RSA = DkimKey("shop.example.com", "ph2030", DkimAlgorithm.RSA_SHA256, generate_private_key(DkimAlgorithm.RSA_SHA256))
ED25519 = DkimKey("shop.example.com", "ph2030e", DkimAlgorithm.ED25519_SHA256,
                  generate_private_key(DkimAlgorithm.ED25519_SHA256))
RECORDS = records_for(RSA, ED25519)


@pytest.fixture
def signing_server(tmp_path: Path, database_url: str, sink: RecordingSink) -> Iterator[ServerProcess]:
    keys = tmp_path / "dkim" / "shop.example.com"
    keys.mkdir(parents=True)
    (keys / "ph2030.pem").write_bytes(RSA.private_key_pem)
    (keys / "ph2030e.private").write_bytes(ED25519.private_key_pem)  # opendkim-genkey's name for key files
    server = ServerProcess(tmp_path / "data", database_url, delivery="relay",
                           relay_url=f"smtp://127.0.0.1:{sink.port}",
                           env={"POSTHOUSE_DKIM_KEY_DIR": str(tmp_path / "dkim"), "POSTHOUSE_POLL_INTERVAL": "200ms"})
    with server:
        yield server


def arrived_for(sink: RecordingSink, recipient: str) -> bytes:
    found = wait_for(lambda: [m.data for m in sink.messages if recipient in m.rcpt_tos], timeout=30)
    assert len(found) == 1
    return found[0]  # type: ignore[no-any-return]


def test_mail_sent_through_the_api_arrives_signed(signing_server: ServerProcess, sink: RecordingSink) -> None:
    pm = PostmarkClient(server_token=signing_server.server_token, root_api_url=signing_server.base_url + "/")
    pm.emails.send(From="Shop <orders@shop.example.com>", To="ann@example.net", Subject="Your order",
                   HtmlBody='<p>Your order: <a href="https://shop.example.com/o/7">track it</a></p>',
                   TextBody="Your order: https://shop.example.com/o/7", TrackOpens=True, TrackLinks="HtmlAndText")
    pm.emails.send(From="orders@shop.example.com", To="bob@example.net, cy@example.net", Subject="Receipt",
                   TextBody="Thanks.\n")
    pm.emails.send(From="someone@elsewhere.example", To="di@example.net", Subject="No key", TextBody="Hi.\n")
    for recipient in ("ann@example.net", "bob@example.net", "cy@example.net"):
        data = arrived_for(sink, recipient)
        assert signature_count(data) == 2
        assert_dkimpy_verifies_all(data, RECORDS)
    assert b"/o/" in arrived_for(sink, "ann@example.net")  # tracked: the signature covers the rewritten links
    assert signature_count(arrived_for(sink, "di@example.net")) == 0  # no key for elsewhere.example


def test_a_messy_message_submitted_over_smtp_arrives_signed(signing_server: ServerProcess,
                                                           sink: RecordingSink) -> None:
    """Folded fields, runs of whitespace, trailing whitespace, an 8-bit body ending in empty lines."""
    message = ("From: \"The Shop\"\r\n   <orders@shop.example.com>\r\nTo:  ann@example.net ,\r\n\tbob@example.net\r\n"
               "Subject:   Votre   commande\t \r\nMIME-Version: 1.0\r\n"
               "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
               "Bonjour  Zoë,\t\r\n\r\n  Merci pour votre commande.   \r\n\r\n\r\n").encode()
    with smtplib.SMTP("127.0.0.1", signing_server.smtp_port, timeout=30) as smtp:
        smtp.starttls()
        smtp.login(signing_server.server_token or "", signing_server.server_token or "")
        smtp.sendmail("orders@shop.example.com", ["ann@example.net", "bob@example.net"], message,
                      mail_options=["BODY=8BITMIME"])
    for recipient in ("ann@example.net", "bob@example.net"):
        data = arrived_for(sink, recipient)
        assert "Bonjour  Zoë".encode() in data  # sent as submitted
        assert_dkimpy_verifies_all(data, RECORDS)


def test_a_key_folder_that_cannot_be_read_stops_the_server_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOUSE_")}
    env.update({"POSTHOUSE_HTTP": f"127.0.0.1:{free_port()}", "POSTHOUSE_SMTP": f"127.0.0.1:{free_port()}",
                "POSTHOUSE_TRACKING_HTTP": f"127.0.0.1:{free_port()}", "POSTHOUSE_DATA_DIR": str(tmp_path / "data"),
                "POSTHOUSE_DKIM_KEY_DIR": str(tmp_path / "no-such-folder")})
    result = subprocess.run([sys.executable, "-m", "posthouse.server.cli", "serve"], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert f"posthouse: error: dkim_key_dir '{tmp_path / 'no-such-folder'}' is not a folder" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
