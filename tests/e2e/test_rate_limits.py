"""Rate limits through the real `posthouse serve` process: a server's sending rate (HTTP 429 with `Retry-After`
in Postmark's error envelope, SMTP `451 4.7.1` to a real smtplib client) on SQLite and PostgreSQL, and a
token's API request rate. A refusal stores nothing; after `Retry-After` the same request is accepted.

The buckets are per process (services/rate_limits.py): one server process here, so one bucket per server."""

from __future__ import annotations

import smtplib
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import ServerProcess, assert_api_error, wait_for

MESSAGE = {"From": "app@example.com", "To": "ann@example.com", "Subject": "Receipt", "TextBody": "Thanks"}
MIME = b"From: app@example.com\r\nTo: ann@example.com\r\nSubject: Receipt\r\n\r\nThanks\r\n"


def outbound_total(client: httpx.Client) -> int:
    answer = client.get("/messages/outbound", params={"count": 1, "offset": 0})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["TotalCount"])


def smtp_send(server: ServerProcess) -> None:
    token = server.server_token or ""
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as client:
        client.login(token, token)  # loopback may AUTH without TLS by default
        client.sendmail("app@example.com", ["ann@example.com"], MIME)


def test_a_servers_sending_rate_is_refused_over_http_and_smtp_until_retry_after(
        tmp_path: Path, database_url: str) -> None:
    # One message per second, one at a time: a batch of 5 is admitted from the full bucket and leaves a debt
    # of 4 s, so what comes right after it is refused whatever the machine's speed.
    env = {"POSTHOUSE_RATE_LIMIT_PER_SERVER": "1", "POSTHOUSE_RATE_LIMIT_BURST": "1"}
    with ServerProcess(tmp_path / "data", database_url, env=env) as server, server.client() as client:
        batch = client.post("/email/batch", json=[{**MESSAGE, "Subject": f"#{i}"} for i in range(5)])
        assert batch.status_code == 200 and [m["ErrorCode"] for m in batch.json()] == [0] * 5, batch.text

        refused = client.post("/email", json=MESSAGE)
        assert_api_error(refused, 429, 429, text="Rate limit exceeded")
        retry_after = int(refused.headers["Retry-After"])
        assert 1 <= retry_after <= 5, refused.headers

        with pytest.raises(smtplib.SMTPDataError) as over_smtp:
            smtp_send(server)
        assert over_smtp.value.smtp_code == 451, over_smtp.value
        reply = over_smtp.value.args[1]  # smtplib gives the reply text as bytes
        assert isinstance(reply, bytes) and reply.startswith(b"4.7.1 Rate limit exceeded"), reply
        assert_api_error(client.post("/email/batch", json=[MESSAGE]), 429, 429)
        assert outbound_total(client) == 5  # nothing of the refused requests was stored

        # Once the debt is paid the same request goes through, over either door (refusals took nothing).
        accepted: list[httpx.Response] = []

        def admitted() -> bool:
            answer = client.post("/email", json=MESSAGE)
            assert answer.status_code in (200, 429), answer.text
            if answer.status_code == 200:
                accepted.append(answer)
            return bool(accepted)

        wait_for(admitted, timeout=retry_after + 10, interval=0.2)

        def smtp_admitted() -> bool:
            try:
                smtp_send(server)
            except smtplib.SMTPDataError as exc:
                if exc.smtp_code != 451:
                    raise
                return False
            return True

        wait_for(smtp_admitted, timeout=15, interval=0.2)
        assert outbound_total(client) == 7


def test_each_tokens_request_rate_is_limited_on_its_own(tmp_path: Path, database_url: str) -> None:
    env = {"POSTHOUSE_API_RATE_LIMIT_PER_TOKEN": "1", "POSTHOUSE_API_RATE_LIMIT_BURST": "3"}
    with ServerProcess(tmp_path / "data", database_url, env=env) as server, server.client() as client:
        answers = [client.get("/server") for _ in range(8)]
        statuses = [a.status_code for a in answers]
        # Three at once, then about one a second: eight requests in a row cannot all pass.
        assert statuses[:3] == [200, 200, 200] and 429 in statuses, statuses
        refused = answers[statuses.index(429)]
        assert_api_error(refused, 429, 429, text="requests per second")
        assert 1 <= int(refused.headers["Retry-After"]) <= 2
        # Another token has its own bucket; a made-up token is counted too, before it is looked up.
        account: dict[str, Any] = {"X-Postmark-Account-Token": server.account_token or "",
                                   "Accept": "application/json"}
        assert httpx.get(server.base_url + "/servers", params={"count": 5, "offset": 0}, headers=account,
                         timeout=10).status_code == 200
        made_up = {"X-Postmark-Server-Token": "not-a-token", "Accept": "application/json"}
        codes = [httpx.get(server.base_url + "/server", headers=made_up, timeout=10).status_code for _ in range(8)]
        assert codes[:3] == [401, 401, 401] and 429 in codes, codes
        # /healthz names no token: never limited.
        assert all(httpx.get(server.base_url + "/healthz", timeout=10).status_code == 200 for _ in range(8))
