"""Retention and data removal: what is deleted, in what order, a bounded batch at a time (docs/architecture.md §6).

Retention: each server keeps its messages (content, queue rows, events, metadata, links, opens and clicks,
bounces) for its `RetentionDays` (the `retention_days` setting when it sets none; 45 by default, as Postmark),
and its webhook posts, finished bulk requests and received (inbound) mail as long. A message is kept while a
recipient is still to be delivered, an inbound message while its post is still to be made, and a scheduled
one counts from its send time. Stats rollups are kept for ever, as Postmark keeps its aggregates.
Suppressions are kept too: they are what stops mail to an address that bounced.

Data removal (Postmark's `POST /data-removals`, docs/postmark-api.md §8.4): everything stored about one
address, on every server: the messages sent to it (To, Cc, Bcc) or from it, whole, with everything retention
deletes with a message; bounces recorded for it; its suppressions; its opens and clicks; webhook posts and
finished bulk requests that name it; inbound mail from it (From or envelope sender) or to it (envelope
recipient, To or Cc) with its posts and stored bytes; inbound rules that are the address itself (a rule
naming a person is personal data, as a suppression is; a domain rule names nobody and stays). It runs in
the background (the housekeeping worker), leased so that one node works on a request at a time, and stays
`Pending` until one pass finds nothing left.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

from posthouse import wire
from posthouse.server.domain.addresses import AddressError, parse_address
from posthouse.server.errors import ApiError, NotFoundError
from posthouse.server.services.accounts import AccountService
from posthouse.server.services.clock import Clock
from posthouse.server.services.wakeup import Wakeup
from posthouse.server.store.base import Store
from posthouse.server.store.retention import DataRemovalRecord
from posthouse.server.store.sql import like_contains

log = logging.getLogger("posthouse.retention")

DAY_MICROS = 86_400_000_000
Progress = Callable[[str, int], None]  # (what is being removed now, rows removed so far)


def _never() -> bool:
    return False


@dataclass(slots=True)
class RetentionPass:
    """What one retention pass deleted."""

    messages: int = 0
    bounces: int = 0
    webhook_posts: int = 0
    bulk_requests: int = 0
    tokens: int = 0
    subject_rows: int = 0
    inbound: int = 0

    @property
    def total(self) -> int:
        return (self.messages + self.bounces + self.webhook_posts + self.bulk_requests + self.tokens
                + self.subject_rows + self.inbound)


class RetentionService:
    def __init__(self, store: Store, accounts: AccountService, clock: Clock, *, batch_size: int = 500,
                 subject_batch: int = 2_000, subject_batches_per_pass: int = 50) -> None:
        self.store = store
        self.accounts = accounts
        self.clock = clock
        self.batch_size = batch_size
        self.subject_batch = subject_batch
        self.subject_batches_per_pass = subject_batches_per_pass
        self._subject_cursor = 0  # where the walk of the subject index goes on from (SQLite)

    async def cutoff(self, server_id: int, now: int) -> int:
        """The time (µs) before which this server's rows expire: a deleted server's by the default."""
        record = await self.store.get_server(server_id)
        return now - self.accounts.retention_days(record.settings if record else {}) * DAY_MICROS

    async def sweep(self, stopping: Callable[[], bool] = _never) -> RetentionPass:
        """Delete everything past its server's retention, batch after batch (each its own short transaction),
        until none is left or `stopping()`; then walk part of the subject index for rows of deleted messages."""
        done = RetentionPass()
        now = self.clock.micros()
        batch = self.batch_size
        for server_id in await self.store.retention_server_ids():
            cutoff = await self.cutoff(server_id, now)
            for stream in await self.store.distinct_values("messages", "stream", [("server_id", server_id)]):
                while not stopping():
                    ids = await self.store.expired_message_ids(server_id, stream, cutoff, batch)
                    deleted = await self.store.delete_messages(ids)
                    done.messages += deleted
                    if len(ids) < batch or not deleted:
                        break
            while not stopping():  # received mail, as outbound: what still waits for its post stays
                inbound_ids = await self.store.expired_inbound_ids(server_id, cutoff, batch)
                deleted = await self.store.delete_inbound(inbound_ids)
                done.inbound += deleted
                if len(inbound_ids) < batch or not deleted:
                    break
            done.bounces += await self._drain(stopping, partial(self.store.delete_expired_bounces, server_id, cutoff,
                                                                batch), batch)
            done.webhook_posts += await self._drain(
                stopping, partial(self.store.delete_expired_webhook_posts, server_id, cutoff, batch), batch)
            # Bulk requests are large (the whole request): fewer at a time.
            done.bulk_requests += await self._drain(
                stopping, partial(self.store.delete_expired_bulk_requests, server_id, cutoff, 50), 50)
        done.tokens += await self._drain(stopping, partial(self.store.delete_expired_tokens, now, batch), batch)
        for _ in range(self.subject_batches_per_pass):
            if stopping():
                break
            cursor, pruned = await self.store.prune_subject_index(self._subject_cursor, self.subject_batch)
            done.subject_rows += pruned
            self._subject_cursor = cursor or 0
            if cursor is None:
                break
        if done.total:
            log.info("retention removed %d messages, %d inbound messages, %d bounces, %d webhook posts, %d bulk "
                     "requests, %d rotated tokens, %d subject index rows", done.messages, done.inbound, done.bounces,
                     done.webhook_posts, done.bulk_requests, done.tokens, done.subject_rows)
        return done

    @staticmethod
    async def _drain(stopping: Callable[[], bool], step: Callable[[], Awaitable[int]], batch: int) -> int:
        """Run `step` (a delete of up to `batch` rows) until it deletes fewer, or `stopping()`."""
        total = 0
        while not stopping():
            count = await step()
            total += count
            if count < batch:
                break
        return total


@dataclass(slots=True)
class _Pass:
    removed: int = 0
    complete: bool = True  # nothing was left behind (a message being delivered right now waits for a later pass)
    stages: list[str] = field(default_factory=list)


class DataRemovalService:
    def __init__(self, store: Store, clock: Clock, wakeup: Wakeup | None = None, *, batch_size: int = 200,
                 scan_batch: int = 2_000, lease_seconds: float = 60.0) -> None:
        self.store = store
        self.clock = clock
        self.wakeup = wakeup
        self.batch_size = batch_size
        self.scan_batch = scan_batch
        self.lease_micros = int(lease_seconds * 1_000_000)

    # -- the API (account token) ----------------------------------------------------------------------

    async def request(self, request: wire.DataRemovalRequest) -> wire.DataRemoval:
        """Record a request (`Pending`) and wake the housekeeper; the work happens in the background."""
        requested_for = _valid_address(request.requested_for, "RequestedFor")
        requested_by = (request.requested_by or "").strip()
        if not requested_by:
            raise ApiError(1300, "'RequestedBy' is required: the email address of whoever asks for the removal.")
        _valid_address(requested_by, "RequestedBy")
        removal_id = await self.store.create_data_removal(requested_by, requested_for,
                                                          bool(request.notify_when_completed), self.clock.micros())
        if self.wakeup is not None:
            self.wakeup.notify()
        return wire.DataRemoval(id=removal_id, status="Pending", removed=0)

    async def get(self, removal_id: int) -> wire.DataRemoval:
        record = await self.store.get_data_removal(removal_id)
        if record is None:
            raise NotFoundError(1301, f"Data removal request {removal_id} was not found.")
        return wire.DataRemoval(id=record.id, status=record.status, removed=record.removed)

    # -- the work (housekeeping worker, or `posthouse data-removal`) -------------------------------------

    async def run_pending(self, owner: str, stopping: Callable[[], bool] = _never,
                          progress: Progress | None = None, removal_id: int | None = None) -> int:
        """Work on pending requests nobody holds (or only `removal_id`), oldest first, until none is left or
        `stopping()`; how many were completed."""
        completed = 0
        while not stopping():
            now = self.clock.micros()
            record = await self.store.claim_data_removal(owner, now, now + self.lease_micros, removal_id)
            if record is None:
                break
            try:
                finished = await self.process(record, owner, stopping, progress)
            except BaseException:
                await self.store.release_data_removal(record.id, owner)
                raise
            if not finished:
                # Left for a later pass (a message being delivered right now, or stopping): let any node take it.
                await self.store.release_data_removal(record.id, owner)
                break
            completed += 1
        return completed

    async def process(self, record: DataRemovalRecord, owner: str, stopping: Callable[[], bool] = _never,
                      progress: Progress | None = None) -> bool:
        """One pass over everything stored about the request's address; True when it is Done."""
        address = record.requested_for
        removed = record.removed
        state = _Pass()

        def report(stage: str, count: int) -> None:
            nonlocal removed
            removed += count
            if progress is not None:
                progress(stage, removed)

        async def still_held() -> bool:
            return not stopping() and await self.store.extend_data_removal(
                record.id, owner, self.clock.micros() + self.lease_micros)

        servers = await self.store.retention_server_ids()
        report("messages", 0)
        while True:  # messages to or from the address, whole
            if not await still_held():
                return False
            ids = await self.store.messages_of_address(address, servers, self.batch_size)
            if not ids:
                break
            await self.store.cancel_pending(ids)
            deleted = await self.store.delete_messages(ids, removal_id=record.id)
            report("messages", deleted)
            if deleted < len(ids):
                state.complete = False  # some recipient is being delivered right now: a later pass takes it
                break
        inbound_after: int | None = 0
        while inbound_after is not None:  # inbound mail from or to it, with its posts
            if not await still_held():
                return False
            inbound_after, found = await self.store.inbound_of_address(address, inbound_after, self.scan_batch)
            for start in range(0, len(found), self.batch_size):
                chunk = found[start:start + self.batch_size]
                deleted = await self.store.delete_inbound(chunk, removal_id=record.id)
                report("inbound messages", deleted)
                if deleted < len(chunk):
                    state.complete = False  # its post is being made right now: a later pass takes it
        report("inbound rules", await self.store.delete_inbound_rules_naming(address, record.id))
        while await still_held():  # what names the address outside its messages
            count = await self.store.delete_address_rows(address, servers, record.id, self.batch_size)
            report("bounces, suppressions, opens and clicks", count)
            if not count:
                break
        after = 0
        needles = {address, _json_escaped(address)}
        while True:  # webhook posts whose payload names it
            if not await still_held():
                return False
            posts = await self.store.webhook_posts_after(after, self.scan_batch)
            if not posts:
                break
            after = posts[-1][0]
            matched = [post_id for post_id, _, payload in posts if any(n in payload.lower() for n in needles)]
            deleted = await self.store.delete_webhook_posts(matched, removal_id=record.id)
            report("webhook posts", deleted)
            if deleted < len(matched):
                state.complete = False
        pattern = like_contains(address)
        for server_id in servers:  # finished bulk requests that list it
            ids = await self.store.bulk_requests_naming(server_id, pattern)
            report("bulk requests", await self.store.delete_bulk_requests(ids, removal_id=record.id))
        cursor: int | None = 0
        while cursor is not None:  # the subject index's copies of the deleted messages' subjects (SQLite)
            if not await still_held():
                return False
            cursor, pruned = await self.store.prune_subject_index(cursor, self.scan_batch)
            report("subject index", pruned)
        if not state.complete:
            return False
        done = await self.store.finish_data_removal(record.id, owner, self.clock.micros())
        if done:
            log.info("data removal %d done: %d rows removed%s", record.id, removed,
                     " (NotifyWhenCompleted was asked; Posthouse sends no notification)" if record.notify else "")
        return done


def _valid_address(value: str | None, name: str) -> str:
    text = (value or "").strip()
    if not text:
        raise ApiError(1300, f"'{name}' is required.")
    try:
        return parse_address(text).email.lower()
    except AddressError:
        raise ApiError(1300, f"'{name}' is not a valid email address: '{text}'.") from None


def _json_escaped(text: str) -> str:
    """How a JSON encoder that escapes non-ASCII would write `text` (payloads are read as stored)."""
    return text.encode("ascii", "backslashreplace").decode().replace("\\x", "\\u00")
