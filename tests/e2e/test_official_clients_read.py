"""The official Postmark clients read messages, server settings, streams and servers from the real server process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from typing import Any

import postmark
import pytest
from postmark.models.outbound.enums import MessageEventType, MessageStatus, TrackLinksOption
from postmark.models.servers import DeliveryType, ServerColor, TrackLinks
from postmark.models.streams import MessageStreamType, UnsubscribeHandlingType
from postmarker.core import PostmarkClient

from support import ServerProcess, wait_for

SENDER = "app@example.com"


def details(server: ServerProcess, message_id: str) -> dict[str, Any]:
    with server.client() as client:
        response = client.get(f"/messages/outbound/{message_id}/details")
        assert response.status_code == 200, response.text
        return dict(response.json())


def delivered(server: ServerProcess, message_id: str, recipients: int) -> dict[str, Any] | None:
    found = details(server, message_id)
    done = [e for e in found["MessageEvents"] if e["Type"] == "Delivered"]
    return found if len(done) == recipients and found["Status"] == "Sent" else None


def near(moment: datetime, expected: datetime, slack: timedelta = timedelta(minutes=1)) -> bool:
    return moment.tzinfo is not None and abs(moment - expected) < slack


async def test_postmark_python_lists_gets_and_dumps_outbound(relay_server, sink) -> None:  # type: ignore[no-untyped-def]
    async with postmark.ServerClient(relay_server.server_token, base_url=relay_server.base_url, retries=0) as client:
        first = await client.outbound.send({
            "sender": "Shop <shop@example.com>", "to": "Ann <one@example.com>", "cc": "two@example.com",
            "subject": "First order", "text_body": "Thanks", "html_body": "<p>Thanks</p>", "tag": "welcome",
            "metadata": {"order": "42"}, "track_links": "HtmlOnly"})
        second = await client.outbound.send({"sender": SENDER, "to": "three@example.com", "subject": "Second",
                                              "text_body": "Again", "tag": "other"})
        broadcast = await client.outbound.send({"sender": SENDER, "to": "four@example.com", "subject": "News",
                                                "text_body": "News", "message_stream": "broadcast"})
        wait_for(lambda: len(sink.messages) == 4, timeout=10)  # one transaction per recipient (VERP)
        wait_for(lambda: delivered(relay_server, first.message_id, 2))
        wait_for(lambda: delivered(relay_server, second.message_id, 1))

        page = await client.outbound.list(count=10, offset=0)
        assert page.total == 2
        assert [m.message_id for m in page.items] == [second.message_id, first.message_id]
        message = page.items[1]
        assert message.message_stream == "outbound"
        assert [(a.email, a.name) for a in message.to] == [("one@example.com", "Ann")]
        assert [a.email for a in message.cc] == ["two@example.com"]
        assert message.recipients == ["one@example.com", "two@example.com"]
        assert message.subject == "First order"
        assert message.tag == "welcome"
        assert message.status is MessageStatus.SENT
        assert message.metadata == {"order": "42"}
        assert message.track_links is TrackLinksOption.HTML_ONLY
        assert message.track_opens is False
        assert message.sandboxed is False
        assert near(message.received_at, datetime.now(UTC))

        async def ids(**filters: Any) -> tuple[int, list[str]]:
            result = await client.outbound.list(count=10, offset=0, **filters)
            return result.total, [m.message_id for m in result.items]

        assert await ids(tag="welcome") == (1, [first.message_id])
        assert await ids(recipient="two@example.com") == (1, [first.message_id])
        assert await ids(from_email="shop@example.com") == (1, [first.message_id])
        assert await ids(from_email=SENDER) == (1, [second.message_id])
        assert await ids(subject="order") == (1, [first.message_id])
        assert await ids(status="sent") == (2, [second.message_id, first.message_id])
        assert await ids(status="queued") == (0, [])
        assert await ids(metadata={"order": "42"}) == (1, [first.message_id])
        assert await ids(message_stream="broadcast") == (1, [broadcast.message_id])
        now = datetime.now(UTC)
        assert await ids(from_date=now - timedelta(hours=1), to_date=now + timedelta(hours=1)) == (
            2, [second.message_id, first.message_id])
        assert await ids(from_date=now + timedelta(hours=1)) == (0, [])
        assert (await client.outbound.list(count=1, offset=1)).items[0].message_id == first.message_id

        found = await client.outbound.get(first.message_id)
        assert found.message_id == first.message_id
        assert found.status is MessageStatus.SENT
        assert found.text_body == "Thanks"
        assert found.html_body == "<p>Thanks</p>"
        assert f"X-PM-Message-Id: {first.message_id}" in (found.body or "")
        assert sorted(e.recipient for e in found.message_events) == ["one@example.com", "two@example.com"]
        for event in found.message_events:
            assert event.type is MessageEventType.DELIVERED
            assert near(event.received_at, datetime.now(UTC))
            assert event.details is not None
            assert (event.details.delivery_message or "").startswith("250")
            assert event.details.destination_server == f"127.0.0.1:{sink.port}"
            assert event.details.destination_ip == "127.0.0.1"

        dump = await client.outbound.get_dump(first.message_id)
        parsed = BytesParser(policy=policy.default).parsebytes(dump.body.encode())
        assert parsed["Subject"] == "First order"
        assert parsed["X-PM-Message-Id"] == first.message_id
        assert dump.body == found.body

        with pytest.raises(postmark.PostmarkAPIException) as missing:
            await client.outbound.get("00000000-0000-0000-0000-000000000000")
        assert missing.value.error_code == 701


async def test_postmark_python_server_and_streams(relay_server) -> None:  # type: ignore[no-untyped-def]
    async with postmark.ServerClient(relay_server.server_token, base_url=relay_server.base_url, retries=0) as client:
        server = await client.server.get()
        assert server.name == "default"
        assert server.color is ServerColor.PURPLE
        assert server.delivery_type is DeliveryType.LIVE
        assert server.track_links is TrackLinks.NONE
        assert server.api_tokens[0].endswith(relay_server.server_token[-4:])
        edited = await client.server.edit(name="Renamed", color=ServerColor.RED, track_opens=True,
                                          track_links=TrackLinks.HTML_AND_TEXT)
        assert (edited.id, edited.name, edited.color) == (server.id, "Renamed", ServerColor.RED)
        assert edited.track_opens is True
        assert edited.track_links is TrackLinks.HTML_AND_TEXT
        assert (await client.server.get()).name == "Renamed"

        listed = await client.stream.list()
        assert listed.total == 3
        assert {s.id: s.message_stream_type for s in listed.items} == {
            "outbound": MessageStreamType.TRANSACTIONAL, "inbound": MessageStreamType.INBOUND,
            "broadcast": MessageStreamType.BROADCASTS}
        only = await client.stream.list(message_stream_type=MessageStreamType.TRANSACTIONAL)
        assert [s.id for s in only.items] == ["outbound"]

        created = await client.stream.create("news", "News", MessageStreamType.BROADCASTS, description="Monthly")
        assert (created.id, created.server_id, created.name, created.description) == (
            "news", server.id, "News", "Monthly")
        assert created.message_stream_type is MessageStreamType.BROADCASTS
        assert created.subscription_management_configuration.unsubscribe_handling_type is (
            UnsubscribeHandlingType.POSTMARK)
        assert near(created.created_at, datetime.now(UTC))
        assert (await client.stream.get("news")).name == "News"
        changed = await client.stream.edit("news", name="Weekly news", description="Weekly")
        assert (changed.name, changed.description) == ("Weekly news", "Weekly")
        assert changed.updated_at is not None

        sent = await client.outbound.send({"sender": SENDER, "to": "reader@example.com", "subject": "N",
                                           "text_body": "n", "message_stream": "news"})
        assert sent.error_code == 0

        archived = await client.stream.archive("news")
        assert (archived.id, archived.server_id) == ("news", server.id)
        assert archived.expected_purge_date is not None
        assert near(archived.expected_purge_date, datetime.now(UTC) + timedelta(days=45))
        assert (await client.stream.list()).total == 3
        with_archived = await client.stream.list(include_archived=True)
        assert with_archived.total == 4
        assert next(s for s in with_archived.items if s.id == "news").archived_at is not None
        with pytest.raises(postmark.PostmarkAPIException) as refused:
            await client.outbound.send({"sender": SENDER, "to": "reader@example.com", "subject": "N",
                                        "text_body": "n", "message_stream": "news"})
        assert refused.value.error_code == 1235

        restored = await client.stream.unarchive("news")
        assert restored.id == "news"
        assert restored.archived_at is None
        assert (await client.stream.list()).total == 4
        with pytest.raises(postmark.PostmarkAPIException) as again:
            await client.stream.unarchive("news")
        assert again.value.error_code == 1232


async def test_postmark_python_account_servers(relay_server) -> None:  # type: ignore[no-untyped-def]
    async with postmark.AccountClient(relay_server.account_token, base_url=relay_server.base_url, retries=0) as acct:
        page = await acct.server.list()
        assert page.total == 1
        assert [s.name for s in page.items] == ["default"]

        created = await acct.server.create("Staging", color=ServerColor.GREEN, delivery_type=DeliveryType.SANDBOX)
        assert created.name == "Staging"
        assert created.color is ServerColor.GREEN
        assert created.delivery_type is DeliveryType.SANDBOX
        [token] = created.api_tokens
        assert len(token) == 36

        fetched = await acct.server.get(created.id)
        assert (fetched.id, fetched.name, fetched.delivery_type) == (created.id, "Staging", DeliveryType.SANDBOX)
        assert (await acct.server.list()).total == 2
        named = await acct.server.list(name="stag")
        assert (named.total, [s.id for s in named.items]) == (1, [created.id])

        async with postmark.ServerClient(token, base_url=relay_server.base_url, retries=0) as staging:
            sent = await staging.outbound.send({"sender": SENDER, "to": "qa@example.com", "subject": "QA",
                                                "text_body": "qa"})
            assert sent.error_code == 0
            listed = await staging.outbound.list(count=10, offset=0)
            assert [m.message_id for m in listed.items] == [sent.message_id]
            assert listed.items[0].sandboxed is True
            assert (await staging.server.get()).name == "Staging"

        edited = await acct.server.edit(created.id, name="QA", color=ServerColor.ORANGE)
        assert (edited.id, edited.name, edited.color) == (created.id, "QA", ServerColor.ORANGE)
        assert (await acct.server.get(created.id)).name == "QA"

        deleted = await acct.server.delete(created.id)
        assert deleted.error_code == 0
        assert deleted.message == f"Server {created.id} removed."
        assert (await acct.server.list()).total == 1
        async with postmark.ServerClient(token, base_url=relay_server.base_url, retries=0) as gone:
            with pytest.raises(postmark.InvalidAPIKeyException):
                await gone.server.get()


def test_postmarker_reads_messages_and_server(relay_server, sink) -> None:  # type: ignore[no-untyped-def]
    pm = PostmarkClient(server_token=relay_server.server_token, root_api_url=relay_server.base_url + "/")
    first = pm.emails.send(From=SENDER, To="pmr@example.com", Subject="Read me", TextBody="body one",
                           Tag="first", Metadata={"order": "7"})
    second = pm.emails.send(From=SENDER, To="other@example.com", Subject="Second", HtmlBody="<b>two</b>")
    wait_for(lambda: len(sink.messages) == 2, timeout=10)
    wait_for(lambda: delivered(relay_server, first["MessageID"], 1))
    wait_for(lambda: delivered(relay_server, second["MessageID"], 1))

    messages = pm.messages.outbound.all(count=10, offset=0)
    assert [m.MessageID for m in messages] == [second["MessageID"], first["MessageID"]]
    assert [m.Status for m in messages] == ["Sent", "Sent"]
    assert messages[1].Metadata == {"order": "7"}
    assert [m.MessageID for m in pm.messages.outbound.all(count=10, offset=0, tag="first")] == [first["MessageID"]]
    assert [m.MessageID for m in pm.messages.outbound.all(count=10, offset=0, recipient="other@example.com")] == [
        second["MessageID"]]
    assert len(pm.messages.outbound.all(count=10, offset=0, fromemail=SENDER, status="sent")) == 2
    assert [m.MessageID for m in pm.messages.outbound.all(count=10, offset=0, subject="read")] == [
        first["MessageID"]]
    today = datetime.now(UTC).date()
    assert len(pm.messages.outbound.all(count=10, offset=0, fromdate=today - timedelta(days=1),
                                        todate=today + timedelta(days=1))) == 2
    assert pm.messages.outbound.all(count=10, offset=0, fromdate=today + timedelta(days=2)) == []
    # postmarker pages by TotalCount: a count of 1 must still yield one item and stop.
    assert [m.MessageID for m in pm.messages.outbound.all(count=1, offset=1)] == [first["MessageID"]]

    message = pm.messages.outbound.get(first["MessageID"])
    assert message.MessageID == first["MessageID"]
    assert message.Subject == "Read me"
    assert message.TextBody == "body one"
    assert [(e["Type"], e["Recipient"]) for e in message.MessageEvents] == [("Delivered", "pmr@example.com")]
    dump = pm.messages.outbound.get_dump(first["MessageID"])
    assert "Subject: Read me" in dump
    assert f"X-PM-Message-Id: {first['MessageID']}" in dump
    assert message.get_dump() == dump

    server = pm.server.get()
    assert server.Name == "default"
    assert server.Color == "Purple"
    edited = pm.server.edit(Color="Red")
    assert edited["Color"] == "Red"
    assert edited["ID"] == server.ID
    assert pm.server.get().Color == "Red"
    server.edit(Name="Via model", Color="blue")
    assert (server.Name, server.Color) == ("Via model", "blue")  # kept as sent, like Postmark
    assert pm.server.get().Name == "Via model"
