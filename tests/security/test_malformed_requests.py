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
    assert_error(await api.client.get("/server%0A", headers=api.server_headers), 404, 404)  # app.NO_ENDPOINT


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


# NUL (U+0000) in what the API would store or search: PostgreSQL's text cannot hold it, so these were 500s
# there (the HTTP fuzz run, tests/e2e/test_fuzz_api.py, found the query ones) while SQLite took them.
NUL_QUERIES = [
    ("/bounces?count=10&offset=0&messagestream=a%00b", "messagestream"),
    ("/bounces?messageID=00000000-0000-0000-0000-000000000000&messagestream=%00", "messagestream"),
    ("/webhooks?MessageStream=%28%00%5E", "MessageStream"),
    ("/messages/outbound?count=10&offset=0&tag=x%00", "tag"),
    ("/templates?count=10&offset=0&Template%00Type=Standard", "Template%00Type"),
]


@pytest.mark.parametrize(("path", "field"), NUL_QUERIES)
async def test_nul_in_a_query_parameter_is_an_invalid_field(api, path: str, field: str) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.get(path, headers=api.server_headers)
    assert_error(response, 422, 403)
    assert f"'{field}'" in response.json()["Message"]


NUL_BODIES = [
    ("POST", "/email", {**MESSAGE, "Subject": "a\x00b"}, "Subject"),
    ("POST", "/email", {**MESSAGE, "Metadata": {"k\x00": "v"}}, "Metadata"),
    ("POST", "/email/batch", [MESSAGE, {**MESSAGE, "TextBody": "\x00"}], "TextBody"),
    ("POST", "/templates", {"Name": "n\x00", "Subject": "s", "TextBody": "t"}, "Name"),
    ("POST", "/message-streams", {"ID": "s\x00", "Name": "n", "MessageStreamType": "Broadcasts"}, "ID"),
    ("PUT", "/server", {"Name": "\x00"}, "Name"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), NUL_BODIES)
async def test_nul_in_a_json_field_is_an_invalid_field(api, method: str, path: str, body: object, field: str) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.request(method, path, json=body, headers=api.server_headers)
    assert_error(response, 422, 403)
    assert f"'{field}'" in response.json()["Message"]
    assert await api.count("messages") == 0
    assert await api.count("templates") == 0


async def test_an_escaped_backslash_before_u0000_is_text(api) -> None:  # type: ignore[no-untyped-def]
    body = b'{"Name": "c:\\\\u0000", "Subject": "s", "TextBody": "t"}'  # the text `c:\u0000`, no NUL
    response = await api.client.post("/templates", content=body,
                                      headers={**api.server_headers, "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    template = await api.client.get(f"/templates/{response.json()['TemplateId']}", headers=api.server_headers)
    assert template.json()["Name"] == "c:\\u0000"


@pytest.mark.parametrize("path", ["/templates/a%00b", "/message-streams/%00", "/email/bulk/%00",
                                  "/messages/outbound/%00/details"])
async def test_nul_in_a_path_names_no_endpoint(api, path: str) -> None:  # type: ignore[no-untyped-def]
    assert_error(await api.client.get(path, headers=api.server_headers), 404, 404)
