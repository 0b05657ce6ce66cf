"""Postmark's legacy per-server hook URLs (BounceHookUrl, OpenHookUrl, ClickHookUrl, DeliveryHookUrl;
docs/postmark-api.md
§8.3): set through /server and /servers, they post like webhooks of the default stream, and /webhooks does not
show them. Through the real ASGI app and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from typing import Any

from posthouse.server.domain.statuses import BounceType
from posthouse.server.services import notifications
from posthouse.server.store.base import BounceRecord

BOUNCE_URL = "http://hooks.example.com/bounces"
DELIVERY_URL = "https://hooks.example.com/deliveries"


async def put_server(api, **fields: Any) -> Any:  # type: ignore[no-untyped-def]
    return await api.client.put("/server", json=fields, headers=api.server_headers)


async def legacy_rows(api) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    rows = await api.runtime.store.query(
        "SELECT legacy, id, server_id, stream, url, http_auth_username, http_auth_password, on_bounce, bounce_content, "
        "on_spam_complaint, on_delivery, on_open, open_first_only, on_click, secret FROM webhooks "
        "WHERE legacy IS NOT NULL")
    keys = ("id", "server_id", "stream", "url", "username", "password", "on_bounce", "bounce_content",
            "on_spam_complaint", "on_delivery", "on_open", "open_first_only", "on_click", "secret")
    return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in rows}


async def server_id(api) -> int:  # type: ignore[no-untyped-def]
    return int((await api.client.get("/server", headers=api.server_headers)).json()["ID"])


async def bounce(api, sid: int) -> None:  # type: ignore[no-untyped-def]
    """A hard bounce as the worker records it, with its Bounce webhook event."""
    record = BounceRecord(
        server_id=sid, message_id=None, stream="outbound", type="HardBounce", type_code=1, email="gone@example.com",
        sender="app@example.com", subject="Hello", tag=None, description="Hard bounce", details="550 5.1.1 no",
        bounced_at=api.runtime.clock.micros(), inactive=True, can_activate=True, dump="Return-Path: <>\r\n\r\nraw")
    assert BounceType.from_type_name(record.type) is BounceType.HARD_BOUNCE
    await api.runtime.store.record_bounces([(record, None, [notifications.bounce_event(record, {})], None)])


async def posts(api, webhook_id: int) -> list[tuple[str, str, dict[str, Any]]]:  # type: ignore[no-untyped-def]
    rows = await api.runtime.store.query(
        "SELECT record_type, state, payload FROM webhook_posts WHERE webhook_id = ? ORDER BY id", (webhook_id,))
    return [(r[0], r[1], json.loads(r[2])) for r in rows]


async def test_hook_urls_post_like_webhooks_of_the_default_stream_and_stay_off_the_webhooks_list(api) -> None:  # type: ignore[no-untyped-def]
    answer = await put_server(api, BounceHookUrl="http://hook-user:s%40cret@hooks.example.com/bounces",
                              DeliveryHookUrl=DELIVERY_URL, IncludeBounceContentInHook=True, OpenHookUrl="",
                              PostFirstOpenOnly=True)
    assert answer.status_code == 200, answer.text
    assert answer.json()["DeliveryHookUrl"] == DELIVERY_URL
    rows = await legacy_rows(api)
    assert set(rows) == {"BounceHookUrl", "DeliveryHookUrl"}
    hook = rows["BounceHookUrl"]
    assert (hook["server_id"], hook["stream"], hook["url"]) == (await server_id(api), "outbound", BOUNCE_URL)
    assert (hook["username"], hook["password"]) == ("hook-user", "s@cret")
    assert (hook["on_bounce"], hook["bounce_content"], hook["on_spam_complaint"], hook["on_delivery"]) == (1, 1, 1, 0)
    assert hook["secret"].startswith("whsec_")
    assert rows["DeliveryHookUrl"]["on_delivery"] == 1 and rows["DeliveryHookUrl"]["on_bounce"] == 0
    listed = await api.client.get("/webhooks", headers=api.server_headers)
    assert listed.json() == {"Webhooks": []}
    hidden = await api.client.get(f"/webhooks/{hook['id']}", headers=api.server_headers)
    assert hidden.status_code == 422 and hidden.json()["ErrorCode"] == 1352

    await bounce(api, await server_id(api))
    ((record_type, state, payload),) = await posts(api, hook["id"])
    assert (record_type, state, payload["Email"]) == ("Bounce", "pending", "gone@example.com")
    assert payload["Content"].endswith("raw")  # IncludeBounceContentInHook
    assert await posts(api, rows["DeliveryHookUrl"]["id"]) == []

    # An edit that leaves the URLs alone keeps each hook (and its secret); clearing a URL removes its hook
    # and drops the posts it has not sent yet.
    assert (await put_server(api, Color="Red")).status_code == 200
    assert await legacy_rows(api) == rows
    assert (await put_server(api, BounceHookUrl="", IncludeBounceContentInHook=False)).status_code == 200
    assert set(await legacy_rows(api)) == {"DeliveryHookUrl"}
    assert [state for _, state, _ in await posts(api, hook["id"])] == ["cancelled"]


async def test_open_and_click_hooks_take_their_triggers(api) -> None:  # type: ignore[no-untyped-def]
    answer = await put_server(api, OpenHookUrl="https://hooks.example.com/opens", PostFirstOpenOnly=True,
                              ClickHookUrl="https://hooks.example.com/clicks")
    assert answer.status_code == 200, answer.text
    rows = await legacy_rows(api)
    assert (rows["OpenHookUrl"]["on_open"], rows["OpenHookUrl"]["open_first_only"]) == (1, 1)
    assert (rows["ClickHookUrl"]["on_click"], rows["ClickHookUrl"]["on_open"]) == (1, 0)


async def test_a_hook_url_a_webhook_could_not_have_is_refused_and_nothing_changes(api) -> None:  # type: ignore[no-untyped-def]
    before = (await api.client.get("/server", headers=api.server_headers)).json()
    for url in ("http://169.254.169.254/latest/meta-data", "ftp://hooks.example.com/", "http://10.0.0.5/hook",
                "http://hooks.example.com/a b"):
        answer = await put_server(api, BounceHookUrl=url, Color="Green")
        assert answer.status_code == 422, url
        body = answer.json()
        assert body["ErrorCode"] == 1354 and body["Message"].startswith("Invalid 'BounceHookUrl': "), body
    assert (await api.client.get("/server", headers=api.server_headers)).json() == before
    assert await legacy_rows(api) == {}


async def test_a_saved_url_that_is_no_longer_allowed_does_not_block_other_edits(api) -> None:  # type: ignore[no-untyped-def]
    """A URL saved when it was allowed (or by an older version) but refused now gets no hook, and a warning;
    an edit that does not send it still succeeds."""
    store = api.runtime.store
    sid = await server_id(api)
    record = await store.get_server(sid)
    await store.update_server(sid, record.name, {**record.settings, "bounce_hook_url": "http://10.0.0.5/hook",
                                                 "delivery_hook_url": DELIVERY_URL})
    assert await api.runtime.accounts.adopt_legacy_hooks() == 1
    assert set(await legacy_rows(api)) == {"DeliveryHookUrl"}
    answer = await put_server(api, Color="Red")
    assert answer.status_code == 200, answer.text
    assert set(await legacy_rows(api)) == {"DeliveryHookUrl"}
    refused = await put_server(api, BounceHookUrl="http://10.0.0.6/hook")
    assert refused.status_code == 422 and refused.json()["ErrorCode"] == 1354


async def test_servers_created_with_hook_urls_get_them_and_lose_them_when_deleted(api) -> None:  # type: ignore[no-untyped-def]
    created = await api.client.post("/servers", headers=api.account_headers,
                                     json={"Name": "hooked", "DeliveryHookUrl": DELIVERY_URL})
    assert created.status_code == 200, created.text
    new_id = created.json()["ID"]
    rows = await legacy_rows(api)
    assert [(name, row["server_id"]) for name, row in rows.items()] == [("DeliveryHookUrl", new_id)]
    assert (await api.client.delete(f"/servers/{new_id}", headers=api.account_headers)).status_code == 200
    assert await legacy_rows(api) == {}


async def test_hook_urls_saved_before_they_were_posted_to_are_adopted_at_start(api) -> None:  # type: ignore[no-untyped-def]
    store = api.runtime.store
    sid = await server_id(api)
    record = await store.get_server(sid)
    # As an older version saved them: in the settings only.
    await store.update_server(sid, record.name, {**record.settings, "bounce_hook_url": BOUNCE_URL})
    assert await legacy_rows(api) == {}
    assert await api.runtime.accounts.adopt_legacy_hooks() == 1
    assert [row["url"] for row in (await legacy_rows(api)).values()] == [BOUNCE_URL]
    assert await api.runtime.accounts.adopt_legacy_hooks() == 0
