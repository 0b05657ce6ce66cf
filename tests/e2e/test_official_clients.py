"""The official Postmark clients, pointed at the real server process, send mail that arrives at a real sink."""

from __future__ import annotations

import os
import re
from email import policy
from email.parser import BytesParser

import postmark
import postmark.sync
import pytest
from postmarker.core import PostmarkClient

from support import ServerProcess, wait_for

SENDER = "app@example.com"


def parse(data: bytes):  # type: ignore[no-untyped-def]
    return BytesParser(policy=policy.default).parsebytes(data)


def details(server: ServerProcess, message_id: str) -> dict:  # type: ignore[type-arg]
    with server.client() as client:
        response = client.get(f"/messages/outbound/{message_id}/details")
        assert response.status_code == 200, response.text
        return response.json()


def delivered(server: ServerProcess, message_id: str) -> dict | None:  # type: ignore[type-arg]
    found = details(server, message_id)
    return found if any(e["Type"] == "Delivered" for e in found["MessageEvents"]) else None


async def test_the_readme_snippet_verbatim(relay_server, sink, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("POSTMARK_SERVER_TOKEN", relay_server.server_token)
    BASE = relay_server.base_url
    async with postmark.ServerClient(os.environ["POSTMARK_SERVER_TOKEN"], base_url=BASE) as client:
        response = await client.outbound.send(postmark.Email(sender=SENDER, to="receiver@example.com",
            subject="SMTP Test", text_body="Hello world! This is a test of the Python API.",
            metadata={"user_id": "12345"}))
        print(f"Sent (model): {response.message_id}")
    assert f"Sent (model): {response.message_id}" in capsys.readouterr().out
    wait_for(lambda: sink.messages, timeout=10)
    received = sink.messages[0]
    # The envelope sender is the VERP return path naming this message (bounces come back to it).
    assert re.fullmatch(r"pm_bounces\+[0-9a-f]{1,16}[a-z2-7]{13}@localhost", received.mail_from), received.mail_from
    assert received.rcpt_tos == ["receiver@example.com"]
    message = parse(received.data)
    assert message["Subject"] == "SMTP Test"
    assert message["From"] == SENDER
    assert message["X-PM-Message-Id"] == response.message_id
    assert message.get_content().replace("\r\n", "\n").rstrip("\n") == "Hello world! This is a test of the Python API."
    found = wait_for(lambda: delivered(relay_server, response.message_id))
    assert found["Metadata"] == {"user_id": "12345"}
    assert found["Status"] == "Sent"


async def test_postmark_python_async_single_and_batch(relay_server, sink) -> None:  # type: ignore[no-untyped-def]
    async with postmark.ServerClient(relay_server.server_token, base_url=relay_server.base_url, retries=0) as client:
        single = await client.outbound.send({
            "sender": "Shop <shop@example.com>", "to": "one@example.com", "cc": "two@example.com",
            "bcc": "hidden@example.com", "subject": "Grüße", "html_body": "<p>Hallo</p>", "text_body": "Hallo",
            "tag": "welcome", "reply_to": "help@example.com",
            "headers": [postmark.Header(name="X-Custom", value="yes")]})
        assert single.error_code == 0
        batch = await client.outbound.send_batch([
            {"sender": SENDER, "to": f"batch{i}@example.com", "subject": f"B{i}", "text_body": "b"}
            for i in range(3)])
        assert [r.error_code for r in batch] == [0, 0, 0]
        page = await client.outbound.list(count=10, offset=0)
        assert page.total == 4
    # With VERP each recipient gets its own transaction (its own return path): 3 + 3 arrivals.
    wait_for(lambda: len(sink.messages) == 6, timeout=10)
    by_subject = {parse(m.data)["Subject"]: m for m in sink.messages}
    first = by_subject["Grüße"]
    assert sorted(r for m in sink.messages if parse(m.data)["Subject"] == "Grüße" for r in m.rcpt_tos) == [
        "hidden@example.com", "one@example.com", "two@example.com"]
    message = parse(first.data)
    assert message["Cc"] == "two@example.com"
    assert message["Bcc"] is None
    assert message["Reply-To"] == "help@example.com"
    assert message["X-Custom"] == "yes"
    assert message["From"].addresses[0].display_name == "Shop"
    assert message.get_content_type() == "multipart/alternative"
    assert sorted(m.rcpt_tos[0] for s, m in by_subject.items() if s.startswith("B")) == [
        "batch0@example.com", "batch1@example.com", "batch2@example.com"]
    found = wait_for(lambda: delivered(relay_server, single.message_id))
    assert {e["Recipient"] for e in found["MessageEvents"] if e["Type"] == "Delivered"} == {
        "one@example.com", "two@example.com", "hidden@example.com"}


def test_postmark_python_sync_single_and_batch(relay_server, sink) -> None:  # type: ignore[no-untyped-def]
    with postmark.sync.ServerClient(relay_server.server_token, base_url=relay_server.base_url, retries=0) as client:
        single = client.outbound.send({"sender": SENDER, "to": "sync@example.com", "subject": "Sync",
                                       "text_body": "sync body"})
        batch = client.outbound.send_batch([
            {"sender": SENDER, "to": "sb1@example.com", "subject": "SB1", "text_body": "x"},
            {"sender": SENDER, "to": "not-an-address", "subject": "SB2", "text_body": "x"},
        ])
        assert [r.error_code for r in batch] == [0, 300]
        message = client.outbound.get(single.message_id)
        assert message.message_id == single.message_id
    wait_for(lambda: len(sink.messages) == 2, timeout=10)
    assert sorted(m.rcpt_tos[0] for m in sink.messages) == ["sb1@example.com", "sync@example.com"]
    wait_for(lambda: delivered(relay_server, single.message_id))


def test_postmarker_single_and_batch(relay_server, sink) -> None:  # type: ignore[no-untyped-def]
    pm = PostmarkClient(server_token=relay_server.server_token, root_api_url=relay_server.base_url + "/")
    response = pm.emails.send(From=SENDER, To="pmr@example.com", Subject="From postmarker",
                              HtmlBody="<b>bold</b>", Metadata={"order": "42"})
    assert response["ErrorCode"] == 0
    results = pm.emails.send_batch(
        {"From": SENDER, "To": "pb1@example.com", "Subject": "PB1", "TextBody": "one"},
        {"From": SENDER, "To": "pb2@example.com", "Subject": "PB2", "TextBody": "two"})
    assert [r["ErrorCode"] for r in results] == [0, 0]
    wait_for(lambda: len(sink.messages) == 3, timeout=10)
    html = next(parse(m.data) for m in sink.messages if m.rcpt_tos == ["pmr@example.com"])
    assert html.get_content_type() == "text/html"
    assert "<b>bold</b>" in html.get_content()
    messages = pm.messages.outbound.all(count=10, offset=0)
    assert len(messages) == 3
    wait_for(lambda: delivered(relay_server, response["MessageID"]))
    with pytest.raises(Exception, match=r"\[300\]"):
        pm.emails.send(From="nobody", To="x@example.com", Subject="s", TextBody="t")
