"""Malformed requests get a 4xx with `{ErrorCode, Message}`, never a 500, and never another route.

The threats: a deeply nested JSON body raised RecursionError (500) and, one level less deep, could be
stored by one part of the server and fail to decode in another; path ids such as "¹" (a digit to
`str.isdigit`, not to `int`) and ids or offsets past 2^63 reached the database and came back as 500s;
and `$` in the route patterns matched before a final newline, so `GET /email/bulk/%0A` listed the bulk
requests instead of being refused as the unknown id it is.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from support import ServerProcess

MESSAGE = {"From": "app@example.com", "To": "user@example.com", "Subject": "Hi", "TextBody": "Hello"}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def assert_error(response: httpx.Response, status: int, code: int) -> None:
    assert response.status_code == status, response.text
    assert response.json()["ErrorCode"] == code, response.text
    assert response.headers["X-PM-ApiErrorCode"] == str(code)


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/email", '{"From": "app@example.com", "To": "user@example.com", "TextBody": "x", "Metadata": {"k": %s}}'),
        ("/email/withTemplate", '{"From": "app@example.com", "To": "user@example.com", "TemplateId": 1, '
                                '"TemplateModel": {"a": %s}}'),
        ("/email/bulk", '{"From": "app@example.com", "Subject": "s", "TextBody": "t", "MessageStream": "broadcast", '
                        '"Messages": [{"To": "user@example.com", "TemplateModel": {"a": %s}}]}'),
        ("/templates/validate", '{"Subject": "s", "TextBody": "t", "TestRenderModel": {"a": %s}}'),
        ("/webhooks", '{"Url": "https://hooks.example.com/", "Metadata": %s}'),  # an unknown field is skipped
    ],
)
async def test_deeply_nested_json_is_invalid_json(api, path: str, body: str, depth: int) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.post(path, content=(body % nested(depth)).encode(),
                                     headers={**api.server_headers, "Content-Type": "application/json"})
    assert_error(response, 422, 402)
    assert "nested more than 64 levels" in response.json()["Message"]
    assert await api.count("messages") == 0


TYPED = [("POST", "/email/batch", "[%s]"), ("PUT", "/server", '{"Name": %s}'), ("POST", "/email", "%s")]


@pytest.mark.parametrize(("method", "path", "body"), TYPED)
async def test_nesting_where_the_shape_allows_none_is_a_type_error(api, method: str, path: str, body: str) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.request(method, path, content=(body % nested(100_000)).encode(),
                                        headers={**api.server_headers, "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["ErrorCode"] in (402, 403)  # Invalid JSON / Invalid request field(s), as for any type


async def test_json_nested_64_deep_is_still_read(api) -> None:  # type: ignore[no-untyped-def]
    model = '{"a": ' * 63 + '"x"' + "}" * 63  # 64 levels with the body's own object
    body = f'{{"Subject": "{{{{a}}}}", "TextBody": "t", "TestRenderModel": {model}}}'
    response = await api.client.post("/templates/validate", content=body.encode(),
                                      headers={**api.server_headers, "Content-Type": "application/json"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("server_id", ["%C2%B9", "%D9%A3", "1_0", "+1", "99999999999999999999999", str(2**63), "-1"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_odd_server_ids_are_609(api, server_id: str, method: str) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.request(method, f"/servers/{server_id}", json={} if method == "PUT" else None,
                                        headers=api.account_headers)
    assert_error(response, 422, 609)


@pytest.mark.parametrize("name", ["count", "offset"])
@pytest.mark.parametrize("value", ["99999999999999999999999", str(2**63), "-" + str(2**64), "%C2%B9", "1_000", "1e3"])
@pytest.mark.parametrize(
    ("path", "code", "token"),
    [("/servers", 600, "account"), ("/messages/outbound", 700, "server"), ("/templates", 1100, "server"),
     ("/bounces", 1000, "server")],
)
async def test_odd_paging_numbers_are_refused(api, path: str, code: int, token: str, name: str, value: str) -> None:  # type: ignore[no-untyped-def]
    other = "offset=0" if name == "count" else "count=10"
    headers = api.account_headers if token == "account" else api.server_headers
    response = await api.client.get(f"{path}?{other}&{name}={value}", headers=headers)
    assert_error(response, 422, code)


async def test_a_path_with_a_final_newline_is_not_another_path(api) -> None:  # type: ignore[no-untyped-def]
    listed = await api.client.get("/email/bulk", headers=api.server_headers)
    assert listed.status_code == 200
    for path in ("/email/bulk/%0A", "/email/bulk%0A", "/server%0A", "/email/bulk/%0D%0A"):
        response = await api.client.get(path, headers=api.server_headers)
        assert response.status_code in (404, 422), (path, response.text)
        assert "BulkRequests" not in response.text
    assert_error(await api.client.get("/server%0A", headers=api.server_headers), 404, 404)


def test_on_the_real_server(tmp_path: Path, database_url: str) -> None:
    """The same requests through uvicorn's own URL decoding, on loopback."""
    with ServerProcess(tmp_path / "data", database_url) as server, server.client() as client:
        account = {"X-Postmark-Account-Token": server.account_token or ""}
        assert_error(client.get("/servers/%C2%B9", headers=account), 422, 609)
        assert_error(client.get("/servers/" + "9" * 30, headers=account), 422, 609)
        assert_error(client.get("/servers?count=10&offset=" + "9" * 30, headers=account), 422, 600)
        response = client.get("/email/bulk/%0A")
        assert response.status_code == 404 and "BulkRequests" not in response.text, response.text
        nested_body = '{"From": "a@example.com", "To": "b@example.com", "TextBody": "x", "Metadata": {"k": %s}}'
        response = client.post("/email", content=(nested_body % nested(1000)).encode(),
                               headers={"Content-Type": "application/json"})
        assert_error(response, 422, 402)
        assert client.post("/email", json=MESSAGE).status_code == 200
