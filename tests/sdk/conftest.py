"""SDK fixtures: one real `posthouse serve` process per store for the whole run (sandbox delivery, SMTP with
STARTTLS and implicit TLS), a fresh Posthouse server (tenant) with its own token for each test, and
`flavour`, which runs one test body with the async clients and again with the sync ones."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest

from sdk.sdk_support import Flavour, Tenant
from support import (
    LOOPBACK_WEBHOOKS_ENV,
    ServerProcess,
    create_postgres_database,
    drop_postgres_database,
    free_port,
    require_postgres,
)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def posthouse_process(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Posthouse on loopback, on SQLite or on a new PostgreSQL database; `smtps_port` is its implicit-TLS
    listener. Tests share it, each with its own tenant (`tenant`), so none sees another's mail."""
    folder = tmp_path_factory.mktemp(f"posthouse-{request.param}")
    base = None
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'posthouse.db'}"
    else:
        base = require_postgres()
        url = asyncio.run(create_postgres_database(base))
    server = ServerProcess(folder / "data", url)
    server.smtps_port = free_port()  # type: ignore[attr-defined]
    # Webhook tests post to receivers on loopback, which the operator must allow.
    server.extra_env = {"POSTHOUSE_SMTP": f"127.0.0.1:{server.smtp_port},smtps://127.0.0.1:{server.smtps_port}",
                        **LOOPBACK_WEBHOOKS_ENV}
    try:
        with server:
            yield server
    finally:
        if base is not None:
            asyncio.run(drop_postgres_database(base, url))


@pytest.fixture
def tenant(posthouse_process: ServerProcess) -> Tenant:
    name = f"sdk-{uuid.uuid4().hex[:12]}"
    headers = {"X-Postmark-Account-Token": posthouse_process.account_token or "", "Accept": "application/json"}
    created = httpx.post(posthouse_process.base_url + "/servers", json={"Name": name}, headers=headers, timeout=10)
    assert created.status_code == 200, created.text
    body = created.json()
    return Tenant(posthouse_process, body["ID"], name, body["ApiTokens"][0])


@pytest.fixture(params=["async", "sync"])
def flavour(request: pytest.FixtureRequest) -> Flavour:
    return Flavour(request.param)
