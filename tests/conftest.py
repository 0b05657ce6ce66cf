"""Fixtures shared by every test: a real database per test, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, settings

from posthouse.server.store import open_store_for
from posthouse.server.store.base import Store
from support import ApiHarness, create_postgres_database, drop_postgres_database, require_postgres

# Property tests run beside servers, databases and other test processes on a 2-core machine: a wall-clock
# deadline per example only measures that load (a property test failed under it), so there is none; the
# number of examples still bounds each test.
settings.register_profile("posthouse", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("posthouse")


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    """A fresh, empty database: SQLite in the test's folder, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'posthouse.db'}"
        return
    base = require_postgres()
    url = await create_postgres_database(base)
    try:
        yield url
    finally:
        await drop_postgres_database(base, url)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """An opened, migrated store on the test's database."""
    s = open_store_for(database_url)
    await s.open()
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def api_settings() -> dict[str, str]:
    """Settings the `api` fixture adds to its defaults; a module overrides this fixture to change them
    (`support.WEBHOOKS_TO_LOOPBACK` for tests whose webhooks point at a receiver on this machine)."""
    return {}


@pytest.fixture
async def api(store: Store, api_settings: dict[str, str], tmp_path) -> AsyncIterator[ApiHarness]:  # type: ignore[no-untyped-def]
    """The HTTP API in-process over a real database, sandbox delivery, worker not running."""
    import httpx

    from posthouse.server.config import load_settings
    from posthouse.server.runtime import Runtime

    settings = load_settings({"delivery": "sandbox", "data_dir": str(tmp_path / "data"), **api_settings}, environ={})
    runtime = Runtime(settings, store)
    tokens = await runtime.accounts.bootstrap()
    assert tokens is not None
    transport = httpx.ASGITransport(app=runtime.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://posthouse.test") as client:
        yield ApiHarness(runtime, client, tokens[0], tokens[1])
    await runtime.stop()
