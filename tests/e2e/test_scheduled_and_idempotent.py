"""Scheduled mail and idempotency keys across restarts of the real process, delivered to a real sink."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from integration.smtp_peers import RecordingSink
from support import ServerProcess, wait_for

MESSAGE = {"From": "app@example.com", "To": "user@example.com", "Subject": "Later", "TextBody": "Hi"}
FAST = {"POSTHOUSE_POLL_INTERVAL": "200ms", "POSTHOUSE_RETRY_SCHEDULE": "300ms", "POSTHOUSE_LEASE_TIME": "2s"}


def at(seconds: float) -> tuple[float, str]:
    """A moment `seconds` from now: (epoch seconds, ISO 8601 with an offset)."""
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.timestamp(), moment.isoformat()


def test_scheduled_mail_survives_kill_9_and_goes_out_on_time(tmp_path, database_url: str) -> None:  # type: ignore[no-untyped-def]
    with RecordingSink() as sink:
        server = ServerProcess(tmp_path / "data", database_url, delivery="relay",
                               relay_url=f"smtp://127.0.0.1:{sink.port}", env=FAST)
        try:
            server.start()
            due, send_at = at(4)
            with server.client() as client:
                answer = client.post("/email", json={**MESSAGE, "SendAt": send_at})
                assert answer.status_code == 200, answer.text
                message_id = answer.json()["MessageID"]
                assert client.get(f"/messages/outbound/{message_id}/details").json()["Status"] == "Scheduled"
            server.kill()
            server.start()
            (received,) = wait_for(lambda: sink.messages, timeout=20)
        finally:
            server.stop()
    assert received.received_at >= due
    assert received.received_at - due < 1.0  # released within a second of its time


def test_thousands_scheduled_for_one_second_all_go_out_starting_within_a_second(tmp_path, database_url: str) -> None:  # type: ignore[no-untyped-def]
    with RecordingSink() as sink, ServerProcess(tmp_path / "data", database_url, delivery="relay",
                                                relay_url=f"smtp://127.0.0.1:{sink.port}", env=FAST) as server:
        due, send_at = at(6)
        with server.client() as client:
            for batch in range(6):
                items = [{**MESSAGE, "To": f"user{batch}-{i}@example.com", "SendAt": send_at} for i in range(500)]
                answer = client.post("/email/batch", json=items)
                assert answer.status_code == 200 and all(r["ErrorCode"] == 0 for r in answer.json())
        assert time.time() < due, "scheduling took too long for this test to mean anything"
        wait_for(lambda: len(sink.messages) == 3000, timeout=60)
    first = min(m.received_at for m in sink.messages)
    assert first >= due and first - due < 1.0


def test_an_idempotent_send_retried_after_a_restart_is_replayed_not_resent(tmp_path, database_url: str) -> None:  # type: ignore[no-untyped-def]
    with RecordingSink() as sink:
        server = ServerProcess(tmp_path / "data", database_url, delivery="relay",
                               relay_url=f"smtp://127.0.0.1:{sink.port}", env=FAST)
        try:
            server.start()
            with server.client() as client:
                first = client.post("/email", json=MESSAGE, headers={"Idempotency-Key": "order-42"})
            server.kill()
            server.start()
            with server.client() as client:
                again = client.post("/email", json=MESSAGE, headers={"Idempotency-Key": "order-42"})
            wait_for(lambda: sink.messages, timeout=15)
            time.sleep(1.0)
        finally:
            server.stop()
    assert first.status_code == again.status_code == 200
    assert again.json()["MessageID"] == first.json()["MessageID"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(sink.messages) == 1
