"""Sending to suppressed addresses: refused over the API (406, Postmark's words), not delivered over SMTP."""

from __future__ import annotations

import asyncio
import json
import re
import smtplib

import pytest

from posthouse import wire
from posthouse.server.config import load_settings
from posthouse.server.runtime import Runtime
from posthouse.server.smtp.server import Listener
from posthouse.server.store.base import Store, Suppression
from posthouse.server.store.webhooks import WebhookRecord

MESSAGE = {"From": "app@example.com", "Subject": "Hi", "TextBody": "Hello"}
# postmark-python's pattern for the addresses (docs/postmark-api.md §2.6).
SDK_PATTERN = re.compile(r"Found inactive addresses:\s*(.+?)\.(?:\s|$)")


async def suppress(store: Store, email: str, stream: str = "outbound") -> None:
    default = await store.get_server_by_name("default")
    assert default is not None
    await store.add_suppressions([Suppression(default.id, stream, email, "ManualSuppression", "Customer", 1)])


async def test_a_message_to_only_suppressed_recipients_is_refused_with_406(api) -> None:  # type: ignore[no-untyped-def]
    await suppress(api.runtime.store, "gone@example.com")
    answer = await api.client.post("/email", headers=api.server_headers,
                                   json={**MESSAGE, "To": "Gone@Example.com"})
    assert answer.status_code == 422
    body = answer.json()
    assert body["ErrorCode"] == 406
    assert body["Message"] == (
        "You tried to send to recipient(s) that have been marked as inactive. Found inactive addresses: "
        "gone@example.com. Inactive recipients are ones that have generated a hard bounce, a spam complaint, "
        "or a manual suppression.")
    assert SDK_PATTERN.search(body["Message"]).group(1) == "gone@example.com"  # type: ignore[union-attr]
    assert await api.count("messages") == 0


async def test_a_partly_suppressed_message_goes_to_the_others_only(api) -> None:  # type: ignore[no-untyped-def]
    await suppress(api.runtime.store, "gone@example.com")
    answer = await api.client.post("/email", headers=api.server_headers,
                                   json={**MESSAGE, "To": "here@example.com", "Cc": "gone@example.com"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ErrorCode"] == 0
    assert body["Message"] == ("Message OK, but will not deliver to these inactive addresses: gone@example.com. "
                               "Inactive recipients are ones that have generated a hard bounce, a spam complaint, "
                               "or a manual suppression.")
    rows = await api.runtime.store.query("SELECT recipient, state FROM deliveries ORDER BY recipient")
    assert [tuple(r) for r in rows] == [("gone@example.com", "suppressed"), ("here@example.com", "queued")]


async def test_suppression_is_per_stream(api) -> None:  # type: ignore[no-untyped-def]
    await suppress(api.runtime.store, "gone@example.com", stream="broadcast")
    answer = await api.client.post("/email", headers=api.server_headers, json={**MESSAGE, "To": "gone@example.com"})
    assert answer.status_code == 200 and answer.json()["Message"] == "OK"


async def test_a_batch_item_to_a_suppressed_recipient_fails_alone(api) -> None:  # type: ignore[no-untyped-def]
    await suppress(api.runtime.store, "gone@example.com")
    answer = await api.client.post("/email/batch", headers=api.server_headers, json=[
        {**MESSAGE, "To": "gone@example.com"}, {**MESSAGE, "To": "here@example.com"}])
    assert answer.status_code == 200
    refused, sent = answer.json()
    assert refused["ErrorCode"] == 406 and refused["MessageID"] == "00000000-0000-0000-0000-000000000000"
    assert refused["Message"].startswith("You tried to send to a recipient that has been marked as inactive. "
                                         "Found inactive addresses: gone@example.com. ")
    assert sent["ErrorCode"] == 0
    assert await api.count("messages") == 1


@pytest.mark.parametrize("hooks", [False, True], ids=["smtp-api-error-hooks-off", "smtp-api-error-hooks-on"])
async def test_over_smtp_a_suppressed_recipient_gets_an_smtp_api_error_bounce(store: Store, tmp_path, hooks: bool  # type: ignore[no-untyped-def]
                                                                               ) -> None:
    """…and a Bounce webhook post of it only when the server enables SMTP API error hooks (Postmark's
    `EnableSmtpApiErrorHooks`)."""
    settings = load_settings({"data_dir": str(tmp_path), "delivery": "sandbox", "smtp_hostname": "localhost",
                              "smtp_auth_requires_tls": False}, environ={})
    runtime = Runtime(settings, store)
    token, _ = await runtime.accounts.bootstrap()  # type: ignore[misc]
    await suppress(store, "gone@example.com")
    default = await store.get_server_by_name("default")
    assert default is not None
    await runtime.accounts.edit_server(default.id, wire.ServerRequest(enable_smtp_api_error_hooks=hooks))
    await store.create_webhook(WebhookRecord(
        id=0, server_id=default.id, stream="outbound", url="http://127.0.0.1:9/hook", http_auth_username=None,
        http_auth_password=None, http_headers=[], triggers={"on_bounce": True}, secret="whsec_x", created_at=1))
    server = runtime.smtp_server()
    ((_, port),) = await server.start([Listener("127.0.0.1", 0)])

    def submit() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.login(token, token)
            client.mail("app@example.com")
            client.rcpt("gone@example.com")
            client.rcpt("here@example.com")
            return client.data(b"From: app@example.com\r\nTo: gone@example.com, here@example.com\r\n"
                               b"Subject: Hi\r\n\r\nHello\r\n")

    try:
        code, _ = await asyncio.to_thread(submit)
    finally:
        await server.stop(grace=2)
        await runtime.stop()
    assert code == 250
    states = {r[0]: r[1] for r in await store.query("SELECT recipient, state FROM deliveries")}
    assert states == {"gone@example.com": "suppressed", "here@example.com": "queued"}
    bounces = await store.query("SELECT email, type, type_code FROM bounces")
    assert [tuple(b) for b in bounces] == [("gone@example.com", "SMTPApiError", 100007)]
    events = await store.query("SELECT recipient, type FROM events WHERE type = 'Bounced'")
    assert [tuple(e) for e in events] == [("gone@example.com", "Bounced")]
    posts = await store.query("SELECT record_type, payload, bounce_id FROM webhook_posts")
    if not hooks:
        assert posts == []
        return
    ((record_type, payload, bounce_id),) = posts
    (bounce_row,) = await store.query("SELECT id FROM bounces")
    body = json.loads(payload)
    assert (record_type, body["Type"], body["TypeCode"], body["Email"]) == (
        "Bounce", "SMTPApiError", 100007, "gone@example.com")
    assert bounce_id == bounce_row[0]
