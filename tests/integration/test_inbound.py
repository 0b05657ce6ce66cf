"""Inbound mail (issue 16): the inbound (MX) SMTP listener, durable acceptance, the post to the server's
InboundHookUrl, and the inbound Messages and rules API. Real peers on loopback: swaks as the sending MTA, a
webhook receiver as the application, dnslib serving the SPF records, the real runtime on SQLite and PostgreSQL.
The posted JSON is read by django-anymail's PostmarkInboundWebhookView and by postmarker's InboundMessage, as
applications read it (docs/postmark-api.md §10)."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mx_peers import AuthoritativeDns
from support import WEBHOOKS_TO_LOOPBACK, async_wait_for
from webhook_receiver import Received, WebhookReceiver

pytestmark = pytest.mark.skipif(subprocess.run(["which", "swaks"], capture_output=True).returncode != 0,
                                reason="swaks not installed")

INBOUND_DOMAIN = "inbound.posthouse.test"
TESTDATA = Path(__file__).resolve().parents[1] / "data" / "bounces"  # real bounce messages, kept in the repo


@pytest.fixture
def dns() -> Any:
    with AuthoritativeDns([
        "sender.example. 60 IN TXT \"v=spf1 ip4:127.0.0.1 -all\"",
        "forged.example. 60 IN TXT \"v=spf1 ip4:192.0.2.1 -all\"",
    ]) as server:
        yield server


@pytest.fixture
def api_settings(dns: AuthoritativeDns) -> dict[str, str]:
    return {**WEBHOOKS_TO_LOOPBACK, "smtp_hostname": "mx.posthouse.test", "inbound_address_domain": INBOUND_DOMAIN,
            "dns_nameservers": dns.nameserver, "inbound_dns_timeout": "3s", "inbound_max_message_size": "400000",
            "inbound_max_attachments_size": "200000", "inbound_retry_schedule": "1s,1s", "poll_interval": "200ms"}


class Inbound:
    def __init__(self, api: Any, port: int, receiver: WebhookReceiver) -> None:
        self.api = api
        self.port = port
        self.receiver = receiver
        self.sent = 0

    async def address(self, mailbox: str = "") -> str:
        server = (await self.api.client.get("/server", headers=self.api.server_headers)).json()
        local, _, domain = server["InboundAddress"].partition("@")
        assert domain == INBOUND_DOMAIN and server["InboundHash"] == local
        return f"{local}+{mailbox}@{domain}" if mailbox else server["InboundAddress"]

    async def swaks(self, *args: str, data: bytes | None = None, tmp: Path | None = None) -> tuple[int, str]:
        command = ["swaks", "--server", f"127.0.0.1:{self.port}", "--helo", "client.sender.example",
                   "--timeout", "20", "--hide-informational", *args]
        if data is not None:
            assert tmp is not None
            self.sent += 1
            path = tmp / f"message-{self.sent}.eml"
            await asyncio.to_thread(path.write_bytes, data)
            command += ["--data", str(path)]
        done = await asyncio.to_thread(subprocess.run, command, capture_output=True, timeout=60)
        return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")

    async def posts(self, count: int) -> list[Received]:
        await async_wait_for(lambda: _ready(len(self.receiver.requests) >= count), timeout=30)
        return list(self.receiver.requests)

    async def listed(self, **query: str) -> dict[str, Any]:
        answer = await self.api.client.get("/messages/inbound", params={"count": "50", "offset": "0", **query},
                                           headers=self.api.server_headers)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


async def _ready(value: bool) -> bool:
    return value


@pytest.fixture
async def inbound(api: Any) -> AsyncIterator[Inbound]:
    from posthouse.server.smtp.server import Listener

    with WebhookReceiver() as receiver:
        url = receiver.url.replace("http://", "http://hookuser:hookpass@")
        answer = await api.client.put("/server", json={"InboundHookUrl": url}, headers=api.server_headers)
        assert answer.status_code == 200, answer.text
        server = api.runtime.inbound_smtp_server()
        ((_, port),) = await server.start([Listener("127.0.0.1", 0)])
        await api.runtime.start_worker()
        try:
            yield Inbound(api, port, receiver)
        finally:
            await server.stop(grace=1.0)


def message(to: str, *, subject: str = "Hello", sender: str = "Ann Sender <ann@sender.example>",
            body: str = "Hi there.\r\n", headers: str = "") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Mon, 01 Jun 2026 10:00:00 +0000\r\n"
            f"Message-ID: <m1@sender.example>\r\n{headers}MIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()


def anymail_message(post: Received) -> Any:
    """The post as django-anymail's PostmarkInboundWebhookView reads it (basic auth as the hook URL gave)."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(EMAIL_BACKEND="posthouse.django.EmailBackend", DEFAULT_FROM_EMAIL="app@example.com")
        django.setup()
    from anymail.signals import inbound
    from anymail.webhooks.postmark import PostmarkInboundWebhookView
    from django.test import RequestFactory, override_settings

    events: list[Any] = []

    def handler(sender: Any, event: Any, esp_name: str, **kwargs: Any) -> None:
        events.append(event)

    inbound.connect(handler)
    try:
        with override_settings(ANYMAIL={"WEBHOOK_SECRET": "hookuser:hookpass"}):
            request = RequestFactory().post("/anymail/postmark/inbound/", data=post.body,
                                            content_type="application/json",
                                            HTTP_AUTHORIZATION=post.headers["authorization"])
            response = PostmarkInboundWebhookView.as_view()(request)
    finally:
        inbound.disconnect(handler)
    assert response.status_code == 200
    (event,) = events
    return event.message


