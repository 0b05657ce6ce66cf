"""POST /email and /email/batch through the real ASGI app and a real database: answers, errors, leniencies."""

from __future__ import annotations

import base64
import json

import pytest

MINIMAL = {"From": "sender@example.com", "To": "receiver@example.com", "Subject": "Hi", "TextBody": "Hello"}


def with_(**changes: object) -> dict[str, object]:
    body = dict(MINIMAL)
    body.update(changes)
    return body


async def test_send_answers_like_postmark_and_stores_once(api) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.post("/email", json=MINIMAL, headers=api.server_headers)
    assert response.status_code == 200
    body = response.json()
    assert body["ErrorCode"] == 0 and body["Message"] == "OK"
    assert body["To"] == "receiver@example.com"
    assert len(body["MessageID"]) == 36 and body["MessageID"] == body["MessageID"].lower()
    assert "T" in body["SubmittedAt"] and body["SubmittedAt"].endswith("+00:00")
    assert await api.count("messages") == 1
    assert await api.count("deliveries") == 1
    events = await api.runtime.store.list_events(body["MessageID"])
    assert [e.type for e in events] == ["Queued"]


# (request body, HTTP status, ErrorCode, a piece of the message)
REFUSALS = [
    (with_(From=None), 422, 300, "Invalid 'From' address"),
    (with_(From="test"), 422, 300, "Invalid 'From' address: 'test'."),
    (with_(To="test"), 422, 300, "Invalid 'To' address: 'test'."),
    (with_(To="ok@example.com, broken@"), 422, 300, "Invalid 'To' address: 'broken@'."),
    (with_(Cc="nope"), 422, 300, "Invalid 'Cc' address"),
    (with_(Bcc="a@@example.com"), 422, 300, "Invalid 'Bcc' address"),
    (with_(To=None), 422, 300, "Zero recipients"),
    (with_(To=", ".join(f"r{i}@example.com" for i in range(51))), 422, 300, "Too many recipients"),
    (
        with_(
            To=", ".join(f"r{i}@example.com" for i in range(30)), Cc=", ".join(f"c{i}@example.com" for i in range(21))
        ),
        422,
        300,
        "Too many recipients",
    ),
    (with_(TextBody=None), 422, 300, "TextBody or HtmlBody"),
    (with_(TextBody="", HtmlBody=""), 422, 300, "TextBody or HtmlBody"),
    (with_(Subject="x" * 2001), 422, 300, "Subject"),
    (with_(Tag="t" * 1001), 422, 300, "Tag"),
    (with_(Metadata={f"k{i}": "v" for i in range(11)}), 422, 300, "Metadata"),
    (with_(Metadata={"k" * 21: "v"}), 422, 300, "Metadata"),
    (with_(Metadata={"key": "v" * 81}), 422, 300, "Metadata"),
    (with_(Metadata={"Key": "a", "key": "b"}), 422, 300, "unique"),
    (with_(TrackLinks="Sometimes"), 422, 300, "TrackLinks"),
    (
        with_(Attachments=[{"Name": "run.exe", "Content": "QQ==", "ContentType": "application/octet-stream"}]),
        422,
        411,
        "run.exe",
    ),
    (with_(Attachments=[{"Name": "a.txt", "Content": "not base64!", "ContentType": "text/plain"}]), 422, 300, "base64"),
    (with_(Attachments=[{"Content": "QQ==", "ContentType": "text/plain"}]), 422, 300, "Name"),
    (with_(MessageStream="nosuchstream"), 422, 1235, "The stream provided: 'nosuchstream' does not exist"),
    (with_(MessageStream="inbound"), 422, 1236, "inbound"),
    (with_(To=5), 422, 403, "Invalid request field(s): 'To'."),
    (with_(Headers={"X": "y"}), 422, 403, "Headers"),
    (with_(Headers=[{"Name": "Content-Type", "Value": "text/evil"}]), 422, 300, "Content-Type"),
    (with_(Headers=[{"Name": "Bad Name", "Value": "v"}]), 422, 300, "header name"),
]


