"""Repository: sending domains, their DKIM keys, and sender signatures (migration 0020).

Every write announces a "domains" change (`change_notice`, `domains_changed`), so the caches that read
these tables on hot paths (signing keys, the sender policy, return-path domains) reload at their next use
on every node, as the webhook and suppression hints do (services/hints.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from posthouse.server.store.sql import Queries, Stmt, Then, placeholders

# DKIM key states (docs/postmark-api.md §8.4): published and waiting for verification, signing, replaced.
PENDING = "pending"
ACTIVE = "active"
REVOKED = "revoked"


@dataclass(slots=True)
class KeyRecord:
    id: int
    selector: str
    algorithm: str  # domain.dkim_keys.DkimAlgorithm's values
    private_key_pem: bytes
    state: str
    created_at: int
    activated_at: int | None
    revoked_at: int | None


@dataclass(slots=True)
class DomainRecord:
    id: int
    name: str
    return_path_domain: str
    return_path_verified: bool
    spf_verified: bool
    dkim_verified: bool
    created_at: int
    updated_at: int
    keys: list[KeyRecord] = field(default_factory=list)  # read by `get_domain`/`find_domain`, not by lists

    def keys_in(self, state: str) -> list[KeyRecord]:
        return [k for k in self.keys if k.state == state]


@dataclass(slots=True)
class NewKey:
    """A key to store: made by the service (`domain.dkim_keys.generate_private_key`)."""

    selector: str
    algorithm: str
    private_key_pem: bytes


@dataclass(slots=True)
class SenderRecord:
    id: int
    email: str
    domain: str
    name: str
    reply_to: str
    confirmation_note: str
    confirmed: bool
    confirmation_sent_at: int | None
    confirmed_at: int | None
    created_at: int


_DOMAIN_COLUMNS = ("id, name, return_path_domain, return_path_verified, spf_verified, dkim_verified, created_at, "
                   "updated_at")
_KEY_COLUMNS = "id, selector, algorithm, private_key, state, created_at, activated_at, revoked_at"
_SENDER_COLUMNS = ("id, email, domain, name, reply_to, confirmation_note, confirmed, confirmation_sent_at, "
                   "confirmed_at, created_at")


def _domain(row: Sequence[Any]) -> DomainRecord:
    return DomainRecord(int(row[0]), str(row[1]), str(row[2]), bool(row[3]), bool(row[4]), bool(row[5]),
                        int(row[6]), int(row[7]))


def _key(row: Sequence[Any]) -> KeyRecord:
    return KeyRecord(int(row[0]), str(row[1]), str(row[2]), str(row[3]).encode("ascii"), str(row[4]), int(row[5]),
                     row[6], row[7])


def _sender(row: Sequence[Any]) -> SenderRecord:
    return SenderRecord(int(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]), str(row[5]), bool(row[6]),
                        row[7], row[8], int(row[9]))


def _key_rows(domain_id: Any, keys: Sequence[NewKey], now: int) -> list[tuple[Any, ...]]:
    return [(domain_id, k.selector, k.algorithm, k.private_key_pem.decode("ascii"), PENDING, now) for k in keys]


_INSERT_KEYS = ("INSERT INTO dkim_keys (domain_id, selector, algorithm, private_key, state, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)")


class DomainQueries(Queries):
    # Counts changes to domains, keys and signatures, this process's and those other processes announced;
    # the caches built on these tables reload when it moves.
    domain_epoch = 0

    def domains_changed(self) -> None:
        """This process committed a change to domains or signatures: count it, and tell other processes
        where the commit could not."""
        self.domain_epoch += 1
        self.announce_change("domains")

    async def _write(self, stmts: Sequence[Stmt | Then]) -> list[list[Sequence[Any]]]:
        results = await self.transact([*stmts, *self.change_notice("domains")])
        self.domains_changed()
        return results

    # -- domains --------------------------------------------------------------------------------

    async def list_domains(self, offset: int, count: int) -> tuple[int, list[DomainRecord]]:
        total = await self.query_one("SELECT count(*) FROM domains")
        rows = await self.query(f"SELECT {_DOMAIN_COLUMNS} FROM domains ORDER BY id LIMIT ? OFFSET ?", (count, offset))
        return int(total[0]) if total else 0, [_domain(r) for r in rows]

    async def get_domain(self, domain_id: int) -> DomainRecord | None:
        if not 0 < domain_id < 2**63:
            return None
        row = await self.query_one(f"SELECT {_DOMAIN_COLUMNS} FROM domains WHERE id = ?", (domain_id,))
        return await self._with_keys(_domain(row)) if row else None

    async def find_domain(self, name: str) -> DomainRecord | None:
        """A domain by its stored name (lower-case A-label)."""
        row = await self.query_one(f"SELECT {_DOMAIN_COLUMNS} FROM domains WHERE name = ?", (name,))
        return await self._with_keys(_domain(row)) if row else None

    async def _with_keys(self, record: DomainRecord) -> DomainRecord:
        rows = await self.query(f"SELECT {_KEY_COLUMNS} FROM dkim_keys WHERE domain_id = ? ORDER BY id", (record.id,))
        record.keys = [_key(r) for r in rows]
        return record

    async def create_domain(self, name: str, return_path_domain: str, keys: Sequence[NewKey], now: int) -> int | None:
        """A new domain with its first (pending) keys, in one transaction; None when the name is taken."""
        def insert_keys(results: list[list[Sequence[Any]]]) -> list[Stmt]:
            created = results[0]
            return [Stmt(_INSERT_KEYS, many=_key_rows(created[0][0], keys, now))] if created else []

        results = await self._write([
            Stmt("INSERT INTO domains (name, return_path_domain, return_path_verified, spf_verified, dkim_verified, "
                 "created_at, updated_at) VALUES (?, ?, 0, 0, 0, ?, ?) ON CONFLICT (name) DO NOTHING RETURNING id",
                 (name, return_path_domain, now, now), fetch=True),
            Then(insert_keys),
        ])
        return int(results[0][0][0]) if results[0] else None

    async def set_return_path(self, domain_id: int, return_path_domain: str, now: int) -> None:
        """A new Return-Path domain: not verified until checked."""
        await self._write([Stmt(
            "UPDATE domains SET return_path_domain = ?, return_path_verified = 0, updated_at = ? WHERE id = ?",
            (return_path_domain, now, domain_id))])

    async def record_return_path_check(self, domain_id: int, return_path_domain: str, verified: bool, now: int
                                       ) -> None:
        """What a Return-Path check found, if the domain still has the Return-Path domain that was checked."""
        await self._write([Stmt(
            "UPDATE domains SET return_path_verified = ?, updated_at = ? WHERE id = ? AND return_path_domain = ?",
            (int(verified), now, domain_id, return_path_domain))])

    async def record_spf_check(self, domain_id: int, verified: bool, now: int) -> None:
        await self._write([Stmt("UPDATE domains SET spf_verified = ?, updated_at = ? WHERE id = ?",
                                (int(verified), now, domain_id))])

    async def activate_pending_keys(self, domain_id: int, selectors: Sequence[str], now: int) -> bool:
        """The pending keys `selectors` (all the domain's pending keys, just seen in DNS) start signing; the
        keys they replace are revoked and the keys revoked before them forgotten. False when those are no
        longer the domain's pending keys (another request activated or replaced them first).

        The domain's row is updated first, as a lock: two verifications of one domain at once (PostgreSQL)
        take turns, and the second finds nothing pending."""
        swapped: list[bool] = []

        def swap(results: list[list[Sequence[Any]]]) -> list[Stmt]:
            swapped.append(sorted(str(r[0]) for r in results[1]) == sorted(selectors) and bool(selectors))
            if not swapped[-1]:
                return []
            return [
                Stmt("DELETE FROM dkim_keys WHERE domain_id = ? AND state = ?", (domain_id, REVOKED)),
                Stmt("UPDATE dkim_keys SET state = ?, revoked_at = ? WHERE domain_id = ? AND state = ?",
                     (REVOKED, now, domain_id, ACTIVE)),
                Stmt("UPDATE dkim_keys SET state = ?, activated_at = ? WHERE domain_id = ? AND state = ?",
                     (ACTIVE, now, domain_id, PENDING)),
                Stmt("UPDATE domains SET dkim_verified = 1 WHERE id = ?", (domain_id,)),
            ]

        await self._write([
            Stmt("UPDATE domains SET updated_at = ? WHERE id = ?", (now, domain_id)),
            Stmt("SELECT selector FROM dkim_keys WHERE domain_id = ? AND state = ?", (domain_id, PENDING), fetch=True),
            Then(swap),
        ])
        return bool(swapped) and swapped[-1]  # the last build is the one committed (a failed group runs again)

    async def add_pending_keys(self, domain_id: int, keys: Sequence[NewKey], now: int) -> bool:
        """A rotation: new pending keys, unless the domain already has pending keys (False) or is gone.
        The domain's row is locked first, as in `activate_pending_keys`."""
        added: list[bool] = []

        def insert(results: list[list[Sequence[Any]]]) -> list[Stmt]:
            added.append(not results[1] and bool(results[2]))
            return [Stmt(_INSERT_KEYS, many=_key_rows(domain_id, keys, now))] if added[-1] else []

        await self._write([
            Stmt("UPDATE domains SET updated_at = ? WHERE id = ?", (now, domain_id)),
            Stmt("SELECT id FROM dkim_keys WHERE domain_id = ? AND state = ?", (domain_id, PENDING), fetch=True),
            Stmt("SELECT id FROM domains WHERE id = ?", (domain_id,), fetch=True),
            Then(insert),
        ])
        return bool(added) and added[-1]

    async def delete_domain(self, domain_id: int) -> None:
        await self._write([Stmt("DELETE FROM dkim_keys WHERE domain_id = ?", (domain_id,)),
                           Stmt("DELETE FROM domains WHERE id = ?", (domain_id,))])

    # -- what sending asks (cached by the services) ----------------------------------------------

    async def active_keys(self, name: str) -> list[KeyRecord]:
        """The keys that sign mail from the domain `name` now (none when it has no verified key)."""
        rows = await self.query(
            f"SELECT {', '.join('k.' + c.strip() for c in _KEY_COLUMNS.split(','))} FROM dkim_keys k "
            "JOIN domains d ON d.id = k.domain_id WHERE d.name = ? AND k.state = ? ORDER BY k.id", (name, ACTIVE))
        return [_key(r) for r in rows]

    async def verified_return_path(self, name: str) -> str | None:
        """The domain's custom Return-Path domain, when it has one and its CNAME was verified."""
        row = await self.query_one("SELECT return_path_domain FROM domains WHERE name = ? AND return_path_verified = 1 "
                                   "AND return_path_domain <> ''", (name,))
        return str(row[0]) if row else None

    async def return_path_domains(self) -> set[str]:
        """Every custom Return-Path domain stored, verified or not (bounces may come back to any)."""
        rows = await self.query("SELECT DISTINCT return_path_domain FROM domains WHERE return_path_domain <> ''")
        return {str(r[0]) for r in rows}

    async def sender_standing(self, email: str, domain: str) -> tuple[bool, bool | None]:
        """(the domain's DKIM was verified, the address's signature is confirmed — None without one)."""
        verified = await self.query_one("SELECT 1 FROM domains WHERE name = ? AND dkim_verified = 1", (domain,))
        signature = await self.query_one("SELECT confirmed FROM sender_signatures WHERE lower(email) = ?",
                                         (email.lower(),))
        return verified is not None, bool(signature[0]) if signature else None

    # -- sender signatures ----------------------------------------------------------------------

    async def list_senders(self, offset: int, count: int) -> tuple[int, list[SenderRecord]]:
        total = await self.query_one("SELECT count(*) FROM sender_signatures")
        rows = await self.query(f"SELECT {_SENDER_COLUMNS} FROM sender_signatures ORDER BY id LIMIT ? OFFSET ?",
                                (count, offset))
        return int(total[0]) if total else 0, [_sender(r) for r in rows]

    async def get_sender(self, sender_id: int) -> SenderRecord | None:
        if not 0 < sender_id < 2**63:
            return None
        row = await self.query_one(f"SELECT {_SENDER_COLUMNS} FROM sender_signatures WHERE id = ?", (sender_id,))
        return _sender(row) if row else None

    async def create_sender(self, email: str, domain: str, name: str, reply_to: str, note: str, now: int
                            ) -> int | None:
        """A new, unconfirmed signature; None when the address has one already (case-insensitively)."""
        results = await self._write([Stmt(
            "INSERT INTO sender_signatures (email, domain, name, reply_to, confirmation_note, confirmed, created_at) "
            "SELECT ?, ?, ?, ?, ?, 0, ? WHERE NOT EXISTS (SELECT 1 FROM sender_signatures WHERE lower(email) = ?) "
            "RETURNING id", (email, domain, name, reply_to, note, now, email.lower()), fetch=True)])
        return int(results[0][0][0]) if results[0] else None

    async def update_sender(self, record: SenderRecord) -> None:
        """Its Name, Reply-To and confirmation note."""
        await self._write([Stmt(
            "UPDATE sender_signatures SET name = ?, reply_to = ?, confirmation_note = ? WHERE id = ?",
            (record.name, record.reply_to, record.confirmation_note, record.id))])

    async def delete_sender(self, sender_id: int) -> None:
        await self._write([Stmt("DELETE FROM sender_signatures WHERE id = ?", (sender_id,))])

    async def set_confirmation_token(self, sender_id: int, token_hash: str, now: int) -> bool:
        """The hash of a new confirmation link's token (the one before stops working); False if the
        signature is gone or already confirmed."""
        results = await self._write([Stmt(
            "UPDATE sender_signatures SET confirm_token = ?, confirmation_sent_at = ? WHERE id = ? AND confirmed = 0 "
            "RETURNING id", (token_hash, now, sender_id), fetch=True)])
        return bool(results[0])

    async def find_sender_by_token(self, token_hash: str) -> SenderRecord | None:
        row = await self.query_one(f"SELECT {_SENDER_COLUMNS} FROM sender_signatures WHERE confirm_token = ?",
                                   (token_hash,))
        return _sender(row) if row else None

    async def confirm_sender(self, token_hash: str, now: int) -> SenderRecord | None:
        """Confirm the signature this token names, once: the token is used up."""
        results = await self._write([Stmt(
            "UPDATE sender_signatures SET confirmed = 1, confirmed_at = ?, confirm_token = NULL "
            f"WHERE confirm_token = ? RETURNING {_SENDER_COLUMNS}", (now, token_hash), fetch=True)])
        return _sender(results[0][0]) if results[0] else None

    async def senders_of(self, emails: Sequence[str]) -> list[SenderRecord]:
        if not emails:
            return []
        rows = await self.query(f"SELECT {_SENDER_COLUMNS} FROM sender_signatures WHERE lower(email) IN "
                                f"({placeholders(len(emails))})", [e.lower() for e in emails])
        return [_sender(r) for r in rows]