def postmarker_message(post: Received) -> Any:
    """The post as postmarker's InboundMessage reads it, turned into MIME by it, parsed by anymail."""
    from anymail.inbound import AnymailInboundMessage
    from postmarker.models.messages import InboundMessage

    model = InboundMessage.from_json(post.body.decode())
    return AnymailInboundMessage.parse_raw_mime(model.as_mime().as_string())


def same_fields(a: Any, b: Any) -> None:
    """The AnymailInboundMessage fields an application reads agree between the two readings."""
    # postmarker writes `From` from the bare address (its as_mime uses the From field, not FromFull).
    assert (a.from_email.addr_spec if a.from_email else "") == (b.from_email.addr_spec if b.from_email else "")
    assert [(x.addr_spec, x.display_name) for x in a.to] == [(x.addr_spec, x.display_name) for x in b.to]
    assert [(x.addr_spec, x.display_name) for x in a.cc] == [(x.addr_spec, x.display_name) for x in b.cc]
    assert a.subject == b.subject
    assert (a.text or "").strip() == (b.text or "").strip()
    assert (a.html or "").strip() == (b.html or "").strip()
    assert [(x.get_filename(), x.get_content_type()) for x in a.attachments] == \
        [(x.get_filename(), x.get_content_type()) for x in b.attachments]
    # A forwarded message (message/rfc822, as Postmark posts it): postmarker's as_mime re-attaches it base64
    # encoded, which RFC 2046 §5.2.1 does not allow for message/rfc822, so its bytes read back as base64 text.
    # The bytes of such a part are checked in tests/unit/test_inbound_parsing.py.
    assert [x.get_content_bytes() for x in a.attachments if x.get_content_type() != "message/rfc822"] == \
        [x.get_content_bytes() for x in b.attachments if x.get_content_type() != "message/rfc822"]


# --- The listener ------------------------------------------------------------------------------------