@pytest.mark.parametrize(("body", "status", "code", "text"), REFUSALS)
async def test_refusals_carry_postmark_codes_and_store_nothing(api, body, status, code, text) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.post("/email", json=body, headers=api.server_headers)
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["ErrorCode"] == code
    assert text in payload["Message"]
    assert response.headers["X-PM-ApiErrorCode"] == str(code)
    assert await api.count("messages") == 0
    assert await api.count("deliveries") == 0


async def test_invalid_json_is_402(api) -> None:  # type: ignore[no-untyped-def]
    headers = {**api.server_headers, "Content-Type": "application/json"}
    for raw in (b"{", b"", b"[1,", b"not json"):
        response = await api.client.post("/email", content=raw, headers=headers)
        assert response.status_code == 422
        assert response.json()["ErrorCode"] == 402
    assert await api.count("messages") == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Postmark-Server-Token": "wrong"},
        {"X-Postmark-Server-Token": ""},
    ],
)
async def test_missing_or_wrong_token_is_401_code_10(api, headers) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.post("/email", json=MINIMAL, headers=headers)
    assert response.status_code == 401
    assert response.json()["ErrorCode"] == 10
    assert response.headers["X-PM-ApiErrorCode"] == "10"
    assert await api.count("messages") == 0


async def test_account_token_cannot_send_and_server_token_cannot_manage_servers(api) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.post("/email", json=MINIMAL, headers={"X-Postmark-Server-Token": api.account_token})
    assert response.status_code == 401 and response.json()["ErrorCode"] == 10
    response = await api.client.get(
        "/servers?count=10&offset=0", headers={"X-Postmark-Account-Token": api.server_token}
    )
    assert response.status_code == 401 and response.json()["ErrorCode"] == 10


