"""Dashboard operators: their accounts (argon2id password hashes), sign-in with its throttle, and the
server-side sessions a signed-in browser holds (issue 15).

A session is a random id in a cookie; the database keeps only its SHA-256, with the session's CSRF token and
expiry, so signing out or expiry holds on every node at once. Sign-in with the account token (for a first
start, before anyone ran `posthouse users create`) follows `TokenLogin`: by default (`auto`) only while no
user exists, and a token session stops working as soon as one does.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from posthouse.server.domain.addresses import AddressError, normalize_email
from posthouse.server.errors import AuthenticationError, DashboardError, SignInError
from posthouse.server.services.accounts import AccountService
from posthouse.server.services.clock import Clock
from posthouse.server.store.base import Store

MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 takes any length; this bounds the work one request can ask for
# However often a session is used, it ends this long after it was opened (a stolen cookie does not live for ever).
MAX_SESSION_SECONDS = 7 * 86_400
# A session's expiry moves with use, written at most this often (a page polled every few seconds is not a write).
EXTEND_EVERY_SECONDS = 60
_FAILURE_MEMORY = 900.0  # a key's failures are forgotten after 15 minutes without one
_THROTTLE_KEYS = 100_000  # remembered at most; past it the stale ones are dropped
_MICROS = 1_000_000


class TokenLogin(StrEnum):
    """Whether the dashboard's sign-in page takes the account token (setting `dashboard_token_login`)."""

    AUTO = "auto"  # only while no user exists: a first start can sign in, a configured installation cannot
    ON = "on"
    OFF = "off"


@dataclass(frozen=True, slots=True)
class Operator:
    """Who a session acts for: a user, or (user_id None) whoever holds the account token."""

    user_id: int | None
    email: str | None

    @property
    def label(self) -> str:
        return self.email or "account token"


@dataclass(frozen=True, slots=True)
class Session:
    """A live session. `session_id` (the cookie's value) is known only when the session was just opened."""

    id_hash: str
    csrf_token: str
    operator: Operator
    expires_at: int  # µs
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class UserSummary:
    email: str
    created_at: int
    last_login_at: int | None


def hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def client_key(host: str | None) -> str:
    """A client address as the throttle counts it: IPv6 by /64 (the block one subscriber usually holds)."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network((address, 64), strict=False))
    return str(address)


class LoginThrottle:
    """Failed sign-ins per account and per client address, and how long the next attempt must wait.

    Guards against password guessing, as the SMTP AUTH throttle does: after `free` failures of a key, each
    further failure makes the next attempt wait 1 s, 2 s, 4 s … up to `max_delay` from that failure. An
    attempt made before then is refused without the password being checked (so waiting is the only way on,
    and a guesser learns nothing meanwhile). A success clears the account's count and the address's; 15
    minutes without a failure forget a key. An address has more free failures than an account: many
    operators may share one address (an office's NAT).

    The counts are this process's: behind a load balancer each node keeps its own (documented limit).
    """

    def __init__(self, *, free_per_account: int = 5, free_per_address: int = 20, max_delay: float = 300.0,
                 now: Callable[[], float] = time.monotonic) -> None:
        self._free = {"account": free_per_account, "address": free_per_address}
        self._max_delay = max_delay
        self._now = now
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}  # (kind, key) → (count, last failure)

    def _delay(self, kind: str, count: int) -> float:
        beyond = count - self._free[kind]
        return 0.0 if beyond <= 0 else min(self._max_delay, 2.0 ** min(beyond - 1, 32))

    def wait(self, keys: Sequence[tuple[str, str]]) -> float:
        """Seconds before an attempt for these (kind, key) pairs may be checked; 0 when it may be now."""
        now = self._now()
        longest = 0.0
        for key in keys:
            count, last = self._failures.get(key, (0, now))
            if now - last > _FAILURE_MEMORY:
                continue
            longest = max(longest, last + self._delay(key[0], count) - now)
        return longest

    def failed(self, keys: Sequence[tuple[str, str]]) -> None:
        now = self._now()
        for key in keys:
            count, last = self._failures.get(key, (0, now))
            self._failures[key] = (1 if now - last > _FAILURE_MEMORY else count + 1, now)
        if len(self._failures) > _THROTTLE_KEYS:
            self._failures = {k: v for k, v in self._failures.items() if now - v[1] <= _FAILURE_MEMORY}

    def succeeded(self, keys: Sequence[tuple[str, str]]) -> None:
        for key in keys:
            self._failures.pop(key, None)


class OperatorService:
    def __init__(self, store: Store, clock: Clock, accounts: AccountService, *,
                 token_login: TokenLogin = TokenLogin.AUTO, session_seconds: float = 12 * 3600,
                 throttle: LoginThrottle | None = None, hasher: PasswordHasher | None = None) -> None:
        self.store = store
        self.clock = clock
        self.accounts = accounts
        self.token_login = token_login
        self.session_seconds = session_seconds
        self.throttle = throttle or LoginThrottle()
        # argon2-cffi's defaults are argon2id with RFC 9106's second recommended parameters (t=3, 64 MiB, p=4).
        self.hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None

    # -- users (`posthouse users`) --------------------------------------------------------------

    async def create_user(self, email: str, password: str) -> UserSummary:
        address = _normalized(email)
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise DashboardError(f"the password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long")
        password_hash = await asyncio.to_thread(self.hasher.hash, password)
        now = self.clock.micros()
        if await self.store.create_user(address, password_hash, now) is None:
            raise DashboardError(f"a user {address} exists already")
        return UserSummary(address, now, None)

    async def list_users(self) -> list[UserSummary]:
        return [UserSummary(u.email, u.created_at, u.last_login_at) for u in await self.store.list_users()]

    async def delete_user(self, email: str) -> None:
        """Remove the user; their sessions end with them."""
        address = email.strip().lower()
        if not await self.store.delete_user(address):
            raise DashboardError(f"there is no user {address}")

    # -- signing in ----------------------------------------------------------------------------

    async def token_login_allowed(self) -> bool:
        if self.token_login is TokenLogin.AUTO:
            return not await self.store.has_users()
        return self.token_login is TokenLogin.ON

    async def sign_in(self, email: str, password: str, client: str | None) -> Session:
        address = email.strip().lower()
        keys = [("account", address), ("address", client_key(client))]
        self._check_throttle(keys)
        user = await self.store.get_user_by_email(address) if address and len(password) <= MAX_PASSWORD else None
        if user is None:
            # The same work as for a real account, so the answer's time does not tell which emails exist.
            await self._verify(await self._dummy(), password)
            self.throttle.failed(keys)
            raise SignInError("The email or the password is wrong.")
        if not await self._verify(user.password_hash, password):
            self.throttle.failed(keys)
            raise SignInError("The email or the password is wrong.")
        self.throttle.succeeded(keys)
        new_hash = None
        if self.hasher.check_needs_rehash(user.password_hash):
            new_hash = await asyncio.to_thread(self.hasher.hash, password)
        await self.store.record_login(user.id, self.clock.micros(), new_hash)
        return await self._open(Operator(user.id, user.email))

    async def sign_in_with_token(self, token: str, client: str | None) -> Session:
        keys = [("account", "account token"), ("address", client_key(client))]
        self._check_throttle(keys)
        if not await self.token_login_allowed():
            raise SignInError("Sign-in with the account token is turned off; sign in with your email.")
        try:
            await self.accounts.authenticate_account(token.strip() or None)
        except AuthenticationError:
            self.throttle.failed(keys)
            raise SignInError("That is not the account token.") from None
        self.throttle.succeeded(keys)
        return await self._open(Operator(None, None))

    def _check_throttle(self, keys: Sequence[tuple[str, str]]) -> None:
        wait = self.throttle.wait(keys)
        if wait > 0:
            raise SignInError(f"Too many failed sign-ins: try again in {int(wait) + 1} s.", retry_after=wait)

    async def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return await asyncio.to_thread(self.hasher.verify, password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(self.hasher.hash, secrets.token_urlsafe(16))
        return self._dummy_hash

    async def _open(self, operator: Operator) -> Session:
        session_id = secrets.token_urlsafe(32)
        csrf_token = secrets.token_urlsafe(32)
        now = self.clock.micros()
        expires_at = now + int(self.session_seconds * _MICROS)
        id_hash = hash_session_id(session_id)
        await self.store.create_session(id_hash, operator.user_id, csrf_token, now, expires_at)
        return Session(id_hash, csrf_token, operator, expires_at, session_id)

    # -- sessions ------------------------------------------------------------------------------

    async def resume(self, session_id: str | None) -> Session | None:
        """The live session a cookie names, its expiry moved on by this use; None when there is none (never
        was, signed out, expired, its user deleted, or an account-token session no longer allowed)."""
        if not session_id or len(session_id) > 128:
            return None
        id_hash = hash_session_id(session_id)
        record = await self.store.find_session(id_hash)
        now = self.clock.micros()
        if record is None or record.expires_at <= now:
            return None
        if record.user_id is None and not await self.token_login_allowed():
            return None
        expires_at = record.expires_at
        if now - record.last_seen_at >= EXTEND_EVERY_SECONDS * _MICROS:
            expires_at = min(now + int(self.session_seconds * _MICROS),
                             record.created_at + MAX_SESSION_SECONDS * _MICROS)
            await self.store.extend_session(id_hash, now, expires_at)
        return Session(id_hash, record.csrf_token, Operator(record.user_id, record.email), expires_at)

    async def sign_out(self, session: Session) -> None:
        await self.store.delete_session(session.id_hash)


def csrf_matches(session: Session, given: str | None) -> bool:
    """Whether a request carries its session's CSRF token (compared in constant time)."""
    return bool(given) and hmac.compare_digest(session.csrf_token.encode(), (given or "").encode())


def _normalized(email: str) -> str:
    try:
        return normalize_email(email.strip()).lower()
    except AddressError:
        raise DashboardError(f"not an email address: {email.strip()!r}") from None
