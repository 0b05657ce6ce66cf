"""What the dashboard's message page reads besides the message and its events: the queue rows of each
recipient and the webhook posts about the message, with their attempts; an inbound message's posts (issue 15)."""

from __future__ import annotations

from dataclasses import dataclass, field

from posthouse.server.store.sql import Queries, placeholders
from posthouse.server.store.webhooks import PostAttempt


@dataclass(slots=True)
class DeliveryRecord:
    """A message's queue row for one recipient."""

    recipient: str
    state: str  # DeliveryState
    attempts: int
    next_attempt_at: int
    updated_at: int
    last_reply: str | None


@dataclass(slots=True)
class MessagePostRecord:
    """A webhook post about a message: where it went (None once the webhook is deleted) and how it fared."""

    id: int
    webhook_id: int
    url: str | None
    record_type: str
    state: str
    attempts: int
    created_at: int
    updated_at: int
    history: list[PostAttempt] = field(default_factory=list)


class ActivityQueries(Queries):
    async def list_deliveries(self, message_id: str) -> list[DeliveryRecord]:
        rows = await self.query(
            "SELECT recipient, state, attempts, next_attempt_at, updated_at, last_reply FROM deliveries "
            "WHERE message_id = ? ORDER BY id", (message_id,))
        return [DeliveryRecord(str(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4]), r[5]) for r in rows]

    async def list_message_posts(self, server_id: int, message_id: str, limit: int = 200) -> list[MessagePostRecord]:
        """The message's webhook posts, oldest first, each with its attempts (at most `limit` posts)."""
        return await self._posts("p.message_id = ?", message_id, server_id, limit)

    async def list_inbound_posts(self, server_id: int, inbound_id: int, limit: int = 200) -> list[MessagePostRecord]:
        """An inbound message's posts (to the InboundHookUrl), oldest first, each with its attempts."""
        return await self._posts("p.inbound_id = ?", inbound_id, server_id, limit)

    async def _posts(self, clause: str, key: object, server_id: int, limit: int) -> list[MessagePostRecord]:
        rows = await self.query(
            "SELECT p.id, p.webhook_id, w.url, p.record_type, p.state, p.attempts, p.created_at, p.updated_at "
            "FROM webhook_posts p LEFT JOIN webhooks w ON w.id = p.webhook_id "
            f"WHERE {clause} AND p.server_id = ? ORDER BY p.id LIMIT ?", (key, server_id, limit))
        posts = [MessagePostRecord(int(r[0]), int(r[1]), r[2], str(r[3]), str(r[4]), int(r[5]), int(r[6]), int(r[7]))
                 for r in rows]
        if posts:
            by_id = {p.id: p for p in posts}
            for a in await self.query(
                    "SELECT post_id, attempted_at, outcome, status_code, response_excerpt, duration_ms, error "
                    f"FROM webhook_attempts WHERE post_id IN ({placeholders(len(by_id))}) ORDER BY post_id, id",
                    list(by_id)):
                by_id[a[0]].history.append(PostAttempt(a[1], a[2], a[3], a[4], a[5], a[6]))
        return posts
