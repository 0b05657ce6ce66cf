"""The Opens and Clicks searches through the real ASGI app and a real database (docs/postmark-api.md §4.5).

Hits are stored with the store's `insert_hits`, in the shape of `tracking_hits` that the tracking recorder
writes, for messages sent through `POST /email`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from posthouse.server.services.clock import to_micros
from posthouse.server.store.hits import HitKind, StoredHit, insert_hits

SENDER = "app@example.com"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
# What postmark-python requires of every item (docs/postmark-api.md §11.3), and the rest §4.5 lists.
OPEN_KEYS = {"RecordType", "FirstOpen", "Client", "OS", "Platform", "UserAgent", "ReadSeconds", "Geo", "MessageID",
             "MessageStream", "ReceivedAt", "Tag", "Recipient"}
CLICK_KEYS = {"RecordType", "ClickLocation", "Client", "OS", "Platform", "UserAgent", "OriginalLink", "Geo",
              "MessageID", "MessageStream", "ReceivedAt", "Tag", "Recipient"}
AGENT_KEYS = {"Name", "Company", "Family"}
GEO_KEYS = {"CountryISOCode", "Country", "RegionISOCode", "Region", "City", "Zip", "Coords", "IP"}


def at(text: str) -> int:
    return to_micros(datetime.fromisoformat(text).replace(tzinfo=UTC))


async def get(api, path: str, **params: Any) -> Any:  # type: ignore[no-untyped-def]
    response = await api.client.get(path, params=params, headers=api.server_headers)
    assert response.status_code == 200, response.text
    return response.json()


async def send(api, to: str, **fields: Any) -> str:  # type: ignore[no-untyped-def]
    response = await api.client.post("/email", headers=api.server_headers, json={
        "From": SENDER, "To": to, "Subject": "Hi", "HtmlBody": "<p>Hi</p>", "TrackOpens": True, **fields})
    assert response.status_code == 200, response.text
    return str(response.json()["MessageID"])


async def server_id(api) -> int:  # type: ignore[no-untyped-def]
    return int((await get(api, "/server"))["ID"])


def hit(server: int, message_id: str, recipient: str, when: str, kind: HitKind = HitKind.OPEN, **fields: Any
        ) -> StoredHit:
    values: dict[str, Any] = {
        "server_id": server, "stream": "outbound", "message_id": message_id, "delivery_id": 1, "recipient": recipient,
        "tag": None, "kind": kind.value, "occurred_at": at(when), "first": False, "proxy": False,
        "platform": "Desktop", "user_agent": CHROME, **fields}
    if kind is HitKind.CLICK:
        values.setdefault("link", 1)
        values.setdefault("url", "https://example.com/welcome")
        values.setdefault("click_location", "HTML")
    return StoredHit(**values)


async def store_hits(api, *hits: StoredHit) -> None:  # type: ignore[no-untyped-def]
    await api.runtime.store.transact([insert_hits(hits)])


async def test_no_opens_or_clicks_yet(api) -> None:  # type: ignore[no-untyped-def]
    message_id = await send(api, "ann@example.com")
    assert await get(api, "/messages/outbound/opens", count=10, offset=0) == {"TotalCount": 0, "Opens": []}
    assert await get(api, "/messages/outbound/clicks", count=10, offset=0) == {"TotalCount": 0, "Clicks": []}
    assert await get(api, f"/messages/outbound/opens/{message_id}", count=10, offset=0) == \
        {"TotalCount": 0, "Opens": []}
    assert await get(api, f"/messages/outbound/clicks/{message_id}", count=10, offset=0) == \
        {"TotalCount": 0, "Clicks": []}


async def test_opens_are_listed_newest_first_in_postmarks_shape(api) -> None:  # type: ignore[no-untyped-def]
    server = await server_id(api)
    message_id = await send(api, "ann@example.com", Tag="welcome")
    await store_hits(api, hit(
        server, message_id, "ann@example.com", "2026-01-05T10:00:00", first=True, tag="welcome",
        platform="WebMail", client_name="Gmail", client_company="Google", client_family="Gmail",
        os_name="Windows 10", os_company="Microsoft Corporation", os_family="Windows", ip="192.0.2.7",
        country_iso="DK", country="Denmark", region_iso="84", region="Capital Region", city="Copenhagen", zip="1050",
        coords="55.6,12.5"),
        hit(server, message_id, "ann@example.com", "2026-01-06T10:00:00", tag="welcome"))
    page = await get(api, "/messages/outbound/opens", count=10, offset=0)
    assert page["TotalCount"] == 2
    latest, first = page["Opens"]
    for item in (latest, first):
        assert set(item) == OPEN_KEYS
        assert set(item["Client"]) == AGENT_KEYS and set(item["OS"]) == AGENT_KEYS and set(item["Geo"]) == GEO_KEYS
        assert (item["RecordType"], item["MessageID"], item["MessageStream"], item["Recipient"], item["Tag"]) == \
            ("Open", message_id, "outbound", "ann@example.com", "welcome")
    assert (first["FirstOpen"], latest["FirstOpen"]) == (True, False)
    assert datetime.fromisoformat(first["ReceivedAt"]) == datetime(2026, 1, 5, 10, tzinfo=UTC)
    assert first["Client"] == {"Name": "Gmail", "Company": "Google", "Family": "Gmail"}
    assert first["OS"] == {"Name": "Windows 10", "Company": "Microsoft Corporation", "Family": "Windows"}
    assert first["Geo"] == {"CountryISOCode": "DK", "Country": "Denmark", "RegionISOCode": "84",
                            "Region": "Capital Region", "City": "Copenhagen", "Zip": "1050", "Coords": "55.6,12.5",
                            "IP": "192.0.2.7"}
    assert (first["Platform"], first["UserAgent"], first["ReadSeconds"]) == ("WebMail", CHROME, 0)
    assert latest["Client"] == {"Name": None, "Company": None, "Family": None}
    assert latest["Geo"] == dict.fromkeys(GEO_KEYS)


async def test_clicks_carry_the_link_and_where_it_was(api) -> None:  # type: ignore[no-untyped-def]
    server = await server_id(api)
    message_id = await send(api, "ann@example.com", TrackLinks="HtmlAndText")
    await store_hits(api, hit(server, message_id, "ann@example.com", "2026-01-05T10:00:00", HitKind.CLICK,
                              first=True, url="https://example.com/a", click_location="Text", link=2))
    await store_hits(api, hit(server, message_id, "ann@example.com", "2026-01-05T09:00:00"))  # an open: not a click
    page = await get(api, "/messages/outbound/clicks", count=10, offset=0)
    assert page["TotalCount"] == 1
    [click] = page["Clicks"]
    assert set(click) == CLICK_KEYS
    assert (click["RecordType"], click["OriginalLink"], click["ClickLocation"], click["MessageID"]) == \
        ("Click", "https://example.com/a", "Text", message_id)
    assert await get(api, f"/messages/outbound/clicks/{message_id}", count=10, offset=0) == page


async def test_every_filter_narrows_the_search(api) -> None:  # type: ignore[no-untyped-def]
    server = await server_id(api)
    first = await send(api, "Ann@Example.com", Cc="cc@example.com")
    second = await send(api, "bob@example.com")
    await store_hits(
        api,
        hit(server, first, "Ann@Example.com", "2026-01-01T12:00:00", tag="welcome", client_name="Gmail",
            client_company="Google", client_family="Gmail", os_name="Android 14", os_family="Android",
            os_company="Google", platform="Mobile", country="Denmark", region="Capital Region", city="Copenhagen"),
        hit(server, first, "cc@example.com", "2026-01-02T12:00:00", client_name="Apple Mail", platform="WebMail"),
        hit(server, second, "bob@example.com", "2026-01-03T12:00:00", stream="broadcast"),
    )

    async def recipients(**params: Any) -> list[str]:
        page = await get(api, "/messages/outbound/opens", count=50, offset=0, **params)
        assert page["TotalCount"] == len(page["Opens"])
        return [o["Recipient"] for o in page["Opens"]]

    assert await recipients() == ["cc@example.com", "Ann@Example.com"]  # the outbound stream by default
    assert await recipients(messagestream="broadcast") == ["bob@example.com"]
    assert await recipients(recipient="ann@EXAMPLE.com") == ["Ann@Example.com"]
    assert await recipients(recipient="cc@example.com") == ["cc@example.com"]
    for name, value in [("tag", "welcome"), ("client_name", "Gmail"), ("clientCompany", "Google"),
                        ("client_family", "Gmail"), ("os_name", "Android 14"), ("osFamily", "Android"),
                        ("os_company", "Google"), ("platform", "mobile"), ("country", "Denmark"),
                        ("region", "Capital Region"), ("city", "Copenhagen")]:
        assert await recipients(**{name: value}) == ["Ann@Example.com"], name
    assert await recipients(client_name="Outlook") == []
    assert await recipients(platform="WebMail") == ["cc@example.com"]
    assert await recipients(fromdate="2026-01-02") == ["cc@example.com"]
    assert await recipients(todate="2026-1-1") == ["Ann@Example.com"]  # a bare date ends with its last moment
    assert await recipients(fromdate="2026-01-01T12:00:01", todate="2026-01-02T12:00:00") == ["cc@example.com"]


async def test_pages_and_one_messages_hits(api) -> None:  # type: ignore[no-untyped-def]
    server = await server_id(api)
    message_id = await send(api, "ann@example.com")
    other = await send(api, "bob@example.com")
    await store_hits(api, *(hit(server, message_id, "ann@example.com", f"2026-01-01T10:00:{s:02d}") for s in range(7)),
                     hit(server, other, "bob@example.com", "2026-01-01T11:00:00"))
    whole = await get(api, "/messages/outbound/opens", count=50, offset=0)
    assert whole["TotalCount"] == 8
    page = await get(api, "/messages/outbound/opens", count=3, offset=3)
    assert page["TotalCount"] == 8 and page["Opens"] == whole["Opens"][3:6]
    mine = await get(api, f"/messages/outbound/opens/{message_id}", count=5, offset=0)
    assert mine["TotalCount"] == 7
    assert [o["ReceivedAt"] for o in mine["Opens"]] == [o["ReceivedAt"] for o in whole["Opens"][1:6]]
    assert {o["MessageID"] for o in mine["Opens"]} == {message_id}
    upper = await get(api, f"/messages/outbound/opens/{message_id.upper()}", count=5, offset=5)
    assert upper["TotalCount"] == 7 and len(upper["Opens"]) == 2


async def test_another_servers_hits_are_invisible(api) -> None:  # type: ignore[no-untyped-def]
    server = await server_id(api)
    message_id = await send(api, "ann@example.com")
    await store_hits(api, hit(server + 1000, message_id, "ann@example.com", "2026-01-01T10:00:00"))
    assert (await get(api, "/messages/outbound/opens", count=10, offset=0))["TotalCount"] == 0
    assert (await get(api, f"/messages/outbound/opens/{message_id}", count=10, offset=0))["TotalCount"] == 0


@pytest.mark.parametrize("path", ["/messages/outbound/opens", "/messages/outbound/clicks"])
@pytest.mark.parametrize("params", [{}, {"count": 10}, {"offset": 0}, {"count": 0, "offset": 0},
                                    {"count": 501, "offset": 0}, {"count": 500, "offset": 9600},
                                    {"count": "many", "offset": 0}, {"count": 10, "offset": 0, "fromdate": "soon"}])
async def test_bad_searches_are_700(api, path: str, params: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    refused = await api.client.get(path, params=params, headers=api.server_headers)
    assert refused.status_code == 422, refused.text
    assert refused.json()["ErrorCode"] == 700


@pytest.mark.parametrize("kind", ["opens", "clicks"])
async def test_an_unknown_message_is_701(api, kind: str) -> None:  # type: ignore[no-untyped-def]
    missing = await api.client.get(f"/messages/outbound/{kind}/00000000-0000-0000-0000-000000000000",
                                   params={"count": 10, "offset": 0}, headers=api.server_headers)
    assert missing.status_code == 422 and missing.json()["ErrorCode"] == 701


async def test_opens_and_clicks_need_a_server_token(api) -> None:  # type: ignore[no-untyped-def]
    for path in ("/messages/outbound/opens", "/messages/outbound/clicks/x"):
        refused = await api.client.get(path, params={"count": 1, "offset": 0},
                                       headers={"X-Postmark-Account-Token": api.account_token})
        assert refused.status_code == 401 and refused.json()["ErrorCode"] == 10
