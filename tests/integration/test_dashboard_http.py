"""The dashboard's authorization over HTTP (httpx over ASGI, the real runtime, both databases): every route
the dashboard app lists refuses a request without a session (a GET is sent to sign-in, anything else is a
401), every request that is not a GET needs the session's CSRF token, sign-in is throttled, and sign-out,
expiry and a deleted user end a session on every node (the sessions live in the database):
docs/architecture.md §7 (Dashboard)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.routing import Mount, Route

from posthouse.server.config import load_settings
from posthouse.server.runtime import Runtime
from posthouse.server.services.clock import Clock
from posthouse.server.services.operators import MAX_SESSION_SECONDS
from posthouse.server.store.base import Store
from support import async_wait_for

EMAIL, PASSWORD = "ops@example.com", "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_SAMPLE_PARAMS = {"server_id": "1", "stream": "outbound", "message_id": "0190a6f4-5c2b-7000-8000-000000000001",
                  "bounce_id": "1"}


class MovableClock(Clock):
    """The wall clock plus an offset a test moves forward (session expiry without waiting for it)."""

    def __init__(self) -> None:
        self.offset = 0

    def micros(self) -> int:
        return super().micros() + self.offset


class Node:
    """One Posthouse node in-process: its runtime and a browser-like client (cookies kept) for its dashboard."""

    def __init__(self, runtime: Runtime, base_url: str = "http://posthouse.test") -> None:
        self.runtime = runtime
        self.base_url = base_url

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.runtime.app), base_url=self.base_url)


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


async def _node(store: Store, tmp_path: Any, clock: Clock, **settings: str) -> Node:
    runtime = Runtime(load_settings({"delivery": "sandbox", "data_dir": str(tmp_path / "data"), **settings},
                                    environ={}), store, clock=clock)
    return Node(runtime)


@pytest.fixture
async def node(store: Store, tmp_path: Any, clock: MovableClock) -> AsyncIterator[Node]:
    n = await _node(store, tmp_path, clock, dashboard_session_lifetime="1h")
    assert await n.runtime.accounts.bootstrap() is not None
    await n.runtime.operators.create_user(EMAIL, PASSWORD)
    try:
        yield n
    finally:
        await n.runtime.stop()


async def login_form(client: httpx.AsyncClient) -> str:
    """The sign-in page's form token (its cookie is now in the client's jar)."""
    page = await client.get("/ui/login")
    assert page.status_code == 200
    match = _CSRF.search(page.text)
    assert match, page.text
    return match.group(1)


async def sign_in(client: httpx.AsyncClient, email: str = EMAIL, password: str = PASSWORD,
                  next_path: str = "/ui/") -> httpx.Response:
    token = await login_form(client)
    return await client.post("/ui/login", data={"csrf_token": token, "email": email, "password": password,
                                                "next": next_path})


async def signed_in(client: httpx.AsyncClient) -> str:
    """Sign in; the session's CSRF token (from the page's sign-out form)."""
    answer = await sign_in(client)
    assert answer.status_code == 303, answer.text
    assert "posthouse_session" in client.cookies
    page = await client.get("/ui/", follow_redirects=True)
    assert page.status_code == 200, page.text
    match = _CSRF.search(page.text)
    assert match, page.text
    return match.group(1)


# The management pages' parameters (issue 15, D2).
_SAMPLE_PARAMS.update(template_id="1", webhook_id="1", delivery_id="1", domain_id="1")


def dashboard_routes(node: Node) -> list[tuple[str, str]]:
    """(method, a concrete path) for every route the dashboard app serves, read from the app itself."""
    dashboard = node.runtime.app.dashboard  # type: ignore[attr-defined]
    found: list[tuple[str, str]] = []
    for route in dashboard.routes:
        if isinstance(route, Mount):
            found.append(("GET", route.path + "/dashboard.css"))
            continue
        assert isinstance(route, Route), route
        path = route.path
        for name in route.param_convertors:
            path = path.replace("{" + name + "}", quote(_SAMPLE_PARAMS[name], safe=""))
        assert "{" not in path, f"no sample value for a parameter of {route.path}"
        for method in sorted(route.methods or ()):
            found.append((method, path))
    return found


PUBLIC = {("GET", "/ui/login"), ("HEAD", "/ui/login"), ("POST", "/ui/login"), ("POST", "/ui/login/token"),
          ("GET", "/ui/static/dashboard.css")}


async def test_every_route_refuses_without_a_session(node: Node) -> None:
    routes = dashboard_routes(node)
    # The enumeration is the app's: the pages D1 has are there, so the loop below is not vacuous.
    assert {("GET", "/ui/servers/1/streams/outbound/activity"), ("GET", "/ui/servers/1/streams/outbound/inbox"),
            ("POST", "/ui/logout"), ("GET", f"/ui/servers/1/messages/{_SAMPLE_PARAMS['message_id']}/raw")} \
        <= set(routes)
    async with node.client() as client:
        for method, path in routes:
            if (method, path) in PUBLIC:
                continue
            answer = await client.request(method, path, data={"x": "1"} if method not in ("GET", "HEAD") else None)
            if method in ("GET", "HEAD"):
                assert answer.status_code == 303, (method, path, answer.status_code)
                assert answer.headers["location"] == "/ui/login?next=" + quote(path, safe=""), (method, path)
            else:
                assert answer.status_code == 401, (method, path, answer.status_code)
            # Whatever the method, a route that takes only GET is refused the same way before it is even matched.
            for other in ("POST", "PUT", "DELETE", "PATCH"):
                refused = await client.request(other, path)
                assert refused.status_code == 401, (other, path, refused.status_code)
        # A dashboard path that matches no route is no way round the guard either.
        assert (await client.get("/ui/servers/1/nothing-here")).status_code == 303
        assert (await client.post("/ui/servers/1/nothing-here")).status_code == 401
        # The public ones answer without a session.
        assert (await client.get("/ui/login")).status_code == 200
        assert (await client.get("/ui/static/dashboard.css")).status_code == 200
        # The root leads to the dashboard, and the dashboard to sign-in.
        root = await client.get("/")
        assert root.status_code == 302 and root.headers["location"] == "/ui/"
        assert (await client.get("/ui/")).headers["location"] == "/ui/login?next=%2Fui%2F"
        # A cookie that names no session is no session.
        client.cookies.set("posthouse_session", "made-up-session-id", domain="posthouse.test", path="/ui")
        assert (await client.get("/ui/servers/1/streams/outbound/activity")).status_code == 303


async def test_every_non_get_needs_the_sessions_csrf_token(node: Node) -> None:
    async with node.client() as client:
        csrf = await signed_in(client)
        unsafe = [(m, p) for m, p in dashboard_routes(node) if m not in ("GET", "HEAD") and (m, p) not in PUBLIC]
        assert ("POST", "/ui/logout") in unsafe
        # Every unsafe method on every path, even one the route does not take, is checked before anything runs.
        paths = {p for m, p in dashboard_routes(node) if (m, p) not in PUBLIC}
        for path in sorted(paths):
            for method in ("POST", "PUT", "DELETE", "PATCH"):
                none = await client.request(method, path, data={"a": "b"})
                assert none.status_code == 403, (method, path, none.status_code)
                assert "CSRF" in none.text
                wrong = await client.request(method, path, data={"csrf_token": csrf[:-2] + "xx"})
                assert wrong.status_code == 403, (method, path)
                by_header = await client.request(method, path, headers={"X-CSRF-Token": "x" + csrf})
                assert by_header.status_code == 403, (method, path)
        # A token from another session does not do either.
        async with node.client() as other:
            other_csrf = await signed_in(other)
        assert other_csrf != csrf
        assert (await client.post("/ui/logout", data={"csrf_token": other_csrf})).status_code == 403
        # Still signed in after all that; the right token (as a header, as htmx sends it) signs out.
        assert (await client.get("/ui/servers/1/streams/outbound/activity")).status_code == 200
        out = await client.post("/ui/logout", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/ui/login"


async def test_the_sign_in_form_is_csrf_checked_too(node: Node) -> None:
    async with node.client() as client:
        # No form token at all, and one that is not the cookie's: refused, credentials never checked.
        bare = await client.post("/ui/login", data={"email": EMAIL, "password": PASSWORD})
        assert bare.status_code == 403 and "posthouse_session" not in client.cookies
        await login_form(client)
        forged = await client.post("/ui/login", data={"csrf_token": "forged", "email": EMAIL, "password": PASSWORD})
        assert forged.status_code == 403 and "posthouse_session" not in client.cookies
        token = await client.post("/ui/login/token", data={"csrf_token": "forged", "token": "x"})
        assert token.status_code == 403
        # A form body that is not a form, or too large, is refused with a clear page.
        json_body = await client.post("/ui/login", json={"email": EMAIL})
        assert json_body.status_code == 415
        huge = await client.post("/ui/login", content=b"a=" + b"x" * 70_000,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert huge.status_code == 413
        assert (await sign_in(client)).status_code == 303


async def test_session_cookie_flags_and_the_next_page(node: Node) -> None:
    async with node.client() as client:
        answer = await sign_in(client, next_path="/ui/servers/1/streams/outbound/inbox")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/servers/1/streams/outbound/inbox"
        cookie = next(v for v in answer.headers.get_list("set-cookie") if v.startswith("posthouse_session="))
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=lax", "path=/ui"} <= flags
        assert "secure" not in flags  # plain HTTP, and dashboard_secure_cookies off
        # Never sent on to another site after sign-in.
        for evil in ("//evil.example/", "https://evil.example/", "/ui/\\evil", "/\\evil.example"):
            async with node.client() as other:
                redirected = await sign_in(other, next_path=evil)
                assert redirected.headers["location"] == "/ui/", evil
    https = Node(node.runtime, "https://posthouse.test")
    async with https.client() as client:
        answer = await sign_in(client)
        cookie = next(v for v in answer.headers.get_list("set-cookie") if v.startswith("posthouse_session="))
        assert "secure" in {part.strip().lower() for part in cookie.split(";")[1:]}


async def test_sign_in_is_throttled_per_account_and_per_address(node: Node) -> None:
    async with node.client() as client:
        for _ in range(5):  # the free failures
            assert (await sign_in(client, password="wrong password!")).status_code == 401
        sixth = await sign_in(client, password="wrong password!")
        assert sixth.status_code == 401
        # Now even the right password waits: refused unchecked, with Retry-After.
        throttled = await sign_in(client)
        assert throttled.status_code == 429, throttled.text
        assert int(throttled.headers["retry-after"]) >= 1
        assert "Too many failed sign-ins" in throttled.text
        assert "posthouse_session" not in client.cookies
        # After the wait (1 s after the sixth failure) the right password is let in, and clears the count.
        started = time.monotonic()

        async def let_in() -> bool:
            return (await sign_in(client)).status_code == 303

        await async_wait_for(let_in, timeout=10)
        assert time.monotonic() - started < 10
        assert "posthouse_session" in client.cookies
    # Per address: failures against many accounts from one address add up (20 free), then that address waits
    # even for an account it never tried.
    async with node.client() as client:
        for n in range(20):
            assert (await sign_in(client, email=f"guess{n}@example.com", password="guessed pass")).status_code == 401
        assert (await sign_in(client, email="guess20@example.com", password="guessed pass")).status_code == 401
        assert (await sign_in(client)).status_code == 429


async def test_sign_out_expiry_and_deletion_end_the_session_on_every_node(
        node: Node, store: Store, tmp_path: Any, clock: MovableClock) -> None:
    other = await _node(store, tmp_path, clock, dashboard_session_lifetime="1h")
    activity = "/ui/servers/1/streams/outbound/activity"
    try:
        async with node.client() as client, other.client() as elsewhere:
            csrf = await signed_in(client)
            cookie = client.cookies["posthouse_session"]
            elsewhere.cookies.set("posthouse_session", cookie, domain="posthouse.test", path="/ui")
            assert (await elsewhere.get(activity)).status_code == 200  # the session is the database's
            # Signing out on one node ends it on the other too, even for a client that kept the cookie.
            assert (await client.post("/ui/logout", data={"csrf_token": csrf})).status_code == 303
            assert (await elsewhere.get(activity)).status_code == 303
            client.cookies.set("posthouse_session", cookie, domain="posthouse.test", path="/ui")
            assert (await client.get(activity)).status_code == 303

            # Expiry: an hour without use ends a session; use keeps it going (the expiry moves with it).
            await signed_in(client)
            clock.offset += 50 * 60 * 1_000_000
            assert (await client.get(activity)).status_code == 200
            clock.offset += 50 * 60 * 1_000_000  # 100 minutes after sign-in, 50 after the last use
            assert (await client.get(activity)).status_code == 200
            clock.offset += 61 * 60 * 1_000_000
            expired = await client.get(activity)
            assert expired.status_code == 303 and expired.headers["location"].startswith("/ui/login")

            # However often it is used, a session ends MAX_SESSION_SECONDS after sign-in.
            await signed_in(client)
            for _ in range(MAX_SESSION_SECONDS // 3000 + 2):
                if (await client.get(activity)).status_code != 200:
                    break
                clock.offset += 3000 * 1_000_000
            else:
                pytest.fail("the session outlived its longest lifetime")
            assert (await client.get(activity)).status_code == 303

            # Deleting the user ends their sessions at once.
            await signed_in(client)
            await node.runtime.operators.delete_user(EMAIL)
            assert (await client.get(activity)).status_code == 303
            assert (await sign_in(client)).status_code == 401
    finally:
        await other.runtime.stop()


async def test_token_sign_in_only_until_a_user_exists(store: Store, tmp_path: Any, clock: MovableClock) -> None:
    n = await _node(store, tmp_path, clock)
    tokens = await n.runtime.accounts.bootstrap()
    assert tokens is not None
    try:
        async with n.client() as client:
            page = await client.get("/ui/login")
            assert "Sign in with the account token" in page.text  # a first start: no user yet
            form = _CSRF.search(page.text)
            assert form
            wrong = await client.post("/ui/login/token", data={"csrf_token": form.group(1), "token": tokens[0]})
            assert wrong.status_code == 401  # a server token is not the account token
            form = _CSRF.search(wrong.text)  # the refusal is a fresh form, with a fresh form token
            assert form
            right = await client.post("/ui/login/token", data={"csrf_token": form.group(1), "token": tokens[1]})
            assert right.status_code == 303
            assert (await client.get("/ui/servers/1/streams/outbound/activity")).status_code == 200
            # Once a user exists, the token session stops and the token is refused.
            await n.runtime.operators.create_user(EMAIL, PASSWORD)
            assert (await client.get("/ui/servers/1/streams/outbound/activity")).status_code == 303
            page = await client.get("/ui/login")
            assert "Sign in with the account token" not in page.text
            form = _CSRF.search(page.text)
            assert form
            again = await client.post("/ui/login/token", data={"csrf_token": form.group(1), "token": tokens[1]})
            assert again.status_code == 401 and "turned off" in again.text
    finally:
        await n.runtime.stop()


async def test_pages_carry_a_policy_that_blocks_scripts_and_framing(node: Node) -> None:
    async with node.client() as client:
        await signed_in(client)
        page = await client.get("/ui/servers/1/streams/outbound/activity")
        assert page.status_code == 200
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["cache-control"] == "no-store"
        assert re.fullmatch(r"app;dur=\d+\.\d\d", page.headers["server-timing"])  # what bench/dashboard.py reads
        missing = await client.get(f"/ui/servers/1/messages/{_SAMPLE_PARAMS['message_id']}")
        assert missing.status_code == 404
        assert (await client.get("/ui/servers/99/streams/outbound/activity")).status_code == 404
