"""Numbers past what the database stores are refused with Postmark's error, never a 500 (review finding)."""

from __future__ import annotations

import base64


async def test_huge_or_negative_ids_are_client_errors(api) -> None:  # type: ignore[no-untyped-def]
    send = await api.client.post("/email/withTemplate", headers=api.server_headers, json={
        "From": "a@example.com", "To": "b@example.com", "TemplateId": -(10**20), "TemplateModel": {}})
    assert send.status_code == 422 and send.json()["ErrorCode"] == 1101
    get = await api.client.get(f"/templates/{10**20}", headers=api.server_headers)
    assert get.status_code in (404, 422) and get.json()["ErrorCode"] == 1101
    key = base64.urlsafe_b64encode(f"{10**20}:x".encode()).decode().rstrip("=")
    page = await api.client.get(f"/email/bulk?count=2&paginationKey={key}", headers=api.server_headers)
    assert page.status_code == 422 and page.json()["ErrorCode"] == 13
    push = await api.client.put("/templates/push", headers=api.account_headers, json={
        "SourceServerID": 10**20, "DestinationServerID": 1, "PerformChanges": False})
    assert push.status_code == 422 and push.json()["ErrorCode"] == 601
