"""Bad tokens cannot grow the process: the token cache is bounded (LRU) and forgets after its TTL.

The threat: every lookup, failed ones included, was remembered for ever; 500,000 random bad tokens
grew the server by 112 MB, and nothing but a restart gave it back.
"""

from __future__ import annotations

import uuid

from posthouse.server.errors import AuthenticationError
from posthouse.server.services.accounts import TOKEN_CACHE_SIZE, AccountService, TtlCache
from posthouse.server.services.clock import Clock
from posthouse.server.store.base import Store


async def test_random_bad_tokens_do_not_grow_the_cache_past_its_size(store: Store) -> None:
    accounts = AccountService(store, Clock(), token_cache_size=100)
    server_token, account_token = await accounts.bootstrap() or ("", "")
    for _ in range(500):
        try:
            await accounts.authenticate_server(str(uuid.uuid4()))
        except AuthenticationError:
            pass
        else:
            raise AssertionError("a random token authenticated")
    assert accounts.cached_lookups == 100
    # The real tokens still work (looked up again once their entries were pushed out).
    assert (await accounts.authenticate_server(server_token)).name == "default"
    await accounts.authenticate_account(account_token)
    assert accounts.cached_lookups == 100


async def test_the_default_bound_holds_through_the_api(api) -> None:  # type: ignore[no-untyped-def]
    accounts = api.runtime.accounts
    for _ in range(300):
        response = await api.client.get("/server", headers={"X-Postmark-Server-Token": str(uuid.uuid4())})
        assert response.status_code == 401
    assert accounts.cached_lookups <= TOKEN_CACHE_SIZE
    assert accounts.cached_lookups == 300  # every failed lookup is remembered for a while, so a retry is cheap


def test_least_recently_used_entries_go_first_and_entries_expire() -> None:
    now = [0.0]
    cache = TtlCache(3, ttl=5.0, now=lambda: now[0])
    for key in "abc":
        cache.put(key, key.upper())
    assert cache.get("a") == (True, "A")  # now the most recently used
    cache.put("d", "D")
    assert [cache.get(k)[0] for k in "abcd"] == [True, False, True, True]
    assert len(cache) == 3
    now[0] = 5.0
    assert cache.get("a") == (False, None)  # expired entries are dropped when met
    assert len(cache) == 2
    cache.put("e", None)  # a failed lookup is cached as a value, not as a miss
    assert cache.get("e") == (True, None)
    cache.clear()
    assert len(cache) == 0
