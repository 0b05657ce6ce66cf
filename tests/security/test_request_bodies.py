"""Request bodies nobody has vouched for: the test token's small limits, and one budget for bodies being read.

The threat: `POSTMARK_API_TEST` needs no account (Postmark's test token is one public value, not a
token of a server: docs/postmark-api.md §1.1), so anyone could post 45 MB batches that were read,
decoded and validated; sixteen at once took the server from 180 MB to 843 MB and `/healthz` to 13 s.
Each test runs the real `posthouse serve` and talks to it over loopback.
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import ServerProcess, wait_for

TEST_TOKEN = {"X-Postmark-Server-Token": "POSTMARK_API_TEST", "Accept": "application/json"}
MESSAGE = {"From": "app@example.com", "To": "user@example.com", "Subject": "Hi", "TextBody": "Hello"}


def batch(size: int) -> bytes:
    """A valid batch of about `size` bytes."""
    one = {**MESSAGE, "TextBody": "x" * 40_000}  # at most 500 messages make a batch
    return json.dumps([one] * max(1, size // 40_100)).encode()


def rss_mb(process: ServerProcess) -> float:
    assert process.process is not None
    with open(f"/proc/{process.process.pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path / "data", database_url) as process:
        yield process


def test_the_test_token_still_validates_small_requests(server: ServerProcess) -> None:
    ok = httpx.post(server.base_url + "/email/batch", json=[MESSAGE] * 3, headers=TEST_TOKEN, timeout=10)
    assert ok.status_code == 200 and [item["ErrorCode"] for item in ok.json()] == [0, 0, 0]
    bad = httpx.post(server.base_url + "/email", json={**MESSAGE, "From": "x"}, headers=TEST_TOKEN, timeout=10)
    assert (bad.status_code, bad.json()["ErrorCode"]) == (422, 300)


def test_the_test_token_cannot_post_large_bodies(server: ServerProcess) -> None:
    body = batch(5 * 1024 * 1024)
    declared = httpx.post(server.base_url + "/email/batch", content=body, timeout=30,
                          headers={**TEST_TOKEN, "Content-Type": "application/json"})
    assert declared.status_code == 413, declared.text
    assert declared.json() == {"ErrorCode": 300, "Message": "Requests with the test token POSTMARK_API_TEST may be "
                                                            "at most 1024 KB; use a server token for larger ones."}

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies to what arrives
        for start in range(0, len(body), 65536):
            yield body[start:start + 65536]

    chunked = httpx.post(server.base_url + "/email/batch", content=chunks(), timeout=30,
                         headers={**TEST_TOKEN, "Content-Type": "application/json"})
    assert (chunked.status_code, chunked.json()["ErrorCode"]) == (413, 300)
    # The same batch with a real token is read and accepted.
    real_token = {"X-Postmark-Server-Token": server.server_token or "", "Content-Type": "application/json"}
    real = httpx.post(server.base_url + "/email/batch", content=body, timeout=60, headers=real_token)
    assert real.status_code == 200, real.text


def test_a_flood_of_large_test_token_batches_costs_no_memory(server: ServerProcess) -> None:
    body = batch(8 * 1024 * 1024)
    before = rss_mb(server)

    def post() -> int:
        return httpx.post(server.base_url + "/email/batch", content=body, timeout=60,
                          headers={**TEST_TOKEN, "Content-Type": "application/json"}).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = [pool.submit(post) for _ in range(16)]
        started = time.monotonic()
        assert httpx.get(server.base_url + "/healthz", timeout=10).status_code == 200
        healthz = time.monotonic() - started
        statuses = [answer.result() for answer in answers]
    assert statuses == [413] * 16
    assert healthz < 3  # it took 13 s when every body was read and validated
    assert rss_mb(server) - before < 50  # 16 bodies of 8 MB were never held


def _hold_request(server: ServerProcess, token: str, length: int) -> socket.socket:
    """A request whose route has started reading its body ("100 Continue" came) and waits for the rest."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(f"POST /email HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Accept: application/json\r\nX-Postmark-Server-Token: {token}\r\nContent-Length: {length}\r\n"
                     "Expect: 100-continue\r\n\r\n".encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 100")
    except BaseException:
        sock.close()
        raise
    return sock


def _finish(sock: socket.socket, body: bytes) -> int:
    sock.sendall(body)
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    sock.close()
    return int(answer.split(b" ", 2)[1])


def _padded(size: int) -> bytes:
    message = json.dumps({**MESSAGE, "TextBody": ""}).encode()
    return message[:-3] + b'"' + b"x" * (size - len(message)) + b'"}'


def test_test_token_requests_in_flight_are_capped(tmp_path: Path, database_url: str) -> None:
    with ServerProcess(tmp_path / "data", database_url, env={"POSTHOUSE_TEST_TOKEN_CONCURRENCY": "2"}) as server:
        body = _padded(2000)
        held = [_hold_request(server, "POSTMARK_API_TEST", len(body)) for _ in range(2)]
        third = httpx.post(server.base_url + "/email", json=MESSAGE, headers=TEST_TOKEN, timeout=10)
        assert third.status_code == 429, third.text
        assert third.json() == {"ErrorCode": 429, "Message": "Too many requests with the test token "
                                "POSTMARK_API_TEST at once (at most 2); retry shortly."}
        # A real token is not held up by them.
        with server.client() as client:
            real = client.post("/email", json=MESSAGE)
        assert real.status_code == 200, real.text
        assert [_finish(sock, body) for sock in held] == [200, 200]
        again = httpx.post(server.base_url + "/email", json=MESSAGE, headers=TEST_TOKEN, timeout=10)
        assert again.status_code == 200


def test_bodies_share_one_budget_and_the_excess_hears_503(tmp_path: Path, database_url: str) -> None:
    env = {"POSTHOUSE_HTTP_BODY_BUDGET": str(1024 * 1024), "POSTHOUSE_HTTP_BODY_WAIT": "1s"}
    with ServerProcess(tmp_path / "data", database_url, env=env) as server:
        token = server.server_token or ""
        body = _padded(700 * 1024)
        first = _hold_request(server, token, len(body))  # holds 700 KB of the 1 MB budget while it arrives
        json_type = {"Content-Type": "application/json"}
        with server.client() as client:
            started = time.monotonic()
            second = client.post("/email", content=body, headers=json_type)
            waited = time.monotonic() - started
            assert second.status_code == 503, second.text
            assert second.json() == {"ErrorCode": 100, "Message": "The server is busy reading other large requests; "
                                                                  "retry in a few seconds."}
            assert 0.9 < waited < 5
            assert client.get("/healthz").status_code == 200  # small requests go on
            assert _finish(first, body) == 200
            wait_for(lambda: client.post("/email", content=body, headers=json_type).status_code == 200)


def test_a_body_that_stops_arriving_is_cut_off(tmp_path: Path, database_url: str) -> None:
    with ServerProcess(tmp_path / "data", database_url, env={"POSTHOUSE_HTTP_BODY_TIMEOUT": "1s"}) as server:
        sock = _hold_request(server, server.server_token or "", 1000)
        started = time.monotonic()
        sock.sendall(b'{"From": ')
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert 0.9 < time.monotonic() - started < 5
