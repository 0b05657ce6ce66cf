"""SQLite durability is guarded (issue 12): every connection carries the pragmas the store promises, read
back from the connections themselves, and `synchronous` below FULL is refused unless asked for."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from posthouse.server.cli import _open_store
from posthouse.server.config import load_settings
from posthouse.server.errors import ConfigurationError
from posthouse.server.store.base import Stmt
from posthouse.server.store.sqlite import SqliteStore

FULL = 2  # PRAGMA synchronous reads back as a number: OFF 0, NORMAL 1, FULL 2, EXTRA 3


def assert_durable(pragmas: dict[str, dict[str, Any]], synchronous: int = FULL) -> None:
    assert set(pragmas) == {"writer", "checkpoint", "reader-0", "reader-1", "reader-2", "reader-3"}
    for name, found in pragmas.items():
        expected = {"journal_mode": "wal", "synchronous": synchronous, "foreign_keys": 1, "busy_timeout": 30_000,
                    "query_only": int(name.startswith("reader"))}
        assert found == expected, name


async def wait_for_checkpointer(store: SqliteStore) -> None:
    for _ in range(500):  # its thread opens its connection right after the writer's: bounded, 5 s at most
        if store._checkpoint_conn is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the checkpoint connection never opened")


async def test_every_connection_is_wal_full_with_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "posthouse.db")
    await store.open()
    try:
        await store.migrate()
        await store.transact([Stmt("INSERT INTO secrets (name, value) VALUES ('k', 'v')")])
        await asyncio.gather(*(store.query("SELECT count(*) FROM secrets") for _ in range(20)))
        await wait_for_checkpointer(store)
        assert_durable(await store.connection_pragmas())
    finally:
        await store.close()


async def test_the_store_the_server_opens_by_default_is_full(tmp_path: Path) -> None:
    """What `posthouse serve` opens with default settings, not just what the store defaults to."""
    store = await _open_store(load_settings({"data_dir": str(tmp_path / "data")}, environ={}))
    try:
        assert isinstance(store, SqliteStore)
        await wait_for_checkpointer(store)
        assert_durable(await store.connection_pragmas())
    finally:
        await store.close()


@pytest.mark.parametrize("level", ["NORMAL", "OFF", "normal"])
def test_synchronous_below_full_is_refused_without_the_unsafe_setting(tmp_path: Path, level: str) -> None:
    with pytest.raises(ConfigurationError, match="sqlite_allow_unsafe_synchronous"):
        load_settings({"sqlite_synchronous": level}, environ={})
    with pytest.raises(ConfigurationError, match="sqlite_allow_unsafe_synchronous"):
        SqliteStore(tmp_path / "posthouse.db", synchronous=level)
    settings = load_settings({"sqlite_synchronous": level, "sqlite_allow_unsafe_synchronous": "true"}, environ={})
    assert settings.sqlite_synchronous == level
    assert load_settings({"sqlite_synchronous": "EXTRA"}, environ={}).sqlite_synchronous == "EXTRA"  # above FULL


async def test_an_allowed_unsafe_level_is_in_force_everywhere_and_warned_about(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings({"data_dir": str(tmp_path / "data"), "sqlite_synchronous": "NORMAL",
                              "sqlite_allow_unsafe_synchronous": "true"}, environ={})
    with caplog.at_level(logging.WARNING, logger="posthouse.store"):
        store = await _open_store(settings)
    try:
        assert any("synchronous=NORMAL" in r.getMessage() and "power cut" in r.getMessage()
                   for r in caplog.records if r.levelno == logging.WARNING)
        await wait_for_checkpointer(store)
        assert isinstance(store, SqliteStore)
        assert_durable(await store.connection_pragmas(), synchronous=1)
    finally:
        await store.close()


def test_serve_refuses_an_unsafe_level_with_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOUSE_")}
    env.update({"POSTHOUSE_SQLITE_SYNCHRONOUS": "OFF", "POSTHOUSE_DATA_DIR": str(tmp_path / "data")})
    result = subprocess.run([sys.executable, "-m", "posthouse.server.cli", "serve"], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("posthouse: error: sqlite_synchronous=OFF can lose acknowledged mail")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was created
