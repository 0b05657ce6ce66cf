"""The two thin I/O layers, async and sync: one httpx client each, the retry loop, and the one place where
httpx's exceptions become the SDK's (`map_httpx_exceptions`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import httpx

from posthouse.client.config import ClientConfig
from posthouse.client.errors import (
    APIError,
    ConfigurationError,
    ConnectionFailedError,
    NetworkError,
    RequestTimeoutError,
)
from posthouse.client.protocol import Call, decode_answer

__all__ = ["AsyncHttp", "SyncHttp", "map_httpx_exceptions"]

T = TypeVar("T")
logger = logging.getLogger("posthouse.client")


@contextmanager
def map_httpx_exceptions() -> Iterator[None]:
    """httpx's exceptions as the SDK's; `request_sent=False` only where no connection was made."""
    try:
        yield
    except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise RequestTimeoutError(f"No connection in time: {exc!r}", request_sent=False) from exc
    except httpx.TimeoutException as exc:
        raise RequestTimeoutError(f"No answer in time: {exc!r}", request_sent=True) from exc
    except httpx.ConnectError as exc:
        raise ConnectionFailedError(f"Could not connect: {exc}", request_sent=False) from exc
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise ConfigurationError(f"Unusable URL: {exc}") from exc
    except httpx.HTTPError as exc:
        # Read/write errors, a connection closed before the answer, protocol errors: the request may
        # have reached the server.
        raise ConnectionFailedError(f"The connection failed: {exc!r}", request_sent=True) from exc


def _log_retry(call: Call[T], error: Exception, wait: float, retry: int) -> None:
    logger.info("posthouse: %s %s failed (%s); retry %d in %.2f s", call.method, call.path, error, retry + 1, wait)


class AsyncHttp:
    """Runs `Call`s over one `httpx.AsyncClient`, retrying as the config's `RetryPolicy` says."""

    def __init__(self, config: ClientConfig, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._config = config
        self._client = httpx.AsyncClient(
            transport=transport, base_url=config.base_url, headers=dict(config.headers), timeout=config.timeout
        )

    async def run(self, call: Call[T]) -> T:
        retry = 0
        while True:
            try:
                with map_httpx_exceptions():
                    response = await self._client.request(
                        call.method, call.path, params=call.params, content=call.body, headers=call.headers
                    )
                return decode_answer(call, response.status_code, response.headers, response.content)
            except (NetworkError, APIError) as error:
                wait = self._config.retry.wait_before_retry(retry, error, replayable=call.replayable)
                if wait is None:
                    raise
                _log_retry(call, error, wait, retry)
            await asyncio.sleep(wait)
            retry += 1

    async def aclose(self) -> None:
        await self._client.aclose()


class SyncHttp:
    """Runs `Call`s over one `httpx.Client`, retrying as the config's `RetryPolicy` says."""

    def __init__(self, config: ClientConfig, transport: httpx.BaseTransport | None = None) -> None:
        self._config = config
        self._client = httpx.Client(
            transport=transport, base_url=config.base_url, headers=dict(config.headers), timeout=config.timeout
        )

    def run(self, call: Call[T]) -> T:
        retry = 0
        while True:
            try:
                with map_httpx_exceptions():
                    response = self._client.request(
                        call.method, call.path, params=call.params, content=call.body, headers=call.headers
                    )
                return decode_answer(call, response.status_code, response.headers, response.content)
            except (NetworkError, APIError) as error:
                wait = self._config.retry.wait_before_retry(retry, error, replayable=call.replayable)
                if wait is None:
                    raise
                _log_retry(call, error, wait, retry)
            time.sleep(wait)
            retry += 1

    def close(self) -> None:
        self._client.close()
