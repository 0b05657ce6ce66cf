"""The relay transport: deliver through one smarthost, reusing a small pool of SMTP connections."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time

from posthouse.server.config import RelayTarget
from posthouse.server.delivery.base import AttemptResult, Envelope
from posthouse.server.delivery.smtp_client import SMTPClient
from posthouse.server.errors import DeliveryError

log = logging.getLogger("posthouse.delivery")
_IDLE_SECONDS = 20.0  # close pooled connections idle longer than this; servers time out idle clients


class RelayTransport:
    """Up to `max_connections` connections; each carries up to `messages_per_connection` messages."""

    name = "relay"

    def __init__(self, target: RelayTarget, *, max_connections: int = 16, messages_per_connection: int = 1000,
                 ssl_context: ssl.SSLContext | None = None, timeout: float = 60.0) -> None:
        self.target = target
        self.messages_per_connection = messages_per_connection
        self.ssl_context = ssl_context
        self.timeout = timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[tuple[float, SMTPClient]] = []
        self.destination = f"{target.host}:{target.port}"  # for logs and metrics: never the credentials

    async def _acquire(self) -> SMTPClient:
        now = time.monotonic()
        while self._idle:
            last_used, client = self._idle.pop()
            if client.is_connected and now - last_used < _IDLE_SECONDS:
                return client
            await client.quit()
        client = SMTPClient(
            self.target.host, self.target.port, tls=self.target.tls, ssl_context=self.ssl_context,  # type: ignore[arg-type]
            username=self.target.username, password=self.target.password,
            connect_timeout=self.timeout, command_timeout=self.timeout)
        await client.connect()
        return client

    async def send(self, envelope: Envelope) -> AttemptResult:
        async with self._slots:
            client = await self._acquire()
            ip = client.peer_ip or self.target.host
            try:
                result = await client.send(envelope.mail_from, envelope.recipients, envelope.data)
            except DeliveryError:
                client.close()
                raise
            if client.is_connected and client.messages_sent < self.messages_per_connection:
                self._idle.append((time.monotonic(), client))
            else:
                await client.quit()
        return AttemptResult(dict(result.recipients), f"{self.target.host}:{self.target.port}", ip)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(client.quit() for _, client in idle), return_exceptions=True)
