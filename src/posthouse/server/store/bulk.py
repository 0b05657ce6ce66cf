"""Bulk requests: stored whole when accepted, expanded by a worker a chunk at a time, with progress."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from posthouse.server.store.sql import Queries, Stmt

_COLUMNS = ("id, server_id, status, total, position, released_count, failed_count, subject, request, "
            "submitted_at, updated_at")
_ACTIVE = "('Accepted', 'Processing')"


@dataclass(slots=True)
class BulkRecord:
    id: str
    server_id: int
    status: str  # Accepted | Processing | Completed | Failed
    total: int
    position: int  # messages expanded so far
    released_count: int
    failed_count: int
    subject: str | None
    request: str  # the accepted JSON body
    submitted_at: int
    updated_at: int


def _record(row: Sequence[Any]) -> BulkRecord:
    return BulkRecord(*row)


def chunk_stmts(bulk_id: str, position: int, size: int, released: int, failed: int, now: int) -> list[Stmt]:
    """Statements that commit with a chunk's messages: the chunk's guard row (a second expansion of the
    same chunk fails on its primary key, so it is never sent twice) and the progress."""
    return [
        Stmt("INSERT INTO bulk_chunks (bulk_id, position) VALUES (?, ?)", (bulk_id, position)),
        # Not conditional on the lease: the guard row already makes this chunk count once, whoever runs it.
        Stmt("UPDATE bulk_requests SET position = CASE WHEN position < ? THEN ? ELSE position END, "
             "released_count = released_count + ?, failed_count = failed_count + ?, updated_at = ?, "
             "status = CASE WHEN released_count + failed_count + ? >= total THEN 'Completed' ELSE status END "
             "WHERE id = ?",
             (position + size, position + size, released, failed, now, released + failed, bulk_id)),
    ]


class BulkQueries(Queries):

    async def insert_bulk(self, record: BulkRecord, extra: Sequence[Stmt] = ()) -> None:
        await self.transact([*extra, Stmt(
            f"INSERT INTO bulk_requests ({_COLUMNS}, lease_owner, lease_until) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 0)",
            (record.id, record.server_id, record.status, record.total, record.position, record.released_count,
             record.failed_count, record.subject, record.request, record.submitted_at, record.updated_at))])

    async def get_bulk(self, server_id: int, bulk_id: str) -> BulkRecord | None:
        row = await self.query_one(f"SELECT {_COLUMNS} FROM bulk_requests WHERE server_id = ? AND id = ?",
                                   (server_id, bulk_id))
        return _record(row) if row else None

    async def list_bulk(self, server_id: int, count: int, after: tuple[int, str] | None) -> list[BulkRecord]:
        """Newest first; `after` is the (submitted_at, id) of the last one of the previous page."""
        columns = _COLUMNS.replace(", request,", ", '' AS request,")
        if after is None:
            rows = await self.query(f"SELECT {columns} FROM bulk_requests WHERE server_id = ? "
                                    "ORDER BY submitted_at DESC, id DESC LIMIT ?", (server_id, count))
        else:
            rows = await self.query(
                f"SELECT {columns} FROM bulk_requests WHERE server_id = ? AND (submitted_at < ? OR "
                "(submitted_at = ? AND id < ?)) ORDER BY submitted_at DESC, id DESC LIMIT ?",
                (server_id, after[0], after[0], after[1], count))
        return [_record(r) for r in rows]

    async def claim_bulk(self, owner: str, now: int, lease_until: int) -> BulkRecord | None:
        """Lease one bulk request that is waiting or whose expander's lease ran out."""
        rows = (await self.transact([Stmt(
            "UPDATE bulk_requests SET lease_owner = ?, lease_until = ?, status = 'Processing', updated_at = ? "
            f"WHERE id IN (SELECT id FROM bulk_requests WHERE status IN {_ACTIVE} AND lease_until <= ? "
            f"ORDER BY submitted_at LIMIT 1 {self.claim_lock_clause}) RETURNING {_COLUMNS}",
            (owner, lease_until, now, now), fetch=True)]))[0]
        return _record(rows[0]) if rows else None

    async def extend_bulk_lease(self, bulk_id: str, owner: str, lease_until: int) -> bool:
        rows = (await self.transact([Stmt(
            "UPDATE bulk_requests SET lease_until = ? WHERE id = ? AND lease_owner = ? RETURNING id",
            (lease_until, bulk_id, owner), fetch=True)]))[0]
        return bool(rows)

    async def record_bulk_chunk(self, bulk_id: str, position: int, size: int, failed: int, now: int) -> None:
        """Progress for a chunk none of whose messages could be stored (all failed)."""
        await self.transact(chunk_stmts(bulk_id, position, size, 0, failed, now))
