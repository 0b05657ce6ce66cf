"""The authentication contract of every route, generated from the API's route tables: a route that needs a
token refuses a missing, wrong or other-kind token with Postmark's 401 / ErrorCode 10 before it reads
anything else, and takes the right one (docs/postmark-api.md §1.1). A new route is covered by being in a table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from posthouse.server.api import access
from posthouse.server.api.access import ACCOUNT, PUBLIC, SERVER, SERVER_OR_TEST
from posthouse.server.api.app import ROUTE_TABLES
from posthouse.server.api.routing import Route

ROUTES = [route for table in ROUTE_TABLES for route in table]
TOKEN_ROUTES = [route for route in ROUTES if route.access is not PUBLIC]
MESSAGES = {"server": "Request does not contain a valid Server token.",
            "account": "Request does not contain a valid Account token."}
WRONG = "00000000-0000-0000-0000-000000000000"
EMAIL = {"From": "sender@example.com", "To": "receiver@example.com", "Subject": "Hi", "TextBody": "Hello"}


def concrete(path: str) -> str:
    """The route's path with a value in each `{name}` segment."""
    return re.sub(r"\{\w+\}", "1", path)


def assert_refused(response: Any, scheme: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == {"ErrorCode": 10, "Message": MESSAGES[scheme]}
    assert response.headers["X-PM-ApiErrorCode"] == "10"


def test_only_the_access_module_reads_token_headers() -> None:
    package = Path(access.__file__).parent
    reads = re.compile(r"headers(?:\.get\(|\[)\s*[\"'][^\"']*token", re.IGNORECASE)
    readers = sorted(p.name for p in package.glob("*.py") if reads.search(p.read_text()))
    assert readers == ["access.py"]


def test_the_tables_use_only_the_known_access_kinds() -> None:
    # A new kind (a dashboard session, say) must bring its own refusal case here, not slip past this file.
    assert {route.access for route in ROUTES} <= {SERVER, SERVER_OR_TEST, ACCOUNT, PUBLIC}
    assert TOKEN_ROUTES and all(route.access.scheme in MESSAGES for route in TOKEN_ROUTES)


@pytest.mark.parametrize("route", TOKEN_ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_a_token_route_refuses_a_missing_wrong_or_other_kind_token(api, route: Route) -> None:  # type: ignore[no-untyped-def]
    scheme = route.access.scheme
    assert scheme is not None
    path = concrete(route.path)
    # A JSON body a handler would read were it called: the refusal must come before it, and store nothing.
    body = EMAIL
    plain = {"Accept": "application/json", "Content-Type": "application/json"}
    server_header, account_header = "X-Postmark-Server-Token", "X-Postmark-Account-Token"
    own, other = (server_header, account_header) if scheme == "server" else (account_header, server_header)
    own_token = api.server_token if scheme == "server" else api.account_token
    other_token = api.account_token if scheme == "server" else api.server_token
    attempts = [
        plain,  # no token at all
        {**plain, own: ""},
        {**plain, own: WRONG},
        {**plain, own: other_token},  # the other kind's valid token in this kind's header
        {**plain, other: other_token},  # the other kind's valid token in its own header
    ]
    if route.access is not SERVER_OR_TEST:
        attempts.append({**plain, own: "POSTMARK_API_TEST"})  # the test token only sends
    messages_before = await api.count("messages")
    for headers in attempts:
        assert_refused(await api.client.request(route.method, path, json=body, headers=headers), scheme)
    assert await api.count("messages") == messages_before
    # The right token gets past authentication (whatever the handler then says of this request).
    accepted = await api.client.request(route.method, path, json=body, headers={**plain, own: own_token})
    assert accepted.status_code != 401, accepted.text


@pytest.mark.parametrize("route", [r for r in TOKEN_ROUTES if r.access is SERVER_OR_TEST],
                         ids=lambda r: f"{r.method} {r.path}")
async def test_a_send_route_admits_the_test_token_and_stores_nothing(api, route: Route) -> None:  # type: ignore[no-untyped-def]
    headers = {"Accept": "application/json", "X-Postmark-Server-Token": "POSTMARK_API_TEST"}
    answer = await api.client.request(route.method, route.path, json=EMAIL, headers=headers)
    assert answer.status_code != 401, answer.text
    if route.path == "/email":  # the one send this body is valid for: answered, not stored
        assert answer.status_code == 200, answer.text
    assert await api.count("messages") == 0


async def test_the_routes_outside_the_tables_are_public(api) -> None:  # type: ignore[no-untyped-def]
    outside = [route for route in api.runtime.app.router.routes if route not in ROUTES]
    assert {(r.method, r.path) for r in outside} == {("GET", "/healthz"), ("GET", "/openapi.json")}
    for route in outside:
        assert route.access is PUBLIC
        assert (await api.client.get(route.path)).status_code != 401  # /healthz is 503 here: no worker runs


async def test_the_openapi_document_asks_each_route_for_the_token_its_access_checks(api) -> None:  # type: ignore[no-untyped-def]
    paths = (await api.client.get("/openapi.json")).json()["paths"]
    for route in api.runtime.app.router.routes:
        security = paths[route.path][route.method.lower()].get("security")
        assert security == ([{route.access.scheme: []}] if route.access.scheme else None), route
