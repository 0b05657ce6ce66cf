"""What every resource class holds: the I/O layer of the client it belongs to."""

from __future__ import annotations

from posthouse.client.http import AsyncHttp, SyncHttp

__all__ = ["AsyncResource", "SyncResource"]


class AsyncResource:
    def __init__(self, http: AsyncHttp) -> None:
        self._http = http


class SyncResource:
    def __init__(self, http: SyncHttp) -> None:
        self._http = http
