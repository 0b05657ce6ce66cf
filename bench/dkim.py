"""DKIM signing cost per message: Posthouse's signer (`domain/dkim.py`, on `cryptography`) beside dkimpy on
the same messages, and where signing should run (inline on the event loop or on a thread).

Messages are built by Posthouse's MIME builder, as the worker sends them: a small transactional message
(text and HTML, about 3 KB) and a 100 KB newsletter. Both signers sign relaxed/relaxed with the same header
list, RSA-2048 (rsa-sha256) and Ed25519 (ed25519-sha256, dkimpy through PyNaCl); every signature is checked
by dkimpy before timing. The signers take turns round by round (A B A B …), so a noisy moment on the shared
machine falls on both alike; the figure is the median over rounds of the mean per message.

Then, for the choice of where the worker signs (services/dkim_signing.py): an event loop with 64 deliveries
in flight as the worker has them, each some Python work standing for the worker's own cost and a signature,
inline, handed to a thread or to the signing process, in messages/s and CPU per message; and how long one
signature takes (and so holds the loop, inline) as the message grows to 10 MB.

    .venv/bin/python bench/dkim.py [--messages 200] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

# This file is bench/dkim.py: with bench/ first on the path (as when run as a script), `import dkim` would
# import this file instead of dkimpy's package (and mypy would read this file for it).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
dkimpy: Any = importlib.import_module("dkim")

sys.path.insert(0, str(_HERE))
sys.path.insert(0, str(Path(__file__).parents[1] / "src"))
from harness import machine  # noqa: E402

from posthouse.server.domain import dkim  # noqa: E402
from posthouse.server.domain.addresses import Address  # noqa: E402
from posthouse.server.domain.dkim_keys import DkimAlgorithm, DkimKey, generate_private_key, txt_record  # noqa: E402
from posthouse.server.domain.mime import MessageContent, build_message  # noqa: E402
from posthouse.server.services.signing_process import SigningProcess  # noqa: E402

NOW = datetime(2030, 1, 1, tzinfo=UTC)
DOMAIN = "shop.example.com"
STAMP = int(time.time())  # dkimpy refuses a t= in the future
WORKER_MICROS = 150.0  # the worker's CPU per delivery without DKIM: claim-and-deliver ran at 6,600-7,300 msg/s


def small_message() -> bytes:
    text = ("Hi Ann,\n\nThanks for your order #48213. It ships tomorrow from our Lyon warehouse.\n\n"
            "  Item                     Qty   Price\n  Walnut desk organiser      1   39.00\n\n"
            "Track it at https://shop.example.com/orders/48213\n\n-- \nThe Shop team\n") * 3
    html = ("<html><body><p>Hi Ann,</p><p>Thanks for your order <b>#48213</b>. It ships tomorrow.</p>"
            "<table><tr><td>Walnut desk organiser</td><td>1</td><td>39.00</td></tr></table>"
            '<p><a href="https://shop.example.com/orders/48213">Track it</a></p></body></html>\n') * 3
    return build_message(MessageContent(
        message_id="<c2c1e1b0-48213@shop.example.com>", date=NOW, sender=Address("orders@shop.example.com", "The Shop"),
        to=[Address("ann@example.net", "Ann Example")], reply_to=[Address("help@shop.example.com")],
        subject="Your order #48213", text_body=text, html_body=html,
        headers=[("List-Unsubscribe", "<https://shop.example.com/u/48213>"),
                 ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]))


def large_message(size: int = 100_000) -> bytes:
    row = ('<tr><td class="item" style="padding: 4px 8px">Walnut desk organiser, hand finished — in stock</td>'
           '<td>  39.00  </td><td><a href="https://shop.example.com/p/1?utm_source=mail">Buy</a></td></tr>\n')
    html = "<html><body><table>\n" + row * (size * 2 // 3 // len(row)) + "</table></body></html>\n"
    text = "Walnut desk organiser, hand finished — in stock    39.00   https://shop.example.com/p/1\n"
    text *= size // 3 // len(text)
    return build_message(MessageContent(
        message_id="<weekly-2030-01@shop.example.com>", date=NOW, sender=Address("news@shop.example.com", "The Shop"),
        to=[Address("ann@example.net")], subject="This week at the Shop", text_body=text, html_body=html))


def dkimpy_key(key: DkimKey) -> bytes:
    """The private key as dkimpy takes it: PKCS#1 PEM for RSA, base64 of the raw 32-byte seed for Ed25519."""
    private = serialization.load_pem_private_key(key.private_key_pem, password=None)
    if key.algorithm is DkimAlgorithm.RSA_SHA256:
        return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption())
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    return base64.b64encode(raw)


