"""/message-streams, /server and /servers through the real ASGI app and a real database (docs/postmark-api.md §8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from support import assert_api_error

MINIMAL = {"From": "sender@example.com", "To": "receiver@example.com", "Subject": "Hi", "TextBody": "Hello"}
STREAM_KEYS = {
    "ID", "ServerID", "Name", "Description", "MessageStreamType", "CreatedAt", "UpdatedAt", "ArchivedAt",
    "ExpectedPurgeDate", "SubscriptionManagementConfiguration",
}
# docs/postmark-api.md §8.3 (a superset of what §11.3 says postmark-python requires).
SERVER_KEYS = {
    "ID", "Name", "ApiTokens", "Color", "SmtpApiActivated", "RawEmailEnabled", "DeliveryType", "ServerLink",
    "InboundAddress", "InboundHookUrl", "BounceHookUrl", "OpenHookUrl", "DeliveryHookUrl", "ClickHookUrl",
    "PostFirstOpenOnly", "InboundDomain", "InboundHash", "InboundSpamThreshold", "TrackOpens", "TrackLinks",
    "IncludeBounceContentInHook", "EnableSmtpApiErrorHooks",
    "RetentionDays",  # a Posthouse extension (issue 17): how many days this server's messages are kept
}
REQUIRED_BY_POSTMARK_PYTHON = {
    "ID", "Name", "ApiTokens", "Color", "SmtpApiActivated", "RawEmailEnabled", "DeliveryType", "ServerLink",
    "InboundAddress", "PostFirstOpenOnly", "InboundHash", "InboundSpamThreshold", "TrackOpens", "TrackLinks",
    "IncludeBounceContentInHook", "EnableSmtpApiErrorHooks",
}


def server_headers(token: str) -> dict[str, str]:
    return {"X-Postmark-Server-Token": token, "Accept": "application/json"}


async def streams(api, **params: object) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = await api.client.get("/message-streams", params=params, headers=api.server_headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def stream_ids(api, **params: object) -> list[str]:  # type: ignore[no-untyped-def]
    page = await streams(api, **params)
    assert page["TotalCount"] == len(page["MessageStreams"])
    return sorted(s["ID"] for s in page["MessageStreams"])


async def create_stream(api, **body: object) -> Any:  # type: ignore[no-untyped-def]
    return await api.client.post("/message-streams", json=body, headers=api.server_headers)


async def this_server_id(api) -> int:  # type: ignore[no-untyped-def]
    return int((await api.client.get("/server", headers=api.server_headers)).json()["ID"])


async def send_to(api, stream: str, headers: dict[str, str] | None = None) -> Any:  # type: ignore[no-untyped-def]
    return await api.client.post("/email", json={**MINIMAL, "MessageStream": stream},
                                 headers=headers or api.server_headers)


def recent(value: str, expected: datetime, slack: timedelta = timedelta(seconds=30)) -> bool:
    moment = datetime.fromisoformat(value)
    return moment.utcoffset() == timedelta(0) and abs(moment - expected) < slack


# -- message streams: listing and reading (docs/postmark-api.md §8.1) ------------------------------------


async def test_every_server_has_outbound_inbound_and_broadcast(api) -> None:  # type: ignore[no-untyped-def]
    server_id = await this_server_id(api)
    page = await streams(api)
    assert page["TotalCount"] == 3
    by_id = {s["ID"]: s for s in page["MessageStreams"]}
    assert {i: s["MessageStreamType"] for i, s in by_id.items()} == {
        "outbound": "Transactional", "inbound": "Inbound", "broadcast": "Broadcasts"}
    for stream in by_id.values():
        assert set(stream) == STREAM_KEYS
        assert stream["ServerID"] == server_id
        assert stream["ArchivedAt"] is None
        assert stream["ExpectedPurgeDate"] is None
        assert recent(stream["CreatedAt"], datetime.now(UTC))
    assert by_id["outbound"]["Name"] == "Default Transactional Stream"
    assert by_id["outbound"]["SubscriptionManagementConfiguration"] == {"UnsubscribeHandlingType": "None"}
    assert by_id["broadcast"]["SubscriptionManagementConfiguration"] == {"UnsubscribeHandlingType": "Postmark"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Transactional", ["outbound"]),
        ("transactional", ["outbound"]),
        ("Broadcasts", ["broadcast"]),
        ("Inbound", ["inbound"]),
        ("All", ["broadcast", "inbound", "outbound"]),
    ],
)
async def test_list_filters_by_type(api, value, expected) -> None:  # type: ignore[no-untyped-def]
    assert await stream_ids(api, MessageStreamType=value) == expected


async def test_list_filter_with_an_unknown_type_is_1221(api) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.get("/message-streams?MessageStreamType=Carrier", headers=api.server_headers)
    assert_api_error(response, 1221)


async def test_archived_streams_are_listed_only_on_request(api) -> None:  # type: ignore[no-untyped-def]
    archived = await api.client.post("/message-streams/broadcast/archive", headers=api.server_headers)
    assert archived.status_code == 200, archived.text
    assert await stream_ids(api) == ["inbound", "outbound"]
    assert await stream_ids(api, IncludeArchivedStreams="false") == ["inbound", "outbound"]
    for value in ("true", "True", "TRUE"):
        assert await stream_ids(api, IncludeArchivedStreams=value) == ["broadcast", "inbound", "outbound"]
    page = await streams(api, includeArchivedStreams="true", MessageStreamType="Broadcasts")
    assert [s["ID"] for s in page["MessageStreams"]] == ["broadcast"]
    assert page["MessageStreams"][0]["ArchivedAt"] is not None


async def test_get_one_stream(api) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.get("/message-streams/broadcast", headers=api.server_headers)
    assert response.status_code == 200
    stream = response.json()
    assert set(stream) == STREAM_KEYS
    assert stream["ID"] == "broadcast"
    assert stream["Name"] == "Default Broadcast Stream"
    assert stream["MessageStreamType"] == "Broadcasts"
    assert stream["ServerID"] == await this_server_id(api)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/message-streams/nosuch"),
        ("PATCH", "/message-streams/nosuch"),
        ("POST", "/message-streams/nosuch/archive"),
        ("POST", "/message-streams/nosuch/unarchive"),
    ],
)
async def test_unknown_stream_is_1226(api, method, path) -> None:  # type: ignore[no-untyped-def]
    kwargs: dict[str, Any] = {"json": {"Name": "x"}} if method == "PATCH" else {}
    response = await api.client.request(method, path, headers=api.server_headers, **kwargs)
    assert_api_error(response, 1226)


async def test_streams_need_a_server_token(api) -> None:  # type: ignore[no-untyped-def]
    for headers in ({}, {"X-Postmark-Server-Token": api.account_token}, api.account_headers):
        response = await api.client.get("/message-streams", headers=headers)
        assert_api_error(response, 10, status=401)


# -- message streams: creating --------------------------------------------------------------------


async def test_create_a_stream_then_send_to_it(api) -> None:  # type: ignore[no-untyped-def]
    response = await create_stream(api, ID="news-letter_2", Name="Newsletter", MessageStreamType="Broadcasts",
                                   Description="Monthly news")
    assert response.status_code == 200, response.text
    created = response.json()
    assert set(created) == STREAM_KEYS
    assert created["ID"] == "news-letter_2"
    assert created["ServerID"] == await this_server_id(api)
    assert created["Name"] == "Newsletter"
    assert created["Description"] == "Monthly news"
    assert created["MessageStreamType"] == "Broadcasts"
    assert created["SubscriptionManagementConfiguration"] == {"UnsubscribeHandlingType": "Postmark"}
    assert created["ArchivedAt"] is None
    assert created["ExpectedPurgeDate"] is None
    assert recent(created["CreatedAt"], datetime.now(UTC))
    fetched = await api.client.get("/message-streams/news-letter_2", headers=api.server_headers)
    assert fetched.json() == created
    assert await stream_ids(api) == ["broadcast", "inbound", "news-letter_2", "outbound"]

    sent = await send_to(api, "news-letter_2")
    assert sent.status_code == 200, sent.text
    assert sent.json()["ErrorCode"] == 0
    page = (await api.client.get("/messages/outbound?count=10&offset=0&messagestream=news-letter_2",
                                 headers=api.server_headers)).json()
    assert page["TotalCount"] == 1
    assert page["Messages"][0]["MessageID"] == sent.json()["MessageID"]
    assert page["Messages"][0]["MessageStream"] == "news-letter_2"


async def test_create_a_transactional_stream(api) -> None:  # type: ignore[no-untyped-def]
    response = await create_stream(api, ID="receipts", Name="Receipts", MessageStreamType="Transactional")
    assert response.status_code == 200, response.text
    created = response.json()
    assert created["MessageStreamType"] == "Transactional"
    assert created["Description"] is None
    assert created["SubscriptionManagementConfiguration"] == {"UnsubscribeHandlingType": "None"}
    assert await stream_ids(api, MessageStreamType="Transactional") == ["outbound", "receipts"]


GOOD = {"ID": "fresh", "Name": "Fresh", "MessageStreamType": "Transactional"}


def stream_body(**changes: object) -> dict[str, object]:
    body = {**GOOD, **changes}
    return {k: v for k, v in body.items() if v is not None}


CREATE_REFUSALS = [
    (stream_body(ID=None), 1222),
    (stream_body(ID=""), 1222),
    (stream_body(ID="   "), 1222),
    (stream_body(ID="Upper"), 1227),
    (stream_body(ID="has space"), 1227),
    (stream_body(ID="1digitfirst"), 1227),
    (stream_body(ID="-dash"), 1227),
    (stream_body(ID="dot.ted"), 1227),
    (stream_body(ID="x" * 31), 1227),
    (stream_body(ID="pm-mine"), 1233),
    (stream_body(ID="all"), 1237),
    (stream_body(ID="outbound"), 1230),
    (stream_body(ID="broadcast"), 1230),
    (stream_body(ID="inbound"), 1230),
    (stream_body(Name=None), 1223),
    (stream_body(Name=""), 1223),
    (stream_body(Name="   "), 1223),
    (stream_body(Name="n" * 101), 1224),
    (stream_body(MessageStreamType=None), 1221),
    (stream_body(MessageStreamType="Bogus"), 1221),
    (stream_body(MessageStreamType="Inbound"), 1221),
    (stream_body(Description="d" * 1001), 1231),
    (stream_body(Description="Click <a href='x'>here</a>"), 1234),
    (stream_body(Description="<b>bold</b>"), 1234),
]


@pytest.mark.parametrize(("body", "code"), CREATE_REFUSALS)
async def test_create_refusals(api, body, code) -> None:  # type: ignore[no-untyped-def]
    response = await create_stream(api, **body)
    assert_api_error(response, code)
    assert await stream_ids(api, IncludeArchivedStreams="true") == ["broadcast", "inbound", "outbound"]


async def test_create_limits_themselves_are_allowed(api) -> None:  # type: ignore[no-untyped-def]
    response = await create_stream(api, ID="x" * 30, Name="n" * 100, MessageStreamType="Transactional",
                                   Description="d" * 1000 + "")
    assert response.status_code == 200, response.text
    assert response.json()["Name"] == "n" * 100
    response = await create_stream(api, ID="a", Name="A", MessageStreamType="Broadcasts",
                                   Description="1 < 2 and 3 > 2")
    assert response.status_code == 200, response.text
    assert response.json()["Description"] == "1 < 2 and 3 > 2"


async def test_at_most_ten_streams(api) -> None:  # type: ignore[no-untyped-def]
    for i in range(7):
        response = await create_stream(api, ID=f"s{i}", Name=f"S{i}", MessageStreamType="Transactional")
        assert response.status_code == 200, response.text
    response = await create_stream(api, ID="s7", Name="S7", MessageStreamType="Transactional")
    assert_api_error(response, 1225)
    assert (await streams(api, IncludeArchivedStreams="true"))["TotalCount"] == 10


async def test_the_same_stream_id_on_two_servers(api) -> None:  # type: ignore[no-untyped-def]
    created = await api.client.post("/servers", json={"Name": "second"}, headers=api.account_headers)
    other = server_headers(created.json()["ApiTokens"][0])
    for headers in (api.server_headers, other):
        response = await api.client.post("/message-streams", json={**GOOD, "ID": "news"}, headers=headers)
        assert response.status_code == 200, response.text
    mine = (await api.client.get("/message-streams/news", headers=api.server_headers)).json()
    theirs = (await api.client.get("/message-streams/news", headers=other)).json()
    assert mine["ServerID"] == await this_server_id(api)
    assert theirs["ServerID"] == created.json()["ID"]
    patched = await api.client.patch("/message-streams/news", json={"Name": "Renamed"}, headers=other)
    assert patched.json()["Name"] == "Renamed"
    assert (await api.client.get("/message-streams/news", headers=api.server_headers)).json()["Name"] == "Fresh"


# -- message streams: editing, archiving -----------------------------------------------------------


async def test_patch_name_and_description(api) -> None:  # type: ignore[no-untyped-def]
    await create_stream(api, **GOOD, Description="old")
    before = (await api.client.get("/message-streams/fresh", headers=api.server_headers)).json()
    assert before["UpdatedAt"] is None
    response = await api.client.patch("/message-streams/fresh", json={"Name": "Renamed", "Description": "new"},
                                      headers=api.server_headers)
    assert response.status_code == 200, response.text
    after = response.json()
    assert after["ID"] == "fresh"
    assert after["Name"] == "Renamed"
    assert after["Description"] == "new"
    assert after["MessageStreamType"] == "Transactional"
    assert after["CreatedAt"] == before["CreatedAt"]
    assert recent(after["UpdatedAt"], datetime.now(UTC))
    assert (await api.client.get("/message-streams/fresh", headers=api.server_headers)).json() == after
    only_description = await api.client.patch("/message-streams/fresh", json={"Description": "newer"},
                                              headers=api.server_headers)
    assert only_description.json()["Name"] == "Renamed"
    assert only_description.json()["Description"] == "newer"


async def test_patch_a_default_stream(api) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.patch("/message-streams/outbound", json={"Name": "Transactional mail"},
                                      headers=api.server_headers)
    assert response.status_code == 200
    assert response.json()["Name"] == "Transactional mail"
    assert (await api.client.get("/message-streams/outbound", headers=api.server_headers)).json()["Name"] == (
        "Transactional mail")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"Name": "n" * 101}, 1224),
        ({"Name": ""}, 1223),
        ({"Description": "d" * 1001}, 1231),
        ({"Description": "<i>x</i>"}, 1234),
        ({"ID": "other"}, 1222),
    ],
)
async def test_patch_refusals_change_nothing(api, body, code) -> None:  # type: ignore[no-untyped-def]
    await create_stream(api, **GOOD, Description="kept")
    response = await api.client.patch("/message-streams/fresh", json=body, headers=api.server_headers)
    assert_api_error(response, code)
    stream = (await api.client.get("/message-streams/fresh", headers=api.server_headers)).json()
    assert (stream["ID"], stream["Name"], stream["Description"], stream["UpdatedAt"]) == (
        "fresh", "Fresh", "kept", None)


async def test_archive_then_unarchive(api) -> None:  # type: ignore[no-untyped-def]
    server_id = await this_server_id(api)
    assert (await send_to(api, "broadcast")).status_code == 200
    # postmark-python posts archive/unarchive with no body and no Content-Type (docs/postmark-api.md §8.1).
    response = await api.client.post("/message-streams/broadcast/archive", headers={
        "X-Postmark-Server-Token": api.server_token})
    assert response.status_code == 200, response.text
    archived = response.json()
    assert set(archived) == {"ID", "ServerID", "ExpectedPurgeDate"}
    assert archived["ID"] == "broadcast"
    assert archived["ServerID"] == server_id
    assert recent(archived["ExpectedPurgeDate"], datetime.now(UTC) + timedelta(days=45))

    stream = (await api.client.get("/message-streams/broadcast", headers=api.server_headers)).json()
    assert stream["ExpectedPurgeDate"] == archived["ExpectedPurgeDate"]
    assert datetime.fromisoformat(stream["ExpectedPurgeDate"]) - datetime.fromisoformat(stream["ArchivedAt"]) == (
        timedelta(days=45))

    refused = await send_to(api, "broadcast")
    assert_api_error(refused, 1235)
    assert "broadcast" in refused.json()["Message"]
    batch = await api.client.post("/email/batch", json=[{**MINIMAL, "MessageStream": "broadcast"}, MINIMAL],
                                  headers=api.server_headers)
    assert [r["ErrorCode"] for r in batch.json()] == [1235, 0]

    again = await api.client.post("/message-streams/broadcast/unarchive", headers=api.server_headers)
    assert again.status_code == 200, again.text
    restored = again.json()
    assert set(restored) == STREAM_KEYS
    assert restored["ID"] == "broadcast"
    assert restored["ArchivedAt"] is None
    assert restored["ExpectedPurgeDate"] is None
    assert (await send_to(api, "broadcast")).status_code == 200
    assert await stream_ids(api) == ["broadcast", "inbound", "outbound"]


async def test_archive_a_created_stream(api) -> None:  # type: ignore[no-untyped-def]
    await create_stream(api, **GOOD)
    assert (await send_to(api, "fresh")).status_code == 200
    response = await api.client.post("/message-streams/fresh/archive", headers=api.server_headers)
    assert response.status_code == 200
    assert response.json()["ID"] == "fresh"
    assert_api_error(await send_to(api, "fresh"), 1235)
    # An archived ID is still taken.
    assert_api_error(await create_stream(api, **GOOD), 1230)


@pytest.mark.parametrize("stream", ["outbound", "inbound"])
async def test_default_transactional_and_inbound_cannot_be_archived(api, stream) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.post(f"/message-streams/{stream}/archive", headers=api.server_headers)
    assert_api_error(response, 1229)
    assert (await api.client.get(f"/message-streams/{stream}", headers=api.server_headers)).json()["ArchivedAt"] is None
    assert (await send_to(api, "outbound")).status_code == 200


async def test_unarchive_a_stream_that_is_not_archived_is_1232(api) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.post("/message-streams/broadcast/unarchive", headers=api.server_headers)
    assert_api_error(response, 1232)


# -- this server (docs/postmark-api.md §8.3) -------------------------------------------------------------


async def test_get_this_server_has_every_key(api) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.get("/server", headers=api.server_headers)
    assert response.status_code == 200
    server = response.json()
    assert set(server) == SERVER_KEYS
    assert set(server) >= REQUIRED_BY_POSTMARK_PYTHON
    assert isinstance(server["ID"], int)
    assert server["Name"] == "default"
    assert len(server["ApiTokens"]) == 1
    assert server["ApiTokens"][0].endswith(api.server_token[-4:])
    assert server["Color"] == "Purple"
    assert server["SmtpApiActivated"] is True
    assert server["RawEmailEnabled"] is False
    assert server["DeliveryType"] == "Live"
    assert server["ServerLink"].endswith(f"/servers/{server['ID']}")
    # The inbound listener's address for this server: inbound.<smtp_hostname> unless inbound_address_domain is set.
    assert server["InboundAddress"] == f"{server['InboundHash']}@inbound.localhost"
    assert server["TrackOpens"] is False
    assert server["TrackLinks"] == "None"
    assert server["InboundSpamThreshold"] == 0
    assert server["PostFirstOpenOnly"] is False


async def test_put_this_server(api) -> None:  # type: ignore[no-untyped-def]
    before = (await api.client.get("/server", headers=api.server_headers)).json()
    response = await api.client.put("/server", json={
        "Name": "Production", "Color": "red", "TrackOpens": True, "TrackLinks": "HtmlAndText",
        "BounceHookUrl": "https://hooks.example.com/bounce", "InboundSpamThreshold": 5,
        "DeliveryType": "Sandbox",  # create-only: ignored on edit
    }, headers=api.server_headers)
    assert response.status_code == 200, response.text
    server = response.json()
    assert set(server) == SERVER_KEYS
    assert server["ID"] == before["ID"]
    assert server["Name"] == "Production"
    assert server["Color"] == "red"  # as sent, like Postmark (postmark.js's Server test expects it)
    assert server["TrackOpens"] is True
    assert server["TrackLinks"] == "HtmlAndText"
    assert server["BounceHookUrl"] == "https://hooks.example.com/bounce"
    assert server["InboundSpamThreshold"] == 5
    assert server["DeliveryType"] == "Live"
    assert server["SmtpApiActivated"] is True  # untouched
    assert (await api.client.get("/server", headers=api.server_headers)).json() == server
    for spelling in ("BLUE", "turquoise", "gReY", "Orange"):
        response = await api.client.put("/server", json={"Color": spelling}, headers=api.server_headers)
        assert response.json()["Color"] == spelling
        assert (await api.client.get("/server", headers=api.server_headers)).json()["Color"] == spelling
        assert response.json()["Name"] == "Production"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"TrackLinks": "Always"}, 612),
        ({"TrackLinks": "htmlandtext"}, 612),
        ({"Color": "Pink"}, 607),
        ({"Name": ""}, 608),
        ({"Name": "   "}, 608),
        ({"InboundSpamThreshold": 31}, 611),
        ({"InboundSpamThreshold": -1}, 611),
    ],
)
async def test_put_this_server_refusals_change_nothing(api, body, code) -> None:  # type: ignore[no-untyped-def]
    before = (await api.client.get("/server", headers=api.server_headers)).json()
    response = await api.client.put("/server", json={"TrackOpens": True, **body}, headers=api.server_headers)
    assert_api_error(response, code)
    assert (await api.client.get("/server", headers=api.server_headers)).json() == before


async def test_this_server_needs_a_server_token(api) -> None:  # type: ignore[no-untyped-def]
    for headers in ({}, {"X-Postmark-Server-Token": api.account_token}, api.account_headers):
        assert_api_error(await api.client.get("/server", headers=headers), 10, status=401)
        assert_api_error(await api.client.put("/server", json={"Name": "x"}, headers=headers), 10, status=401)


# -- servers, account token (docs/postmark-api.md §8.4) ---------------------------------------------------


async def create_server(api, **body: object) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = await api.client.post("/servers", json=body, headers=api.account_headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def server_list(api, **params: object) -> tuple[int, list[str]]:  # type: ignore[no-untyped-def]
    query = {"count": 50, "offset": 0, **params}
    response = await api.client.get("/servers", params=query, headers=api.account_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"TotalCount", "Servers"}
    for server in body["Servers"]:
        assert set(server) == SERVER_KEYS
    return body["TotalCount"], [s["Name"] for s in body["Servers"]]


async def test_list_servers(api) -> None:  # type: ignore[no-untyped-def]
    assert await server_list(api) == (1, ["default"])
    await create_server(api, Name="Staging")
    await create_server(api, Name="Production")
    assert await server_list(api) == (3, ["default", "Staging", "Production"])
    assert await server_list(api, count=1, offset=1) == (3, ["Staging"])
    assert await server_list(api, count=2, offset=2) == (3, ["Production"])
    assert await server_list(api, name="stag") == (1, ["Staging"])
    assert await server_list(api, name="PROD") == (1, ["Production"])
    assert await server_list(api, name="a") == (2, ["default", "Staging"])
    assert await server_list(api, name="nothing") == (0, [])


async def test_server_name_filter_takes_wildcards_literally(api) -> None:  # type: ignore[no-untyped-def]
    await create_server(api, Name="team_a")
    await create_server(api, Name="teamXa")
    await create_server(api, Name="100% uptime")
    assert await server_list(api, name="team_a") == (1, ["team_a"])
    assert await server_list(api, name="%") == (1, ["100% uptime"])


@pytest.mark.parametrize("query", ["count=0&offset=0", "count=501&offset=0", "count=10&offset=-1", "count=x&offset=0"])
async def test_server_list_paging_errors_are_600(api, query) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.get(f"/servers?{query}", headers=api.account_headers)
    assert_api_error(response, 600)


async def test_create_get_and_use_a_server(api) -> None:  # type: ignore[no-untyped-def]
    created = await create_server(api, Name="Staging", Color="green", DeliveryType="Sandbox", TrackOpens=True)
    assert set(created) == SERVER_KEYS
    assert created["Name"] == "Staging"
    assert created["Color"] == "green"
    assert created["DeliveryType"] == "Sandbox"
    assert created["TrackOpens"] is True
    assert created["ID"] != await this_server_id(api)
    # The new token is shown in full, once.
    [token] = created["ApiTokens"]
    assert len(token) == 36
    assert token.count("-") == 4

    fetched = await api.client.get(f"/servers/{created['ID']}", headers=api.account_headers)
    assert fetched.status_code == 200
    assert fetched.json()["Name"] == "Staging"
    assert fetched.json()["DeliveryType"] == "Sandbox"
    assert fetched.json()["ApiTokens"] != [token]
    assert fetched.json()["ApiTokens"][0].endswith(token[-4:])

    sent = await api.client.post("/email", json=MINIMAL, headers=server_headers(token))
    assert sent.status_code == 200, sent.text
    assert sent.json()["ErrorCode"] == 0
    own = (await api.client.get("/server", headers=server_headers(token))).json()
    assert (own["ID"], own["Name"]) == (created["ID"], "Staging")
    page = (await api.client.get("/messages/outbound?count=10&offset=0", headers=server_headers(token))).json()
    assert [m["MessageID"] for m in page["Messages"]] == [sent.json()["MessageID"]]
    assert page["Messages"][0]["Sandboxed"] is True
    assert (await api.client.get("/messages/outbound?count=10&offset=0", headers=api.server_headers)).json()[
        "TotalCount"] == 0


async def test_a_created_server_has_the_default_streams(api) -> None:  # type: ignore[no-untyped-def]
    created = await create_server(api, Name="Staging")
    response = await api.client.get("/message-streams", headers=server_headers(created["ApiTokens"][0]))
    assert sorted((s["ID"], s["ServerID"]) for s in response.json()["MessageStreams"]) == [
        ("broadcast", created["ID"]), ("inbound", created["ID"]), ("outbound", created["ID"])]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, 608),
        ({"Name": ""}, 608),
        ({"Name": "   "}, 608),
        ({"Name": "default"}, 603),
        ({"Name": "DEFAULT"}, 603),
        ({"Name": "x", "DeliveryType": "Hybrid"}, 613),
        ({"Name": "x", "Color": "Pink"}, 607),
        ({"Name": "x", "TrackLinks": "Sometimes"}, 612),
    ],
)
async def test_create_server_refusals(api, body, code) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.post("/servers", json=body, headers=api.account_headers)
    assert_api_error(response, code)
    assert await server_list(api) == (1, ["default"])


async def test_edit_a_server(api) -> None:  # type: ignore[no-untyped-def]
    created = await create_server(api, Name="Staging")
    response = await api.client.put(f"/servers/{created['ID']}", json={"Name": "QA", "Color": "ORANGE"},
                                    headers=api.account_headers)
    assert response.status_code == 200, response.text
    # Postmark keeps the color as the client spelled it (postmark.js's Servers test edits to "red" and expects "red").
    assert (response.json()["ID"], response.json()["Name"], response.json()["Color"]) == (created["ID"], "QA", "ORANGE")
    fetched = (await api.client.get(f"/servers/{created['ID']}", headers=api.account_headers)).json()
    assert (fetched["Name"], fetched["Color"]) == ("QA", "ORANGE")
    red = await api.client.put(f"/servers/{created['ID']}", json={"Color": "red"}, headers=api.account_headers)
    assert red.status_code == 200 and red.json()["Color"] == "red"
    listed = (await api.client.get("/servers?count=10&offset=0", headers=api.account_headers)).json()["Servers"]
    assert [s["Color"] for s in listed if s["ID"] == created["ID"]] == ["red"]
    pink = await api.client.put(f"/servers/{created['ID']}", json={"Color": "pink"}, headers=api.account_headers)
    assert_api_error(pink, 607)
    assert await server_list(api) == (2, ["default", "QA"])
    clash = await api.client.put(f"/servers/{created['ID']}", json={"Name": "Default"}, headers=api.account_headers)
    assert_api_error(clash, 603)
    same = await api.client.put(f"/servers/{created['ID']}", json={"Name": "qa"}, headers=api.account_headers)
    assert same.status_code == 200
    assert same.json()["Name"] == "qa"


async def test_delete_a_server_refuses_its_token(api) -> None:  # type: ignore[no-untyped-def]
    created = await create_server(api, Name="Doomed")
    token = created["ApiTokens"][0]
    assert (await api.client.post("/email", json=MINIMAL, headers=server_headers(token))).status_code == 200
    response = await api.client.delete(f"/servers/{created['ID']}", headers=api.account_headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"ErrorCode": 0, "Message": f"Server {created['ID']} removed."}
    # The token was used (and cached) a moment ago; deleting must still refuse it at once.
    assert_api_error(await api.client.post("/email", json=MINIMAL, headers=server_headers(token)), 10, status=401)
    assert_api_error(await api.client.get("/server", headers=server_headers(token)), 10, status=401)
    assert_api_error(await api.client.get(f"/servers/{created['ID']}", headers=api.account_headers), 609, status=404)
    assert await server_list(api) == (1, ["default"])
    assert_api_error(await api.client.delete(f"/servers/{created['ID']}", headers=api.account_headers), 609, status=404)


async def test_a_new_server_does_not_inherit_a_deleted_servers_messages(api) -> None:  # type: ignore[no-untyped-def]
    doomed = await create_server(api, Name="Doomed")
    sent = await api.client.post("/email", json=MINIMAL, headers=server_headers(doomed["ApiTokens"][0]))
    old_message = sent.json()["MessageID"]
    assert (await api.client.delete(f"/servers/{doomed['ID']}", headers=api.account_headers)).status_code == 200
    fresh = await create_server(api, Name="Fresh")
    headers = server_headers(fresh["ApiTokens"][0])
    page = (await api.client.get("/messages/outbound?count=10&offset=0", headers=headers)).json()
    assert page == {"TotalCount": 0, "Messages": []}, (doomed["ID"], fresh["ID"])
    assert_api_error(await api.client.get(f"/messages/outbound/{old_message}/details", headers=headers), 701)


@pytest.mark.parametrize("path", ["/servers/999", "/servers/abc"])
async def test_unknown_server_is_609(api, path) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.get(path, headers=api.account_headers)
    assert response.json()["ErrorCode"] == 609
    assert response.status_code in (404, 422)
    put = await api.client.put(path, json={"Name": "x"}, headers=api.account_headers)
    assert put.json()["ErrorCode"] == 609


async def test_servers_need_the_account_token(api) -> None:  # type: ignore[no-untyped-def]
    wrong = [{}, {"X-Postmark-Account-Token": api.server_token}, api.server_headers,
             {"X-Postmark-Account-Token": "nope"}]
    for headers in wrong:
        assert_api_error(await api.client.get("/servers?count=10&offset=0", headers=headers), 10, status=401)
        assert_api_error(await api.client.get("/servers/1", headers=headers), 10, status=401)
        assert_api_error(await api.client.post("/servers", json={"Name": "x"}, headers=headers), 10, status=401)
        assert_api_error(await api.client.put("/servers/1", json={"Name": "x"}, headers=headers), 10, status=401)
        assert_api_error(await api.client.delete("/servers/1", headers=headers), 10, status=401)
    assert await server_list(api) == (1, ["default"])


async def test_an_inbound_domain_belongs_to_one_server(api) -> None:  # type: ignore[no-untyped-def]
    """ErrorCode 602 (docs/postmark-api.md §1.3): another server's InboundDomain is refused, on POST /servers,
    PUT /servers/{id} and PUT /server, in any case and with a final dot; the refused request changes nothing."""
    first = await api.client.post("/servers", json={"Name": "first", "InboundDomain": "Mail.Example.com"},
                                  headers=api.account_headers)
    assert first.status_code == 200, first.text
    first_id = first.json()["ID"]
    before = (await api.client.get("/servers", params={"count": 50, "offset": 0}, headers=api.account_headers)).json()
    refused = await api.client.post("/servers", json={"Name": "second", "InboundDomain": "mail.example.com."},
                                    headers=api.account_headers)
    assert_api_error(refused, 602, text="mail.example.com.")
    after = (await api.client.get("/servers", params={"count": 50, "offset": 0}, headers=api.account_headers)).json()
    assert after["TotalCount"] == before["TotalCount"]

    second = await api.client.post("/servers", json={"Name": "second"}, headers=api.account_headers)
    assert second.status_code == 200, second.text
    second_id, second_token = second.json()["ID"], second.json()["ApiTokens"][0]
    assert_api_error(await api.client.put(f"/servers/{second_id}", json={"InboundDomain": "MAIL.example.com"},
                                          headers=api.account_headers), 602)
    assert_api_error(await api.client.put("/server", json={"InboundDomain": "mail.example.com", "Color": "Red"},
                                          headers=server_headers(second_token)), 602)
    unchanged = await api.client.get("/server", headers=server_headers(second_token))
    assert (unchanged.json()["InboundDomain"], unchanged.json()["Color"]) == ("", "Purple")
    assert await api.runtime.accounts.inbound_domain_owner("mail.example.com") == first_id

    # The owner may send its own domain again; once it lets the domain go, another server may take it.
    again = await api.client.put(f"/servers/{first_id}", json={"InboundDomain": "mail.example.com", "Name": "first"},
                                 headers=api.account_headers)
    assert again.status_code == 200 and again.json()["InboundDomain"] == "mail.example.com"
    cleared = await api.client.put(f"/servers/{first_id}", json={"InboundDomain": ""}, headers=api.account_headers)
    assert cleared.status_code == 200 and cleared.json()["InboundDomain"] == ""
    taken = await api.client.put("/server", json={"InboundDomain": "mail.example.com"},
                                 headers=server_headers(second_token))
    assert taken.status_code == 200, taken.text
    assert await api.runtime.accounts.inbound_domain_owner("Mail.Example.com") == second_id
