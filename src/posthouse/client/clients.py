"""The clients: `ServerClient` (server token) and `AccountClient` (account token), async and sync.

Each owns one httpx client through its I/O layer; its resources share it: `outbound`, `bulk`, `templates`,
`bounces`, `suppressions`, `webhooks`, `streams`, `server` and `stats` of a `ServerClient`, `servers`, `templates`
(push), `domains` and `senders` of an `AccountClient`. Close a client when done, or use it as a context manager.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

import httpx

from posthouse.client.config import ACCOUNT_TOKEN, DEFAULT_RETRIES, DEFAULT_TIMEOUT, SERVER_TOKEN, make_config
from posthouse.client.http import AsyncHttp, SyncHttp
from posthouse.client.resources.bounces import AsyncBounces, SyncBounces
from posthouse.client.resources.bulk import AsyncBulk, SyncBulk
from posthouse.client.resources.domains import AsyncDomains, SyncDomains
from posthouse.client.resources.outbound import AsyncOutbound, SyncOutbound
from posthouse.client.resources.senders import AsyncSenders, SyncSenders
from posthouse.client.resources.server import AsyncServer, SyncServer
from posthouse.client.resources.servers import AsyncServers, SyncServers
from posthouse.client.resources.stats import AsyncStats, SyncStats
from posthouse.client.resources.streams import AsyncStreams, SyncStreams
from posthouse.client.resources.suppressions import AsyncSuppressions, SyncSuppressions
from posthouse.client.resources.templates import (
    AsyncAccountTemplates,
    AsyncTemplates,
    SyncAccountTemplates,
    SyncTemplates,
)
from posthouse.client.resources.webhooks import AsyncWebhooks, SyncWebhooks
from posthouse.client.retries import RetryPolicy

__all__ = ["AccountClient", "ServerClient", "SyncAccountClient", "SyncServerClient"]


class _AsyncClient:
    def __init__(self, http: AsyncHttp) -> None:
        self._http = http

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class _SyncClient:
    def __init__(self, http: SyncHttp) -> None:
        self._http = http

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ServerClient(_AsyncClient):
    """The async client of one server's API.

        async with posthouse.ServerClient(token, base_url="http://127.0.0.1:8080") as client:
            response = await client.outbound.send(posthouse.Email(...))

    - `token`: the server token; `POSTHOUSE_SERVER_TOKEN` when not given.
    - `base_url`: where Posthouse serves its API; `POSTHOUSE_BASE_URL` when not given.
    - `timeout`: seconds (or an `httpx.Timeout`) for each attempt.
    - `retries`: how many retries on connection errors, timeouts, 429 and 5xx, or a `RetryPolicy`.
    - `transport`: an httpx transport (`httpx.MockTransport`, `httpx.ASGITransport`, ...) instead of the network.
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int | RetryPolicy = DEFAULT_RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        config = make_config(SERVER_TOKEN, token, base_url=base_url, timeout=timeout, retries=retries)
        super().__init__(AsyncHttp(config, transport))
        self.outbound = AsyncOutbound(self._http)
        self.bulk = AsyncBulk(self._http)
        self.templates = AsyncTemplates(self._http)
        self.bounces = AsyncBounces(self._http)
        self.suppressions = AsyncSuppressions(self._http)
        self.webhooks = AsyncWebhooks(self._http)
        self.streams = AsyncStreams(self._http)
        self.server = AsyncServer(self._http)
        self.stats = AsyncStats(self._http)


class SyncServerClient(_SyncClient):
    """The sync client of one server's API (`posthouse.sync.ServerClient`); arguments as `ServerClient`."""

    def __init__(
        self,
        token: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int | RetryPolicy = DEFAULT_RETRIES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        config = make_config(SERVER_TOKEN, token, base_url=base_url, timeout=timeout, retries=retries)
        super().__init__(SyncHttp(config, transport))
        self.outbound = SyncOutbound(self._http)
        self.bulk = SyncBulk(self._http)
        self.templates = SyncTemplates(self._http)
        self.bounces = SyncBounces(self._http)
        self.suppressions = SyncSuppressions(self._http)
        self.webhooks = SyncWebhooks(self._http)
        self.streams = SyncStreams(self._http)
        self.server = SyncServer(self._http)
        self.stats = SyncStats(self._http)


class AccountClient(_AsyncClient):
    """The async client of the account API; `token` falls back to `POSTHOUSE_ACCOUNT_TOKEN`, the rest as
    `ServerClient`."""

    def __init__(
        self,
        token: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int | RetryPolicy = DEFAULT_RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        config = make_config(ACCOUNT_TOKEN, token, base_url=base_url, timeout=timeout, retries=retries)
        super().__init__(AsyncHttp(config, transport))
        self.servers = AsyncServers(self._http)
        self.templates = AsyncAccountTemplates(self._http)
        self.domains = AsyncDomains(self._http)
        self.senders = AsyncSenders(self._http)


class SyncAccountClient(_SyncClient):
    """The sync client of the account API (`posthouse.sync.AccountClient`); arguments as `AccountClient`."""

    def __init__(
        self,
        token: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int | RetryPolicy = DEFAULT_RETRIES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        config = make_config(ACCOUNT_TOKEN, token, base_url=base_url, timeout=timeout, retries=retries)
        super().__init__(SyncHttp(config, transport))
        self.servers = SyncServers(self._http)
        self.templates = SyncAccountTemplates(self._http)
        self.domains = SyncDomains(self._http)
        self.senders = SyncSenders(self._http)
