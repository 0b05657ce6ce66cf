"""Relay replies decide what happens: retries on 4xx with Transient events, bounces on 5xx, never lost."""

from __future__ import annotations

from support import ServerProcess, wait_for

MESSAGE = {"From": "app@example.com", "To": "user@example.com", "Subject": "Outcome", "TextBody": "body"}


def send(server: ServerProcess, body: dict) -> str:  # type: ignore[type-arg]
    with server.client() as client:
        response = client.post("/email", json=body)
        assert response.status_code == 200, response.text
        return str(response.json()["MessageID"])


def events(server: ServerProcess, message_id: str) -> list[dict]:  # type: ignore[type-arg]
    with server.client() as client:
        return list(client.get(f"/messages/outbound/{message_id}/details").json()["MessageEvents"])


def test_two_451s_then_250_delivers_on_the_third_attempt(relay_server, sink) -> None:  # type: ignore[no-untyped-def]
    sink.script.extend(["451 4.3.0 Try again later", "451 4.7.1 Greylisted, try again later"])
    message_id = send(relay_server, MESSAGE)
    wait_for(lambda: len(sink.messages) == 1, timeout=15)
    history = wait_for(lambda: (e := events(relay_server, message_id)) and e[-1]["Type"] == "Delivered" and e)
    assert [e["Type"] for e in history] == ["Transient", "Transient", "Delivered"]
    assert "451 4.3.0 Try again later" in history[0]["Details"]["DeliveryMessage"]
    assert "Greylisted" in history[1]["Details"]["DeliveryMessage"]
    assert history[2]["Details"]["DeliveryMessage"].startswith("250")
    assert history[2]["Details"]["DestinationServer"] == f"127.0.0.1:{sink.port}"
    with relay_server.client() as client:
        listed = client.get("/messages/outbound", params={"count": 10, "offset": 0}).json()
    assert listed["Messages"][0]["Status"] == "Sent"


def test_550_bounces_once_with_a_bounce_record_and_no_more_attempts(relay_server, sink) -> None:  # type: ignore[no-untyped-def]
    sink.rcpt_replies["gone@example.com"] = "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown"
    message_id = send(relay_server, {**MESSAGE, "To": "gone@example.com, here@example.com"})
    wait_for(lambda: len(sink.messages) == 1, timeout=10)
    assert sink.messages[0].rcpt_tos == ["here@example.com"]
    # A hard bounce also suppresses the address: a SubscriptionChanged event follows the Bounced one.
    history = wait_for(lambda: len(e := events(relay_server, message_id)) == 3 and e)
    by_recipient: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for event in history:
        by_recipient.setdefault(event["Recipient"], []).append(event)
    bounced, changed = by_recipient["gone@example.com"]
    assert bounced["Type"] == "Bounced"
    assert "Hard bounce" in bounced["Details"]["Summary"]
    assert bounced["Details"]["BounceID"].isdigit()
    assert changed["Type"] == "SubscriptionChanged"
    assert changed["Details"]["SuppressionReason"] == "HardBounce"
    assert [e["Type"] for e in by_recipient["here@example.com"]] == ["Delivered"]
    # Nothing is tried again: after several retry intervals there is still one attempt and one event each.
    import time

    time.sleep(1.5)
    assert len(sink.messages) == 1
    assert len(events(relay_server, message_id)) == 3


def test_relay_down_then_up_still_delivers(tmp_path, database_url) -> None:  # type: ignore[no-untyped-def]
    from integration.smtp_peers import RecordingSink
    from support import free_port

    port = free_port()  # nothing listens here yet: connection refused is a local, transient failure
    with ServerProcess(tmp_path / "data", database_url, delivery="relay", relay_url=f"smtp://127.0.0.1:{port}",
                       env={"POSTHOUSE_RETRY_SCHEDULE": "300ms", "POSTHOUSE_POLL_INTERVAL": "200ms"}) as server:
        message_id = send(server, MESSAGE)
        wait_for(lambda: any(e["Type"] == "Transient" for e in events(server, message_id)), timeout=10)
        sink = RecordingSink()
        sink._controller.port = port  # the address the server keeps retrying
        with sink:
            wait_for(lambda: len(sink.messages) == 1, timeout=15)
        assert events(server, message_id)[-1]["Type"] == "Delivered"


def test_a_message_too_old_to_retry_bounces_as_soft_bounce(tmp_path, database_url, sink) -> None:  # type: ignore[no-untyped-def]
    sink.script.extend(["451 4.3.0 Try again later"] * 100)
    env = {"POSTHOUSE_RETRY_SCHEDULE": "200ms", "POSTHOUSE_POLL_INTERVAL": "100ms", "POSTHOUSE_MAX_MESSAGE_AGE": "1s"}
    with ServerProcess(tmp_path / "data", database_url, delivery="relay",
                       relay_url=f"smtp://127.0.0.1:{sink.port}", env=env) as server:
        message_id = send(server, MESSAGE)
        history = wait_for(lambda: (e := events(server, message_id)) and e[-1]["Type"] == "Bounced" and e,
                           timeout=15)
    assert all(e["Type"] == "Transient" for e in history[:-1]) and len(history) >= 2
    assert "Soft bounce" in history[-1]["Details"]["Summary"]
    assert "gave up after" in history[-1]["Details"]["Summary"]
    assert sink.messages == []