async def test_mail_to_the_inbound_address_is_posted_signed_and_listed(inbound: Inbound, tmp_path: Path) -> None:
    to = await inbound.address("ticket-42")
    code, out = await inbound.swaks("--from", "ann@sender.example", "--to", to, tmp=tmp_path,
                                    data=message(to, subject="=?utf-8?q?Caf=C3=A9_order?=",
                                                 body="Thanks!\r\n\r\nOn Mon, Ann wrote:\r\n> earlier\r\n"))
    assert code == 0, out
    assert "250 2.0.0 Ok: queued as" in out
    (post,) = await inbound.posts(1)
    assert post.headers["webhook-signature"].startswith("v1,") and post.headers["webhook-id"]
    assert post.headers["authorization"] == "Basic " + base64.b64encode(b"hookuser:hookpass").decode()
    body = post.json
    assert "RecordType" not in body
    assert (body["From"], body["FromName"], body["Subject"]) == ("ann@sender.example", "Ann Sender", "Café order")
    assert (body["MailboxHash"], body["OriginalRecipient"], body["MessageStream"]) == ("ticket-42", to, "inbound")
    assert body["ToFull"] == [{"Email": to, "Name": "", "MailboxHash": "ticket-42"}]
    assert body["StrippedTextReply"] == "Thanks!"
    headers = {h["Name"]: h["Value"] for h in body["Headers"]}
    assert body["Headers"][0] == {"Name": "Return-Path", "Value": "<ann@sender.example>"}
    spf = "pass (mx.posthouse.test: domain of sender.example designates 127.0.0.1 as permitted sender)"
    assert headers["Received-SPF"].lower().startswith(spf)
    assert headers["Message-ID"] == "<m1@sender.example>"
    a, b = anymail_message(post), postmarker_message(post)
    same_fields(a, b)
    assert a.envelope_sender == "ann@sender.example" and a.envelope_recipient == to
    assert a.stripped_text == "Thanks!"

    async def processed() -> bool:
        items = (await inbound.listed())["InboundMessages"]
        return len(items) == 1 and items[0]["Status"] == "Processed"
    await async_wait_for(processed, timeout=10)
    listed = await inbound.listed(mailboxhash="ticket-42", fromemail="ANN@sender.example", status="processed")
    assert listed["TotalCount"] == 1
    item = listed["InboundMessages"][0]
    assert item["MessageID"] == body["MessageID"] and item["Subject"] == "Café order"
    assert (await inbound.listed(mailboxhash="other"))["TotalCount"] == 0
    details = (await inbound.api.client.get(f"/messages/inbound/{item['MessageID']}/details",
                                            headers=inbound.api.server_headers)).json()
    assert details["TextBody"].startswith("Thanks!") and details["BlockedReason"] == ""
    assert any(h["Name"] == "Received-SPF" for h in details["Headers"])


async def test_relaying_and_auth_are_refused_with_clear_words(inbound: Inbound, tmp_path: Path) -> None:
    code, out = await inbound.swaks("--from", "ann@sender.example", "--to", "someone@elsewhere.example",
                                    "--quit-after", "RCPT")
    assert code != 0
    assert "550 5.7.1 <someone@elsewhere.example>: Relay access denied" in out
    assert "elsewhere.example is not one of them" in out
    # A made-up hash at the inbound domain is refused too: an inbound address is as good as a password.
    code, out = await inbound.swaks("--from", "ann@sender.example", "--to", f"{'0' * 32}@{INBOUND_DOMAIN}",
                                    "--quit-after", "RCPT")
    assert code != 0 and "550 5.7.1" in out
    code, out = await inbound.swaks("--to", await inbound.address(), "--auth", "PLAIN", "--auth-user", "x",
                                    "--auth-password", "x", "--quit-after", "AUTH")
    assert code != 0
    assert "250-AUTH" not in out and "250 AUTH" not in out  # not offered, so swaks gives up before trying
    assert "Host did not advertise authentication" in out, out
    # A client that tries anyway hears why.
    reader, writer = await asyncio.open_connection("127.0.0.1", inbound.port)
    try:
        await reader.readline()
        writer.write(b"EHLO client.example\r\n")
        while not (line := await reader.readline()).startswith(b"250 "):
            assert b"AUTH" not in line
        writer.write(b"AUTH PLAIN AHgAeA==\r\n")
        answer = await reader.readline()
        assert answer.startswith(b"503 5.5.1 Error: authentication is not offered on this inbound port"), answer
    finally:
        writer.close()


