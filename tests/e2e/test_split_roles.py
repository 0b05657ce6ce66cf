"""API and worker in separate processes sharing one PostgreSQL database: new mail wakes the worker at once."""

from __future__ import annotations

import threading
import time

import httpx

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


def test_one_idempotency_key_sent_to_two_api_nodes_at_once_stores_one_message(tmp_path, database_url) -> None:  # type: ignore[no-untyped-def]
    """Keys live in the shared database: concurrent requests with one key, spread over two API nodes, store the
    mail once; every 200 names that one message (the first answer, or its replay) and the others are told
    409 (still in flight)."""
    if not database_url.startswith("postgresql"):
        import pytest

        pytest.skip("several nodes share PostgreSQL; SQLite is the single-process store")
    first = ServerProcess(tmp_path / "a", database_url, env={"POSTHOUSE_ROLES": "api"}).start()
    second = ServerProcess(tmp_path / "b", database_url, env={"POSTHOUSE_ROLES": "api"})
    try:
        second.start()
        body = {"From": "app@example.com", "To": "once@example.com", "Subject": "once", "TextBody": "x"}
        headers = {"X-Postmark-Server-Token": first.server_token, "Idempotency-Key": "order-4711"}
        answers: list[httpx.Response] = []

        def send(node: ServerProcess) -> None:
            answers.append(httpx.post(node.base_url + "/email", json=body, headers=headers, timeout=30))

        threads = [threading.Thread(target=send, args=(node,)) for node in [first, second] * 8]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted({a.status_code for a in answers}) in ([200], [200, 409])
        ids = {a.json()["MessageID"] for a in answers if a.status_code == 200}
        assert len(ids) == 1
        for refused in (a for a in answers if a.status_code == 409):
            assert refused.json()["ErrorCode"] == 1611
        replay = httpx.post(second.base_url + "/email", json=body, headers=headers, timeout=30)
        assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json()["MessageID"] in ids
        listed = httpx.get(first.base_url + "/messages/outbound", params={"count": 10, "offset": 0},
                           headers={"X-Postmark-Server-Token": first.server_token}, timeout=30).json()
        assert listed["TotalCount"] == 1
    finally:
        second.stop()
        first.stop()
