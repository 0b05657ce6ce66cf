"""A write the database driver cannot take fails its caller only: the store goes on serving."""

from __future__ import annotations

import asyncio

import pytest

from posthouse.server.errors import StoreError
from posthouse.server.store.base import Stmt, Store


@pytest.mark.parametrize("bad", ["\ud800", 2**70])
async def test_an_unbindable_value_fails_its_caller_and_the_next_writes_work(store: Store, bad: object) -> None:
    good = Stmt("INSERT INTO secrets (name, value) VALUES (?, ?)", many=[("a", "1")])
    broken = Stmt("INSERT INTO secrets (name, value) VALUES (?, ?)", many=[("b", bad)])
    results = await asyncio.gather(store.transact([good]), store.transact([broken]), return_exceptions=True)
    assert results[0] == [[]]
    assert isinstance(results[1], StoreError)
    await asyncio.wait_for(store.transact([Stmt("INSERT INTO secrets (name, value) VALUES ('c', '3')")]), 5)
    assert sorted(r[0] for r in await store.query("SELECT name FROM secrets")) == ["a", "c"]
