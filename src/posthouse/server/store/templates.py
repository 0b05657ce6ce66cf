"""Templates: the Standard and Layout templates of each server, looked up by id or by alias.

Aliases compare case-insensitively (`lower(alias)`, with a unique partial index over active rows), and
a Standard template names its Layout by alias. Deleting clears `active`; rows are never removed, so an
id always means the same template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from posthouse.server.store.sql import Queries, Stmt, placeholders


@dataclass(slots=True)
class TemplateRecord:
    id: int
    server_id: int
    alias: str | None
    name: str
    subject: str | None
    html_body: str | None
    text_body: str | None
    template_type: str  # Standard | Layout
    layout_template: str | None  # the alias of a Layout of the same server
    active: bool
    created_at: int
    updated_at: int


_COLUMNS = (
    "id, server_id, alias, name, subject, html_body, text_body, template_type, layout_template, active, "
    "created_at, updated_at"
)
_SUMMARY_COLUMNS = (
    "id, server_id, alias, name, NULL, NULL, NULL, template_type, layout_template, active, created_at, updated_at"
)
_INSERT = f"INSERT INTO templates ({_COLUMNS.removeprefix('id, ')}) VALUES ({placeholders(11)}) RETURNING id"


def _template(row: Sequence[Any]) -> TemplateRecord:
    return TemplateRecord(
        id=row[0],
        server_id=row[1],
        alias=row[2],
        name=row[3],
        subject=row[4],
        html_body=row[5],
        text_body=row[6],
        template_type=row[7],
        layout_template=row[8],
        active=bool(row[9]),
        created_at=row[10],
        updated_at=row[11],
    )


def _insert(record: TemplateRecord) -> Stmt:
    return Stmt(
        _INSERT,
        (
            record.server_id,
            record.alias,
            record.name,
            record.subject,
            record.html_body,
            record.text_body,
            record.template_type,
            record.layout_template,
            int(record.active),
            record.created_at,
            record.updated_at,
        ),
        fetch=True,
    )


def _update(record: TemplateRecord) -> Stmt:
    return Stmt(
        "UPDATE templates SET alias = ?, name = ?, subject = ?, html_body = ?, text_body = ?, layout_template = ?, "
        "updated_at = ? WHERE id = ? AND server_id = ? AND active = 1",
        (
            record.alias,
            record.name,
            record.subject,
            record.html_body,
            record.text_body,
            record.layout_template,
            record.updated_at,
            record.id,
            record.server_id,
        ),
    )


class TemplateQueries(Queries):
    async def create_template(self, record: TemplateRecord) -> int:
        rows = await self.transact([_insert(record)])
        return int(rows[0][0][0])

    async def update_template(self, record: TemplateRecord, *, renamed_layout: str | None = None) -> None:
        """Save an edit. `renamed_layout` is a Layout's previous alias: the Standard templates that named it
        are pointed at its new alias in the same transaction, so no template loses its layout."""
        stmts = [_update(record)]
        if renamed_layout is not None:
            stmts.append(
                Stmt(
                    "UPDATE templates SET layout_template = ? "
                    "WHERE server_id = ? AND lower(layout_template) = lower(?)",
                    (record.alias, record.server_id, renamed_layout),
                )
            )
        await self.transact(stmts)

    async def deactivate_template(self, server_id: int, template_id: int, now: int) -> None:
        await self.transact(
            [
                Stmt(
                    "UPDATE templates SET active = 0, updated_at = ? WHERE id = ? AND server_id = ?",
                    (now, template_id, server_id),
                )
            ]
        )

    async def get_template(self, server_id: int, template_id: int) -> TemplateRecord | None:
        """A template by id, deleted ones included (they read back with `active` false)."""
        row = await self.query_one(
            f"SELECT {_COLUMNS} FROM templates WHERE id = ? AND server_id = ?", (template_id, server_id)
        )
        return _template(row) if row else None

    async def find_template(self, server_id: int, alias: str) -> TemplateRecord | None:
        """The active template with this alias, compared case-insensitively."""
        row = await self.query_one(
            f"SELECT {_COLUMNS} FROM templates WHERE server_id = ? AND lower(alias) = lower(?) AND active = 1",
            (server_id, alias),
        )
        return _template(row) if row else None

    async def list_templates(
        self, server_id: int, offset: int, count: int, *, template_type: str | None = None, layout: str | None = None
    ) -> tuple[int, list[TemplateRecord]]:
        """Active templates by id, without their content (the list answer carries none)."""
        clauses = ["server_id = ?", "active = 1"]
        args: list[Any] = [server_id]
        if template_type is not None:
            clauses.append("template_type = ?")
            args.append(template_type)
        if layout is not None:
            clauses.append("lower(layout_template) = lower(?)")
            args.append(layout)
        where = " AND ".join(clauses)
        total = await self.query_one(f"SELECT count(*) FROM templates WHERE {where}", args)
        rows = await self.query(
            f"SELECT {_SUMMARY_COLUMNS} FROM templates WHERE {where} ORDER BY id LIMIT ? OFFSET ?",
            [*args, count, offset],
        )
        return int(total[0]) if total else 0, [_template(r) for r in rows]

    async def active_templates(self, server_id: int) -> list[TemplateRecord]:
        """Every active template of a server, with content (at most a hundred: the per-server limit)."""
        rows = await self.query(
            f"SELECT {_COLUMNS} FROM templates WHERE server_id = ? AND active = 1 ORDER BY id", (server_id,)
        )
        return [_template(r) for r in rows]

    async def count_templates(self, server_id: int) -> int:
        row = await self.query_one("SELECT count(*) FROM templates WHERE server_id = ? AND active = 1", (server_id,))
        return int(row[0]) if row else 0

    async def count_layout_users(self, server_id: int, alias: str) -> int:
        """How many active templates name the layout `alias`."""
        row = await self.query_one(
            "SELECT count(*) FROM templates WHERE server_id = ? AND active = 1 AND lower(layout_template) = lower(?)",
            (server_id, alias),
        )
        return int(row[0]) if row else 0

    async def push_templates(self, creates: Sequence[TemplateRecord], edits: Sequence[TemplateRecord]) -> list[int]:
        """Write a push in one transaction: the ids of the created templates, in order."""
        stmts = [_insert(r) for r in creates] + [_update(r) for r in edits]
        results = await self.transact(stmts)
        return [int(results[i][0][0]) for i in range(len(creates))]
