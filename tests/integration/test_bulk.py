"""Bulk sending (docs/postmark-api.md §2.5): accepted whole, expanded in chunks, progress, never twice."""

from __future__ import annotations

import asyncio

BULK = {"From": "news@example.com", "Subject": "Hi {{name}}", "TextBody": "Hello {{name}}!",
        "HtmlBody": "<p>Hello <b>{{name}}</b></p>", "Tag": "digest"}


def messages(n: int, start: int = 0) -> list[dict]:  # type: ignore[type-arg]
    return [{"To": f"user{i}@example.com", "TemplateModel": {"name": f"user{i}"}} for i in range(start, start + n)]


async def expand_all(api) -> None:  # type: ignore[no-untyped-def]
    """What the bulk worker does: lease each waiting request and expand it."""
    store, bulk = api.runtime.store, api.runtime.bulk
    while (record := await store.claim_bulk("test", 10**18, 10**18 + 1)) is not None:
        await bulk.expand(record)


async def test_a_bulk_request_is_accepted_at_once_then_expanded(api) -> None:  # type: ignore[no-untyped-def]
    answer = await api.client.post("/email/bulk", headers=api.server_headers,
                                   json={**BULK, "Messages": messages(1200)})
    assert answer.status_code == 200, answer.text
    accepted = answer.json()
    assert accepted["ID"] == accepted["Id"] and accepted["Status"] == "Accepted"
    assert await api.count("messages") == 0
    status = (await api.client.get(f"/email/bulk/{accepted['Id']}", headers=api.server_headers)).json()
    assert (status["Status"], status["TotalMessages"], status["PercentageCompleted"]) == ("Accepted", 1200, 0.0)
    await expand_all(api)
    status = (await api.client.get(f"/email/bulk/{accepted['Id']}", headers=api.server_headers)).json()
    assert status == {"Id": accepted["Id"], "SubmittedAt": accepted["SubmittedAt"], "Status": "Completed",
                      "TotalMessages": 1200, "PercentageCompleted": 100.0, "ReleasedCount": 1200, "FailedCount": 0,
                      "Subject": "Hi {{name}}"}
    assert await api.count("messages") == 1200
    row = await api.runtime.store.query_one(
        "SELECT subject, stream, tag FROM messages WHERE from_email = 'news@example.com' AND subject = 'Hi user7'")
    assert tuple(row) == ("Hi user7", "broadcast", "digest")


async def test_expanding_twice_never_sends_twice(api) -> None:  # type: ignore[no-untyped-def]
    """Two expanders on one request (a lease taken over while the first still ran): the chunk guard lets
    each chunk commit once; the loser fails on it and stops."""
    answer = await api.client.post("/email/bulk", headers=api.server_headers, json={**BULK, "Messages": messages(1500)})
    bulk_id = answer.json()["Id"]
    store = api.runtime.store
    record = await store.claim_bulk("first", 10**18, 10**18 + 1)
    await store.transact([__import__("posthouse.server.store.base", fromlist=["Stmt"]).Stmt(
        "UPDATE bulk_requests SET lease_owner = 'second'")])  # the second takes the lease over
    again = await store.get_bulk(record.server_id, bulk_id)
    results = await asyncio.gather(api.runtime.bulk.expand(record), api.runtime.bulk.expand(again),
                                   return_exceptions=True)
    assert sum(isinstance(r, Exception) for r in results) <= 1
    assert await api.count("messages") == 1500
    status = (await api.client.get(f"/email/bulk/{bulk_id}", headers=api.server_headers)).json()
    assert (status["Status"], status["ReleasedCount"], status["FailedCount"]) == ("Completed", 1500, 0)


async def test_messages_that_cannot_be_sent_count_as_failed(api) -> None:  # type: ignore[no-untyped-def]
    items = [*messages(3), {"To": "not an address", "TemplateModel": {"name": "x"}}]
    answer = await api.client.post("/email/bulk", headers=api.server_headers, json={**BULK, "Messages": items})
    await expand_all(api)
    status = (await api.client.get(f"/email/bulk/{answer.json()['Id']}", headers=api.server_headers)).json()
    assert (status["ReleasedCount"], status["FailedCount"], status["Status"]) == (3, 1, "Completed")


async def test_a_bulk_send_with_a_template(api) -> None:  # type: ignore[no-untyped-def]
    created = await api.client.post("/templates", headers=api.server_headers, json={
        "Name": "Digest", "Alias": "digest", "Subject": "For {{name}}", "TextBody": "Dear {{name}}"})
    assert created.status_code == 200, created.text
    answer = await api.client.post("/email/bulk", headers=api.server_headers, json={
        "From": "news@example.com", "TemplateAlias": "digest", "Messages": messages(2)})
    assert answer.status_code == 200, answer.text
    await expand_all(api)
    subjects = {r[0] for r in await api.runtime.store.query("SELECT subject FROM messages")}
    assert subjects == {"For user0", "For user1"}


async def test_invalid_bulk_requests_are_refused_whole(api) -> None:  # type: ignore[no-untyped-def]
    cases = [
        ({**BULK, "Messages": messages(1), "From": ""}, 300),
        ({**BULK, "Messages": []}, 300),
        ({**BULK, "Messages": [{"TemplateModel": {}}]}, 300),
        ({**BULK, "Messages": messages(50_001)}, 300),
        ({**BULK, "Messages": messages(1), "TextBody": "{{#each x}}", "HtmlBody": None}, 1123),
        ({"From": "news@example.com", "TemplateAlias": "missing", "Messages": messages(1)}, 1101),
        ({**BULK, "Messages": messages(1), "MessageStream": "nope"}, 1235),
    ]
    for body, code in cases:
        answer = await api.client.post("/email/bulk", headers=api.server_headers, json=body)
        assert answer.status_code == 422, (body.get("From"), answer.text)
        assert answer.json()["ErrorCode"] == code, answer.text
    assert await api.count("bulk_requests") == 0


async def test_unknown_bulk_is_404_and_the_list_pages(api) -> None:  # type: ignore[no-untyped-def]
    missing = await api.client.get("/email/bulk/01a2-nope", headers=api.server_headers)
    assert missing.status_code == 404 and missing.json()["ErrorCode"] == 12
    ids = [(await api.client.post("/email/bulk", headers=api.server_headers,
                                  json={**BULK, "Messages": messages(1)})).json()["Id"] for _ in range(3)]
    first = (await api.client.get("/email/bulk?count=2", headers=api.server_headers)).json()
    assert [r["Id"] for r in first["Requests"]] == ids[::-1][:2] and first["PaginationKey"]
    second = (await api.client.get(f"/email/bulk?count=2&paginationKey={first['PaginationKey']}",
                                   headers=api.server_headers)).json()
    assert [r["Id"] for r in second["Requests"]] == [ids[0]] and "PaginationKey" not in second
    bad = await api.client.get("/email/bulk?count=2&paginationKey=@@@", headers=api.server_headers)
    assert bad.status_code == 422 and bad.json()["ErrorCode"] == 13
