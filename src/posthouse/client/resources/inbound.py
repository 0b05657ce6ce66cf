"""Received mail and inbound rules of a server (server token): search, details, bypass, retry
(docs/postmark-api.md §4.6), and the rules that block senders (§8.5)."""

from __future__ import annotations

from posthouse import wire
from posthouse.client.protocol import Call, json_decoder, path_segment
from posthouse.client.resources.base import AsyncResource, SyncResource

__all__ = [
    "AsyncInbound",
    "SyncInbound",
    "bypass_call",
    "create_rule_call",
    "delete_rule_call",
    "details_call",
    "list_call",
    "retry_call",
    "rules_call",
]

_LIST = json_decoder(wire.InboundMessageList)
_DETAILS = json_decoder(wire.InboundMessageDetails)
_ANSWER = json_decoder(wire.ErrorResponse)
_RULES = json_decoder(wire.InboundRuleList)
_RULE = json_decoder(wire.InboundRule)


def list_call(count: int = 100, offset: int = 0, *, recipient: str | None = None, from_email: str | None = None,
              tag: str | None = None, subject: str | None = None, mailbox_hash: str | None = None,
              status: str | None = None, from_date: str | None = None, to_date: str | None = None
              ) -> Call[wire.InboundMessageList]:
    params = {"count": str(count), "offset": str(offset)}
    for name, value in (("recipient", recipient), ("fromemail", from_email), ("tag", tag), ("subject", subject),
                        ("mailboxhash", mailbox_hash), ("status", status), ("fromdate", from_date),
                        ("todate", to_date)):
        if value is not None:
            params[name] = value
    return Call("GET", "/messages/inbound", _LIST, params=params)


def details_call(message_id: str) -> Call[wire.InboundMessageDetails]:
    return Call("GET", f"/messages/inbound/{path_segment(message_id)}/details", _DETAILS)


def bypass_call(message_id: str) -> Call[wire.ErrorResponse]:
    return Call("PUT", f"/messages/inbound/{path_segment(message_id)}/bypass", _ANSWER, replayable=False)


def retry_call(message_id: str) -> Call[wire.ErrorResponse]:
    return Call("PUT", f"/messages/inbound/{path_segment(message_id)}/retry", _ANSWER, replayable=False)


def rules_call(count: int = 100, offset: int = 0) -> Call[wire.InboundRuleList]:
    return Call("GET", "/triggers/inboundrules", _RULES, params={"count": str(count), "offset": str(offset)})


def create_rule_call(rule: str) -> Call[wire.InboundRule]:
    # A retry after a lost answer would find the rule taken (ErrorCode 810): not replayable.
    return Call("POST", "/triggers/inboundrules", _RULE, body=wire.encoder.encode(wire.InboundRuleRequest(rule=rule)),
                replayable=False)


def delete_rule_call(rule_id: int) -> Call[wire.ErrorResponse]:
    return Call("DELETE", f"/triggers/inboundrules/{path_segment(rule_id)}", _ANSWER, replayable=False)


class AsyncInbound(AsyncResource):
    """`client.inbound` of the async `ServerClient`."""

    async def list(self, count: int = 100, offset: int = 0, *, recipient: str | None = None,
                   from_email: str | None = None, tag: str | None = None, subject: str | None = None,
                   mailbox_hash: str | None = None, status: str | None = None, from_date: str | None = None,
                   to_date: str | None = None) -> wire.InboundMessageList:
        """Received messages, newest first; `status` is queued, scheduled, processed, blocked or failed."""
        return await self._http.run(list_call(count, offset, recipient=recipient, from_email=from_email, tag=tag,
                                              subject=subject, mailbox_hash=mailbox_hash, status=status,
                                              from_date=from_date, to_date=to_date))

    async def details(self, message_id: str) -> wire.InboundMessageDetails:
        return await self._http.run(details_call(message_id))

    async def bypass(self, message_id: str) -> wire.ErrorResponse:
        """Post a Blocked message after all."""
        return await self._http.run(bypass_call(message_id))

    async def retry(self, message_id: str) -> wire.ErrorResponse:
        """Post a Failed message again."""
        return await self._http.run(retry_call(message_id))

    async def rules(self, count: int = 100, offset: int = 0) -> wire.InboundRuleList:
        return await self._http.run(rules_call(count, offset))

    async def create_rule(self, rule: str) -> wire.InboundRule:
        """Block mail from an address (`someone@example.com`) or a domain (`example.com`)."""
        return await self._http.run(create_rule_call(rule))

    async def delete_rule(self, rule_id: int) -> wire.ErrorResponse:
        return await self._http.run(delete_rule_call(rule_id))


class SyncInbound(SyncResource):
    """`client.inbound` of the sync `ServerClient`."""

    def list(self, count: int = 100, offset: int = 0, *, recipient: str | None = None,
             from_email: str | None = None, tag: str | None = None, subject: str | None = None,
             mailbox_hash: str | None = None, status: str | None = None, from_date: str | None = None,
             to_date: str | None = None) -> wire.InboundMessageList:
        """Received messages, newest first; `status` is queued, scheduled, processed, blocked or failed."""
        return self._http.run(list_call(count, offset, recipient=recipient, from_email=from_email, tag=tag,
                                        subject=subject, mailbox_hash=mailbox_hash, status=status,
                                        from_date=from_date, to_date=to_date))

    def details(self, message_id: str) -> wire.InboundMessageDetails:
        return self._http.run(details_call(message_id))

    def bypass(self, message_id: str) -> wire.ErrorResponse:
        """Post a Blocked message after all."""
        return self._http.run(bypass_call(message_id))

    def retry(self, message_id: str) -> wire.ErrorResponse:
        """Post a Failed message again."""
        return self._http.run(retry_call(message_id))

    def rules(self, count: int = 100, offset: int = 0) -> wire.InboundRuleList:
        return self._http.run(rules_call(count, offset))

    def create_rule(self, rule: str) -> wire.InboundRule:
        """Block mail from an address (`someone@example.com`) or a domain (`example.com`)."""
        return self._http.run(create_rule_call(rule))

    def delete_rule(self, rule_id: int) -> wire.ErrorResponse:
        return self._http.run(delete_rule_call(rule_id))
