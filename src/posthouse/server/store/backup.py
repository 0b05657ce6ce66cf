"""`posthouse backup` and `posthouse restore` for SQLite (docs/architecture.md §9): SQLite's online backup API.

Backup copies the live database page by page into a new file while the server keeps running. The source
connection holds one read transaction for the whole copy, so the copy is the database as of one moment
(in WAL mode readers do not block the writer: mail keeps being accepted meanwhile) and no page written
during the copy makes it start over. The copy is written under a temporary name, checked with
`PRAGMA integrity_check`, and renamed into place: a failed or interrupted backup leaves no file behind
that looks complete.

Restore copies a backup into the configured database file, through the same API and the destination's own
locks, after checking the backup is a Posthouse database; the caller first makes sure no process is using
the destination (cli.py: the `workers` table and each worker's lock file).

PostgreSQL has its own tools (pg_dump / pg_restore, README "Backups"); these functions are SQLite's only.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from posthouse.server.errors import ConfigurationError

Progress = Callable[[int, int], None]  # (pages copied, pages in all)

PAGES_PER_STEP = 256  # 1 MB of 4 KB pages per step: the bar moves, and each step is short


def _copy(source: sqlite3.Connection, target: sqlite3.Connection, progress: Progress | None) -> None:
    def report(status: int, remaining: int, total: int) -> None:
        if progress is not None:
            progress(total - remaining, total)

    source.backup(target, pages=PAGES_PER_STEP, progress=report)


def _is_posthouse(conn: sqlite3.Connection) -> int:
    """The newest migration applied in the database; ConfigurationError when it is not a Posthouse database."""
    try:
        row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ConfigurationError(f"not a Posthouse SQLite database ({exc})") from None
    if row is None or row[0] is None:
        raise ConfigurationError("not a Posthouse SQLite database (no migration was ever applied)")
    return int(row[0])


def _integrity(conn: sqlite3.Connection, what: str) -> None:
    result = conn.execute("PRAGMA integrity_check").fetchall()
    if [tuple(r) for r in result] != [("ok",)]:
        raise ConfigurationError(f"{what} fails SQLite's integrity check: {result[0][0]}")


def backup_sqlite(database: Path, destination: Path, progress: Progress | None = None) -> int:
    """Copy the live database at `database` to `destination` (which must not exist); the pages copied."""
    if not database.exists():
        raise ConfigurationError(f"no SQLite database at {database}")
    if destination.exists():
        raise ConfigurationError(f"{destination} already exists; give a new file name")
    if not destination.parent.is_dir():
        raise ConfigurationError(f"no folder {destination.parent} for the backup")
    partial = destination.with_name(destination.name + ".partial")
    try:
        source = sqlite3.connect(f"file:{database}?mode=ro", uri=True, isolation_level=None, timeout=30)
        try:
            source.execute("BEGIN")  # one read transaction for the whole copy: a snapshot
            _is_posthouse(source)
            target = sqlite3.connect(partial, isolation_level=None)
            try:
                _copy(source, target, progress)
                pages = int(target.execute("PRAGMA page_count").fetchone()[0])
                _integrity(target, "the copy")
                target.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            finally:
                target.close()
            source.execute("COMMIT")
        finally:
            source.close()
        os.replace(partial, destination)
    except sqlite3.Error as exc:
        raise ConfigurationError(f"backup of {database} failed: {exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return pages


def restore_sqlite(backup: Path, database: Path, progress: Progress | None = None) -> int:
    """Replace the database at `database` with the backup at `backup`; the newest migration it holds.
    The caller has made sure no Posthouse process uses `database`."""
    if not backup.is_file():
        raise ConfigurationError(f"no backup file at {backup}")
    try:
        source = sqlite3.connect(f"file:{backup}?mode=ro", uri=True, isolation_level=None)
        try:
            version = _is_posthouse(source)
            _integrity(source, f"the backup {backup}")
            database.parent.mkdir(parents=True, exist_ok=True)
            target = sqlite3.connect(database, isolation_level=None, timeout=30)
            try:
                _copy(source, target, progress)
                target.execute("PRAGMA journal_mode = WAL")  # as the server runs it
            finally:
                target.close()
        finally:
            source.close()
    except sqlite3.Error as exc:
        raise ConfigurationError(f"restore from {backup} failed: {exc}") from None
    return version
