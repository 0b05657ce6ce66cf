"""API and worker in separate processes sharing one PostgreSQL database: new mail wakes the worker at once."""

from __future__ import annotations

import time

from support import ServerProcess, wait_for


def test_api_node_and_worker_node_share_the_queue(tmp_path, database_url, sink) -> None:  # type: ignore[no-untyped-def]
    if not database_url.startswith("postgresql"):
        import pytest

        pytest.skip("several nodes share PostgreSQL; SQLite is the single-process store")
    relay = f"smtp://127.0.0.1:{sink.port}"
    # A poll interval far longer than the test: only LISTEN/NOTIFY can wake the worker in time.
    slow_poll = {"POSTHOUSE_POLL_INTERVAL": "60s"}
    api = ServerProcess(tmp_path / "api", database_url, delivery="relay", relay_url=relay,
                        env={**slow_poll, "POSTHOUSE_ROLES": "api"}).start()
    worker = ServerProcess(tmp_path / "worker", database_url, delivery="relay", relay_url=relay,
                           env={**slow_poll, "POSTHOUSE_ROLES": "worker,api"})
    try:
        worker.start()
        time.sleep(0.5)  # let the worker claim once and go to sleep on its 60 s poll
        with api.client() as client:
            response = client.post("/email", json={"From": "app@example.com", "To": "split@example.com",
                                                   "Subject": "split roles", "TextBody": "x"})
            assert response.status_code == 200
        started = time.monotonic()
        wait_for(lambda: sink.messages, timeout=10)
        assert time.monotonic() - started < 5
        assert sink.messages[0].rcpt_tos == ["split@example.com"]
    finally:
        worker.stop()
        api.stop()