async def test_oversized_single_is_413_and_batch_allows_more(api) -> None:  # type: ignore[no-untyped-def]
    big = "x" * (10 * 1024 * 1024 + 1)
    response = await api.client.post(
        "/email",
        content=json.dumps(with_(TextBody=big)).encode(),
        headers={**api.server_headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert await api.count("messages") == 0


async def test_non_json_content_type_is_415(api) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.post(
        "/email", content=json.dumps(MINIMAL).encode(), headers={**api.server_headers, "Content-Type": "text/plain"}
    )
    assert response.status_code == 415


async def test_lenient_like_the_official_clients_need(api) -> None:  # type: ignore[no-untyped-def]
    """Nulls for every optional field, empty Headers/Metadata, unknown attachment keys, any path case,
    a trailing slash, no Content-Type header at all (docs/postmark-api.md §1.4, §12)."""
    body = {
        **MINIMAL,
        "Cc": None,
        "Bcc": None,
        "Tag": None,
        "HtmlBody": None,
        "ReplyTo": None,
        "Headers": [],
        "TrackOpens": None,
        "TrackLinks": "None",
        "Metadata": {},
        "MessageStream": None,
        "Attachments": [
            {
                "Name": "a.txt",
                "Content": base64.b64encode(b"hi").decode(),
                "ContentType": "text/plain",
                "ContentID": None,
                "ContentLength": 2,
                "Disposition": "attachment",
            }
        ],
        "SomethingNew": True,
    }
    for path in ("/email", "/EMAIL/", "/Email"):
        response = await api.client.post(path, content=json.dumps(body).encode(), headers=api.server_headers)
        assert response.status_code == 200, response.text
        assert response.json()["ErrorCode"] == 0
    assert await api.count("messages") == 3


async def test_test_token_validates_and_stores_nothing(api) -> None:  # type: ignore[no-untyped-def]
    headers = {"X-Postmark-Server-Token": "POSTMARK_API_TEST"}
    ok = await api.client.post("/email", json=MINIMAL, headers=headers)
    assert ok.status_code == 200
    assert ok.json()["ErrorCode"] == 0 and len(ok.json()["MessageID"]) == 36
    bad = await api.client.post("/email", json=with_(From="test"), headers=headers)
    assert bad.status_code == 422 and bad.json()["ErrorCode"] == 300
    batch = await api.client.post("/email/batch", json=[MINIMAL, MINIMAL], headers=headers)
    assert [item["ErrorCode"] for item in batch.json()] == [0, 0]
    assert await api.count("messages") == 0


async def test_batch_answers_per_item_in_order_with_full_keys(api) -> None:  # type: ignore[no-untyped-def]
    items = [MINIMAL, with_(To="bad"), with_(To="second@example.com"), with_(MessageStream="nope")]
    response = await api.client.post("/email/batch", json=items, headers=api.server_headers)
    assert response.status_code == 200
    results = response.json()
    assert [r["ErrorCode"] for r in results] == [0, 300, 0, 1235]
    for result in results:  # postmark-python requires these keys on every item (§2.2)
        assert {"To", "SubmittedAt", "MessageID", "ErrorCode", "Message"} <= set(result)
    assert results[1]["To"] == "bad"
    assert results[2]["To"] == "second@example.com"
    assert await api.count("messages") == 2


async def test_batch_over_500_is_410_and_stores_nothing(api) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.post("/email/batch", json=[MINIMAL] * 501, headers=api.server_headers)
    assert response.status_code == 422
    assert response.json()["ErrorCode"] == 410
    assert "up to 500" in response.json()["Message"]
    assert await api.count("messages") == 0


async def test_batch_must_be_an_array(api) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.post("/email/batch", json=MINIMAL, headers=api.server_headers)
    assert response.status_code == 422
    assert response.json()["ErrorCode"] in (402, 403)
    assert await api.count("messages") == 0


async def test_concurrent_sends_all_commit(api) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    responses = await asyncio.gather(
        *(api.client.post("/email", json=with_(Subject=f"n{i}"), headers=api.server_headers) for i in range(50))
    )
    assert all(r.status_code == 200 for r in responses)
    assert len({r.json()["MessageID"] for r in responses}) == 50
    assert await api.count("messages") == 50
    assert await api.count("deliveries") == 50


async def test_a_cc_only_send_leaves_to_out_of_the_answer(api) -> None:  # type: ignore[no-untyped-def]
    # Postmark leaves `To` out when there is none; django-anymail reads that absence as "cc- or bcc-only".
    response = await api.client.post("/email", json=with_(To=None, Cc="copy@example.com"), headers=api.server_headers)
    assert response.status_code == 200, response.text
    assert "To" not in response.json() and response.json()["ErrorCode"] == 0
    batch = await api.client.post("/email/batch", json=[with_(To=None, Bcc="hidden@example.com"), with_(To=None)],
                                  headers=api.server_headers)
    accepted, refused = batch.json()
    assert "To" not in accepted and accepted["ErrorCode"] == 0
    # A refused item keeps every key (postmark-python's model requires them).
    assert refused["To"] == "" and refused["ErrorCode"] == 300


async def test_a_numeric_header_value_is_sent_as_its_text(api) -> None:  # type: ignore[no-untyped-def]
    headers = [{"Name": "X-Priority", "Value": 1}, {"Name": "X-Score", "Value": 2.5}]
    response = await api.client.post("/email", json=with_(Headers=headers), headers=api.server_headers)
    assert response.status_code == 200, response.text
    dump = await api.client.get(f"/messages/outbound/{response.json()['MessageID']}/dump", headers=api.server_headers)
    assert "X-Priority: 1\r\n" in dump.json()["Body"] and "X-Score: 2.5\r\n" in dump.json()["Body"]
    refused = await api.client.post("/email", json=with_(Headers=[{"Name": "X-Flag", "Value": True}]),
                                    headers=api.server_headers)
    assert refused.status_code == 422
