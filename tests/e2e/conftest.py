"""End-to-end fixtures: a recording SMTP sink on loopback and the real `posthouse serve` process relaying to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from integration.smtp_peers import RecordingSink
from support import ServerProcess


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
