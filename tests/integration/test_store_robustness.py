"""A write the database driver cannot take fails its caller only: the store goes on serving."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from posthouse.server.errors import StoreError
from posthouse.server.store.base import Stmt, Store
from posthouse.server.store.sql import Then


@pytest.mark.parametrize("bad", ["\ud800", 2**70])
async def test_an_unbindable_value_fails_its_caller_and_the_next_writes_work(store: Store, bad: object) -> None:
    good = Stmt("INSERT INTO secrets (name, value) VALUES (?, ?)", many=[("a", "1")])
    broken = Stmt("INSERT INTO secrets (name, value) VALUES (?, ?)", many=[("b", bad)])
    results = await asyncio.gather(store.transact([good]), store.transact([broken]), return_exceptions=True)
    assert results[0] == [[]]
    assert isinstance(results[1], StoreError)
    await asyncio.wait_for(store.transact([Stmt("INSERT INTO secrets (name, value) VALUES ('c', '3')")]), 5)
    assert sorted(r[0] for r in await store.query("SELECT name FROM secrets")) == ["a", "c"]


async def test_a_failing_then_builder_fails_its_caller_and_the_next_writes_work(store: Store) -> None:
    """A bug in statements built inside the transaction (`Then`) fails that caller: its first statement is
    rolled back, a caller committed alongside it is not, and the writer (or committer) goes on."""
    good = Stmt("INSERT INTO secrets (name, value) VALUES (?, ?)", many=[("a", "1")])
    partial = Stmt("INSERT INTO secrets (name, value) VALUES ('b', '2')")
    results = await asyncio.wait_for(asyncio.gather(
        store.transact([good]), store.transact([partial, Then(lambda results: {}["missing"])]),
        return_exceptions=True), 10)
    assert results[0] == [[]]
    assert isinstance(results[1], StoreError)
    await asyncio.wait_for(store.transact([Stmt("INSERT INTO secrets (name, value) VALUES ('c', '3')")]), 5)
    assert sorted(r[0] for r in await store.query("SELECT name FROM secrets")) == ["a", "c"]


async def test_a_then_builder_sees_what_the_statements_before_it_returned(store: Store) -> None:
    seen: list[list[list[tuple[object, ...]]]] = []

    def build(results: list[list[Any]]) -> list[Stmt]:
        seen.append([[tuple(row) for row in rows] for rows in results])
        (name,) = results[0][0]
        return [Stmt("INSERT INTO secrets (name, value) VALUES (?, ?)", (f"{name}-copy", "2"))]

    await store.transact([
        Stmt("INSERT INTO secrets (name, value) VALUES ('first', '1') RETURNING name", fetch=True), Then(build)])
    assert seen == [[[("first",)]]]
    assert sorted(r[0] for r in await store.query("SELECT name FROM secrets")) == ["first", "first-copy"]