def check(signed: bytes, key: DkimKey) -> None:
    record = txt_record(key.algorithm, key.private_key_pem).encode()
    if not dkimpy.verify(signed, dnsfunc=lambda name, timeout=5: record):
        raise SystemExit(f"a {key.algorithm.value} signature does not verify")


def time_round(call: Callable[[], object], calls: int) -> float:
    began = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - began) / calls * 1e6


def medians(calls_of: list[tuple[Callable[[], object], int]], rounds: int) -> list[float]:
    """Medians of rounds that take turns (A B A B …), each function called its own number of times a round."""
    samples: list[list[float]] = [[] for _ in calls_of]
    for _ in range(rounds):
        for sample, (call, calls) in zip(samples, calls_of, strict=True):
            sample.append(time_round(call, calls))
    return [statistics.median(sample) for sample in samples]


def compare(messages: dict[str, bytes], keys: dict[DkimAlgorithm, DkimKey], calls: int, rounds: int) -> None:
    print("| message | algorithm | Posthouse µs | dkimpy µs | dkimpy / Posthouse |\n|---|---|---:|---:|---:|")
    for label, message in messages.items():
        for algorithm, key in keys.items():
            peer_key = dkimpy_key(key)
            # dkimpy gets the header list Posthouse signs (plus From once more), with the same canonicalisation.
            fields, _ = dkim.split_message(message)
            names = [f.partition(b":")[0].strip().lower() for f in fields]
            include = [n for n in names if n.decode() in dkim.SIGNED_HEADERS] + [b"from"]

            def ours(message: bytes = message, key: DkimKey = key) -> bytes:
                return dkim.sign(message, [key], timestamp=STAMP)

            def peer(message: bytes = message, peer_key: bytes = peer_key, key: DkimKey = key,
                     include: list[bytes] = include) -> bytes:
                return dkimpy.sign(message, b"ph2030", DOMAIN.encode(), peer_key,  # type: ignore[no-any-return]
                                   canonicalize=(b"relaxed", b"relaxed"), include_headers=include,
                                   signature_algorithm=key.algorithm.value.encode()) + message

            check(ours(), key)
            check(peer(), key)
            # dkimpy's RSA is slow: fewer calls per round keep the run short, the figure is per message.
            peer_calls = max(5, calls // 20) if algorithm is DkimAlgorithm.RSA_SHA256 else calls
            mine, theirs = medians([(ours, calls), (peer, peer_calls)], rounds)
            print(f"| {label} | {algorithm.value} | {mine:,.0f} | {theirs:,.0f} | {theirs / mine:,.1f}× |")


def other_work(micros: float = WORKER_MICROS) -> None:
    """Stands for the rest of what the worker spends on a delivery, in Python, holding the GIL."""
    end = time.perf_counter() + micros / 1e6
    while time.perf_counter() < end:
        pass


def worker_loop(message: bytes, key: DkimKey | None, mode: str, messages: int, rounds: int) -> tuple[float, float]:
    """Messages/s and CPU µs per message of an event loop with 64 deliveries in flight, each `other_work`
    and then signed `mode` ("inline"; "thread": `asyncio.to_thread`; "process": the worker's signing process,
    services/signing_process.py, whose CPU is not this process's); medians of rounds."""
    signing = SigningProcess() if mode == "process" else None

    async def one(semaphore: asyncio.Semaphore) -> None:
        async with semaphore:
            other_work()
            if key is not None and mode == "inline":
                dkim.signature_fields(message, [key], timestamp=STAMP)
            elif key is not None and signing is not None:
                if await signing.signature_fields(message, [key], STAMP) is None:
                    raise SystemExit("the signing process did not answer")
            elif key is not None:
                await asyncio.to_thread(dkim.signature_fields, message, [key], timestamp=STAMP)
            await asyncio.sleep(0)  # the send: the loop runs others meanwhile

    async def run() -> tuple[float, float]:
        semaphore = asyncio.Semaphore(64)
        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(semaphore) for _ in range(messages)))
        return messages / (time.perf_counter() - wall), (time.process_time() - cpu) / messages * 1e6

    async def main() -> tuple[float, float]:
        if signing is not None:
            signing.start()
            for _ in range(500):  # bounded: 5 s for the child to start
                if signing.running:
                    break
                await asyncio.sleep(0.01)
        try:
            await run()
            results = [await run() for _ in range(rounds)]
        finally:
            if signing is not None:
                await signing.close()
        return statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)

    return asyncio.run(main())


