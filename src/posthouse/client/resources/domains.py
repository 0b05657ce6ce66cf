"""The sending domains of an account (account token): list, get, create, edit, delete, DNS verification and DKIM
key rotation (docs/postmark-api.md §8.4)."""

from __future__ import annotations

from posthouse import wire
from posthouse.client.protocol import Call, acknowledged, json_decoder, path_segment
from posthouse.client.resources.base import AsyncResource, SyncResource

__all__ = [
    "AsyncDomains",
    "SyncDomains",
    "create_call",
    "delete_call",
    "edit_call",
    "get_call",
    "list_call",
    "rotate_dkim_call",
    "verify_call",
]

_LIST = json_decoder(wire.DomainList)
_DOMAIN = json_decoder(wire.DomainDetails)
# What each verification checks in DNS → (method, path suffix): Postmark spells and routes them unevenly.
_VERIFY = {"dkim": ("PUT", "verifyDkim"), "return_path": ("PUT", "verifyReturnPath"), "spf": ("POST", "verifyspf")}


def list_call(count: int = 100, offset: int = 0) -> Call[wire.DomainList]:
    return Call("GET", "/domains", _LIST, params={"count": str(count), "offset": str(offset)})


def get_call(domain_id: int) -> Call[wire.DomainDetails]:
    return Call("GET", f"/domains/{path_segment(domain_id)}", _DOMAIN)


def create_call(domain: wire.DomainRequest) -> Call[wire.DomainDetails]:
    # A retry after a lost answer would find the name taken (ErrorCode 512): not replayable.
    return Call("POST", "/domains", _DOMAIN, body=wire.encoder.encode(domain), replayable=False)


def edit_call(domain_id: int, changes: wire.DomainRequest) -> Call[wire.DomainDetails]:
    return Call("PUT", f"/domains/{path_segment(domain_id)}", _DOMAIN, body=wire.encoder.encode(changes))


def delete_call(domain_id: int) -> Call[None]:
    return Call("DELETE", f"/domains/{path_segment(domain_id)}", acknowledged, replayable=False)


def verify_call(domain_id: int, what: str) -> Call[wire.DomainDetails]:
    """Look a domain's records up again: `what` is dkim, return_path or spf. Checking twice changes nothing."""
    method, action = _VERIFY[what]
    return Call(method, f"/domains/{path_segment(domain_id)}/{action}", _DOMAIN)


def rotate_dkim_call(domain_id: int) -> Call[wire.DomainDetails]:
    # A retry after a lost answer would be refused (ErrorCode 505, a key already pending): not replayable.
    return Call("POST", f"/domains/{path_segment(domain_id)}/rotatedkim", _DOMAIN, replayable=False)


class AsyncDomains(AsyncResource):
    """`client.domains` of the async `AccountClient`."""

    async def list(self, count: int = 100, offset: int = 0) -> wire.DomainList:
        return await self._http.run(list_call(count, offset))

    async def get(self, domain_id: int) -> wire.DomainDetails:
        """A domain, with the DNS records to publish (`dkim_pending_host`, `dkim_pending_text_value`, …)."""
        return await self._http.run(get_call(domain_id))

    async def create(self, domain: wire.DomainRequest) -> wire.DomainDetails:
        """A new domain (`name` required): its DKIM key is made and waits, pending, to be published and verified."""
        return await self._http.run(create_call(domain))

    async def edit(self, domain_id: int, changes: wire.DomainRequest) -> wire.DomainDetails:
        """A new `return_path_domain` (it must be verified again)."""
        return await self._http.run(edit_call(domain_id, changes))

    async def delete(self, domain_id: int) -> None:
        await self._http.run(delete_call(domain_id))

    async def verify_dkim(self, domain_id: int) -> wire.DomainDetails:
        """Look the pending DKIM records up; found, the pending keys start signing."""
        return await self._http.run(verify_call(domain_id, "dkim"))

    async def verify_return_path(self, domain_id: int) -> wire.DomainDetails:
        return await self._http.run(verify_call(domain_id, "return_path"))

    async def verify_spf(self, domain_id: int) -> wire.DomainDetails:
        return await self._http.run(verify_call(domain_id, "spf"))

    async def rotate_dkim(self, domain_id: int) -> wire.DomainDetails:
        """A new pending DKIM key; the current one signs until the new one is verified."""
        return await self._http.run(rotate_dkim_call(domain_id))


class SyncDomains(SyncResource):
    """`client.domains` of the sync `AccountClient`."""

    def list(self, count: int = 100, offset: int = 0) -> wire.DomainList:
        return self._http.run(list_call(count, offset))

    def get(self, domain_id: int) -> wire.DomainDetails:
        """A domain, with the DNS records to publish (`dkim_pending_host`, `dkim_pending_text_value`, …)."""
        return self._http.run(get_call(domain_id))

    def create(self, domain: wire.DomainRequest) -> wire.DomainDetails:
        """A new domain (`name` required): its DKIM key is made and waits, pending, to be published and verified."""
        return self._http.run(create_call(domain))

    def edit(self, domain_id: int, changes: wire.DomainRequest) -> wire.DomainDetails:
        """A new `return_path_domain` (it must be verified again)."""
        return self._http.run(edit_call(domain_id, changes))

    def delete(self, domain_id: int) -> None:
        self._http.run(delete_call(domain_id))

    def verify_dkim(self, domain_id: int) -> wire.DomainDetails:
        """Look the pending DKIM records up; found, the pending keys start signing."""
        return self._http.run(verify_call(domain_id, "dkim"))

    def verify_return_path(self, domain_id: int) -> wire.DomainDetails:
        return self._http.run(verify_call(domain_id, "return_path"))

    def verify_spf(self, domain_id: int) -> wire.DomainDetails:
        return self._http.run(verify_call(domain_id, "spf"))

    def rotate_dkim(self, domain_id: int) -> wire.DomainDetails:
        """A new pending DKIM key; the current one signs until the new one is verified."""
        return self._http.run(rotate_dkim_call(domain_id))
