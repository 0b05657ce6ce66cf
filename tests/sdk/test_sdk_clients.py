"""Every client method against the real server process, with the async clients and again with the sync ones."""

from __future__ import annotations

import os
from email import policy
from email.parser import BytesParser

import pytest

import posthouse
from sdk.sdk_support import Tenant

SENDER = "app@example.com"


async def test_the_issue_snippet_verbatim(tenant: Tenant, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("POSTHOUSE_SERVER_TOKEN", tenant.token)
    monkeypatch.setenv("POSTHOUSE_BASE_URL", tenant.base_url)
    BASE = os.environ["POSTHOUSE_BASE_URL"]
    # fmt: off
    async with posthouse.ServerClient(os.environ["POSTHOUSE_SERVER_TOKEN"], base_url=BASE) as client:
        response = await client.outbound.send(posthouse.Email(sender=SENDER, to="receiver@example.com", subject="SMTP Test", text_body="Hello world! This is a test of the Python API.", metadata={"user_id": "12345"}))  # noqa: E501 - the issue's snippet, verbatim
        print(f"Sent (model): {response.message_id}")
    # fmt: on
    assert capsys.readouterr().out == f"Sent (model): {response.message_id}\n"
    assert response.error_code == 0 and response.to == "receiver@example.com"
    with posthouse.sync.ServerClient() as sync_client:  # token and base URL from the environment
        found = sync_client.outbound.get(response.message_id)
    assert (found.subject, found.metadata, found.sender) == ("SMTP Test", {"user_id": "12345"}, SENDER)


def test_the_sync_form(tenant: Tenant, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("POSTHOUSE_SERVER_TOKEN", tenant.token)
    BASE = tenant.base_url
    # fmt: off
    with posthouse.sync.ServerClient(os.environ["POSTHOUSE_SERVER_TOKEN"], base_url=BASE) as client:
        response = client.outbound.send(posthouse.Email(sender=SENDER, to="receiver@example.com", subject="SMTP Test", text_body="Hello world! This is a test of the Python API.", metadata={"user_id": "12345"}))  # noqa: E501 - the snippet without await
        print(f"Sent (model): {response.message_id}")
    # fmt: on
        assert client.outbound.get(response.message_id).text_body == "Hello world! This is a test of the Python API."
    assert capsys.readouterr().out == f"Sent (model): {response.message_id}\n"


async def test_outbound_send_batch_list_get_dump(tenant: Tenant, flavour) -> None:  # type: ignore[no-untyped-def]
    client = flavour.server_client(tenant.token, tenant.base_url)
    try:
        email = posthouse.Email(
            sender="Shop <shop@example.com>",
            to="ann@example.com",
            cc="bob@example.com",
            bcc="hidden@example.com",
            subject="Your order",
            text_body="Shipped.",
            html_body="<p>Shipped.</p>",
            tag="orders",
            reply_to="help@example.com",
            metadata={"order": "A-1"},
            track_opens=True,
            track_links="HtmlOnly",
            headers=[posthouse.Header(name="X-Custom", value="yes")],
            attachments=[posthouse.encode_attachment("invoice.txt", b"total: 42")],
        )
        sent = await flavour(client.outbound.send(email, idempotency_key=f"order-A-1-{flavour}"))
        assert sent.error_code == 0 and sent.message == "OK" and len(sent.message_id) == 36

        results = await flavour(
            client.outbound.send_batch(
                [
                    posthouse.Email(sender=SENDER, to="one@example.com", subject="B1", text_body="x", tag="batch"),
                    posthouse.Email(sender=SENDER, to="not-an-address", subject="B2", text_body="x", tag="batch"),
                    posthouse.Email(sender=SENDER, to="two@example.com", subject="B3", text_body="x", tag="batch"),
                ]
            )
        )
        assert [r.error_code for r in results] == [0, 300, 0]  # a refused item is a result, not an exception
        assert "To" in results[1].message

        everything = await flavour(client.outbound.list())
        assert everything.total_count == 3
        assert [m.subject for m in everything.messages] == ["B3", "B1", "Your order"]
        batch = await flavour(client.outbound.list(tag="batch", count=1, offset=1))
        assert batch.total_count == 2 and [m.subject for m in batch.messages] == ["B1"]
        by_metadata = await flavour(client.outbound.list(metadata={"order": "A-1"}))
        assert [m.message_id for m in by_metadata.messages] == [sent.message_id]
        by_recipient = await flavour(client.outbound.list(recipient="bob@example.com", message_stream="outbound"))
        assert by_recipient.total_count == 1
        assert (await flavour(client.outbound.list(from_date="2000-01-01", to_date="2000-01-02"))).total_count == 0
        assert (
            await flavour(client.outbound.list(subject="order", status="sent", from_email="shop@example.com"))
        ).total_count in (0, 1)  # sandbox delivery may not have run yet

        details = await flavour(client.outbound.get(sent.message_id))
        assert isinstance(details, posthouse.OutboundMessageDetails)
        assert details.message_id == sent.message_id
        assert (details.subject, details.tag, details.metadata) == ("Your order", "orders", {"order": "A-1"})
        assert details.text_body == "Shipped." and details.html_body == "<p>Shipped.</p>"
        assert [a.email for a in details.to] == ["ann@example.com"]
        assert [a.email for a in details.bcc] == ["hidden@example.com"]
        assert details.track_opens is True and details.track_links == "HtmlOnly"

        source = await flavour(client.outbound.dump(sent.message_id))
        parsed = BytesParser(policy=policy.default).parsebytes(source.encode())
        assert parsed["Subject"] == "Your order"
        assert parsed["X-Custom"] == "yes"
        assert [p.get_filename() for p in parsed.iter_attachments()] == ["invoice.txt"]
    finally:
        await flavour.close(client)


async def test_streams(tenant: Tenant, flavour) -> None:  # type: ignore[no-untyped-def]
    client = flavour.server_client(tenant.token, tenant.base_url)
    try:
        listed = await flavour(client.streams.list())
        assert {s.id for s in listed.message_streams} >= {"outbound", "inbound"}
        assert listed.total_count == len(listed.message_streams)
        created = await flavour(
            client.streams.create(
                posthouse.MessageStreamRequest(
                    id="news", name="News", message_stream_type="Broadcasts", description="Monthly"
                )
            )
        )
        assert isinstance(created, posthouse.MessageStream)
        assert (created.id, created.name, created.message_stream_type) == ("news", "News", "Broadcasts")
        assert (await flavour(client.streams.get("news"))).description == "Monthly"
        edited = await flavour(client.streams.edit("news", posthouse.MessageStreamRequest(name="Newsletter")))
        assert (edited.name, edited.description) == ("Newsletter", "Monthly")
        broadcasts = await flavour(client.streams.list("Broadcasts"))
        assert "news" in {s.id for s in broadcasts.message_streams}
        assert all(s.message_stream_type == "Broadcasts" for s in broadcasts.message_streams)

        archived = await flavour(client.streams.archive("news"))
        assert archived.id == "news" and archived.expected_purge_date
        assert "news" not in {s.id for s in (await flavour(client.streams.list())).message_streams}
        assert "news" in {s.id for s in (await flavour(client.streams.list(include_archived=True))).message_streams}
        restored = await flavour(client.streams.unarchive("news"))
        assert restored.archived_at is None

        with pytest.raises(posthouse.InvalidRequestError) as refused:
            await flavour(client.streams.get("no-such-stream"))
        assert refused.value.error_code == 1226
    finally:
        await flavour.close(client)


async def test_this_server(tenant: Tenant, flavour) -> None:  # type: ignore[no-untyped-def]
    client = flavour.server_client(tenant.token, tenant.base_url)
    try:
        server = await flavour(client.server.get())
        assert isinstance(server, posthouse.Server)
        assert (server.id, server.name) == (tenant.id, tenant.name)
        edited = await flavour(client.server.edit(posthouse.ServerRequest(color="Red", track_opens=True)))
        assert (edited.id, edited.color, edited.track_opens) == (server.id, "Red", True)
        assert (await flavour(client.server.get())).color == "Red"
    finally:
        await flavour.close(client)


async def test_account_servers(tenant: Tenant, flavour) -> None:  # type: ignore[no-untyped-def]
    account = flavour.account_client(tenant.account_token, tenant.base_url)
    try:
        name = f"{tenant.name}-staging"
        created = await flavour(account.servers.create(posthouse.ServerRequest(name=name, color="Green")))
        [token] = created.api_tokens
        assert (created.name, created.color) == (name, "Green")
        assert (await flavour(account.servers.get(created.id))).name == name
        page = await flavour(account.servers.list(count=500))
        assert isinstance(page, posthouse.ServerList)
        assert {"default", tenant.name, name} <= {s.name for s in page.servers}
        assert page.total_count == len(page.servers)
        assert [s.name for s in (await flavour(account.servers.list(name=name[:-2]))).servers] == [name]
        edited = await flavour(account.servers.edit(created.id, posthouse.ServerRequest(name=name + " 2")))
        assert edited.name == name + " 2"

        staging = flavour.server_client(token, tenant.base_url)
        try:
            sent = await flavour(
                staging.outbound.send(
                    posthouse.Email(sender=SENDER, to="x@example.com", subject="From staging", text_body="x")
                )
            )
            assert sent.error_code == 0
            assert (await flavour(staging.server.get())).name == name + " 2"
        finally:
            await flavour.close(staging)

        assert await flavour(account.servers.delete(created.id)) is None
        with pytest.raises(posthouse.InvalidRequestError):
            await flavour(account.servers.get(created.id))
    finally:
        await flavour.close(account)


async def test_api_errors_are_typed(tenant: Tenant, flavour) -> None:  # type: ignore[no-untyped-def]
    base = tenant.base_url
    wrong = flavour.server_client("00000000-0000-0000-0000-000000000000", base)
    try:
        with pytest.raises(posthouse.InvalidTokenError) as denied:
            await flavour(wrong.outbound.send(posthouse.Email(sender=SENDER, to="a@example.com", text_body="x")))
        assert (denied.value.http_status, denied.value.error_code) == (401, 10)
    finally:
        await flavour.close(wrong)
    # An account token where a server token belongs is the wrong kind of token: 401 too.
    crossed = flavour.server_client(tenant.account_token, base)
    try:
        with pytest.raises(posthouse.InvalidTokenError):
            await flavour(crossed.server.get())
    finally:
        await flavour.close(crossed)

    client = flavour.server_client(tenant.token, base)
    try:
        with pytest.raises(posthouse.InvalidRequestError) as refused:
            await flavour(client.outbound.send(posthouse.Email(sender="nobody", to="a@example.com", text_body="x")))
        assert (refused.value.http_status, refused.value.error_code) == (422, 300)
        assert "From" in refused.value.message
        assert not isinstance(refused.value, posthouse.InactiveRecipientsError)
        with pytest.raises(posthouse.InvalidRequestError) as missing:
            await flavour(client.outbound.get("00000000-0000-0000-0000-000000000001"))
        assert missing.value.error_code == 701
        with pytest.raises(posthouse.InvalidRequestError) as unknown_stream:
            await flavour(
                client.outbound.send(
                    posthouse.Email(sender=SENDER, to="a@example.com", text_body="x", message_stream="nope")
                )
            )
        assert unknown_stream.value.error_code == 1235
        # A path that tries to climb out of its segment stays one segment.
        with pytest.raises(posthouse.InvalidRequestError):
            await flavour(client.outbound.get("../../server"))
    finally:
        await flavour.close(client)
