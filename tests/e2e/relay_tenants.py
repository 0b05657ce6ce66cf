"""Tenants of a shared relaying `posthouse serve`: each test gets a Posthouse server of its own and a recipient
domain of its own, so one process (per module and store) serves many client tests without them seeing each
other's mail."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from integration.smtp_peers import ReceivedMessage, RecordingSink
from support import ServerProcess


class Tenant:
    """A Posthouse server of its own on a shared process: its token, its API, and the sink mail sent to its
    recipients (addresses at `domain`, which no other tenant uses)."""

    def __init__(self, process: ServerProcess, sink: RecordingSink, server_id: int, token: str) -> None:
        self.process = process
        self.sink = sink
        self.server_id = server_id
        self.token = token
        self.domain = f"t{uuid.uuid4().hex[:10]}.example.com"

    @property
    def base_url(self) -> str:
        return self.process.base_url

    def address(self, local: str) -> str:
        return f"{local}@{self.domain}"

    def client(self) -> httpx.Client:
        headers = {"X-Postmark-Server-Token": self.token, "Accept": "application/json"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=10)

    def get(self, path: str, **params: Any) -> Any:
        with self.client() as client:
            response = client.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def arrived(self) -> list[ReceivedMessage]:
        """What the sink received for this tenant's recipients, in arrival order."""
        return [m for m in list(self.sink.messages) if any(r.endswith("@" + self.domain) for r in m.rcpt_tos)]


def new_tenant(process: ServerProcess, sink: RecordingSink) -> Tenant:
    headers = {"X-Postmark-Account-Token": process.account_token or "", "Accept": "application/json"}
    created = httpx.post(process.base_url + "/servers", json={"Name": f"clients-{uuid.uuid4().hex[:12]}"},
                         headers=headers, timeout=10)
    assert created.status_code == 200, created.text
    body = created.json()
    return Tenant(process, sink, body["ID"], body["ApiTokens"][0])

