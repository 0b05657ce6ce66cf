"""Dashboard operators and their sessions: the `users` and `dashboard_sessions` tables (migration 0040)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from posthouse.server.store.sql import Queries, Stmt


@dataclass(slots=True)
class UserRecord:
    id: int
    email: str  # lower-cased
    password_hash: str
    created_at: int
    last_login_at: int | None


@dataclass(slots=True)
class SessionRecord:
    id_hash: str
    user_id: int | None  # None: opened with the account token
    email: str | None  # the user's, None for an account-token session
    csrf_token: str
    created_at: int
    expires_at: int
    last_seen_at: int


_USER_COLUMNS = "id, email, password_hash, created_at, last_login_at"


def _user(row: Sequence[Any]) -> UserRecord:
    return UserRecord(int(row[0]), str(row[1]), str(row[2]), int(row[3]), row[4])


class OperatorQueries(Queries):
    # -- users --------------------------------------------------------------------------------

    async def create_user(self, email: str, password_hash: str, now: int) -> int | None:
        """The new user's id; None if a user with this (lower-cased) email exists already."""
        rows = (await self.transact([Stmt(
            "INSERT INTO users (email, password_hash, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (email) DO NOTHING RETURNING id", (email, password_hash, now), fetch=True)]))[0]
        return int(rows[0][0]) if rows else None

    async def get_user_by_email(self, email: str) -> UserRecord | None:
        row = await self.query_one(f"SELECT {_USER_COLUMNS} FROM users WHERE email = ?", (email,))
        return _user(row) if row else None

    async def list_users(self) -> list[UserRecord]:
        return [_user(r) for r in await self.query(f"SELECT {_USER_COLUMNS} FROM users ORDER BY email")]

    async def has_users(self) -> bool:
        return await self.query_one("SELECT 1 FROM users LIMIT 1") is not None

    async def delete_user(self, email: str) -> bool:
        """Remove the user and every session of theirs, in one transaction; False if there was none."""
        rows = (await self.transact([
            Stmt("DELETE FROM dashboard_sessions WHERE user_id IN (SELECT id FROM users WHERE email = ?)", (email,)),
            Stmt("DELETE FROM users WHERE email = ? RETURNING id", (email,), fetch=True),
        ]))[1]
        return bool(rows)

    async def record_login(self, user_id: int, now: int, new_hash: str | None = None) -> None:
        """A successful sign-in: its time, and the password's new hash when the parameters changed."""
        if new_hash is None:
            await self.transact([Stmt("UPDATE users SET last_login_at = ? WHERE id = ?", (now, user_id))])
        else:
            await self.transact([Stmt("UPDATE users SET last_login_at = ?, password_hash = ? WHERE id = ?",
                                      (now, new_hash, user_id))])

    # -- sessions -----------------------------------------------------------------------------

    async def create_session(self, id_hash: str, user_id: int | None, csrf_token: str, now: int,
                             expires_at: int) -> None:
        """Store a new session, and drop the expired ones of everybody (sign-ins are rare, so this keeps
        the table small without a job of its own)."""
        await self.transact([
            Stmt("DELETE FROM dashboard_sessions WHERE expires_at <= ?", (now,)),
            Stmt("INSERT INTO dashboard_sessions (id_hash, user_id, csrf_token, created_at, expires_at, last_seen_at) "
                 "VALUES (?, ?, ?, ?, ?, ?)", (id_hash, user_id, csrf_token, now, expires_at, now)),
        ])

    async def find_session(self, id_hash: str) -> SessionRecord | None:
        """The session with its user's email; a session whose user is gone is not found."""
        row = await self.query_one(
            "SELECT s.id_hash, s.user_id, u.email, s.csrf_token, s.created_at, s.expires_at, s.last_seen_at "
            "FROM dashboard_sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?", (id_hash,))
        if row is None or (row[1] is not None and row[2] is None):
            return None
        return SessionRecord(str(row[0]), row[1], row[2], str(row[3]), int(row[4]), int(row[5]), int(row[6]))

    async def extend_session(self, id_hash: str, now: int, expires_at: int) -> None:
        await self.transact([Stmt("UPDATE dashboard_sessions SET last_seen_at = ?, expires_at = ? WHERE id_hash = ?",
                                  (now, expires_at, id_hash))])

    async def delete_session(self, id_hash: str) -> None:
        await self.transact([Stmt("DELETE FROM dashboard_sessions WHERE id_hash = ?", (id_hash,))])
