"""Logs and metrics of a real `posthouse serve`: its stderr in both formats, and /metrics scraped while mail moves."""

from __future__ import annotations

import json
import re
import smtplib
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from integration.smtp_peers import RecordingSink
from support import LOOPBACK_WEBHOOKS_ENV, ServerProcess, free_port, wait_for
from webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.slow
FAST = {"POSTHOUSE_RETRY_SCHEDULE": "200ms", "POSTHOUSE_POLL_INTERVAL": "100ms", "POSTHOUSE_LOG_LEVEL": "info"}
METRICS_TOKEN = "metrics-bearer-7f3a9c"
HUMAN_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) +[\w.]+  ")


def _send(server: ServerProcess, to: str = "reader@example.org", **extra: object) -> httpx.Response:
    with server.client() as client:
        return client.post("/email", json={"From": "app@example.com", "To": to, "Subject": "observed",
                                           "TextBody": "hello", **extra})


def _json_lines(server: ServerProcess) -> list[dict[str, object]]:
    return [json.loads(line) for line in list(server.stderr_lines)]


def test_the_json_log_of_a_real_server(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every stderr line is one JSON object; an API request, a delivery attempt and webhook posts each have their
    line with their fields; a webhook that keeps failing is one warning per interval; no secret is written."""
    basic_password = "hook-pa55-Zq9"
    with WebhookReceiver(script=[500] * 200) as receiver, ServerProcess(
            tmp_path / "data", f"sqlite:///{tmp_path / 'p.db'}", separate_stderr=True,
            env={**FAST, **LOOPBACK_WEBHOOKS_ENV, "POSTHOUSE_LOG_FORMAT": "json",
                 "POSTHOUSE_LOG_REPEAT_INTERVAL": "1s", "POSTHOUSE_WEBHOOK_RETRY_SCHEDULE": ",".join(["100ms"] * 60),
                 "POSTHOUSE_METRICS_TOKEN": METRICS_TOKEN}) as server:
        with server.client() as client:
            hook = client.post("/webhooks", json={
                "Url": receiver.url + "?key=query-secret",
                "HttpAuth": {"Username": "hooks", "Password": basic_password},
                "Triggers": {"Delivery": {"Enabled": True}}})
            assert hook.status_code == 200, hook.text
            answer = client.post("/email", headers={"X-Request-Id": "client-req-17"}, json={
                "From": "app@example.com", "To": "Reader <reader@Example.ORG>", "Subject": "s", "TextBody": "t"})
            assert answer.status_code == 200
            assert answer.headers["x-request-id"] == "client-req-17"
            generated = client.get("/messages/outbound", params={"count": 1, "offset": 0})
            assert re.fullmatch(r"[0-9a-f]{16}", generated.headers["x-request-id"])
            forged = client.get("/server", headers={"X-Request-Id": "a b\tc"})  # not an id: replaced
            assert re.fullmatch(r"[0-9a-f]{16}", forged.headers["x-request-id"])
        message_id = answer.json()["MessageID"]
        started = time.monotonic()
        wait_for(lambda: len(receiver.requests) >= 8, timeout=30)
        wait_for(lambda: sum(1 for e in _json_lines(server) if e["event"] == "webhook still failing") >= 2, timeout=30)
        elapsed = time.monotonic() - started
        entries = _json_lines(server)
    server_token = server.server_token or ""
    assert server_token
    requests = [e for e in entries if e["event"] == "http request"]
    sent = next(e for e in requests if e["request_id"] == "client-req-17")
    assert (sent["level"], sent["logger"], sent["method"], sent["path"], sent["status"]) == \
        ("info", "posthouse.http", "POST", "/email", 200)
    assert isinstance(sent["ms"], float) and sent["server_id"] == 1
    assert any(e["path"] == "/webhooks" and e["status"] == 200 for e in requests)
    attempt = next(e for e in entries if e["event"] == "delivery attempt")
    assert (attempt["message_id"], attempt["domain"], attempt["outcome"], attempt["transport"]) == \
        (message_id, "example.org", "delivered", "sandbox")
    assert str(attempt["reply"]).startswith("250 ")
    posts = [e for e in entries if e["event"] == "webhook post"]
    assert len(posts) >= 8
    assert {(p["outcome"], p["status"], p["url"]) for p in posts} == {("retry", 500, receiver.url)}
    # The failing receiver: the first failure at once, then one line per second at most, with what was not logged.
    failing = [e for e in entries if e["event"] in ("webhook failing", "webhook still failing")]
    assert failing[0]["event"] == "webhook failing" and failing[0]["level"] == "warning"
    assert failing[0]["reason"] == "the webhook receiver answered HTTP 500"
    assert len(failing) <= elapsed / 1.0 + 2
    assert len(failing) < len(posts)
    later = [e for e in failing if e["event"] == "webhook still failing"]
    assert all(isinstance(e["suppressed"], int) for e in later)
    assert sum(int(e["suppressed"]) for e in later) >= 1  # type: ignore[call-overload]
    text = "".join(server.stderr_lines)
    for secret in (basic_password, "query-secret", server_token, METRICS_TOKEN):
        assert secret not in text


def test_the_human_log_of_a_real_server_and_a_relay_that_keeps_failing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """People's lines: timestamp, level, logger, event, key=value. A relay that refuses connections is a warning
    with its reason, then at most one line a second with the count of failures not logged."""
    relay_password = "relay-Pw-4411"
    closed = free_port()
    with ServerProcess(tmp_path / "data", f"sqlite:///{tmp_path / 'p.db'}", delivery="relay",
                       relay_url=f"smtp+starttls://mailer:{relay_password}@127.0.0.1:{closed}", separate_stderr=True,
                       env={**FAST, "POSTHOUSE_LOG_REPEAT_INTERVAL": "1s"}) as server:
        assert _send(server).status_code == 200
        started = time.monotonic()
        wait_for(lambda: sum("relay still failing" in line for line in server.stderr_lines) >= 2, timeout=30)
        elapsed = time.monotonic() - started
        lines = list(server.stderr_lines)
    assert all(HUMAN_LINE.match(line) for line in lines), lines
    request = next(line for line in lines if " http request " in line)
    assert "INFO    posthouse.http  http request method=POST path=/email status=200 ms=" in request
    assert re.search(r" server_id=1 request_id=[0-9a-f]{16}$", request.rstrip("\n"))
    attempts = [line for line in lines if " delivery attempt " in line]
    assert len(attempts) >= 4
    assert f"transport=relay destination=127.0.0.1:{closed} outcome=deferred" in attempts[0]
    warnings = [line for line in lines if "relay failing" in line or "relay still failing" in line]
    assert " WARNING posthouse.delivery  relay failing " in warnings[0]
    assert "Connection refused" in warnings[0]
    assert len(warnings) <= elapsed / 1.0 + 2 and len(warnings) < len(attempts)
    assert re.search(r" failures=\d+ suppressed=[1-9]\d*", warnings[1])
    assert relay_password not in "".join(lines) + "".join(server.lines)


def _scrape(base_url: str, token: str | None = METRICS_TOKEN) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(base_url + "/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_of_a_real_server_move_as_mail_is_sent(tmp_path, database_url: str) -> None:  # type: ignore[no-untyped-def]
    with RecordingSink() as sink, ServerProcess(
            tmp_path / "data", database_url, delivery="relay", relay_url=f"smtp://127.0.0.1:{sink.port}",
            env={**FAST, "POSTHOUSE_METRICS_TOKEN": METRICS_TOKEN}) as server:
        assert httpx.get(server.base_url + "/metrics", timeout=10).status_code == 401
        assert httpx.get(server.base_url + "/metrics", headers={"Authorization": "Bearer wrong"},
                         timeout=10).status_code == 401
        before = _scrape(server.base_url)
        for n in range(3):
            assert _send(server, f"api{n}@example.org").status_code == 200
        message = EmailMessage()
        message["From"], message["Subject"] = "app@example.com", "over smtp"
        message.set_content("hello")
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
            smtp.login(server.server_token or "", server.server_token or "")
            for n in range(2):
                del message["To"]
                message["To"] = f"smtp{n}@example.org"
                smtp.send_message(message)
        wait_for(lambda: len(sink.messages) == 5, timeout=20)
        after = wait_for(lambda: (s := _scrape(server.base_url)) and _value(
            s, "posthouse_messages_total", state="delivered", stream="outbound") >= 5 and s, timeout=20)
        assert _value(after, "posthouse_messages_total", state="accepted", stream="outbound") - \
            _value(before, "posthouse_messages_total", state="accepted", stream="outbound") == 5
        assert _value(after, "posthouse_delivery_latency_seconds_count", stream="outbound") == 5
        assert _value(after, "posthouse_delivery_latency_seconds_bucket", stream="outbound", le="+Inf") == 5
        assert _value(after, "posthouse_delivery_attempt_seconds_count", transport="relay") == 5
        assert _value(after, "posthouse_http_requests_total", method="POST", route="/email", status="200") == 3
        assert _value(after, "posthouse_http_request_duration_seconds_count", method="POST", route="/email") == 3
        assert _value(after, "posthouse_http_requests_total", method="GET", route="/metrics", status="401") == 2
        assert _value(after, "posthouse_smtp_commands_total", command="MAIL") == 2
        assert _value(after, "posthouse_smtp_commands_total", command="AUTH") == 1
        assert _value(after, "posthouse_smtp_replies_total", code="235") == 1  # AUTH accepted
        assert _value(after, "posthouse_smtp_connections_total", result="accepted") == 1
        dialect = "sqlite" if database_url.startswith("sqlite") else "postgresql"
        commits = _value(after, "posthouse_store_commit_duration_seconds_count", dialect=dialect)
        assert commits > _value(before, "posthouse_store_commit_duration_seconds_count", dialect=dialect)
        assert _value(after, "posthouse_store_commit_batch_size_count", dialect=dialect) == commits
        assert _value(after, "posthouse_store_commit_batch_size_sum", dialect=dialect) >= commits
        assert ("posthouse_store_write_queue_length", ()) in after
        assert _value(after, "posthouse_queue_depth") == 0
        # A message scheduled for later is in the queue, not due.
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert _send(server, "later@example.org", SendAt=later).status_code == 200
        scheduled = wait_for(lambda: (s := _scrape(server.base_url)) and _value(s, "posthouse_queue_depth") == 1
                             and s, timeout=10)
        assert _value(scheduled, "posthouse_queue_due") == 0
        assert _value(scheduled, "posthouse_queue_oldest_due_age_seconds") == 0
        assert _value(scheduled, "process_cpu_seconds_total") > 0


def test_an_api_node_and_a_worker_node_each_expose_their_metrics(tmp_path, database_url: str) -> None:  # type: ignore[no-untyped-def]
    """Split roles: mail waits in the queue of an API-only node (due, and its wait grows), until a worker node
    starts; the worker has no API listener and serves /metrics and /healthz on `metrics_http`."""
    with RecordingSink() as sink:
        relay = f"smtp://127.0.0.1:{sink.port}"
        api = ServerProcess(tmp_path / "api", database_url, delivery="relay", relay_url=relay,
                            env={**FAST, "POSTHOUSE_ROLES": "api"})
        worker = ServerProcess(tmp_path / "worker", database_url, delivery="relay", relay_url=relay, env={
            **FAST, "POSTHOUSE_ROLES": "worker"})
        # The worker has no API: its metrics listener takes the port the harness checks /healthz on.
        worker.extra_env["POSTHOUSE_METRICS_HTTP"] = f"127.0.0.1:{worker.port}"
        with api:
            assert _send(api, "queued@example.org").status_code == 200
            first = wait_for(lambda: (s := _scrape(api.base_url, None)) and _value(s, "posthouse_queue_due") == 1
                             and s, timeout=10)
            assert _value(first, "posthouse_queue_depth") == 1
            waited = _value(first, "posthouse_queue_oldest_due_age_seconds")
            wait_for(lambda: _value(_scrape(api.base_url, None), "posthouse_queue_oldest_due_age_seconds")
                     > waited + 1, timeout=10)
            with worker:
                wait_for(lambda: sink.messages, timeout=20)
                worked = wait_for(lambda: (s := _scrape(worker.base_url, None)) and _value(
                    s, "posthouse_messages_total", state="delivered", stream="outbound") == 1 and s, timeout=10)
                assert _value(worked, "posthouse_messages_total", state="accepted", stream="outbound") == 0
                assert httpx.get(worker.base_url + "/healthz", timeout=5).json() == {"status": "ok"}
                assert httpx.post(worker.base_url + "/metrics", timeout=5).status_code == 405
                wait_for(lambda: _value(_scrape(api.base_url, None), "posthouse_queue_depth") == 0, timeout=10)
                served = _scrape(api.base_url, None)
                assert _value(served, "posthouse_messages_total", state="accepted", stream="outbound") == 1
                assert _value(served, "posthouse_messages_total", state="delivered", stream="outbound") == 0


def test_metrics_outside_the_allowed_networks_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`metrics_allowed_networks` is checked before the token: a loopback client is refused (403) by a list
    without loopback, whatever token it sends; the health check stays open."""
    with ServerProcess(tmp_path / "data", f"sqlite:///{tmp_path / 'p.db'}", env={
            **FAST, "POSTHOUSE_METRICS_TOKEN": METRICS_TOKEN,
            "POSTHOUSE_METRICS_ALLOWED_NETWORKS": "10.0.0.0/8,fd00::/8"}) as server:
        refused = httpx.get(server.base_url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                            timeout=10)
        assert refused.status_code == 403
        assert "posthouse_" not in refused.text
        assert httpx.get(server.base_url + "/healthz", timeout=10).status_code == 200
    with ServerProcess(tmp_path / "data2", f"sqlite:///{tmp_path / 'q.db'}", env={
            **FAST, "POSTHOUSE_METRICS_TOKEN": METRICS_TOKEN,
            "POSTHOUSE_METRICS_ALLOWED_NETWORKS": "10.0.0.0/8,127.0.0.0/8"}) as server:
        assert httpx.get(server.base_url + "/metrics", timeout=10).status_code == 401
        assert _value(_scrape(server.base_url), "posthouse_queue_depth") == 0
