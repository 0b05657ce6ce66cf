"""The SQL primitives every repository shares: statements, references between them, placeholders."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard


@dataclass(frozen=True, slots=True)
class Ref:
    """The first column of the first row returned by statement `index` of the same transaction."""

    index: int


@dataclass(slots=True)
class Stmt:
    sql: str
    args: Sequence[Any] = ()
    many: Sequence[Sequence[Any]] | None = None  # executemany with these rows instead of args
    fetch: bool = False  # return rows (SELECT / RETURNING)
    # Rows `(key…, n)` of an upsert that adds n to a counter: the executor may sum them with other
    # callers' rows of the same text and run them last, once per key, in key order (`Counters`).
    additive: bool = False


@dataclass(frozen=True, slots=True)
class Then:
    """Statements decided inside the transaction, from what the statements before returned.

    `build(results)` gets the rows each earlier statement returned (one list per statement) and gives
    the statements to run next; a `Ref` in them counts from `len(results)`, where they start. Used
    where a write must depend on an earlier one's outcome atomically (a late result of a lost lease
    writes nothing). A job holding one is never merged with other callers' jobs.
    """

    build: Callable[[list[list[Sequence[Any]]]], list[Stmt]]


def expand(step: Stmt | Then, results: list[list[Sequence[Any]]]) -> list[Stmt]:
    """The statements one step of a transaction stands for, given the results so far."""
    return step.build(results) if isinstance(step, Then) else [step]


def resolve_refs(args: Sequence[Any], results: list[list[Sequence[Any]]]) -> list[Any]:
    return [results[a.index][0][0] if isinstance(a, Ref) else a for a in args]


def like_contains(text: str) -> str:
    """A LIKE pattern (used with `ESCAPE '\\'`) matching `text` anywhere, its `%` and `_` literal."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


LIKE_ESCAPE = "ESCAPE '\\'"


def placeholders(count: int) -> str:
    return ", ".join("?" * count)


def is_mergeable(stmts: Sequence[Stmt | Then]) -> TypeGuard[Sequence[Stmt]]:
    """Whether a caller's statements can share multi-row statements with other callers' (group commit):
    only multi-row statements without references, and argument-less statements (a NOTIFY) run once."""
    return all(isinstance(s, Stmt) and _mergeable(s) for s in stmts)


def _mergeable(s: Stmt) -> bool:
    if s.many is not None:
        return not s.fetch and not any(isinstance(v, Ref) for row in s.many for v in row)
    return not s.fetch and not s.args


class Counters:
    """The counter increments (`Stmt.additive`) of one group-committed transaction, run as its last
    statements: each key once with the sum of every caller's increments, keys in sorted order.

    Summing turns a hundred concurrent sends' bumps of one counter into one row update; running them
    last, sorted, makes every transaction take the counters' row locks in one order and hold them only
    until its commit, so concurrent PostgreSQL committers cannot deadlock on them (docs/architecture.md §6).
    """

    __slots__ = ("_totals",)

    def __init__(self) -> None:
        self._totals: dict[str, dict[tuple[Any, ...], int]] = {}

    def add(self, stmt: Stmt, rows: Sequence[Sequence[Any]]) -> None:
        totals = self._totals.setdefault(stmt.sql, {})
        for row in rows:
            key = tuple(row[:-1])
            totals[key] = totals.get(key, 0) + int(row[-1])

    def absorb(self, other: Counters) -> None:
        """Add another set's increments (a caller whose savepoint committed)."""
        for sql, totals in other._totals.items():
            mine = self._totals.setdefault(sql, {})
            for key, value in totals.items():
                mine[key] = mine.get(key, 0) + value

    def statements(self) -> list[Stmt]:
        """One multi-row statement per text, its rows sorted by key; zero sums left out."""
        return [Stmt(sql, many=[(*key, value) for key, value in sorted(totals.items()) if value])
                for sql, totals in self._totals.items() if any(totals.values())]


def merge(jobs: Sequence[Sequence[Stmt]]) -> list[Stmt]:
    """Callers' statement lists of one shape (the same texts in the same order) as one list: the rows of
    each multi-row statement concatenated, each argument-less statement once."""
    first = jobs[0]
    return [Stmt(s.sql, many=[row for job in jobs for row in job[i].many or ()], additive=s.additive)
            if s.many is not None else s for i, s in enumerate(first)]


class Queries(ABC):
    """What a repository needs of the executor: durable transactions and snapshot reads."""

    dialect: str
    claim_lock_clause = ""  # "FOR UPDATE SKIP LOCKED" on PostgreSQL: claims skip rows another node holds
    # "FOR UPDATE" on PostgreSQL, where transactions run side by side; SQLite's one writer needs no row locks.
    row_lock_clause = ""

    @abstractmethod
    async def transact(self, stmts: Sequence[Stmt | Then]) -> list[list[Sequence[Any]]]:
        """Run the statements in one durable transaction; rows per statement (empty unless fetch),
        a `Then` counting as the statements it built."""

    @abstractmethod
    async def query(self, sql: str, args: Sequence[Any] = ()) -> list[Sequence[Any]]:
        """A read on a committed snapshot."""

    def work_notice(self) -> list[Stmt]:
        """Statements that tell other processes, at commit, that new work is due."""
        return []

    # Changes the hot paths' hints depend on (services/hints.py): "suppressions" (added), "webhooks" (any
    # change) and "domains" (domains, DKIM keys, sender signatures: services/dkim_keys.py, services/domains.py).
    # Told to other processes in the changing transaction where the dialect can (PostgreSQL NOTIFY), else right
    # after its commit (`announce_change`: SQLite, split roles on one file).

    def change_notice(self, kind: str) -> list[Stmt]:
        """Statements that tell other processes, at commit, that `kind` changed."""
        return []

    def announce_change(self, kind: str) -> None:
        """After a commit that changed `kind`: tell other processes, where `change_notice` could not."""
        return None

    def refresh_changes(self) -> None:
        """Take in the changes other processes announced, where they are not pushed (SQLite: a look at a file)."""
        return None

    async def query_one(self, sql: str, args: Sequence[Any] = ()) -> Sequence[Any] | None:
        rows = await self.query(sql, args)
        return rows[0] if rows else None
