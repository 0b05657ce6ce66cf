"""The DKIM signing process (services/signing_process.py): a real child Python process making the signatures
the worker puts on its mail, checked by dkimpy; and what happens while it starts, after it dies, and at stop."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from dkim_support import assert_dkimpy_verifies_all, records_for
from posthouse.server.domain import dkim
from posthouse.server.domain.dkim_keys import DkimAlgorithm, DkimKey, generate_private_key
from posthouse.server.errors import DeliveryError
from posthouse.server.services import signing_process
from posthouse.server.services.clock import Clock
from posthouse.server.services.dkim_keys import StaticSigningKeys
from posthouse.server.services.dkim_signing import MessageSigner
from posthouse.server.services.signing_process import SigningProcess

RSA = DkimKey("shop.example.com", "s1", DkimAlgorithm.RSA_SHA256, generate_private_key(DkimAlgorithm.RSA_SHA256))
ED25519 = DkimKey("shop.example.com", "s2", DkimAlgorithm.ED25519_SHA256,
                  generate_private_key(DkimAlgorithm.ED25519_SHA256))
MESSAGE = b"From: orders@shop.example.com\r\nTo: ann@example.net\r\nSubject: Hi\r\n\r\nHello.\r\n"


class FixedClock(Clock):
    def micros(self) -> int:
        return 1_700_000_000 * 1_000_000


async def running(process: SigningProcess) -> SigningProcess:
    """Start the child and wait (at most 10 s) until it answers."""
    process.start()
    for _ in range(1000):
        if process.running:
            return process
        await asyncio.sleep(0.01)
    raise AssertionError("the signing process did not start within 10 s")


def child_pid(process: SigningProcess) -> int:
    child = process._process  # the test looks at the child itself: it kills it and checks that it is gone
    assert child is not None
    return child.pid


async def test_the_child_makes_the_same_signatures_as_the_loop_and_dkimpy_verifies_them() -> None:
    process = await running(SigningProcess())
    try:
        messages = [MESSAGE.replace(b"Hello.", f"Hello {n}.".encode()) for n in range(50)]
        made = await asyncio.gather(*(process.signature_fields(m, [RSA, ED25519], 1_700_000_000) for m in messages))
        for message, fields in zip(messages, made, strict=True):
            # RSA PKCS#1 v1.5 and Ed25519 are deterministic: the same bytes as signing here, answers in order
            assert fields == dkim.signature_fields(message, [RSA, ED25519], timestamp=1_700_000_000)
            assert_dkimpy_verifies_all(fields + message, records_for(RSA, ED25519))
    finally:
        await process.close()


async def test_a_key_that_cannot_sign_is_a_value_error_and_the_child_goes_on() -> None:
    process = await running(SigningProcess())
    try:
        junk = DkimKey("shop.example.com", "s", DkimAlgorithm.RSA_SHA256, b"junk")
        with pytest.raises(ValueError, match="Unable to load PEM"):
            await process.signature_fields(MESSAGE, [junk], 1)
        assert await process.signature_fields(MESSAGE, [RSA], 1) is not None
        signer = MessageSigner(StaticSigningKeys([junk]), process=process)
        with pytest.raises(DeliveryError, match=r"DKIM signing for shop\.example\.com failed"):
            await signer.sign(MESSAGE, "orders@shop.example.com")
    finally:
        await process.close()


async def test_while_it_starts_and_after_it_died_the_loop_signs_and_the_child_comes_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signing_process, "RESTART_AFTER", 0.2)
    process = SigningProcess()
    signer = MessageSigner(StaticSigningKeys([RSA]), FixedClock(), process=process)
    try:
        # Not started yet: the first message is signed here, and the child is started for the next ones.
        assert not process.running
        first = await signer.sign(MESSAGE, "orders@shop.example.com")
        assert_dkimpy_verifies_all(first, records_for(RSA))
        await running(process)
        pid = child_pid(process)
        # Killed with requests in flight: each of them is signed here instead, none fails.
        in_flight = [asyncio.create_task(signer.sign(MESSAGE + str(n).encode() + b"\r\n", "orders@shop.example.com"))
                     for n in range(20)]
        await asyncio.sleep(0)
        os.kill(pid, signal.SIGKILL)
        for signed in await asyncio.gather(*in_flight):
            assert_dkimpy_verifies_all(signed, records_for(RSA))
        for _ in range(500):
            if not process.running:
                break
            await asyncio.sleep(0.01)
        assert not process.running
        # Before RESTART_AFTER, no new child; after it, the next signature starts one.
        assert await process.signature_fields(MESSAGE, [RSA], 1) is None
        await asyncio.sleep(0.3)
        await signer.sign(MESSAGE + b"again\r\n", "orders@shop.example.com")
        await running(process)
        assert child_pid(process) != pid
    finally:
        await signer.close()


async def test_close_ends_the_child_and_later_signatures_are_made_here() -> None:
    process = await running(SigningProcess())
    pid = child_pid(process)
    signer = MessageSigner(StaticSigningKeys([ED25519]), process=process)
    await signer.close()
    assert not process.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone and reaped
    signed = await signer.sign(MESSAGE, "orders@shop.example.com")
    assert_dkimpy_verifies_all(signed, records_for(ED25519))
    assert not process.running  # closed for good: no child started again
