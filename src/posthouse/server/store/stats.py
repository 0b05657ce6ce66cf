"""The stats rollups table: incrementing counters inside other writes' transactions, and reading them back.

Increments are `additive` statements: the executors sum every caller's increments of a group commit
and run them once per counter, in key order, as the transaction's last statements (`sql.Counters`).
Reads sum the rows of a server over days, streams and tags; they never touch the raw events.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from posthouse.server.domain.stats import Family, StatKey, tally
from posthouse.server.store.sql import Queries, Stmt, placeholders

# One text for both dialects; `excluded` is the row that was to be inserted (SQLite ≥ 3.24, PostgreSQL).
_BUMP = ("INSERT INTO stats_daily (server_id, day, stream, tag, metric, value) VALUES (?, ?, ?, ?, ?, ?) "
         "ON CONFLICT (server_id, day, stream, tag, metric) DO UPDATE SET value = stats_daily.value + excluded.value")


def bump_stats(increments: Iterable[tuple[StatKey, int]]) -> list[Stmt]:
    """The statement that adds `increments` to their counters (none when there is nothing to add).

    Keys are summed and sorted here, and the executor sums and sorts again across the callers of one
    group commit, so concurrent transactions on PostgreSQL take the rows' locks in one order and
    cannot deadlock on each other's counters."""
    totals = tally(increments)
    if not totals:
        return []
    rows = sorted((k.server_id, k.day, k.stream, k.tag, k.metric, v) for k, v in totals.items())
    return [Stmt(_BUMP, many=rows, additive=True)]


@dataclass(frozen=True, slots=True)
class StatsFilter:
    """Which counters of a server to add up: UTC day numbers (inclusive), a stream, a tag ("" = untagged)."""

    from_day: int | None = None
    to_day: int | None = None
    stream: str | None = None
    tag: str | None = None


class StatsQueries(Queries):
    def _metric_column(self) -> str:
        # Family counters are read by a prefix range over `metric`; a byte order makes the range exact
        # (a linguistic collation orders ':' and ';' by other rules). The index of migration 0015 is
        # built with the same collation on PostgreSQL; SQLite compares text bytewise (BINARY) anyway.
        return 'metric COLLATE "C"' if self.dialect == "postgresql" else "metric"

    async def read_stats(self, server_id: int, f: StatsFilter, *, metrics: Sequence[str] = (),
                         families: Sequence[Family] = (), by_day: bool) -> list[tuple[int | None, str, int]]:
        """(day, metric, value) for the fixed `metrics` and every counter of the `families`, summed over
        streams and tags (and over days too when not `by_day`: then day is None). Zero sums left out."""
        column = self._metric_column()
        selections: list[tuple[str, list[Any]]] = []
        if metrics:
            selections.append((f"{column} IN ({placeholders(len(metrics))})", list(metrics)))
        # `family:` up to `family;` (';' follows ':' in byte order): every `family:<key>` counter.
        selections.extend((f"{column} >= ? AND {column} < ?", [f"{family.value}:", f"{family.value};"])
                          for family in families)
        found: list[tuple[int | None, str, int]] = []
        for clause, metric_args in selections:
            where = ["server_id = ?", clause]
            args: list[Any] = [server_id, *metric_args]
            for condition, value in (("day >= ?", f.from_day), ("day <= ?", f.to_day), ("stream = ?", f.stream),
                                     ("tag = ?", f.tag)):
                if value is not None:
                    where.append(condition)
                    args.append(value)
            group = "day, metric" if by_day else "metric"
            rows = await self.query(f"SELECT {group}, sum(value) FROM stats_daily WHERE {' AND '.join(where)} "
                                    f"GROUP BY {group}", args)
            if by_day:
                found.extend((int(r[0]), str(r[1]), int(r[2])) for r in rows if r[2])
            else:
                found.extend((None, str(r[0]), int(r[1])) for r in rows if r[1])
        return found
