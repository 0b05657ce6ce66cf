"""Test support: waiting without sleeping blindly, test databases, and the real server as a process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

POSTGRES_URL_ENV = "POSTHOUSE_TEST_POSTGRES_URL"
# Webhooks to loopback are refused unless the operator allows them: tests whose webhook receivers listen on
# this machine set this (as settings for the `api` fixture, via its `api_settings`) or `LOOPBACK_WEBHOOKS_ENV`
# (for a ServerProcess).
WEBHOOKS_TO_LOOPBACK = {"webhook_allowed_networks": "127.0.0.0/8,::1/128"}
LOOPBACK_WEBHOOKS_ENV = {"POSTHOUSE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128"}


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


async def async_wait_for(predicate: Callable[[], Awaitable[Any]], timeout: float = 10.0,
                         interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_postgres() -> str:
    import pytest

    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_URL_ENV} is not set: CI must run the suite on PostgreSQL too")
        pytest.skip(f"PostgreSQL not configured (set {POSTGRES_URL_ENV}, as .ci/run does)")
    return url


async def create_postgres_database(base_url: str) -> str:
    import asyncpg

    name = f"posthouse_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(base_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return base_url.rsplit("/", 1)[0] + "/" + name


async def drop_postgres_database(base_url: str, url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(base_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class _PortTaken(Exception):
    """The server exited at start because one of its ports was taken."""


class ServerProcess:
    """`posthouse serve` as a real process on a free port, with its output kept for failures."""

    def __init__(self, data_dir: Path, database_url: str, *, delivery: str = "sandbox",
                 relay_url: str | None = None, env: dict[str, str] | None = None,
                 separate_stderr: bool = False) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.delivery = delivery
        self.relay_url = relay_url
        self.extra_env = env or {}
        self.port = free_port()
        self.smtp_port = free_port()
        self.tracking_port = free_port()
        self.process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        # With `separate_stderr`, what the process writes to stderr (its log) is kept here, apart from `lines`.
        self.separate_stderr = separate_stderr
        self.stderr_lines: list[str] = []
        self.server_token: str | None = None
        self.account_token: str | None = None
        self.started_once = False
        self._chosen = (self.port, self.smtp_port, self.tracking_port)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tracking_url(self) -> str:
        return f"http://127.0.0.1:{self.tracking_port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start and wait until healthy. On a first start with ports this object chose, a port taken by some
        other process between `free_port()` and the server's bind (a race seen in CI) means new ports and
        another try; ports a test named, or kept for a restart, are not changed."""
        for attempt in range(3):
            try:
                return self._start(timeout)
            except _PortTaken:
                named = {"POSTHOUSE_HTTP", "POSTHOUSE_SMTP", "POSTHOUSE_TRACKING_HTTP"} & set(self.extra_env) or \
                    (self.port, self.smtp_port, self.tracking_port) != self._chosen
                if attempt == 2 or self.started_once or named:
                    raise AssertionError("server could not bind its ports:\n" + "".join(self.lines)) from None
                self.port, self.smtp_port, self.tracking_port = self._chosen = free_port(), free_port(), free_port()
                self.lines.clear()
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOUSE_")}
        env.update({
            "POSTHOUSE_HTTP": f"127.0.0.1:{self.port}",
            "POSTHOUSE_SMTP": f"127.0.0.1:{self.smtp_port}",
            "POSTHOUSE_TRACKING_HTTP": f"127.0.0.1:{self.tracking_port}",
            "POSTHOUSE_DATA_DIR": str(self.data_dir),
            "POSTHOUSE_DATABASE_URL": self.database_url,
            "POSTHOUSE_DELIVERY": self.delivery,
            "POSTHOUSE_LOG_LEVEL": "warning",
            **({"POSTHOUSE_RELAY_URL": self.relay_url} if self.relay_url else {}),
            **self.extra_env,
        })
        self.process = subprocess.Popen(
            [sys.executable, "-m", "posthouse.server.cli", "serve"], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if self.separate_stderr else subprocess.STDOUT, text=True, env=env)
        if self.separate_stderr:
            def pump_stderr(stream: Any) -> None:
                for line in stream:
                    self.stderr_lines.append(line)
                stream.close()

            self._stderr_pump = threading.Thread(target=pump_stderr, args=(self.process.stderr,), daemon=True)
            self._stderr_pump.start()
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise AssertionError("server did not start:\n" + "".join(self.lines)) from None
            if line is None:
                self.process.wait(10)
                self.process.stdout.close()  # type: ignore[union-attr]
                if self.separate_stderr:
                    self._stderr_pump.join(5)
                    self.lines.extend(self.stderr_lines)
                if any("address already in use" in seen for seen in self.lines):
                    raise _PortTaken
                raise AssertionError("server exited at start:\n" + "".join(self.lines))
            self.lines.append(line)
            if "Server token:" in line:
                self.server_token = line.split()[-1]
            if "Account token:" in line:
                self.account_token = line.split()[-1]
            if "Posthouse is listening" in line:
                break

        def drain() -> None:
            while (item := lines.get()) is not None:
                self.lines.append(item)

        self._drain = threading.Thread(target=drain, daemon=True)
        self._drain.start()
        wait_for(self._healthy, timeout=timeout)
        self.started_once = True
        return self

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """kill -9: no chance to flush or finish anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self._close_output()

    def _close_output(self) -> None:
        drain = getattr(self, "_drain", None)
        if drain is not None:
            drain.join(5)
        stderr_pump = getattr(self, "_stderr_pump", None)
        if stderr_pump is not None:
            stderr_pump.join(5)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_output()
        return self.process.returncode

    @property
    def tls_certificate(self) -> Path:
        """The self-signed certificate the server made for SMTP TLS (clients trust it explicitly)."""
        return self.data_dir / "tls" / "smtp-cert.pem"

    def client(self, **kwargs: Any) -> httpx.Client:
        headers = {"X-Postmark-Server-Token": self.server_token or "", "Accept": "application/json"}
        return httpx.Client(base_url=self.base_url, headers=headers, **{"timeout": 10, **kwargs})

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()


def assert_api_error(response: Any, code: int, status: int = 422, text: str = "") -> None:
    """`response` is Postmark's error envelope: this HTTP status, exactly `{ErrorCode, Message}` with this
    code (and `text` in the message), and the code in the `X-PM-ApiErrorCode` header too."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"ErrorCode", "Message"} and body["ErrorCode"] == code, body
    assert isinstance(body["Message"], str) and text in body["Message"], body
    assert response.headers["X-PM-ApiErrorCode"] == str(code), response.headers


class ApiHarness:
    """The real runtime in-process: httpx over ASGI, a real store, tokens from the real bootstrap."""

    def __init__(self, runtime: Any, client: httpx.AsyncClient, server_token: str, account_token: str) -> None:
        self.runtime = runtime
        self.client = client
        self.server_token = server_token
        self.account_token = account_token

    @property
    def server_headers(self) -> dict[str, str]:
        return {"X-Postmark-Server-Token": self.server_token, "Accept": "application/json"}

    @property
    def account_headers(self) -> dict[str, str]:
        return {"X-Postmark-Account-Token": self.account_token, "Accept": "application/json"}

    async def count(self, table: str) -> int:
        row = await self.runtime.store.query_one(f"SELECT count(*) FROM {table}")
        return int(row[0])
