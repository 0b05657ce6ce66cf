"""The sender signatures of an account (account token): list, get, create, edit, delete, resend the confirmation
email, and the deprecated SPF check and DKIM renewal (docs/postmark-api.md §8.4)."""

from __future__ import annotations

from posthouse import wire
from posthouse.client.protocol import Call, acknowledged, json_decoder, path_segment
from posthouse.client.resources.base import AsyncResource, SyncResource

__all__ = [
    "AsyncSenders",
    "SyncSenders",
    "create_call",
    "delete_call",
    "edit_call",
    "get_call",
    "list_call",
    "request_new_dkim_call",
    "resend_call",
    "verify_spf_call",
]

_LIST = json_decoder(wire.SenderSignatureList)
_SIGNATURE = json_decoder(wire.SenderSignatureDetails)
_RENEWAL = json_decoder(wire.SenderSignatureRenewal)


def list_call(count: int = 100, offset: int = 0) -> Call[wire.SenderSignatureList]:
    return Call("GET", "/senders", _LIST, params={"count": str(count), "offset": str(offset)})


def get_call(sender_id: int) -> Call[wire.SenderSignatureDetails]:
    return Call("GET", f"/senders/{path_segment(sender_id)}", _SIGNATURE)


def create_call(signature: wire.SenderSignatureRequest) -> Call[wire.SenderSignatureDetails]:
    # A retry after a lost answer would find the address taken (ErrorCode 504): not replayable.
    return Call("POST", "/senders", _SIGNATURE, body=wire.encoder.encode(signature), replayable=False)


def edit_call(sender_id: int, changes: wire.SenderSignatureRequest) -> Call[wire.SenderSignatureDetails]:
    return Call("PUT", f"/senders/{path_segment(sender_id)}", _SIGNATURE, body=wire.encoder.encode(changes))


def delete_call(sender_id: int) -> Call[None]:
    return Call("DELETE", f"/senders/{path_segment(sender_id)}", acknowledged, replayable=False)


def resend_call(sender_id: int) -> Call[None]:
    # Each call mails a new link (the one before stops working): not replayable.
    return Call("POST", f"/senders/{path_segment(sender_id)}/resend", acknowledged, replayable=False)


def verify_spf_call(sender_id: int) -> Call[wire.SenderSignatureDetails]:
    return Call("POST", f"/senders/{path_segment(sender_id)}/verifyspf", _SIGNATURE)


def request_new_dkim_call(sender_id: int) -> Call[wire.SenderSignatureRenewal]:
    return Call("POST", f"/senders/{path_segment(sender_id)}/requestnewdkim", _RENEWAL, replayable=False)


class AsyncSenders(AsyncResource):
    """`client.senders` of the async `AccountClient`."""

    async def list(self, count: int = 100, offset: int = 0) -> wire.SenderSignatureList:
        return await self._http.run(list_call(count, offset))

    async def get(self, sender_id: int) -> wire.SenderSignatureDetails:
        return await self._http.run(get_call(sender_id))

    async def create(self, signature: wire.SenderSignatureRequest) -> wire.SenderSignatureDetails:
        """A new signature (`from_email`, `name`); the address is mailed a link that confirms it."""
        return await self._http.run(create_call(signature))

    async def edit(self, sender_id: int, changes: wire.SenderSignatureRequest) -> wire.SenderSignatureDetails:
        return await self._http.run(edit_call(sender_id, changes))

    async def delete(self, sender_id: int) -> None:
        await self._http.run(delete_call(sender_id))

    async def resend(self, sender_id: int) -> None:
        """Mail the address a new confirmation link."""
        await self._http.run(resend_call(sender_id))

    async def verify_spf(self, sender_id: int) -> wire.SenderSignatureDetails:
        """Deprecated by Postmark: checks the SPF record of the signature's domain."""
        return await self._http.run(verify_spf_call(sender_id))

    async def request_new_dkim(self, sender_id: int) -> wire.SenderSignatureRenewal:
        """Deprecated by Postmark: a DKIM key rotation of the signature's domain (`domains.rotate_dkim`)."""
        return await self._http.run(request_new_dkim_call(sender_id))


class SyncSenders(SyncResource):
    """`client.senders` of the sync `AccountClient`."""

    def list(self, count: int = 100, offset: int = 0) -> wire.SenderSignatureList:
        return self._http.run(list_call(count, offset))

    def get(self, sender_id: int) -> wire.SenderSignatureDetails:
        return self._http.run(get_call(sender_id))

    def create(self, signature: wire.SenderSignatureRequest) -> wire.SenderSignatureDetails:
        """A new signature (`from_email`, `name`); the address is mailed a link that confirms it."""
        return self._http.run(create_call(signature))

    def edit(self, sender_id: int, changes: wire.SenderSignatureRequest) -> wire.SenderSignatureDetails:
        return self._http.run(edit_call(sender_id, changes))

    def delete(self, sender_id: int) -> None:
        self._http.run(delete_call(sender_id))

    def resend(self, sender_id: int) -> None:
        """Mail the address a new confirmation link."""
        self._http.run(resend_call(sender_id))

    def verify_spf(self, sender_id: int) -> wire.SenderSignatureDetails:
        """Deprecated by Postmark: checks the SPF record of the signature's domain."""
        return self._http.run(verify_spf_call(sender_id))

    def request_new_dkim(self, sender_id: int) -> wire.SenderSignatureRenewal:
        """Deprecated by Postmark: a DKIM key rotation of the signature's domain (`domains.rotate_dkim`)."""
        return self._http.run(request_new_dkim_call(sender_id))
