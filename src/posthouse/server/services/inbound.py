"""Inbound mail: which addresses take it, receiving it durably, the API over it, and its webhook payload.

The way in (docs/postmark-api.md §10): the SMTP server asks `resolve` at each RCPT whether an address is a
server's inbound address (`<InboundHash>@<inbound domain>`, with an optional `+hash`) or any address at a
server's `InboundDomain`; nothing else is taken without AUTH. At the end of DATA, `receive` checks the size,
asks SPF and (if configured) spamd, reads the message (`domain.inbound`), refuses it when it is too large or
scores at or above every recipient server's `InboundSpamThreshold`, marks it Blocked for a server whose
inbound rules name the sender, and stores it with its posts in one transaction before the 250
(store/inbound.py). The post's payload is built when it is sent (`payload_for`), from the stored bytes, so
a message is stored once however many recipients it has and however long its post waits. The message read at
acceptance is kept a little while (`_ParsedCache`), so its first post need not read the same bytes again: the
post still reads the stored row, and uses what was read only when the stored bytes are the same bytes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Any

from posthouse import wire
from posthouse.server.domain.ids import new_message_id
from posthouse.server.domain.inbound import (
    InboundContent,
    InboundStatus,
    Mailbox,
    format_addresses,
    inbound_hash,
    is_valid_rule,
    mailbox_hash,
    matching_rule,
    parse_inbound,
    server_of_hash,
)
from posthouse.server.errors import ApiError, NotFoundError, StoreError, StoreFullError
from posthouse.server.services.accounts import AccountService, Server, TtlCache
from posthouse.server.services.clock import Clock, from_micros, iso
from posthouse.server.services.history import check_paging
from posthouse.server.services.inbound_bounces import Bounce, BounceReceiver
from posthouse.server.services.spamd import SpamChecker, SpamVerdict
from posthouse.server.services.spf import SpfChecker, SpfVerdict
from posthouse.server.smtp.handler import Peer, SmtpReply
from posthouse.server.store.activity import MessagePostRecord
from posthouse.server.store.base import Store
from posthouse.server.store.inbound import InboundFilter, InboundRecord, InboundRow
from posthouse.server.webhooks.payloads import InboundFacts, inbound_bcc, inbound_payload

__all__ = ["Arrival", "InboundService", "InboundSmtpHandler", "InboundView", "parse_inbound_status"]

log = logging.getLogger("posthouse.inbound")
INBOUND_STREAM = "inbound"  # every server's one inbound stream (services/accounts.py DEFAULT_STREAMS)
_PARSE_ON_THREAD = 1024 * 1024  # a larger message is read on a thread, not on the event loop
_RULES_SECONDS = 5.0
_DOMAINS_SECONDS = 2.0  # how stale the InboundDomains RCPT is checked against may be
_STATUSES = {"queued": "queued", "scheduled": "scheduled", "processed": "processed", "sent": "processed",
             "blocked": "blocked", "failed": "failed"}
_NO_SUCH_ADDRESS = SmtpReply(550, "5.1.1 No such inbound address here")
_PARSED_BYTES = 32 * 1024 * 1024  # stored bytes of the messages whose reading is kept for their first post
_PARSED_SECONDS = 60.0  # ... and for how long: a post that waits longer reads the message again


class _ParsedCache:
    """What acceptance read of each message (`parse_inbound`), by message ID, until its first post takes it:
    the post reads the stored bytes and the reading again otherwise. Bounded in bytes and age; oldest first out.
    Only ever a shortcut: `take` returns the reading only for the very bytes it was made from."""

    def __init__(self, max_bytes: int = _PARSED_BYTES, max_seconds: float = _PARSED_SECONDS) -> None:
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self._entries: OrderedDict[str, tuple[float, bytes, InboundContent]] = OrderedDict()
        self._bytes = 0

    def put(self, message_id: str, stored: bytes, content: InboundContent) -> None:
        if len(stored) > self.max_bytes:
            return
        self._entries[message_id] = (time.monotonic(), stored, content)
        self._bytes += len(stored)
        self._trim(time.monotonic())

    def take(self, message_id: str, stored: bytes) -> InboundContent | None:
        entry = self._entries.pop(message_id, None)
        if entry is None:
            return None
        self._bytes -= len(entry[1])
        fresh = time.monotonic() - entry[0] <= self.max_seconds
        return entry[2] if fresh and entry[1] == stored else None

    def _trim(self, now: float) -> None:
        while self._entries:
            message_id, (at, stored, _) = next(iter(self._entries.items()))
            if self._bytes <= self.max_bytes and now - at <= self.max_seconds:
                return
            del self._entries[message_id]
            self._bytes -= len(stored)


@dataclass(frozen=True, slots=True)
class Arrival:
    """A message at the end of DATA, for inbound recipients, with what the SMTP session knows of its client."""

    mail_from: str  # "" for the null reverse path
    recipients: Sequence[str]
    data: bytes
    client_ip: str
    helo: str
    tls: bool


def parse_inbound_status(value: str | None) -> str | None:
    if not value:
        return None
    status = _STATUSES.get(value.lower())
    if status is None:
        raise ApiError(700, f"Invalid status: '{value}'. Use queued, scheduled, processed, blocked or failed.")
    return status


@dataclass(frozen=True, slots=True)
class InboundView:
    """What the dashboard's inbound message page shows (`InboundService.view`)."""

    details: wire.InboundMessageDetails
    status: str  # InboundStatus
    envelope_sender: str
    spam_score: float | None
    received_at: int  # µs
    posts: list[MessagePostRecord]

    @property
    def can_bypass(self) -> bool:
        return self.status == InboundStatus.BLOCKED.value

    @property
    def can_retry(self) -> bool:
        return self.status == InboundStatus.FAILED.value


