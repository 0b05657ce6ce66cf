"""Header injection: a CR or LF anywhere a header is built from input is refused (ErrorCode 300), never sent.

The threat: a value such as "Hi\r\nBcc: victim@example.com" would add a header or recipients, or
end the headers early and replace the body, if written into the message as it is.
"""

from __future__ import annotations

import pytest

BASE = {"From": "app@example.com", "To": "user@example.com", "Subject": "Hi", "TextBody": "body"}
PAYLOADS = ["\r\nBcc: victim@example.com", "\nBcc: victim@example.com", "\rX-Evil: 1", "a\r\n\r\nnew body"]


def cases() -> list[tuple[str, dict[str, object]]]:
    result: list[tuple[str, dict[str, object]]] = []
    for i, evil in enumerate(PAYLOADS):
        result += [
            (f"subject-{i}", {**BASE, "Subject": "Hi" + evil}),
            (f"tag-{i}", {**BASE, "Tag": "t" + evil}),
            (f"from-name-{i}", {**BASE, "From": f'"Name{evil}" <app@example.com>'}),
            (f"from-address-{i}", {**BASE, "From": f"app@example.com{evil}"}),
            (f"to-{i}", {**BASE, "To": f"user@example.com{evil}"}),
            (f"to-name-{i}", {**BASE, "To": f'"User{evil}" <user@example.com>'}),
            (f"cc-{i}", {**BASE, "Cc": f"cc@example.com{evil}"}),
            (f"bcc-{i}", {**BASE, "Bcc": f"bcc@example.com{evil}"}),
            (f"reply-to-{i}", {**BASE, "ReplyTo": f"r@example.com{evil}"}),
            (f"header-value-{i}", {**BASE, "Headers": [{"Name": "X-Custom", "Value": "v" + evil}]}),
            (f"header-name-{i}", {**BASE, "Headers": [{"Name": "X-Custom" + evil, "Value": "v"}]}),
            (f"message-id-{i}", {**BASE, "Headers": [{"Name": "Message-ID", "Value": "<a@b>" + evil}]}),
            (f"metadata-{i}", {**BASE, "Metadata": {"k": "v" + evil}}),
            (f"attachment-name-{i}", {**BASE, "Attachments": [
                {"Name": "a" + evil + ".txt", "Content": "QQ==", "ContentType": "text/plain"}]}),
            (f"attachment-type-{i}", {**BASE, "Attachments": [
                {"Name": "a.txt", "Content": "QQ==", "ContentType": "text/plain" + evil}]}),
            # Media-type parameters are accepted (RFC 2045 §5.1), but not a line break in or between them.
            (f"attachment-type-parameter-{i}", {**BASE, "Attachments": [
                {"Name": "a.txt", "Content": "QQ==", "ContentType": 'text/plain; charset="utf-8' + evil + '"'}]}),
            (f"attachment-type-after-parameter-{i}", {**BASE, "Attachments": [
                {"Name": "a.txt", "Content": "QQ==", "ContentType": "text/plain; charset=utf-8;" + evil}]}),
            # Line breaks in base64 content are accepted as wrapping, but what follows them is still base64.
            (f"attachment-content-{i}", {**BASE, "Attachments": [
                {"Name": "a.txt", "Content": "QQ==" + evil, "ContentType": "text/plain"}]}),
            (f"attachment-cid-{i}", {**BASE, "Attachments": [
                {"Name": "a.png", "Content": "QQ==", "ContentType": "image/png", "ContentID": "cid:x" + evil}]}),
        ]
    return result


@pytest.mark.parametrize(("name", "body"), cases(), ids=[c[0] for c in cases()])
async def test_line_breaks_in_header_material_are_refused(api, name, body) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.post("/email", json=body, headers=api.server_headers)
    assert response.status_code == 422, response.text
    assert response.json()["ErrorCode"] == 300
    assert await api.count("messages") == 0


async def test_a_batch_refuses_only_the_injected_item(api) -> None:  # type: ignore[no-untyped-def]
    items = [BASE, {**BASE, "Subject": "x\r\nBcc: victim@example.com"}]
    response = await api.client.post("/email/batch", json=items, headers=api.server_headers)
    assert [r["ErrorCode"] for r in response.json()] == [0, 300]
    assert await api.count("messages") == 1
    rows = await api.runtime.store.query("SELECT recipients, content FROM messages")
    assert "victim" not in rows[0][0]
    assert b"victim" not in bytes(rows[0][1])


async def test_line_breaks_in_bodies_are_content_not_headers(api) -> None:  # type: ignore[no-untyped-def]
    body = {**BASE, "TextBody": "line one\r\nBcc: victim@example.com\n\nmore"}
    response = await api.client.post("/email", json=body, headers=api.server_headers)
    assert response.status_code == 200
    rows = await api.runtime.store.query("SELECT recipients, content FROM messages")
    assert rows[0][0] == '["user@example.com"]'
    headers, _, _ = bytes(rows[0][1]).partition(b"\r\n\r\n")
    assert b"victim" not in headers
