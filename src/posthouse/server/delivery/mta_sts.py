"""MTA-STS (RFC 8461): a recipient domain's policy, discovered in DNS, fetched over HTTPS and cached.

`MtaSts.policy(domain)` gives the policy to apply, or None (no policy, mode "none", or none could be
had: RFC 8461 §5.1 then says deliver as though the domain had none). The steps, as §3.3 and §5.1 say:

1. the TXT record `_mta-sts.<domain>` (`v=STSv1; id=…;`): absent or invalid → the cached policy if it
   has not expired, else none;
2. a cached policy whose id is the record's and whose max_age has not passed is used as it is;
3. otherwise the policy is fetched from `https://mta-sts.<domain>/.well-known/mta-sts.txt`: HTTPS with
   a certificate valid for that name (the CA bundle is a setting), no redirects, 200, text/plain, at
   most 64 KB; the host's address comes from our resolver, so the fetch sees the same DNS as delivery;
4. a fetch that fails leaves the cached policy in force until it expires (an attacker who blocks the
   fetch must not be able to downgrade a known `enforce` policy), and is not tried again for a while.

What a policy means for delivery (MX patterns, certificate checks) is applied in `delivery/mx.py`.
This module owns the HTTPS client used for it (httpx).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import httpx

from posthouse.server.delivery.dns import DnsStatus, Resolver

__all__ = ["MtaSts", "PolicyError", "StsMode", "StsPolicy", "mx_pattern_matches", "parse_policy", "parse_sts_record"]

log = logging.getLogger("posthouse.mta_sts")

_MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 §3.3: senders may refuse larger policies
_MAX_AGE_LIMIT = 31_557_600  # RFC 8461 §3.2: at most one year
_FAILED_FETCH_HOLD = 300.0  # after a failed fetch, wait this long before fetching again
_RECORD_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_FIELD = re.compile(r"([A-Za-z0-9_.-]{1,32}):[ \t]*(.*?)[ \t]*")


class StsMode(StrEnum):
    ENFORCE = "enforce"  # deliver only to matching MX hosts with valid certificates
    TESTING = "testing"  # deliver as usual; report what would have failed (we log it)
    NONE = "none"  # the domain has withdrawn its policy


class PolicyError(ValueError):
    """A policy that cannot be used (bad syntax, bad fetch)."""


@dataclass(frozen=True, slots=True)
class StsPolicy:
    id: str
    mode: StsMode
    mx: tuple[str, ...]
    max_age: int

    def matches(self, host: str) -> bool:
        """Whether the MX host is one the policy names (RFC 8461 §4.1)."""
        return any(mx_pattern_matches(pattern, host) for pattern in self.mx)


def mx_pattern_matches(pattern: str, host: str) -> bool:
    """RFC 8461 §4.1: an exact name, or `*.` plus a name, the wildcard standing for one leftmost label."""
    pattern = pattern.lower().rstrip(".")
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        label, dot, rest = host.partition(".")
        return bool(label) and bool(dot) and rest == pattern[2:]
    return host == pattern


def parse_sts_record(texts: Sequence[str]) -> str | None:
    """The policy id of the `_mta-sts` TXT records, or None when there is no single valid one (§3.1)."""
    records = [text for text in texts if text.startswith("v=STSv1;") or text == "v=STSv1"]
    if len(records) != 1:
        return None  # none, or several: as if the domain had no policy
    policy_id = None
    for index, part in enumerate(records[0].split(";")):
        key, sep, value = part.strip().partition("=")
        if not part.strip():
            continue
        if not sep:
            return None
        if index == 0 and (key, value) != ("v", "STSv1"):
            return None
        if key == "id" and policy_id is None:
            policy_id = value if _RECORD_ID.fullmatch(value) else None
            if policy_id is None:
                return None
    return policy_id


def parse_policy(text: str, policy_id: str) -> StsPolicy:
    """The policy file (RFC 8461 §3.2): `key: value` lines, LF or CRLF; unknown keys ignored."""
    fields: dict[str, str] = {}
    mx: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        match = _FIELD.fullmatch(line)
        if not match:
            raise PolicyError(f"malformed policy line {line[:80]!r}")
        key, value = match.group(1), match.group(2)
        if key == "mx":
            mx.append(value.lower().rstrip("."))
        else:
            fields.setdefault(key, value)  # the first occurrence counts
    if fields.get("version") != "STSv1":
        raise PolicyError(f"unsupported policy version {fields.get('version')!r}")
    try:
        mode = StsMode(fields.get("mode", ""))
    except ValueError:
        raise PolicyError(f"invalid policy mode {fields.get('mode')!r}") from None
    max_age_text = fields.get("max_age", "")
    if not max_age_text.isdigit() or len(max_age_text) > 10:
        raise PolicyError(f"invalid max_age {max_age_text!r}")
    if mode is not StsMode.NONE and not mx:
        raise PolicyError(f"a policy in mode {mode} must name its MX hosts")
    return StsPolicy(policy_id, mode, tuple(mx), min(int(max_age_text), _MAX_AGE_LIMIT))


@dataclass(slots=True)
class _Cached:
    policy: StsPolicy
    expires_at: float


class MtaSts:
    """Policies of recipient domains, cached for their max_age; see the module docstring."""

    def __init__(self, resolver: Resolver, *, ssl_context: ssl.SSLContext | None = None, timeout: float = 30.0,
                 port: int = 443, clock: Callable[[], float] = time.time) -> None:
        self.resolver = resolver
        self.timeout = timeout
        self.port = port
        self.fetches = 0  # HTTPS fetches started, for tests
        self._clock = clock
        # No proxies from the environment: the policy host is reached at the address our DNS gave.
        self._client = httpx.AsyncClient(verify=ssl_context or ssl.create_default_context(), follow_redirects=False,
                                         trust_env=False, timeout=timeout)
        self._cache: dict[str, _Cached] = {}
        self._failed: dict[str, tuple[str, float]] = {}  # domain → (policy id, don't fetch again before)
        self._pending: dict[str, asyncio.Task[StsPolicy | None]] = {}

    async def policy(self, domain: str) -> StsPolicy | None:
        """The policy in force for `domain` (already in A-labels), None for none; never raises."""
        task = self._pending.get(domain)
        if task is None:
            task = asyncio.ensure_future(self._policy(domain))
            self._pending[domain] = task
            task.add_done_callback(lambda _: self._pending.pop(domain, None))
        policy = await asyncio.shield(task)
        return policy if policy is not None and policy.mode is not StsMode.NONE else None

    async def _policy(self, domain: str) -> StsPolicy | None:
        now = self._clock()
        cached = self._cache.get(domain)
        if cached is not None and cached.expires_at <= now:
            del self._cache[domain]
            cached = None
        answer = await self.resolver.txt(f"_mta-sts.{domain}")
        policy_id = parse_sts_record(answer.records) if answer.status is DnsStatus.OK else None
        if policy_id is None:
            # §5.1: no record (or a DNS failure) while a cached policy is in force: it still applies.
            return cached.policy if cached is not None else None
        if cached is not None and cached.policy.id == policy_id:
            return cached.policy
        failed = self._failed.get(domain)
        if failed is not None and failed[0] == policy_id and failed[1] > now:
            return cached.policy if cached is not None else None
        try:
            policy = await self._fetch(domain, policy_id)
        except PolicyError as exc:
            log.warning("MTA-STS policy of %s (id %s) not fetched: %s%s", domain, policy_id, exc,
                        "; the cached one stays in force" if cached is not None else "")
            self._failed[domain] = (policy_id, now + _FAILED_FETCH_HOLD)
            return cached.policy if cached is not None else None
        self._failed.pop(domain, None)
        self._cache[domain] = _Cached(policy, self._clock() + policy.max_age)
        return policy

    async def _fetch(self, domain: str, policy_id: str) -> StsPolicy:
        host = f"mta-sts.{domain}"
        answer = await self.resolver.addresses(host)
        if not answer.records:
            raise PolicyError(f"{host} has no address ({answer.error or answer.status})")
        self.fetches += 1
        errors = []
        for address in answer.records[:2]:
            literal = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
            url = f"https://{literal}:{self.port}/.well-known/mta-sts.txt"
            try:
                text = await self._get(url, host)
            except PolicyError as exc:
                errors.append(f"{address}: {exc}")
                continue
            return parse_policy(text, policy_id)
        raise PolicyError("; ".join(errors))

    async def _get(self, url: str, host: str) -> str:
        # SNI and the certificate check use the policy host's name (httpx's sni_hostname extension)
        # while the connection goes to the address our resolver gave.
        headers = {"Host": host if self.port == 443 else f"{host}:{self.port}", "Accept": "text/plain"}
        try:
            async with self._client.stream("GET", url, headers=headers,
                                           extensions={"sni_hostname": host}) as response:
                if response.status_code != 200:
                    # §3.3: redirects are not followed; anything but 200 is no policy.
                    raise PolicyError(f"HTTP {response.status_code}")
                media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if media_type != "text/plain":
                    raise PolicyError(f"media type {media_type or 'missing'!r}, not text/plain")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > _MAX_POLICY_BYTES:
                        raise PolicyError(f"policy larger than {_MAX_POLICY_BYTES} bytes")
        except httpx.HTTPError as exc:
            raise PolicyError(f"{type(exc).__name__}: {exc}") from None
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyError("policy is not UTF-8") from None

    async def close(self) -> None:
        await self._client.aclose()
