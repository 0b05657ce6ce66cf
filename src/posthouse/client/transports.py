"""One way to send, whatever the mail's road: the `Transport` protocol, the API and in-memory transports,
and `transport_from_url`, which picks one from a URL in an application's configuration.

    posthouse+https://TOKEN@host[:port]   the API, over HTTPS (posthouse+http:// for plain HTTP)
    smtp+starttls://user:pass@host:587     SMTP (`SMTPTransport`); also smtps:// and smtp://
    memory://                              nothing leaves the process: `MemoryTransport().outbox`
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from posthouse import wire
from posthouse.client.clients import ServerClient, SyncServerClient
from posthouse.client.config import DEFAULT_RETRIES, DEFAULT_TIMEOUT, SERVER_TOKEN, make_config
from posthouse.client.errors import ConfigurationError
from posthouse.client.retries import RetryPolicy
from posthouse.client.smtp import SMTPTransport

__all__ = ["APITransport", "MemoryTransport", "Transport", "transport_from_url"]


@runtime_checkable
class Transport(Protocol):
    """What an application sends through: `send` from sync code, `send_async` from async code."""

    def send(self, email: wire.EmailRequest) -> wire.SendResponse: ...

    async def send_async(self, email: wire.EmailRequest) -> wire.SendResponse: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


class APITransport:
    """Sends through Posthouse's API: a `SyncServerClient` for `send`, a `ServerClient` for `send_async`,
    each made on first use; the arguments are those of the clients."""

    def __init__(
        self,
        token: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int | RetryPolicy = DEFAULT_RETRIES,
    ) -> None:
        make_config(SERVER_TOKEN, token, base_url=base_url, timeout=timeout, retries=retries)  # fail now, not later
        self._token = token
        self._base_url = base_url
        self._timeout = timeout
        self._retries = retries
        self._sync: SyncServerClient | None = None
        self._async: ServerClient | None = None

    @property
    def client(self) -> SyncServerClient:
        if self._sync is None:
            self._sync = SyncServerClient(
                self._token, base_url=self._base_url, timeout=self._timeout, retries=self._retries
            )
        return self._sync

    @property
    def async_client(self) -> ServerClient:
        if self._async is None:
            self._async = ServerClient(
                self._token, base_url=self._base_url, timeout=self._timeout, retries=self._retries
            )
        return self._async

    def send(self, email: wire.EmailRequest) -> wire.SendResponse:
        return self.client.outbound.send(email)

    async def send_async(self, email: wire.EmailRequest) -> wire.SendResponse:
        return await self.async_client.outbound.send(email)

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        self.close()
        if self._async is not None:
            await self._async.aclose()
            self._async = None


class MemoryTransport:
    """Keeps every message in `outbox` instead of sending it: for an application's own tests.

        transport = posthouse.MemoryTransport()  # or transport_from_url("memory://")
        signup(mailer=transport)
        assert transport.outbox[0].subject == "Welcome"

    `clear()` empties the outbox between tests.
    """

    def __init__(self) -> None:
        self.outbox: list[wire.EmailRequest] = []

    def send(self, email: wire.EmailRequest) -> wire.SendResponse:
        self.outbox.append(email)
        return wire.SendResponse(
            to=email.to or "",
            submitted_at=datetime.now(UTC).isoformat(),
            message_id=str(uuid.uuid4()),
            error_code=0,
            message="OK",
        )

    async def send_async(self, email: wire.EmailRequest) -> wire.SendResponse:
        return self.send(email)

    def clear(self) -> None:
        self.outbox.clear()

    def close(self) -> None:
        """Nothing to release; the outbox stays readable."""

    async def aclose(self) -> None:
        """Nothing to release; the outbox stays readable."""


def transport_from_url(url: str) -> Transport:
    """The transport a URL names (see the module docstring); a ConfigurationError for any other URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("posthouse+https", "posthouse+http"):
        if not parts.hostname or not parts.username:
            raise ConfigurationError(
                "A posthouse+https:// URL needs the server token and a host: posthouse+https://TOKEN@host[:port]"
            )
        port = f":{parts.port}" if parts.port else ""
        base_url = f"{scheme.removeprefix('posthouse+')}://{_host(parts.hostname)}{port}{parts.path.rstrip('/')}"
        return APITransport(unquote(parts.username), base_url=base_url)
    if scheme in ("smtp", "smtp+starttls", "smtps"):
        return SMTPTransport(url)
    if scheme == "memory":
        return MemoryTransport()
    raise ConfigurationError(
        f"Unknown transport URL scheme {parts.scheme!r}: use posthouse+https://, "
        "posthouse+http://, smtp+starttls://, smtps://, smtp:// or memory://"
    )


def _host(hostname: str) -> str:
    return f"[{hostname}]" if ":" in hostname else hostname
