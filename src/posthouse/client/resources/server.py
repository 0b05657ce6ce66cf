"""The server a server token belongs to: read and edit its settings (docs/postmark-api.md §8.3)."""

from __future__ import annotations

from posthouse import wire
from posthouse.client.protocol import Call, json_decoder
from posthouse.client.resources.base import AsyncResource, SyncResource

__all__ = ["AsyncServer", "SyncServer", "edit_call", "get_call"]

_SERVER = json_decoder(wire.Server)


def get_call() -> Call[wire.Server]:
    return Call("GET", "/server", _SERVER)


def edit_call(changes: wire.ServerRequest) -> Call[wire.Server]:
    # PUT sets the given fields to the given values: doing it twice leaves the same state.
    return Call("PUT", "/server", _SERVER, body=wire.encoder.encode(changes))


class AsyncServer(AsyncResource):
    """`client.server` of the async `ServerClient`."""

    async def get(self) -> wire.Server:
        return await self._http.run(get_call())

    async def edit(self, changes: wire.ServerRequest) -> wire.Server:
        """Change the fields set in `changes` (DeliveryType is fixed at creation); returns the new settings."""
        return await self._http.run(edit_call(changes))


class SyncServer(SyncResource):
    """`client.server` of the sync `ServerClient`."""

    def get(self) -> wire.Server:
        return self._http.run(get_call())

    def edit(self, changes: wire.ServerRequest) -> wire.Server:
        """Change the fields set in `changes` (DeliveryType is fixed at creation); returns the new settings."""
        return self._http.run(edit_call(changes))
