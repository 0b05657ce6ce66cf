"""/webhooks and its delivery-log extensions through the real ASGI app and a real database
(docs/postmark-api.md §7.1)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from posthouse.server.store.webhooks import PostAttempt, PostUpdate
from support import WEBHOOKS_TO_LOOPBACK, assert_api_error

URL = "https://hooks.example.com/postmark"
ALL_OFF = {
    "Open": {"Enabled": False, "PostFirstOpenOnly": False},
    "Click": {"Enabled": False},
    "Delivery": {"Enabled": False},
    "Bounce": {"Enabled": False, "IncludeContent": False},
    "SpamComplaint": {"Enabled": False, "IncludeContent": False},
    "SubscriptionChange": {"Enabled": False},
}
WEBHOOK_KEYS = {"ID", "Url", "MessageStream", "HttpAuth", "HttpHeaders", "Triggers", "Secret"}
DELIVERY_KEYS = {
    "ID",
    "EventID",
    "RecordType",
    "State",
    "Attempts",
    "NextAttemptAt",
    "CreatedAt",
    "UpdatedAt",
    "History",
}
ATTEMPT_KEYS = {"AttemptedAt", "Outcome", "StatusCode", "ResponseExcerpt", "DurationMs", "Error"}


async def create(api, **fields: Any) -> Any:  # type: ignore[no-untyped-def]
    return await api.client.post("/webhooks", json={"Url": URL, **fields}, headers=api.server_headers)


async def created(api, **fields: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = await create(api, **fields)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def edit(api, webhook_id: int, **fields: Any) -> Any:  # type: ignore[no-untyped-def]
    return await api.client.put(f"/webhooks/{webhook_id}", json=fields, headers=api.server_headers)


async def fetch(api, webhook_id: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = await api.client.get(f"/webhooks/{webhook_id}", headers=api.server_headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


# -- creating and reading -------------------------------------------------------------------------


async def test_a_minimal_webhook_has_every_trigger_off_and_a_secret(api) -> None:  # type: ignore[no-untyped-def]
    hook = await created(api)
    assert set(hook) == WEBHOOK_KEYS
    assert isinstance(hook["ID"], int)
    assert (hook["Url"], hook["MessageStream"], hook["HttpAuth"], hook["HttpHeaders"]) == (URL, "outbound", None, [])
    assert hook["Triggers"] == ALL_OFF
    assert hook["Secret"].startswith("whsec_") and len(hook["Secret"]) > 40
    assert await fetch(api, hook["ID"]) == hook  # the owner of the server token may read the secret again
    assert (await created(api))["Secret"] != hook["Secret"]


async def test_a_full_webhook_round_trips(api) -> None:  # type: ignore[no-untyped-def]
    triggers = {
        "Open": {"Enabled": True, "PostFirstOpenOnly": True},
        "Click": {"Enabled": True},
        "Delivery": {"Enabled": True},
        "Bounce": {"Enabled": True, "IncludeContent": True},
        "SpamComplaint": {"Enabled": True, "IncludeContent": False},
        "SubscriptionChange": {"Enabled": True},
    }
    hook = await created(
        api,
        MessageStream="broadcast",
        HttpAuth={"Username": "user", "Password": "secret"},
        HttpHeaders=[{"Name": "X-Token", "Value": "abc"}],
        Triggers=triggers,
        Verify=False,
    )
    assert hook["MessageStream"] == "broadcast"
    assert hook["HttpAuth"] == {"Username": "user", "Password": "secret"}
    assert hook["HttpHeaders"] == [{"Name": "X-Token", "Value": "abc"}]
    assert hook["Triggers"] == triggers
    assert await fetch(api, hook["ID"]) == hook


async def test_postmarkers_nulls_and_partial_triggers_are_accepted(api) -> None:  # type: ignore[no-untyped-def]
    hook = await created(
        api,
        MessageStream=None,
        HttpAuth=None,
        HttpHeaders=None,
        Triggers={"Open": {"Enabled": True}, "Bounce": None, "Click": {"Enabled": None}},
    )
    assert hook["MessageStream"] == "outbound"
    assert hook["Triggers"] == {**ALL_OFF, "Open": {"Enabled": True, "PostFirstOpenOnly": False}}


async def test_credentials_in_the_url_become_http_auth(api) -> None:  # type: ignore[no-untyped-def]
    hook = await created(api, Url="https://us%40er:p%3Ass@hooks.example.com:8443/in?x=1")
    assert hook["Url"] == "https://hooks.example.com:8443/in?x=1"
    assert hook["HttpAuth"] == {"Username": "us@er", "Password": "p:ss"}


async def test_listing_by_stream(api) -> None:  # type: ignore[no-untyped-def]
    first = await created(api)
    second = await created(api, MessageStream="broadcast")

    async def listed(**params: str) -> list[int]:
        response = await api.client.get("/webhooks", params=params, headers=api.server_headers)
        assert response.status_code == 200, response.text
        assert set(response.json()) == {"Webhooks"}
        return [w["ID"] for w in response.json()["Webhooks"]]

    assert await listed() == [first["ID"], second["ID"]]
    assert await listed(MessageStream="outbound") == [first["ID"]]  # postmark-python's spelling
    assert await listed(messageStream="broadcast") == [second["ID"]]  # postmark.js's
    assert await listed(MessageStream="nope") == []


# -- editing --------------------------------------------------------------------------------------


async def test_an_edit_changes_only_what_it_names(api) -> None:  # type: ignore[no-untyped-def]
    hook = await created(
        api,
        HttpAuth={"Username": "u", "Password": "p"},
        HttpHeaders=[{"Name": "X-One", "Value": "1"}],
        Triggers={"Open": {"Enabled": False, "PostFirstOpenOnly": True}, "Delivery": {"Enabled": True}},
    )
    response = await edit(api, hook["ID"], Triggers={"Open": {"Enabled": True}, "Bounce": {"IncludeContent": True}})
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["Triggers"] == {
        **ALL_OFF,
        "Open": {"Enabled": True, "PostFirstOpenOnly": True},
        "Delivery": {"Enabled": True},
        "Bounce": {"Enabled": False, "IncludeContent": True},
    }
    assert (changed["Url"], changed["HttpAuth"], changed["HttpHeaders"]) == (
        hook["Url"],
        hook["HttpAuth"],
        hook["HttpHeaders"],
    )
    assert changed["Secret"] == hook["Secret"]

    changed = (
        await edit(
            api,
            hook["ID"],
            Url="https://other.example.com:8080/hook",
            MessageStream="outbound",
            ID=hook["ID"],
            HttpHeaders=[{"Name": "X-Two", "Value": "2"}],
        )
    ).json()
    assert changed["Url"] == "https://other.example.com:8080/hook"
    assert changed["HttpHeaders"] == [{"Name": "X-Two", "Value": "2"}]
    assert changed["HttpAuth"] == {"Username": "u", "Password": "p"}
    # Empty credentials remove them; an empty list removes the headers.
    changed = (await edit(api, hook["ID"], HttpAuth={"Username": "", "Password": ""}, HttpHeaders=[])).json()
    assert (changed["HttpAuth"], changed["HttpHeaders"]) == (None, [])
    assert await fetch(api, hook["ID"]) == changed
    # Credentials in a new Url replace HttpAuth.
    changed = (await edit(api, hook["ID"], Url="https://a:b@hooks.example.com/")).json()
    assert (changed["Url"], changed["HttpAuth"]) == ("https://hooks.example.com/", {"Username": "a", "Password": "b"})


async def test_the_id_and_stream_of_a_webhook_cannot_change(api) -> None:  # type: ignore[no-untyped-def]
    hook = await created(api)
    assert_api_error(await edit(api, hook["ID"], MessageStream="broadcast"), 1357)
    assert_api_error(await edit(api, hook["ID"], ID=hook["ID"] + 1), 1357)


# -- deleting -------------------------------------------------------------------------------------


async def test_deleting_a_webhook(api) -> None:  # type: ignore[no-untyped-def]
    hook = await created(api)
    response = await api.client.delete(f"/webhooks/{hook['ID']}", headers=api.server_headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"ErrorCode": 0, "Message": f"Webhook {hook['ID']} removed."}
    assert_api_error(await api.client.get(f"/webhooks/{hook['ID']}", headers=api.server_headers), 1352)
    assert_api_error(await api.client.delete(f"/webhooks/{hook['ID']}", headers=api.server_headers), 1352)
    assert (await api.client.get("/webhooks", headers=api.server_headers)).json() == {"Webhooks": []}


# -- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"Url": None}, 1354),
        ({"Url": "  "}, 1354),
        ({"Url": "ftp://hooks.example.com/"}, 1354),
        ({"Url": "hooks.example.com/in"}, 1354),
        ({"Url": "http://10.0.0.5/hook"}, 1354),  # a private network: SSRF
        ({"Url": "http://169.254.169.254/latest/meta-data/"}, 1354),  # the cloud metadata service
        ({"Url": "http://[::ffff:192.168.1.1]/"}, 1354),
        ({"Url": "http://2130706433.example.com\\@10.0.0.1/"}, 1354),  # parser differential
        # Loopback, unless the operator allows it: a server token must not reach this machine's services.
        ({"Url": "http://127.0.0.1:8080/hook"}, 1354),
        ({"Url": "http://localhost:8080/hook"}, 1354),
        ({"Url": "http://[::1]/hook"}, 1354),
        # Full-width and ideographic digits and dots are what they stand for (checked once normalised).
        ({"Url": "http://１０．０．０．５/hook"}, 1354),
        ({"Url": "http://１２７。０。０。１:8080/hook"}, 1354),
        ({"Url": "http://１９２.１６８.０.１/hook"}, 1354),
        ({"Url": "https://u:p@hooks.example.com/", "HttpAuth": {"Username": "v", "Password": "q"}}, 1361),
        ({"HttpAuth": {"Username": "a:b", "Password": "p"}}, 1361),
        ({"HttpHeaders": [{"Name": "X-Evil", "Value": "a\r\nHost: internal"}]}, 1358),  # header injection
        ({"HttpHeaders": [{"Name": "Bad Name", "Value": "x"}]}, 1358),
        ({"HttpHeaders": [{"Name": "Host", "Value": "internal"}]}, 1358),
        ({"HttpHeaders": [{"Name": "webhook-signature", "Value": "v1,forged"}]}, 1358),
        ({"HttpHeaders": [{"Name": None, "Value": "x"}]}, 1358),
        (
            {
                "HttpHeaders": [{"Name": "Authorization", "Value": "Bearer x"}],
                "HttpAuth": {"Username": "u", "Password": "p"},
            },
            1358,
        ),
        ({"MessageStream": "inbound"}, 1351),
        ({"MessageStream": "nope"}, 1226),
        ({"ID": 5}, 1356),
        ({"Triggers": {"Open": {"Enabled": "yes"}}}, 403),
    ],
)
async def test_bad_webhooks_are_refused(api, fields: dict[str, Any], code: int) -> None:  # type: ignore[no-untyped-def]
    assert_api_error(await create(api, **fields), code)
    assert (await api.client.get("/webhooks", headers=api.server_headers)).json() == {"Webhooks": []}


@pytest.mark.parametrize("api_settings", [WEBHOOKS_TO_LOOPBACK])
@pytest.mark.parametrize(
    ("url", "saved"),
    [
        ("http://127.0.0.1:8080/hook", "http://127.0.0.1:8080/hook"),
        ("http://１２７。０。０。１:8080/hook", "http://127.0.0.1:8080/hook"),
        ("https://ｈｏｏｋｓ．example。com/in", "https://hooks.example.com/in"),
    ],
)
async def test_loopback_when_allowed_and_urls_saved_as_they_are_posted(api, url: str, saved: str) -> None:  # type: ignore[no-untyped-def]
    hook = await created(api, Url=url)
    assert hook["Url"] == saved  # normalised once, when saved: the poster posts to exactly what was checked
    assert (await fetch(api, hook["ID"]))["Url"] == saved


async def test_bad_edits_are_refused_and_change_nothing(api) -> None:  # type: ignore[no-untyped-def]
    hook = await created(api, HttpHeaders=[{"Name": "Authorization", "Value": "Bearer x"}])
    assert_api_error(await edit(api, hook["ID"], Url="http://192.168.0.1/"), 1354)
    # New HttpAuth conflicts with the Authorization header the webhook keeps.
    assert_api_error(await edit(api, hook["ID"], HttpAuth={"Username": "u", "Password": "p"}), 1358)
    assert await fetch(api, hook["ID"]) == hook


async def test_an_archived_stream_takes_no_webhooks(api) -> None:  # type: ignore[no-untyped-def]
    archived = await api.client.post("/message-streams/broadcast/archive", headers=api.server_headers)
    assert archived.status_code == 200, archived.text
    assert_api_error(await create(api, MessageStream="broadcast"), 1350)


async def test_empty_bodies_are_1355(api) -> None:  # type: ignore[no-untyped-def]
    hook = await created(api)
    headers = {**api.server_headers, "Content-Type": "application/json"}
    assert_api_error(await api.client.post("/webhooks", content=b"", headers=headers), 1355)
    assert_api_error(await api.client.put(f"/webhooks/{hook['ID']}", content=b" ", headers=headers), 1355)


@pytest.mark.parametrize("webhook_id", ["424242", "abc", "99999999999999999999999"])
async def test_an_unknown_webhook_is_1352(api, webhook_id: str) -> None:  # type: ignore[no-untyped-def]
    headers = api.server_headers
    assert_api_error(await api.client.get(f"/webhooks/{webhook_id}", headers=headers), 1352)
    assert_api_error(await api.client.put(f"/webhooks/{webhook_id}", json={"Url": URL}, headers=headers), 1352)
    assert_api_error(await api.client.delete(f"/webhooks/{webhook_id}", headers=headers), 1352)
    assert_api_error(await api.client.get(f"/webhooks/{webhook_id}/deliveries", headers=headers), 1352)
    assert_api_error(await api.client.post(f"/webhooks/{webhook_id}/deliveries/1/redeliver", headers=headers), 1352)


async def test_another_servers_webhooks_are_invisible(api) -> None:  # type: ignore[no-untyped-def]
    hook = await created(api)
    made = await api.client.post("/servers", json={"Name": "other"}, headers=api.account_headers)
    other = {"X-Postmark-Server-Token": made.json()["ApiTokens"][0], "Accept": "application/json"}
    assert (await api.client.get("/webhooks", headers=other)).json() == {"Webhooks": []}
    assert_api_error(await api.client.get(f"/webhooks/{hook['ID']}", headers=other), 1352)
    assert_api_error(await api.client.put(f"/webhooks/{hook['ID']}", json={"Url": URL}, headers=other), 1352)
    assert_api_error(await api.client.delete(f"/webhooks/{hook['ID']}", headers=other), 1352)
    assert await fetch(api, hook["ID"]) == hook


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/webhooks"),
        ("POST", "/webhooks"),
        ("GET", "/webhooks/1"),
        ("PUT", "/webhooks/1"),
        ("DELETE", "/webhooks/1"),
        ("GET", "/webhooks/1/deliveries"),
        ("POST", "/webhooks/1/deliveries/1/redeliver"),
    ],
)
async def test_webhooks_need_a_server_token(api, method: str, path: str) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.request(method, path, json={"Url": URL}, headers=api.account_headers)
    assert_api_error(response, 10, status=401)


# -- the delivery log (extensions) ----------------------------------------------------------------


async def test_the_delivery_log_shows_each_post_and_its_attempts_and_redelivers(api) -> None:  # type: ignore[no-untyped-def]
    hook = await created(api, Triggers={"SubscriptionChange": {"Enabled": True}})
    path = f"/webhooks/{hook['ID']}/deliveries"
    assert (await api.client.get(path, headers=api.server_headers)).json() == {"TotalCount": 0, "Deliveries": []}
    for email in ("a@example.com", "b@example.com"):
        response = await api.client.post(
            "/message-streams/outbound/suppressions",
            headers=api.server_headers,
            json={"Suppressions": [{"EmailAddress": email}]},
        )
        assert response.status_code == 200, response.text

    log = (await api.client.get(path, params={"count": 10, "offset": 0}, headers=api.server_headers)).json()
    assert log["TotalCount"] == 2
    newest, oldest = log["Deliveries"]
    assert newest["ID"] > oldest["ID"]
    assert set(newest) == DELIVERY_KEYS
    assert (newest["RecordType"], newest["State"], newest["Attempts"], newest["History"]) == (
        "SubscriptionChange",
        "pending",
        0,
        [],
    )
    assert newest["EventID"].startswith("msg_") and newest["EventID"].endswith(f"_{hook['ID']}")
    for key in ("NextAttemptAt", "CreatedAt", "UpdatedAt"):
        assert datetime.fromisoformat(newest[key]).tzinfo is not None
    page = (await api.client.get(path, params={"count": 1, "offset": 1}, headers=api.server_headers)).json()
    assert page["TotalCount"] == 2 and [d["ID"] for d in page["Deliveries"]] == [oldest["ID"]]

    # One attempt fails for good (as the dispatcher records it): the log shows it, with no next attempt.
    store = api.runtime.store
    now = api.runtime.clock.micros()
    claimed = await store.claim_webhook_posts("test", now + 1, 10, now + 60_000_000)
    assert len(claimed) == 2
    await store.record_webhook_posts(
        [
            PostUpdate(post, "test", "failed", now, PostAttempt(now, "http_error", 500, "boom", 12.5, None))
            for post in claimed
        ]
    )
    failed = (await api.client.get(path, headers=api.server_headers)).json()["Deliveries"][0]
    assert (failed["State"], failed["Attempts"], failed["NextAttemptAt"]) == ("failed", 1, None)
    (attempt,) = failed["History"]
    assert set(attempt) == ATTEMPT_KEYS
    assert (
        attempt["Outcome"],
        attempt["StatusCode"],
        attempt["ResponseExcerpt"],
        attempt["DurationMs"],
        attempt["Error"],
    ) == ("http_error", 500, "boom", 12.5, None)

    response = await api.client.post(f"{path}/{failed['ID']}/redeliver", headers=api.server_headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"ErrorCode": 0, "Message": "OK"}
    again = (await api.client.get(path, headers=api.server_headers)).json()["Deliveries"][0]
    assert (again["State"], again["Attempts"]) == ("pending", 0)
    assert again["NextAttemptAt"] is not None and len(again["History"]) == 1  # the log is kept

    for unknown in ("999999", "x"):
        unknown_answer = await api.client.post(f"{path}/{unknown}/redeliver", headers=api.server_headers)
        assert_api_error(unknown_answer, 1352, status=404)
    other = await created(api)
    misplaced = await api.client.post(
        f"/webhooks/{other['ID']}/deliveries/{failed['ID']}/redeliver", headers=api.server_headers
    )
    assert_api_error(misplaced, 1352, status=404)


@pytest.mark.parametrize("params", [{"count": 0}, {"count": 501}, {"offset": -1}, {"count": "many"}])
async def test_bad_delivery_paging_is_refused(api, params: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    hook = await created(api)
    response = await api.client.get(f"/webhooks/{hook['ID']}/deliveries", params=params, headers=api.server_headers)
    assert_api_error(response, 1361)


async def test_a_late_post_result_of_a_lost_lease_changes_and_logs_nothing(api) -> None:  # type: ignore[no-untyped-def]
    """A dispatcher whose lease ran out (paused mid-post) reports after the post was claimed again, here by
    itself: only the current claim's result counts, and only it appears in the delivery log."""
    hook = await created(api, Triggers={"SubscriptionChange": {"Enabled": True}})
    response = await api.client.post("/message-streams/outbound/suppressions", headers=api.server_headers,
                                     json={"Suppressions": [{"EmailAddress": "a@example.com"}]})
    assert response.status_code == 200, response.text
    store = api.runtime.store
    now = api.runtime.clock.micros()
    (first,) = await store.claim_webhook_posts("w1", now + 1, 10, now + 60_000_000)
    (again,) = await store.claim_webhook_posts("w1", now + 60_000_001, 10, now + 120_000_000)
    assert (first.id, first.attempts, again.attempts) == (again.id, 1, 2)
    await store.record_webhook_posts([PostUpdate(first, "w1", "delivered", now, PostAttempt(now, "delivered", 200,
                                                                                           "late", 1.0, None))])
    (post,) = (await api.client.get(f"/webhooks/{hook['ID']}/deliveries", headers=api.server_headers)).json()[
        "Deliveries"]
    assert (post["State"], post["History"]) == ("sending", [])
    await store.record_webhook_posts([PostUpdate(again, "w1", "delivered", now, PostAttempt(now, "delivered", 200,
                                                                                           "current", 1.0, None))])
    (post,) = (await api.client.get(f"/webhooks/{hook['ID']}/deliveries", headers=api.server_headers)).json()[
        "Deliveries"]
    assert post["State"] == "delivered"
    assert [a["ResponseExcerpt"] for a in post["History"]] == ["current"]


async def test_a_stream_takes_at_most_ten_webhooks(api) -> None:  # type: ignore[no-untyped-def]
    # A legacy hook of the server does not count against its default stream's ten.
    edited = await api.client.put("/server", json={"DeliveryHookUrl": URL}, headers=api.server_headers)
    assert edited.status_code == 200, edited.text
    answers = await asyncio.gather(*(create(api, Url=f"{URL}/{i}") for i in range(12)))
    assert sorted(a.status_code for a in answers) == [200] * 10 + [422] * 2
    for refused in (a for a in answers if a.status_code == 422):
        assert_api_error(refused, 1359)
    assert len((await api.client.get("/webhooks", headers=api.server_headers)).json()["Webhooks"]) == 10
    assert (await create(api, MessageStream="broadcast")).status_code == 200  # another stream has its own ten
