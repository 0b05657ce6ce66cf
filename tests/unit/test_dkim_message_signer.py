"""The worker's signer (services/dkim_signing.py): which keys sign, reuse of one signature for copies of the
same bytes, large messages, and failures that keep a message from going out unsigned."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from dkim_support import assert_dkimpy_verifies_all, records_for, signature_count
from posthouse.server.domain import dkim
from posthouse.server.domain.dkim_keys import DkimAlgorithm, DkimKey, generate_private_key
from posthouse.server.errors import DeliveryError, StoreError
from posthouse.server.services import dkim_signing
from posthouse.server.services.clock import Clock
from posthouse.server.services.dkim_keys import StaticSigningKeys
from posthouse.server.services.dkim_signing import MessageSigner

RSA = DkimKey("shop.example.com", "s1", DkimAlgorithm.RSA_SHA256, generate_private_key(DkimAlgorithm.RSA_SHA256))
ED25519 = DkimKey("shop.example.com", "s2", DkimAlgorithm.ED25519_SHA256,
                  generate_private_key(DkimAlgorithm.ED25519_SHA256))
MESSAGE = b"From: orders@shop.example.com\r\nTo: ann@example.net\r\nSubject: Hi\r\n\r\nHello.\r\n"


class FakeClock(Clock):
    def __init__(self, seconds: int) -> None:
        self.seconds = seconds

    def micros(self) -> int:
        return self.seconds * 1_000_000


class CountingKeys(StaticSigningKeys):
    def __init__(self, keys: Sequence[DkimKey]) -> None:
        super().__init__(keys)
        self.asked: list[str] = []

    async def for_domain(self, domain: str) -> Sequence[DkimKey]:
        self.asked.append(domain)
        return await super().for_domain(domain)


async def test_the_from_domain_picks_the_keys_and_no_key_sends_the_bytes_as_they_are() -> None:
    keys = CountingKeys([RSA, ED25519])
    signer = MessageSigner(keys, FakeClock(1_700_000_000))
    signed = await signer.sign(MESSAGE, "Orders@SHOP.example.com")
    assert signature_count(signed) == 2 and signed.endswith(MESSAGE)
    assert b"t=1700000000;" in signed  # the signing time is the clock's
    other = b"From: a@other.example\r\n\r\nbody\n"  # a bare LF: left alone too, unsigned mail is not touched
    assert await signer.sign(other, "a@other.example") is other
    assert await signer.sign(other, "") is other  # no From address (a null sender): nothing to look up
    assert keys.asked == ["shop.example.com", "other.example"]


async def test_copies_of_the_same_bytes_share_one_signature_and_other_bytes_get_their_own() -> None:
    clock = FakeClock(1_700_000_000)
    signer = MessageSigner(StaticSigningKeys([RSA]), clock)
    first = await signer.sign(MESSAGE, "orders@shop.example.com", shared_as="m-1")
    clock.seconds += 5
    again = await signer.sign(MESSAGE, "orders@shop.example.com", shared_as="m-1")
    assert again == first  # reused, t= included
    personal = MESSAGE.replace(b"Hello.", b"Hello Ann.")
    own = await signer.sign(personal, "orders@shop.example.com")
    assert b"t=1700000005;" in own and own.endswith(personal)
    assert_dkimpy_verifies_all(own, records_for(RSA))
    clock.seconds += 1
    assert b"t=1700000006;" in await signer.sign(MESSAGE, "orders@shop.example.com", shared_as="m-2")


async def test_a_message_over_a_megabyte_is_signed_on_a_thread_and_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[object] = []
    real = dkim_signing.asyncio.to_thread

    async def to_thread(*args: object, **kwargs: object) -> object:
        threads.append(args[0])
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dkim_signing.asyncio, "to_thread", to_thread)
    large = MESSAGE + b"A line of the body,  with  spaces \t\r\n" * 40_000
    assert len(large) > dkim_signing.THREAD_ABOVE
    signer = MessageSigner(StaticSigningKeys([RSA, ED25519]))
    signed = await signer.sign(large, "orders@shop.example.com")
    assert threads == [dkim.signature_fields]
    assert_dkimpy_verifies_all(signed, records_for(RSA, ED25519))
    assert await signer.sign(MESSAGE, "orders@shop.example.com") and threads == [dkim.signature_fields]


class BrokenKeys:
    def __init__(self, error: Exception | None = None, keys: Sequence[DkimKey] = ()) -> None:
        self.error, self.keys = error, keys

    async def for_domain(self, domain: str) -> Sequence[DkimKey]:
        if self.error is not None:
            raise self.error
        return self.keys


@pytest.mark.parametrize(("keys", "message"), [
    (BrokenKeys(StoreError("database is locked")), "the DKIM keys of shop.example.com could not be read: database"),
    (BrokenKeys(keys=[DkimKey("shop.example.com", "s", DkimAlgorithm.RSA_SHA256, b"junk")]),
     "DKIM signing for shop.example.com failed"),
])
async def test_what_cannot_be_signed_is_a_delivery_error_to_retry(keys: BrokenKeys, message: str) -> None:
    with pytest.raises(DeliveryError, match=message):
        await MessageSigner(keys).sign(MESSAGE, "orders@shop.example.com")
