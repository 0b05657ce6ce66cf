"""The stats rollups table: incrementing counters inside other writes' transactions."""

from __future__ import annotations

from collections.abc import Iterable

from posthouse.server.domain.stats import StatKey, tally
from posthouse.server.store.sql import Stmt

# One text for both dialects; `excluded` is the row that was to be inserted (SQLite ≥ 3.24, PostgreSQL).
_BUMP = ("INSERT INTO stats_daily (server_id, day, stream, tag, metric, value) VALUES (?, ?, ?, ?, ?, ?) "
         "ON CONFLICT (server_id, day, stream, tag, metric) DO UPDATE SET value = stats_daily.value + excluded.value")


def bump_stats(increments: Iterable[tuple[StatKey, int]]) -> list[Stmt]:
    """The statement that adds `increments` to their counters (none when there is nothing to add).

    Keys are summed first and sorted, so concurrent transactions on PostgreSQL take the rows' locks
    in one order and cannot deadlock on each other's counters."""
    totals = tally(increments)
    if not totals:
        return []
    rows = [(k.server_id, k.day, k.stream, k.tag, k.metric, v)
            for k, v in sorted(totals.items(), key=lambda item: (item[0].server_id, item[0].day, item[0].stream,
                                                                 item[0].tag, item[0].metric))]
    return [Stmt(_BUMP, many=rows)]
