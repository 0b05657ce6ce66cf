"""End-to-end fixtures: a recording SMTP sink on loopback and the real `posthouse serve` process relaying to it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from contract.unsupported import reason_for
from e2e.relay_tenants import Tenant, new_tenant
from integration.smtp_peers import RecordingSink
from support import ServerProcess, create_postgres_database, drop_postgres_database, require_postgres


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    with RecordingSink() as recording:
        yield recording


@pytest.fixture
def relay_server(tmp_path, database_url: str, sink: RecordingSink) -> Iterator[ServerProcess]:  # type: ignore[no-untyped-def]
    """Posthouse relaying to `sink`, with a compressed retry schedule."""
    server = ServerProcess(tmp_path / "data", database_url, delivery="relay",
                           relay_url=f"smtp://127.0.0.1:{sink.port}",
                           env={"POSTHOUSE_RETRY_SCHEDULE": "300ms", "POSTHOUSE_POLL_INTERVAL": "200ms"})
    with server:
        yield server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_relay(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, RecordingSink]]:
    """One `posthouse serve` per test module and store, relaying to one sink; each test keeps to its own
    Posthouse server and recipient domain (`tenant`), so one process serves many client tests."""
    folder = tmp_path_factory.mktemp(f"relay-{request.param}")
    base = None
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'posthouse.db'}"
    else:
        base = require_postgres()
        url = asyncio.run(create_postgres_database(base))
    try:
        with RecordingSink() as recording:
            server = ServerProcess(folder / "data", url, delivery="relay",
                                   relay_url=f"smtp://127.0.0.1:{recording.port}",
                                   env={"POSTHOUSE_RETRY_SCHEDULE": "300ms", "POSTHOUSE_POLL_INTERVAL": "200ms"})
            with server:
                yield server, recording
    finally:
        if base is not None:
            asyncio.run(drop_postgres_database(base, url))


@pytest.fixture
def tenant(shared_relay: tuple[ServerProcess, RecordingSink]) -> Tenant:
    return new_tenant(*shared_relay)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test module that names its client's suite (`SUITE = "postmarker"`) has the tests the one list in
    tests/contract/unsupported.py gives for that suite marked as strict expected failures, with its reason."""
    for item in items:
        suite = getattr(getattr(item, "module", None), "SUITE", None)
        if suite is None:
            continue
        reason = reason_for(suite, getattr(item, "originalname", item.name))
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))