async def test_inbound_domain_spf_fail_and_forwarded_rcpt(inbound: Inbound, tmp_path: Path) -> None:
    answer = await inbound.api.client.put("/server", json={"InboundDomain": "replies.example.com"},
                                          headers=inbound.api.server_headers)
    assert answer.status_code == 200 and answer.json()["InboundDomain"] == "replies.example.com"
    code, out = await inbound.swaks("--from", "bob@forged.example", "--to", "support+7@Replies.Example.com",
                                    tmp=tmp_path, data=message("list@lists.example", sender="bob@forged.example"))
    assert code == 0, out
    (post,) = await inbound.posts(1)
    body = post.json
    headers = {h["Name"]: h["Value"] for h in body["Headers"]}
    assert headers["Received-SPF"].lower().startswith("fail")
    assert body["MailboxHash"] == "7" and body["OriginalRecipient"] == "support+7@Replies.Example.com"
    # Not named in To or Cc: it came blind, and Postmark shows it in Bcc.
    assert body["BccFull"] == [{"Email": "support+7@Replies.Example.com", "Name": "", "MailboxHash": "7"}]
    same_fields(anymail_message(post), postmarker_message(post))


async def test_too_large_messages_and_attachments_are_refused_with_552(inbound: Inbound, tmp_path: Path) -> None:
    to = await inbound.address()
    code, out = await inbound.swaks("--from", "ann@sender.example", "--to", to, tmp=tmp_path,
                                    data=message(to, body="x" * 76 + "\r\n") * 1 + b"y" * 500_000 + b"\r\n")
    assert code != 0 and "552 5.3.4" in out, out
    blob = base64.encodebytes(b"\x00" * 250_000).decode().replace("\n", "\r\n")
    big = (f"From: ann@sender.example\r\nTo: {to}\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
           "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee\r\n--b\r\n"
           "Content-Type: application/octet-stream; name=big.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           f"{blob}--b--\r\n").encode()
    code, out = await inbound.swaks("--from", "ann@sender.example", "--to", to, tmp=tmp_path, data=big)
    assert code != 0 and "552 5.3.4 Attachments of 250000 bytes exceed the 200000 bytes" in out, out
    assert (await inbound.listed())["TotalCount"] == 0


# --- Posting, rules, bypass and retry ----------------------------------------------------------------


async def test_a_403_blocks_retries_follow_the_schedule_and_retry_posts_again(inbound: Inbound,
                                                                               tmp_path: Path) -> None:
    to = await inbound.address()
    inbound.receiver.script[:] = [403]
    assert (await inbound.swaks("--from", "ann@sender.example", "--to", to, tmp=tmp_path,
                                data=message(to, subject="first")))[0] == 0
    await inbound.posts(1)

    async def status_of(subject: str, status: str) -> bool:
        items = (await inbound.listed(subject=subject))["InboundMessages"]
        return bool(items) and items[0]["Status"] == status
    await async_wait_for(lambda: status_of("first", "Blocked"), timeout=10)
    item = (await inbound.listed(subject="first"))["InboundMessages"][0]
    details = (await inbound.api.client.get(f"/messages/inbound/{item['MessageID']}/details",
                                            headers=inbound.api.server_headers)).json()
    assert "403" in details["BlockedReason"]
    # A 500 twice then the schedule (two retries of 1 s) runs out: Failed; a retry by hand posts it again.
    inbound.receiver.script[:] = [500, 500, 500]
    assert (await inbound.swaks("--from", "ann@sender.example", "--to", to, tmp=tmp_path,
                                data=message(to, subject="second")))[0] == 0
    await async_wait_for(lambda: status_of("second", "Failed"), timeout=20)
    assert len(inbound.receiver.requests) == 4
    second = (await inbound.listed(subject="second"))["InboundMessages"][0]["MessageID"]
    answer = await inbound.api.client.put(f"/messages/inbound/{second}/retry", headers=inbound.api.server_headers)
    assert answer.status_code == 200 and answer.json()["ErrorCode"] == 0
    await async_wait_for(lambda: status_of("second", "Processed"), timeout=10)
    assert inbound.receiver.requests[-1].json["Subject"] == "second"
    again = await inbound.api.client.put(f"/messages/inbound/{second}/retry", headers=inbound.api.server_headers)
    assert again.status_code == 422 and again.json()["ErrorCode"] == 701


async def test_inbound_rules_block_senders_and_bypass_posts_them(inbound: Inbound, tmp_path: Path) -> None:
    headers = inbound.api.server_headers
    client = inbound.api.client
    created = await client.post("/triggers/inboundrules", json={"Rule": "spammer.example"}, headers=headers)
    assert created.status_code == 200, created.text
    rule = created.json()
    assert rule["Rule"] == "spammer.example" and rule["ID"] > 0
    duplicate = await client.post("/triggers/inboundrules", json={"Rule": "SPAMMER.example"}, headers=headers)
    assert duplicate.status_code == 422 and duplicate.json()["ErrorCode"] == 810
    bad = await client.post("/triggers/inboundrules", json={"Rule": "not a rule"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["ErrorCode"] == 813
    person = await client.post("/triggers/inboundrules", json={"Rule": "eve@elsewhere.example"}, headers=headers)
    listed = (await client.get("/triggers/inboundrules", params={"count": 10, "offset": 0}, headers=headers)).json()
    assert listed["TotalCount"] == 2 and [r["Rule"] for r in listed["InboundRules"]] == ["spammer.example",
                                                                                        "eve@elsewhere.example"]
    to = await inbound.address()
    for sender in ("x@spammer.example", "eve@elsewhere.example", "ann@sender.example"):
        code, out = await inbound.swaks("--from", sender, "--to", to, tmp=tmp_path,
                                        data=message(to, subject=f"from {sender}", sender=sender))
        assert code == 0, out
    (post,) = await inbound.posts(1)
    assert post.json["From"] == "ann@sender.example"
    blocked = (await inbound.listed(status="blocked"))["InboundMessages"]
    assert sorted(m["From"] for m in blocked) == ["eve@elsewhere.example", "x@spammer.example"]
    spam = next(m for m in blocked if m["From"] == "x@spammer.example")
    details = (await client.get(f"/messages/inbound/{spam['MessageID']}/details", headers=headers)).json()
    assert details["BlockedReason"] == "Blocked by the inbound rule 'spammer.example'."
    answer = await client.put(f"/messages/inbound/{spam['MessageID']}/bypass", headers=headers)
    assert answer.status_code == 200 and answer.json()["ErrorCode"] == 0
    posts = await inbound.posts(2)
    assert posts[1].json["From"] == "x@spammer.example"
    removed = await client.delete(f"/triggers/inboundrules/{person.json()['ID']}", headers=headers)
    assert removed.json() == {"ErrorCode": 0, "Message": "Rule eve@elsewhere.example removed."}
    gone = await client.delete(f"/triggers/inboundrules/{person.json()['ID']}", headers=headers)
    assert gone.status_code == 422 and gone.json()["ErrorCode"] == 812


async def test_accepted_mail_is_stored_before_250_and_posted_when_a_worker_runs(api: Any, tmp_path: Path) -> None:
    """No worker runs while the mail is accepted: the 250 means it is in the database, Queued."""
    from posthouse.server.smtp.server import Listener

    with WebhookReceiver() as receiver:
        await api.client.put("/server", json={"InboundHookUrl": receiver.url}, headers=api.server_headers)
        server = api.runtime.inbound_smtp_server()
        ((_, port),) = await server.start([Listener("127.0.0.1", 0)])
        try:
            peer = Inbound(api, port, receiver)
            to = await peer.address()
            code, out = await peer.swaks("--from", "ann@sender.example", "--to", to, tmp=tmp_path, data=message(to))
            assert code == 0, out
            items = (await peer.listed())["InboundMessages"]
            assert [m["Status"] for m in items] == ["Queued"]
            assert receiver.requests == []
            await api.runtime.start_worker()
            (post,) = await peer.posts(1)
            assert post.json["MessageID"] == items[0]["MessageID"]
        finally:
            await server.stop(grace=1.0)


# --- Hard messages and real ones ----------------------------------------------------------------------


def _hard_cases(to: str) -> dict[str, bytes]:
    tnef = b"\x78\x9f\x3e\x22" + bytes(range(256)) * 4  # a winmail.dat starts with the TNEF signature
    return {
        "latin1": (f"From: =?iso-8859-1?q?Ren=E9e?= <renee@sender.example>\r\nTo: {to}\r\nSubject: "
                   "=?iso-8859-1?q?R=E9sum=E9?=\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1"
                   "\r\nContent-Transfer-Encoding: 8bit\r\n\r\nD\xe9j\xe0 vu\r\n").encode("latin-1"),
        "sjis-html": (f"From: taro@sender.example\r\nTo: {to}\r\nSubject: =?shift_jis?b?k/qWe4zq?=\r\n"
                      "MIME-Version: 1.0\r\nContent-Type: text/html; charset=shift_jis\r\n"
                      "Content-Transfer-Encoding: base64\r\n\r\n").encode()
        + base64.encodebytes("<p>日本語のメール</p>".encode("shift_jis")).replace(b"\n", b"\r\n"),
        "lying-charset": (f"From: a@sender.example\r\nTo: {to}\r\nSubject: lies\r\nMIME-Version: 1.0\r\n"
                          "Content-Type: text/plain; charset=x-no-such-charset\r\n\r\n").encode()
        + "naïve café\r\n".encode(),
        "broken-mime": (f"From: a@sender.example\r\nTo: {to}\r\nSubject: no boundary\r\nMIME-Version: 1.0\r\n"
                        "Content-Type: multipart/mixed\r\n\r\n--zzz\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
                        "--zzz--\r\n").encode(),
        "winmail": (f"From: outlook@sender.example\r\nTo: {to}\r\nSubject: tnef\r\nMIME-Version: 1.0\r\n"
                    "Content-Type: multipart/mixed; boundary=\"xx\"\r\n\r\n--xx\r\nContent-Type: text/plain\r\n\r\n"
                    "see attached\r\n--xx\r\nContent-Type: application/ms-tnef; name=\"winmail.dat\"\r\n"
                    "Content-Disposition: attachment; filename=\"winmail.dat\"\r\n"
                    "Content-Transfer-Encoding: base64\r\n\r\n").encode()
        + base64.encodebytes(tnef).replace(b"\n", b"\r\n") + b"--xx--\r\n",
    }


async def test_hard_messages_are_posted_and_read_alike(inbound: Inbound, tmp_path: Path) -> None:
    to = await inbound.address()
    cases = _hard_cases(to)
    for name, data in cases.items():
        code, out = await inbound.swaks("--from", "a@sender.example", "--to", to, tmp=tmp_path,
                                        data=data)
        assert code == 0, (name, out)
    posts = await inbound.posts(len(cases))
    by_subject = {p.json["Subject"]: p for p in posts}
    assert by_subject["Résumé"].json["TextBody"].strip() == "Déjà vu"
    assert by_subject["Résumé"].json["FromName"] == "Renée"
    assert by_subject["日本語"].json["HtmlBody"] == "<p>日本語のメール</p>"
    assert by_subject["lies"].json["TextBody"].strip() == "naïve café"
    assert "body" in by_subject["no boundary"].json["TextBody"]
    (tnef,) = by_subject["tnef"].json["Attachments"]
    assert (tnef["Name"], tnef["ContentType"], tnef["ContentLength"]) == ("winmail.dat", "application/ms-tnef", 1028)
    assert base64.b64decode(tnef["Content"]).startswith(b"\x78\x9f\x3e\x22")
    for post in posts:
        same_fields(anymail_message(post), postmarker_message(post))


REAL = ("dsn_01.txt", "postfix_01.txt", "qmail_08.txt", "simple_25.txt", "simple_39.txt", "microsoft_01.txt",
        "yahoo_01.txt", "groupwise_01.txt", "sina_01.txt", "newmailru_01.txt")


async def test_real_messages_are_posted_and_read_alike(inbound: Inbound, tmp_path: Path) -> None:
    to = await inbound.address()
    for name in REAL:
        data = (TESTDATA / name).read_bytes()
        if data.startswith(b"From "):
            data = data.split(b"\n", 1)[1]  # the mbox separator line is no part of the message
        code, out = await inbound.swaks("--from", "<>", "--to", to, tmp=tmp_path, data=data)
        assert code == 0, (name, out)
    posts = await inbound.posts(len(REAL))
    assert len(posts) == len(REAL)
    for post in posts:
        body = post.json
        assert body["Headers"][0] == {"Name": "Return-Path", "Value": "<>"}
        json.dumps(body)
        same_fields(anymail_message(post), postmarker_message(post))
    listed = await inbound.listed()
    assert listed["TotalCount"] == len(REAL)


async def test_the_sdk_reads_inbound_messages_and_manages_rules(inbound: Inbound, tmp_path: Path) -> None:
    import httpx

    import posthouse

    to = await inbound.address("sdk")
    assert (await inbound.swaks("--from", "ann@sender.example", "--to", to, tmp=tmp_path,
                                data=message(to, subject="via sdk")))[0] == 0
    await inbound.posts(1)
    client = posthouse.ServerClient(inbound.api.server_token, base_url="http://posthouse.test",
                                    transport=httpx.ASGITransport(app=inbound.api.runtime.app))
    async with client:
        found = await client.inbound.list(10, 0, mailbox_hash="sdk")
        assert found.total_count == 1 and found.inbound_messages[0].subject == "via sdk"
        details = await client.inbound.details(found.inbound_messages[0].message_id)
        assert details.text_body.strip() == "Hi there." and details.mailbox_hash == "sdk"
        rule = await client.inbound.create_rule("blocked.example")
        assert [r.rule for r in (await client.inbound.rules()).inbound_rules] == ["blocked.example"]
        assert (await client.inbound.delete_rule(rule.id)).message == "Rule blocked.example removed."
        with pytest.raises(posthouse.APIError) as failed:
            await client.inbound.retry(found.inbound_messages[0].message_id)
        assert failed.value.error_code == 701


async def test_mail_relayed_by_a_real_postfix_arrives(inbound: Inbound) -> None:
    """`sendmail` into a private Postfix instance on loopback that relays everything to our inbound port, as a
    sender's MTA would: Postfix speaks its own SMTP (EHLO, PIPELINING, 8BITMIME) and gets its 250."""
    import shutil
    import sys

    if shutil.which("postfix") is None or shutil.which("sendmail") is None:
        pytest.skip("Postfix is not installed (bench/install-peers.sh installs it)")
    sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
    from postfix_peer import PostfixInstance

    to = await inbound.address("via-postfix")
    data = _hard_cases(to)["winmail"].replace(b"Subject: tnef", b"Subject: relayed by postfix")
    with PostfixInstance(relay_port=inbound.port) as postfix:
        done = await asyncio.to_thread(
            subprocess.run, ["sendmail", "-C", str(postfix.config_directory), "-f", "ann@sender.example", "-i", to],
            input=data, capture_output=True, timeout=30)
        assert done.returncode == 0, done.stderr
        (post,) = await inbound.posts(1)
    body = post.json
    assert body["Subject"] == "relayed by postfix" and body["MailboxHash"] == "via-postfix"
    assert body["Attachments"][0]["Name"] == "winmail.dat"
    headers = [h["Name"] for h in body["Headers"]]
    assert headers.count("Received") >= 2  # ours, and the one Postfix added
    same_fields(anymail_message(post), postmarker_message(post))
