"""The database: schema, migrations, the queue; `open_store` picks the dialect from the URL."""

from __future__ import annotations

from posthouse.server.store.base import Store


def open_store_for(url: str, *, sqlite_synchronous: str = "FULL", sqlite_allow_unsafe_synchronous: bool = False
                   ) -> Store:
    """A (not yet opened) store for `sqlite:///PATH` or `postgresql://…`."""
    if url.startswith("sqlite:///"):
        from posthouse.server.store.sqlite import SqliteStore

        return SqliteStore.from_url(url, synchronous=sqlite_synchronous,
                                    allow_unsafe_synchronous=sqlite_allow_unsafe_synchronous)
    from posthouse.server.store.postgres import PostgresStore

    return PostgresStore(url)
