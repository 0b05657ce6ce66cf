"""The servers of an account (account token): list, get, create, edit, delete (docs/postmark-api.md §8.4)."""

from __future__ import annotations

from posthouse import wire
from posthouse.client.protocol import Call, acknowledged, json_decoder, path_segment
from posthouse.client.resources.base import AsyncResource, SyncResource

__all__ = [
    "AsyncServers",
    "SyncServers",
    "create_call",
    "delete_call",
    "edit_call",
    "get_call",
    "list_call",
]

_LIST = json_decoder(wire.ServerList)
_SERVER = json_decoder(wire.Server)


def list_call(count: int = 100, offset: int = 0, name: str | None = None) -> Call[wire.ServerList]:
    params = {"count": str(count), "offset": str(offset)}
    if name is not None:
        params["name"] = name
    return Call("GET", "/servers", _LIST, params=params)


def get_call(server_id: int) -> Call[wire.Server]:
    return Call("GET", f"/servers/{path_segment(server_id)}", _SERVER)


def create_call(server: wire.ServerRequest) -> Call[wire.Server]:
    # A retry after a lost answer could create a second server: not replayable.
    return Call("POST", "/servers", _SERVER, body=wire.encoder.encode(server), replayable=False)


def edit_call(server_id: int, changes: wire.ServerRequest) -> Call[wire.Server]:
    return Call("PUT", f"/servers/{path_segment(server_id)}", _SERVER, body=wire.encoder.encode(changes))


def delete_call(server_id: int) -> Call[None]:
    # A retry after a lost answer would report the deleted server as missing: not replayable.
    return Call("DELETE", f"/servers/{path_segment(server_id)}", acknowledged, replayable=False)


class AsyncServers(AsyncResource):
    """`client.servers` of the async `AccountClient`."""

    async def list(self, count: int = 100, offset: int = 0, *, name: str | None = None) -> wire.ServerList:
        """One page of servers; `name` keeps those whose name contains it."""
        return await self._http.run(list_call(count, offset, name))

    async def get(self, server_id: int) -> wire.Server:
        return await self._http.run(get_call(server_id))

    async def create(self, server: wire.ServerRequest) -> wire.Server:
        """A new server (`name` required); the answer's `api_tokens` holds its token, shown this once."""
        return await self._http.run(create_call(server))

    async def edit(self, server_id: int, changes: wire.ServerRequest) -> wire.Server:
        return await self._http.run(edit_call(server_id, changes))

    async def delete(self, server_id: int) -> None:
        await self._http.run(delete_call(server_id))


class SyncServers(SyncResource):
    """`client.servers` of the sync `AccountClient`."""

    def list(self, count: int = 100, offset: int = 0, *, name: str | None = None) -> wire.ServerList:
        """One page of servers; `name` keeps those whose name contains it."""
        return self._http.run(list_call(count, offset, name))

    def get(self, server_id: int) -> wire.Server:
        return self._http.run(get_call(server_id))

    def create(self, server: wire.ServerRequest) -> wire.Server:
        """A new server (`name` required); the answer's `api_tokens` holds its token, shown this once."""
        return self._http.run(create_call(server))

    def edit(self, server_id: int, changes: wire.ServerRequest) -> wire.Server:
        return self._http.run(edit_call(server_id, changes))

    def delete(self, server_id: int) -> None:
        self._http.run(delete_call(server_id))
