"""Connections that send nothing: the HTTP listener closes them and holds at most `http_max_connections`.

The threat: a client that opens sockets and never sends a request (or sends one header byte now and
then) held a file descriptor each for ever; 20,000 of them exhausted the process's file limit and the
SMTP listener in the same process stopped accepting too. Each test runs the real `posthouse serve`.
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import ServerProcess, wait_for

LIMIT = 40
# Long enough for the first test to look at its sockets before any times out; short for the suite.
TIMEOUTS = {"POSTHOUSE_HTTP_MAX_CONNECTIONS": str(LIMIT), "POSTHOUSE_HTTP_HEADER_TIMEOUT": "4s",
            "POSTHOUSE_HTTP_KEEP_ALIVE_TIMEOUT": "2s"}
IDLE_SOCKETS = 300  # bounded: far fewer than the file limit, far more than the connection limit


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path / "data", database_url, env=TIMEOUTS) as process:
        yield process


def open_sockets(process: ServerProcess) -> int:
    """The server process's open TCP sockets (file descriptors that are sockets)."""
    assert process.process is not None
    folder = f"/proc/{process.process.pid}/fd"
    count = 0
    for name in os.listdir(folder):
        with contextlib.suppress(OSError):
            count += os.readlink(f"{folder}/{name}").startswith("socket:")
    return count


def is_closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed it (EOF or reset); what it wrote before closing is read and dropped."""
    sock.setblocking(False)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def healthz_seconds(process: ServerProcess) -> float:
    started = time.monotonic()
    response = httpx.get(process.base_url + "/healthz", timeout=10)
    assert response.status_code == 200
    return time.monotonic() - started


def smtp_answers(process: ServerProcess) -> bool:
    with smtplib.SMTP("127.0.0.1", process.smtp_port, timeout=10) as client:
        return client.noop()[0] == 250


@contextlib.contextmanager
def idle_sockets(process: ServerProcess, count: int) -> Iterator[list[socket.socket]]:
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(socket.create_connection(("127.0.0.1", process.port), timeout=5))
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


# Sockets of the server process besides client connections (listeners, database, a pool that may grow by one).
SLACK = 5


def test_idle_sockets_are_closed_and_the_limit_holds_while_healthz_and_smtp_answer(server: ServerProcess) -> None:
    baseline = open_sockets(server)
    with idle_sockets(server, IDLE_SOCKETS) as sockets:
        assert open_sockets(server) - baseline <= LIMIT + SLACK  # not one socket per client
        assert healthz_seconds(server) < 2
        assert smtp_answers(server)
        assert open_sockets(server) - baseline <= LIMIT + SLACK
        # The longest idle made room for newer ones; the newest are still open, waiting for their timeout.
        still_open = [s for s in sockets if not is_closed_by_server(s)]
        assert 0 < len(still_open) <= LIMIT
        wait_for(lambda: all(is_closed_by_server(s) for s in sockets), timeout=15)
    wait_for(lambda: open_sockets(server) <= baseline + 1, timeout=5)
    assert healthz_seconds(server) < 2


def test_a_request_trickling_in_is_closed_after_the_header_timeout(server: ServerProcess) -> None:
    # One header byte every 0.2 s keeps the socket busy, but its headers are never complete: slowloris.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        started = time.monotonic()
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
        closed = False
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except ConnectionError:
                closed = True
                break
            if is_closed_by_server(sock):
                closed = True
                break
            time.sleep(0.2)  # the pace of the slow client under test, not a wait for a condition
            sock.setblocking(True)
        assert closed
        assert 3.5 < time.monotonic() - started < 9


def test_a_kept_alive_connection_is_closed_after_the_keep_alive_timeout(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        answered = time.monotonic()
        wait_for(lambda: is_closed_by_server(sock), timeout=10)
        assert 1.5 < time.monotonic() - answered < 6


def test_when_every_connection_is_busy_a_new_one_hears_503(tmp_path: Path, database_url: str) -> None:
    env = {**TIMEOUTS, "POSTHOUSE_HTTP_MAX_CONNECTIONS": "3", "POSTHOUSE_HTTP_BODY_TIMEOUT": "30s"}
    with ServerProcess(tmp_path / "data", database_url, env=env) as server:
        token = (server.server_token or "").encode()
        busy = []
        for _ in range(3):  # each sends its headers and keeps its body: busy while the route waits for it
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"POST /email HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"X-Postmark-Server-Token: " + token + b"\r\nContent-Length: 100\r\n"
                         b"Expect: 100-continue\r\n\r\n")
            # "100 Continue" comes once the route starts reading the body: the request is in progress.
            assert sock.recv(1024).startswith(b"HTTP/1.1 100")
            busy.append(sock)
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as extra:
                answer = b""
                with contextlib.suppress(ConnectionError):
                    while chunk := extra.recv(65536):
                        answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503"), answer
            assert b"x-pm-apierrorcode: 100" in head.lower()
            assert httpx.Response(503, content=body).json() == {
                "ErrorCode": 100, "Message": "The server has too many open connections; retry in a few seconds."}
        finally:
            for sock in busy:
                sock.close()
        wait_for(lambda: _healthy(server), timeout=10)  # room again once they are gone


def _healthy(server: ServerProcess) -> bool:
    try:
        return httpx.get(server.base_url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_raises_a_low_open_file_limit_to_fit_its_connection_caps() -> None:
    """A soft limit of 1024 (a common default) is fewer than the two listeners' caps together."""
    code = (
        "import resource, logging\n"
        "from posthouse.server.cli import _raise_file_limit\n"
        "from posthouse.server.config import load_settings\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "_raise_file_limit(load_settings({}, environ={}))\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    raised, hard = (int(n) for n in result.stdout.split())
    assert raised == min(hard, 2 * 1000 + 1000 + 256)  # the API's and the tracking listener's caps, and SMTP's
