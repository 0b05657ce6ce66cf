"""Relay delivery over STARTTLS and implicit TLS with AUTH, the relay's certificate verified."""

from __future__ import annotations

import pytest

from integration.smtp_peers import RecordingSink, make_tls_contexts
from support import ServerProcess, wait_for


@pytest.mark.parametrize("scheme", ["smtp+starttls", "smtps"])
def test_relay_with_tls_and_auth(tmp_path, database_url, scheme) -> None:  # type: ignore[no-untyped-def]
    server_context, _ = make_tls_contexts(tmp_path)
    implicit = scheme == "smtps"
    sink = RecordingSink(tls_context=server_context, implicit_tls=implicit, require_starttls=not implicit,
                         auth={"relayuser": "s3cret pass"}, require_auth=not implicit)
    with sink, ServerProcess(
        tmp_path / "data", database_url, delivery="relay",
        relay_url=f"{scheme}://relayuser:s3cret%20pass@localhost:{sink.port}",
        env={"POSTHOUSE_RELAY_CA_FILE": str(tmp_path / "cert.pem")},
    ) as server, server.client() as client:
        response = client.post("/email", json={"From": "app@example.com", "To": "tls@example.com",
                                               "Subject": "over TLS", "TextBody": "secret"})
        assert response.status_code == 200
        wait_for(lambda: sink.messages, timeout=10)
        message_id = response.json()["MessageID"]

        def delivered() -> dict | None:  # type: ignore[type-arg]
            found = client.get(f"/messages/outbound/{message_id}/details").json()["MessageEvents"]
            return next((e for e in found if e["Type"] == "Delivered"), None)

        event = wait_for(delivered)
    # The relay was named "localhost"; the event names the address actually reached.
    assert event["Details"]["DestinationServer"] == f"localhost:{sink.port}"
    assert event["Details"]["DestinationIP"] in ("127.0.0.1", "::1")
    assert sink.messages[0].rcpt_tos == ["tls@example.com"]
    assert sink.logins and sink.logins[0][1] == "relayuser"


def test_untrusted_relay_certificate_is_a_transient_failure_not_a_delivery(tmp_path, database_url) -> None:  # type: ignore[no-untyped-def]
    server_context, _ = make_tls_contexts(tmp_path)
    sink = RecordingSink(tls_context=server_context, require_starttls=True)
    with sink, ServerProcess(tmp_path / "data", database_url, delivery="relay",
                             relay_url=f"smtp+starttls://localhost:{sink.port}",
                             env={"POSTHOUSE_RETRY_SCHEDULE": "1h"}) as server, server.client() as client:
        message_id = client.post("/email", json={"From": "app@example.com", "To": "tls@example.com",
                                                 "Subject": "s", "TextBody": "t"}).json()["MessageID"]

        def transient() -> list:  # type: ignore[type-arg]
            found = client.get(f"/messages/outbound/{message_id}/details").json()["MessageEvents"]
            return [e for e in found if e["Type"] == "Transient"]

        events = wait_for(transient, timeout=10)
        assert "certificate" in events[0]["Details"]["DeliveryMessage"].lower()
    assert sink.messages == []