class InboundService:
    def __init__(self, store: Store, accounts: AccountService, clock: Clock, *, hostname: str, address_domain: str,
                 max_message_size: int = 50 * 1024 * 1024, max_attachments_size: int = 35 * 1024 * 1024,
                 spf: SpfChecker | None = None, spam: SpamChecker | None = None,
                 on_stored: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.accounts = accounts
        self.clock = clock
        self.hostname = hostname
        self.address_domain = address_domain.lower()
        self.max_message_size = max_message_size
        self.max_attachments_size = max_attachments_size
        self.spf = spf
        self.spam = spam
        self.on_stored = on_stored  # wakes the webhook dispatcher
        self._key: bytes | None = None
        self._rules = TtlCache(10_000, _RULES_SECONDS)
        self._domains: dict[str, int] = {}  # InboundDomain → server id, as last read (`refresh`)
        self._domains_read = float("-inf")
        self._parsed = _ParsedCache()

    # -- inbound addresses ------------------------------------------------------------------------

    async def key(self) -> bytes:
        """The installation's key for inbound hashes, made by the first node and shared by all (store secret)."""
        if self._key is None:
            self._key = bytes.fromhex(await self.store.secret("inbound-key", secrets.token_hex(32)))
        return self._key

    async def address_of(self, server_id: int) -> tuple[str, str]:
        """(InboundHash, InboundAddress) of a server."""
        value = inbound_hash(server_id, await self.key())
        return value, f"{value}@{self.address_domain}"

    async def refresh(self) -> None:
        """Read the key and the servers' InboundDomains again if they are more than a few seconds old: the SMTP
        session checks RCPT against them (`is_inbound_recipient`) and cannot wait for the store."""
        await self.key()
        now = time.monotonic()
        if now - self._domains_read >= _DOMAINS_SECONDS:
            self._domains = await self.store.inbound_domains()
            self._domains_read = now

    def is_inbound_recipient(self, address: str) -> bool:
        """An address inbound mail is taken for: a server's inbound address (`+hash` allowed), or any address at
        a server's InboundDomain; from what `refresh` last read."""
        local, at, domain = address.rpartition("@")
        if not at or not local:
            return False
        domain = domain.lower().rstrip(".")
        if domain == self.address_domain:
            return self._key is not None and server_of_hash(local.partition("+")[0], self._key) is not None
        return domain in self._domains

    def is_local_domain(self, address: str) -> bool:
        return address.rpartition("@")[2].lower().rstrip(".") == self.address_domain

    async def resolve(self, recipient: str) -> Server | None:
        """The server whose inbound mail `recipient` is, or None (then it is not ours to take)."""
        local, at, domain = recipient.rpartition("@")
        if not at or not local:
            return None
        domain = domain.lower().rstrip(".")
        if domain == self.address_domain:
            server_id = server_of_hash(local.partition("+")[0], await self.key())
        else:
            server_id = await self.accounts.inbound_domain_owner(domain)
        if server_id is None:
            return None
        return await self.accounts.server_cached(server_id)

    # -- receiving --------------------------------------------------------------------------------

    async def receive(self, arrival: Arrival, bounces: Sequence[Bounce] = ()) -> SmtpReply:
        """Store the message for each inbound recipient (one transaction) and answer 250; or refuse it.
        `bounces` (read by `BounceReceiver.read` from the same SMTP transaction's return-path recipients) are
        recorded in that transaction: both are stored or neither, so a sender retrying after a failure
        cannot leave a bounce recorded twice. A refused message records them alone (the sender does not
        retry a 5xx)."""
        accepted = await self._accept(arrival)
        if isinstance(accepted, SmtpReply):
            if bounces and accepted.code >= 500:
                await self.store.record_bounces(bounces)
            return accepted
        stored, rows, content = accepted
        statuses = await self.store.insert_inbound(stored, rows, self.store.bounce_stmts(bounces)[0] if bounces
                                                   else ())
        if bounces:
            self.store.bounces_recorded(bounces)
        queued = [row.message_id for row, status in zip(rows, statuses, strict=True)
                  if status == InboundStatus.QUEUED.value]
        for message_id in queued:
            self._parsed.put(message_id, stored, content)  # the first post reuses this reading
        if queued:
            self.on_stored()
        more = f" and {len(rows) - 1} more" if len(rows) > 1 else ""
        return SmtpReply(250, f"2.0.0 Ok: queued as {rows[0].message_id}{more}")

    async def _accept(self, arrival: Arrival) -> SmtpReply | tuple[bytes, list[InboundRow], InboundContent]:
        """The bytes to store (with the trace headers), a row per recipient and the message as read; or the
        refusal."""
        targets: list[tuple[str, Server]] = []
        seen: set[str] = set()
        for recipient in arrival.recipients:
            server = await self.resolve(recipient)
            if server is not None and recipient.lower() not in seen:
                seen.add(recipient.lower())
                targets.append((recipient, server))
        if not targets:
            # Every address was ours at RCPT and is not now (its server was deleted meanwhile).
            return _NO_SUCH_ADDRESS
        if len(arrival.data) > self.max_message_size:
            return SmtpReply(552, f"5.3.4 Message size exceeds the {self.max_message_size} bytes allowed for "
                                  "inbound mail")
        spf, spam = await asyncio.gather(self._spf(arrival), self._spam(arrival.data))
        message_ids = [new_message_id() for _ in targets]
        now = self.clock.micros()
        stored = _trace_headers(arrival, spf, spam, self.hostname, message_ids[0], targets, now) + arrival.data
        content = await asyncio.to_thread(parse_inbound, stored) if len(stored) > _PARSE_ON_THREAD \
            else parse_inbound(stored)
        if content.attachments_size > self.max_attachments_size:
            return SmtpReply(552, f"5.3.4 Attachments of {content.attachments_size} bytes exceed the "
                                  f"{self.max_attachments_size} bytes allowed for inbound mail")
        rows: list[InboundRow] = []
        over_threshold = []
        for (recipient, server), message_id in zip(targets, message_ids, strict=True):
            threshold = int(server.settings.get("inbound_spam_threshold") or 0)
            reason = None
            if spam is not None and threshold > 0 and spam.score >= threshold:
                over_threshold.append(threshold)
                reason = f"Spam score {spam.score:g} is at or above the server's InboundSpamThreshold {threshold}."
            else:
                rule = matching_rule(await self._rules_of(server.id), (arrival.mail_from, content.sender.email))
                if rule is not None:
                    reason = f"Blocked by the inbound rule '{rule}'."
            rows.append(_row(message_id, server.id, recipient, arrival.mail_from, content, now, spam, reason))
        if len(over_threshold) == len(targets):
            # Nobody would take it: refused, so the sender knows (RFC 5321 §6.1: a 5xx, not a silent drop).
            return SmtpReply(550, f"5.7.1 Message refused as spam: score {spam.score:g} is at or above the "
                                  f"threshold {min(over_threshold)}" if spam else "5.7.1 Message refused as spam")
        return stored, rows, content

    async def _spf(self, arrival: Arrival) -> SpfVerdict | None:
        if self.spf is None:
            return None
        return await self.spf.check(arrival.client_ip, arrival.mail_from, arrival.helo)

    async def _spam(self, data: bytes) -> SpamVerdict | None:
        return await self.spam.check(data) if self.spam is not None else None

    async def _rules_of(self, server_id: int) -> list[str]:
        found, rules = self._rules.get(str(server_id))
        if found:
            return list(rules)
        _, records = await self.store.list_inbound_rules(server_id)
        fresh = [r.rule for r in records]
        self._rules.put(str(server_id), fresh)
        return fresh

    # -- the webhook payload (workers/webhooks.py) ------------------------------------------------

    async def payload_for(self, inbound_id: int) -> bytes | None:
        """The body of an Inbound post, built from the stored message; None when the message is gone."""
        record = await self.store.get_inbound_by_id(inbound_id)
        if record is None or record.content is None:
            return None
        server = await self.accounts.server_cached(record.server_id)
        raw = bool(server and server.settings.get("raw_email_enabled"))
        content = record.content
        parsed = self._parsed.take(record.message_id, content)
        if len(content) > _PARSE_ON_THREAD:
            return await asyncio.to_thread(_build_payload, record, content, raw, parsed)
        return _build_payload(record, content, raw, parsed)

    # -- the Messages API (docs/postmark-api.md §4.6) ---------------------------------------------

    async def search(self, server_id: int, filters: InboundFilter, count: int | None, offset: int | None
                     ) -> wire.InboundMessageList:
        count, offset = check_paging(count, offset, 700)
        total, records = await self.store.search_inbound(server_id, filters, offset, count)
        return wire.InboundMessageList(total_count=total, inbound_messages=[_summary(r) for r in records])

    async def details(self, server_id: int, message_id: str) -> wire.InboundMessageDetails:
        return await self._details(await self._stored(server_id, message_id))

    async def _stored(self, server_id: int, message_id: str) -> InboundRecord:
        record = await self.store.get_inbound(server_id, message_id.strip().lower(), with_content=True)
        if record is None or record.content is None:
            raise NotFoundError(701, "This message was not found.")
        return record

    async def _details(self, record: InboundRecord) -> wire.InboundMessageDetails:
        assert record.content is not None
        content = await asyncio.to_thread(parse_inbound, record.content) if len(record.content) > _PARSE_ON_THREAD \
            else parse_inbound(record.content)
        summary = _summary(record)
        headers = [wire.InboundHeader(name="Return-Path", value=f"<{record.envelope_sender}>")]
        headers += [wire.InboundHeader(name=name, value=value) for name, value in content.headers]
        return wire.InboundMessageDetails(
            **{f: getattr(summary, f) for f in summary.__struct_fields__},
            text_body=content.text_body, html_body=content.html_body,
            stripped_text_reply=content.stripped_text_reply, headers=headers,
            blocked_reason=record.reason or "" if record.status in ("blocked", "failed") else "")

    # -- the dashboard's inbound pages (issue 15) ----------------------------------------------------

    async def page(self, server_id: int, *, status: str | None = None, sender: str | None = None,
                   recipient: str | None = None, subject: str | None = None, mailbox_hash: str | None = None,
                   offset: int = 0, count: int = 50) -> wire.InboundMessageList:
        """A page of the server's inbound messages, newest first, as `GET /messages/inbound` finds them
        (`parse_inbound_status`'s statuses; ApiError 700 for others)."""
        wanted = parse_inbound_status(status)
        return await self.search(server_id, InboundFilter(
            recipient=recipient or None, from_email=sender or None, subject=subject or None,
            mailbox_hash=mailbox_hash or None, statuses=(wanted,) if wanted else ()), count, offset)

    async def view(self, server_id: int, message_id: str) -> InboundView:
        """One inbound message whole: the parsed fields the details endpoint answers, what the SMTP session and
        the checks knew, and each post to the InboundHookUrl with its attempts."""
        record = await self._stored(server_id, message_id)
        return InboundView(
            details=await self._details(record), status=record.status, envelope_sender=record.envelope_sender,
            spam_score=record.spam_score, received_at=record.received_at,
            posts=await self.store.list_inbound_posts(server_id, record.id))

    async def bypass(self, server_id: int, message_id: str) -> wire.ErrorResponse:
        """A Blocked message posted after all (its rules, or the spam threshold, bypassed)."""
        if not await self.store.requeue_inbound(server_id, message_id.strip().lower(),
                                                InboundStatus.BLOCKED.value, self.clock.micros()):
            raise NotFoundError(701, "This message was not found or cannot be bypassed.")
        self.on_stored()
        return wire.ErrorResponse(error_code=0, message=f"Inbound message {message_id} bypassed its rules and was "
                                                        "queued for processing.")

    async def retry(self, server_id: int, message_id: str) -> wire.ErrorResponse:
        """A Failed message posted again, with a fresh retry schedule."""
        if not await self.store.requeue_inbound(server_id, message_id.strip().lower(),
                                                InboundStatus.FAILED.value, self.clock.micros()):
            raise NotFoundError(701, "This message was not found or cannot be retried.")
        self.on_stored()
        return wire.ErrorResponse(error_code=0, message=f"Inbound message {message_id} was queued for processing "
                                                        "again.")

    # -- inbound rules (docs/postmark-api.md §8.5) ------------------------------------------------

    async def rules(self, server_id: int, count: int | None, offset: int | None) -> wire.InboundRuleList:
        if count is not None and not 1 <= count <= 500:
            raise ApiError(800, "The 'count' parameter must be between 1 and 500.")
        if offset is not None and offset < 0:
            raise ApiError(800, "The 'offset' parameter must be at least 0.")
        total, records = await self.store.list_inbound_rules(server_id, offset, count)
        return wire.InboundRuleList(total_count=total, inbound_rules=[wire.InboundRule(rule=r.rule, id=r.id)
                                                                      for r in records])

    async def create_rule(self, server_id: int, request: wire.InboundRuleRequest) -> wire.InboundRule:
        rule = (request.rule or "").strip()
        if not rule:
            raise ApiError(809, "A 'Rule' is required: an email address or a domain.")
        if not is_valid_rule(rule):
            raise ApiError(813, f"Invalid 'Rule': '{rule}'. Use an email address (someone@example.com) or a "
                                "domain (example.com).")
        record = await self.store.create_inbound_rule(server_id, rule, self.clock.micros())
        if record is None:
            raise ApiError(810, f"The rule '{rule}' already exists.")
        self._rules.clear()
        return wire.InboundRule(rule=record.rule, id=record.id)

    async def delete_rule(self, server_id: int, rule_id: int) -> wire.ErrorResponse:
        rule = await self.store.delete_inbound_rule(server_id, rule_id)
        if rule is None:
            raise NotFoundError(812, f"Inbound rule {rule_id} was not found.")
        self._rules.clear()
        return wire.ErrorResponse(error_code=0, message=f"Rule {rule} removed.")


# --- Building ------------------------------------------------------------------------------------------


def _trace_headers(arrival: Arrival, spf: SpfVerdict | None, spam: SpamVerdict | None, hostname: str,
                   queue_id: str, targets: Sequence[tuple[str, Server]], now: int) -> bytes:
    """What Posthouse adds on top of the message, as an MTA does (and Postmark's posts show): the spam verdict,
    Received-SPF (RFC 7208 §9.1) and Received (RFC 5321 §4.4)."""
    lines: list[str] = []
    if spam is not None:
        for name, value in spam.headers():
            lines.append(f"{name}: {_fold(value)}")
    if spf is not None:
        lines.append(f"Received-SPF: {_fold(spf.header, ' ')}")
    protocol = "ESMTPS" if arrival.tls else "ESMTP"
    helo = "".join(c for c in arrival.helo if c.isprintable() and c not in "()") or "unknown"
    received = f"Received: from {helo} ([{arrival.client_ip}])\r\n\tby {hostname} (Posthouse) with {protocol} id " \
               f"{queue_id}"
    if len(targets) == 1:
        received += f"\r\n\tfor <{targets[0][0]}>"
    received += f"; {format_datetime(from_micros(now))}"
    lines.append(received)
    return "".join(line + "\r\n" for line in lines).encode("utf-8", "replace")


def _fold(value: str, separator: str = ",") -> str:
    """A long header value folded after `separator` (RFC 5322 §2.2.3: lines stay well under 998 octets)."""
    out, line = [], ""
    for piece in value.split(separator):
        candidate = f"{line}{separator}{piece}" if line else piece
        if line and len(candidate) > 72:
            out.append(line if separator == " " else line + separator)  # a fold is white space already
            line = piece.lstrip(" ") if separator == " " else piece
        else:
            line = candidate
    out.append(line)
    return ("\r\n\t" if separator == "," else "\r\n ").join(out)


def _row(message_id: str, server_id: int, recipient: str, mail_from: str, content: InboundContent, now: int,
         spam: SpamVerdict | None, blocked_reason: str | None) -> InboundRow:
    bcc = inbound_bcc(content, recipient)
    summary: dict[str, Any] = {
        "from_name": content.sender.name,
        "to": [[b.email, b.name] for b in content.to],
        "cc": [[b.email, b.name] for b in content.cc],
        "bcc": [[b.email, b.name] for b in bcc],
        "reply_to": content.reply_to,
        "date": content.date,
        "attachments": [[a.name, a.content_type, len(a.content), a.content_id] for a in content.attachments],
    }
    recipients = list(dict.fromkeys(a.lower() for a in (recipient, *(b.email for b in (*content.to, *content.cc)))))
    return InboundRow(
        message_id=message_id, server_id=server_id, stream=INBOUND_STREAM, received_at=now,
        envelope_sender=mail_from, original_recipient=recipient, mailbox_hash=mailbox_hash(recipient),
        from_email=content.sender.email, subject=content.subject, tag=content.tag, recipients=recipients,
        summary=summary, spam_score=spam.score if spam is not None else None, blocked_reason=blocked_reason)


def _build_payload(record: InboundRecord, content: bytes, raw: bool, parsed: InboundContent | None = None) -> bytes:
    return inbound_payload(InboundFacts(
        content=parsed if parsed is not None else parse_inbound(content), message_id=record.message_id,
        message_stream=record.stream, original_recipient=record.original_recipient,
        envelope_sender=record.envelope_sender, raw_email=content if raw else None))


def _address(pair: Sequence[str]) -> wire.InboundAddress:
    return wire.InboundAddress(email=pair[0], name=pair[1], mailbox_hash=mailbox_hash(pair[0]))


def _summary(record: InboundRecord) -> wire.InboundMessage:
    s = record.summary
    boxes = {key: [Mailbox(e, n) for e, n in s.get(key, [])] for key in ("to", "cc", "bcc")}
    return wire.InboundMessage(
        sender=record.from_email, from_name=s.get("from_name", ""),
        from_full=wire.InboundAddress(email=record.from_email, name=s.get("from_name", ""),
                                      mailbox_hash=mailbox_hash(record.from_email)),
        to=format_addresses(boxes["to"]), to_full=[_address(p) for p in s.get("to", [])],
        cc=format_addresses(boxes["cc"]), cc_full=[_address(p) for p in s.get("cc", [])],
        bcc=format_addresses(boxes["bcc"]), bcc_full=[_address(p) for p in s.get("bcc", [])],
        reply_to=s.get("reply_to", ""), original_recipient=record.original_recipient, subject=record.subject,
        date=s.get("date", ""), mailbox_hash=record.mailbox_hash, tag=record.tag, message_id=record.message_id,
        status=InboundStatus(record.status).shown,
        attachments=[wire.InboundAttachmentInfo(name=a[0], content_type=a[1], content_length=int(a[2]),
                                                content_id=a[3]) for a in s.get("attachments", [])],
        message_stream=record.stream, received_at=iso(record.received_at) or "")


def summary_json(record: InboundRecord) -> str:
    """The stored summary as text (for logs and debugging)."""
    return json.dumps(record.summary, ensure_ascii=False)


# --- The inbound SMTP listener's handler -------------------------------------------------------------


class InboundSmtpHandler:
    """The `smtp.handler.SubmissionHandler` of the inbound (MX) listeners: no client is trusted or
    authenticated; mail for the return-path domains goes to bounce processing, mail for inbound addresses to
    `InboundService.receive`. The session has already refused every other recipient (550 5.7.1)."""

    def __init__(self, inbound: InboundService, bounces: BounceReceiver | None = None) -> None:
        self.inbound = inbound
        self.bounces = bounces

    async def identify_network(self, peer: Peer) -> object | None:
        # Called as each client connects: the addresses RCPT is checked against are brought up to date.
        await self.inbound.refresh()
        if self.bounces is not None:
            await self.bounces.return_paths.refresh()
        return None

    async def authenticate(self, peer: Peer, mechanism: str, username: str, password: str) -> object | None:
        return None  # never reached: the session refuses AUTH on an inbound listener

    async def deliver(self, identity: object, mail_from: str, recipients: Sequence[str], data: bytes,
                      peer: Peer) -> SmtpReply:
        bounce_rcpts = [r for r in recipients if self.bounces is not None
                        and self.bounces.return_paths.is_return_address(r)]
        inbound_rcpts = [r for r in recipients if r not in bounce_rcpts]
        try:
            bounces: list[Bounce] = []
            if bounce_rcpts and self.bounces is not None:
                if not inbound_rcpts:
                    return await self.bounces.receive(bounce_rcpts, data, peer.host)
                read = await self.bounces.read(bounce_rcpts, data, peer.host)
                if isinstance(read, SmtpReply):
                    if read.code != 250:
                        return read
                else:
                    bounces = read
            # Both parts in one transaction (`receive`): a failure stores neither, and the retry stores each once.
            return await self.inbound.receive(Arrival(mail_from=mail_from, recipients=inbound_rcpts, data=data,
                                                      client_ip=peer.host, helo=peer.helo, tls=peer.is_tls), bounces)
        except StoreFullError:
            log.error("store full: inbound message from %s refused with 452", peer.host)
            return SmtpReply(452, "4.3.1 Insufficient system storage, try again later")
        except StoreError as exc:
            log.error("store failure, inbound message from %s refused with 451: %s", peer.host, exc)
            return SmtpReply(451, "4.3.0 Internal error, try again later")