def loop_stall(message: bytes, key: DkimKey, *, threaded: bool) -> float:
    """Seconds of the longest gap between the runs of a 1 ms ticker task while `message` is signed."""
    async def main() -> float:
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last - 0.001)
                last = now

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.005)
        gaps.clear()
        if threaded:
            await asyncio.to_thread(dkim.signature_fields, message, [key], timestamp=STAMP)
        else:
            dkim.signature_fields(message, [key], timestamp=STAMP)
        await asyncio.sleep(0.002)
        done.set()
        await task
        return max(gaps)

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200, help="messages signed per round (Posthouse)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (at least 5)")
    args = parser.parse_args()
    rounds = max(args.rounds, 5)
    keys = {a: DkimKey(DOMAIN, "ph2030", a, generate_private_key(a)) for a in DkimAlgorithm}
    small, large = small_message(), large_message()
    print(f"Machine: {machine()}")
    print(f"Messages: small {len(small) / 1024:.1f} KB, large {len(large) / 1024:.1f} KB (Posthouse's MIME builder); "
          f"{args.messages} messages a round for Posthouse, {rounds} rounds, medians\n")
    compare({"small": small, "100 KB": large}, keys, args.messages, rounds)

    print(f"\nWhere the worker signs: an event loop with 64 deliveries in flight, each {WORKER_MICROS:.0f} µs of other "
          "Python work (the worker's own cost per delivery, BENCHMARKS.md claim-and-deliver) and a signature of the "
          "small message, inline, through `asyncio.to_thread`, or in the signing process (CPU: this process's only):\n")
    print("| signing | messages/s | CPU µs per message |\n|---|---:|---:|")
    rate, cpu = worker_loop(small, None, "inline", args.messages * 10, rounds)
    print(f"| none | {rate:,.0f} | {cpu:,.0f} |")
    for algorithm, key in keys.items():
        for mode in ("inline", "thread", "process"):
            rate, cpu = worker_loop(small, key, mode, args.messages * 10, rounds)
            print(f"| {algorithm.value}, {mode} | {rate:,.0f} | {cpu:,.0f} |")

    print("\nOne large message (RSA-2048): the signature's time, and the longest the event loop could not run a "
          "1 ms ticker while it was signed inline or on a thread (medians of rounds):\n")
    print("| message | signing ms | longest stall inline, ms | longest stall via to_thread, ms |\n|---|---:|---:|---:|")
    rsa = keys[DkimAlgorithm.RSA_SHA256]
    for size in (100_000, 1_000_000, 10_000_000):
        message = large_message(size)
        calls = max(2, args.messages * 100_000 // size // 4)
        def sign_it(message: bytes = message) -> bytes:
            return dkim.signature_fields(message, [rsa], timestamp=STAMP)

        (micros,) = medians([(sign_it, calls)], rounds)
        inline = statistics.median(loop_stall(message, rsa, threaded=False) for _ in range(rounds))
        threaded = statistics.median(loop_stall(message, rsa, threaded=True) for _ in range(rounds))
        print(f"| {len(message) / 1e6:.1f} MB | {micros / 1000:,.2f} | {inline * 1000:,.2f} | {threaded * 1000:,.2f} |")


if __name__ == "__main__":
    main()
