"""The tracking listener beside a static file server serving the same pixel, in one run.

Two figures (issue 13): what recording an open or click costs the listener, and how many pixel and redirect
hits per second it takes.

1. In-process: the listener's ASGI app called directly, a recorder running, on a fresh SQLite store. The
   request path (token check, cached lookups, queueing) is timed per call in thread CPU time (median µs);
   recording is timed as the process CPU of the recorder's batches divided by the hits they recorded
   (mean µs per hit: it runs in batches, so a median per hit has no meaning).
2. Over HTTP: `posthouse serve` with every role (API, SMTP, worker, tracking; sandbox delivery) and the peer,
   nginx from Debian with one worker process serving the same 43 bytes from a file (`python -m http.server`
   when nginx is not installed), each loaded by `wrk` for a few seconds with keep-alive connections. The
   listener's pixel and redirect runs go through 50 recipients' tokens; every hit answered is checked to be
   recorded, and the server process's CPU per hit (HTTP, recording and all) is read from /proc.

    .venv/bin/python bench/tracking.py [--seconds 5] [--connections 32] [--postgres URL]

Needs wrk (`bench/install-peers.sh`, or `apt-get install -y wrk nginx-light`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "src"))
from harness import Posthouse, free_port, machine

from posthouse.server.config import load_settings
from posthouse.server.domain.tracking import OPEN, TrackingToken, encode_token
from posthouse.server.runtime import Runtime
from posthouse.server.services.tracking import PIXEL
from posthouse.server.store import open_store_for

RECIPIENTS = 50  # Postmark's limit per message
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
          "Safari/537.36")
APPLE_MAIL = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
MESSAGE = {"From": "app@example.com", "Subject": "Tracked", "HtmlBody": "<p>Hi <a href='x'>there</a></p>",
           "TrackOpens": True, "TrackLinks": "HtmlOnly"}
LINK = "https://example.com/welcome?from=mail"


# -- tokens for a message accepted through the API ------------------------------------------------------------


async def tracked_tokens(database_url: str, message_id: str) -> tuple[list[str], list[str]]:
    """(pixel tokens, link tokens) of every recipient of an accepted message, its link stored."""
    store = open_store_for(database_url)
    await store.open()
    try:
        await store.store_message_links(message_id, [(1, LINK, "HTML")])
        key = bytes.fromhex(await store.secret("tracking-key", os.urandom(32).hex()))
        ids = [int(r[0]) for r in await store.query("SELECT id FROM deliveries WHERE message_id = ?", (message_id,))]
    finally:
        await store.close()
    return ([encode_token(key, TrackingToken(i, OPEN)) for i in ids],
            [encode_token(key, TrackingToken(i, 1)) for i in ids])


def recipients() -> str:
    return ", ".join(f"reader{i}@example.com" for i in range(RECIPIENTS))


# -- 1. in-process: CPU per hit ------------------------------------------------------------------------------


async def in_process(hits: int) -> dict[str, float]:
    folder = tempfile.mkdtemp(prefix="posthouse-bench-tracking-")
    url = f"sqlite:///{folder}/posthouse.db"
    store = open_store_for(url)
    await store.open()
    await store.migrate()
    runtime = Runtime(load_settings({"delivery": "sandbox"}, environ={}), store)
    tokens = await runtime.accounts.bootstrap()
    assert tokens is not None
    app = await runtime.start_tracking()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.app), base_url="http://api") as api:
        answer = await api.post("/email", json={**MESSAGE, "To": recipients()},
                                headers={"X-Postmark-Server-Token": tokens[0]})
        assert answer.status_code == 200, answer.text
    pixels, links = await tracked_tokens(url, answer.json()["MessageID"])
    assert runtime.tracking is not None and runtime.tracking_recorder is not None
    recorder = runtime.tracking_recorder

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    def scope(path: str, user_agent: str) -> dict[str, Any]:
        return {"type": "http", "method": "GET", "path": path, "headers": [(b"user-agent", user_agent.encode())],
                "client": ("203.0.113.7", 50000)}

    request_path: dict[str, list[float]] = {"open": [], "click": []}
    for kind, tokens_, prefix, agent in (("open", pixels, "/o/", APPLE_MAIL), ("click", links, "/c/", CHROME)):
        await app(scope(prefix + tokens_[0], agent), receive, send)  # warm the caches for this kind
        before_cpu, before_recorded = time.process_time(), recorder.recorded
        for n in range(hits):
            request = scope(prefix + tokens_[n % len(tokens_)], agent)
            start = time.thread_time_ns()
            await app(request, receive, send)
            request_path[kind].append((time.thread_time_ns() - start) / 1000)
            if n % 256 == 255:
                await asyncio.sleep(0)  # let the recorder take its batches, as the event loop does under load
        # The recorder keeps only a count: poll it until this kind's hits are all written.
        while recorder.recorded < before_recorded + hits + 1 or not runtime.tracking.queue.empty():  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        request_path[kind + " total"] = [(time.process_time() - before_cpu) * 1e6 / hits]
    statuses = {m["status"] for m in sent if m["type"] == "http.response.start"}
    assert statuses == {200, 302}, statuses
    await runtime.stop()
    await store.close()
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "request path, open (median µs thread CPU)": statistics.median(request_path["open"]),
        "request path, click (median µs thread CPU)": statistics.median(request_path["click"]),
        "open answered and recorded (µs process CPU per hit)": request_path["open total"][0],
        "click answered and recorded (µs process CPU per hit)": request_path["click total"][0],
    }


# -- 2. over HTTP: hits per second ---------------------------------------------------------------------------


def wrk(url: str, seconds: int, connections: int, paths: list[str] | None, user_agent: str) -> tuple[float, int]:
    """(requests per second, requests answered) of one bounded wrk run; non-2xx/3xx answers fail the run."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-H", f"User-Agent: {user_agent}"]
    script = None
    if paths:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)  # noqa: SIM115
        script.write(textwrap.dedent("""\
            local paths = {%s}
            local i = 0
            request = function()
              i = i + 1
              return wrk.format("GET", paths[(i %% #paths) + 1])
            end
            """) % ", ".join(f'"{p}"' for p in paths))
        script.close()
        args += ["-s", script.name]
    out = subprocess.run([*args, url], capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    if script is not None:
        os.unlink(script.name)
    if "Non-2xx or 3xx responses" in out or ("Socket errors" in out and "timeout 0" not in out):
        raise SystemExit(f"wrk saw errors:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rate, total


class Peer:
    """nginx (one worker) serving the pixel file, or `python -m http.server` where nginx is missing."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="posthouse-bench-peer-")
        Path(self.dir, "pixel.gif").write_bytes(PIXEL)
        self.port = free_port()
        nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        if nginx:
            Path(self.dir, "nginx.conf").write_text(textwrap.dedent(f"""\
                daemon off;
                worker_processes 1;
                pid {self.dir}/nginx.pid;
                error_log {self.dir}/error.log;
                events {{ worker_connections 1024; }}
                http {{
                  access_log off;
                  client_body_temp_path {self.dir}; proxy_temp_path {self.dir}; fastcgi_temp_path {self.dir};
                  uwsgi_temp_path {self.dir}; scgi_temp_path {self.dir};
                  types {{ image/gif gif; }}
                  server {{
                    listen 127.0.0.1:{self.port};
                    root {self.dir};
                    location / {{ add_header Cache-Control "no-store"; }}
                  }}
                }}
                """))
            self.name = "nginx (1 worker)"
            self.process = subprocess.Popen([nginx, "-c", f"{self.dir}/nginx.conf", "-p", self.dir],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            self.name = "python -m http.server"
            self.process = subprocess.Popen([sys.executable, "-m", "http.server", str(self.port), "--bind",
                                             "127.0.0.1", "--directory", self.dir],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}/pixel.gif"
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(self.url).content == PIXEL:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def recorded(database_url: str) -> int:
    async def count() -> int:
        store = open_store_for(database_url)
        await store.open()
        try:
            row = await store.query_one("SELECT count(*) FROM tracking_hits")
            return int(row[0]) if row else 0
        finally:
            await store.close()

    return asyncio.run(count())


def over_http(seconds: int, connections: int, postgres: str | None) -> list[tuple[str, float, float | None, str]]:
    tracking_port = free_port()
    server = Posthouse(0, postgres, {"POSTHOUSE_DELIVERY": "sandbox", "POSTHOUSE_TRACKING_HTTP":
                                     f"127.0.0.1:{tracking_port}"})
    peer = Peer()
    try:
        database_url = (server.postgres and (server.postgres[0].rsplit("/", 1)[0] + "/" + server.postgres[1])) or \
            f"sqlite:///{server.data_dir}/posthouse.db"
        answer = httpx.post(f"{server.base_url}/email", json={**MESSAGE, "To": recipients()},
                            headers={"X-Postmark-Server-Token": server.token}, timeout=30)
        assert answer.status_code == 200, answer.text
        pixels, links = asyncio.run(tracked_tokens(database_url, answer.json()["MessageID"]))
        base = f"http://127.0.0.1:{tracking_port}"
        assert httpx.get(f"{base}/c/{links[0]}").headers["location"] == LINK
        peer_rate, _ = wrk(peer.url, seconds, connections, None, APPLE_MAIL)
        rows: list[tuple[str, float, float | None, str]] = []
        answered = 1
        for name, paths, agent in (("pixel", [f"/o/{t}" for t in pixels], APPLE_MAIL),
                                   ("redirect", [f"/c/{t}" for t in links], CHROME)):
            cpu_before = cpu_seconds(server.process.pid)
            rate, total = wrk(base, seconds, connections, paths, agent)
            answered += total
            deadline = time.monotonic() + 60
            while (found := recorded(database_url)) < answered and time.monotonic() < deadline:
                time.sleep(0.2)
            # wrk counts the answers it read before its time was up; requests still in flight then were
            # answered (and recorded) too, so a few more rows than wrk's count is expected, fewer is a loss.
            if found < answered:
                raise SystemExit(f"{found} hits recorded of {answered} answered")
            answered = found
            cpu = cpu_seconds(server.process.pid) - cpu_before
            rows.append((f"{name} hits/s (vs the peer's pixel)", rate, peer_rate, "/s"))
            rows.append((f"{name}: server CPU per hit, answered and recorded", cpu * 1e6 / total, None, "µs"))
        print(f"\nevery hit wrk saw answered was recorded: {answered:,} rows in tracking_hits")
        return rows
    finally:
        peer.stop()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk's open connections")
    parser.add_argument("--hits", type=int, default=20_000, help="hits per kind in the in-process part")
    parser.add_argument("--postgres", help="PostgreSQL server URL for the served part (default: SQLite)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: bench/install-peers.sh (or apt-get install -y wrk nginx-light)")
    print(f"# Tracking listener — {machine()}")
    print(f"\nIn-process, {args.hits:,} hits of each kind, SQLite:\n")
    for name, value in asyncio.run(in_process(args.hits)).items():
        print(f"- {name}: {value:.1f}")
    rows = over_http(args.seconds, args.connections, args.postgres)
    peer_name = "nginx (1 worker)" if shutil.which("nginx") or Path("/usr/sbin/nginx").exists() \
        else "python -m http.server"
    print(f"\n`posthouse serve` (api, smtp, worker, tracking; {'PostgreSQL' if args.postgres else 'SQLite'}), "
          f"wrk -t1 -c{args.connections} -d{args.seconds}s, {RECIPIENTS} recipients' tokens:\n")
    print(f"| scenario | Posthouse | {peer_name}, same pixel | ratio |")
    print("|---|---:|---:|---:|")
    for scenario, ours, peer, unit in rows:
        if peer is None:
            print(f"| {scenario} | {ours:,.1f} {unit} | | |")
        else:
            print(f"| {scenario} | {ours:,.0f} {unit} | {peer:,.0f} {unit} | {ours / peer:.2f} |")


if __name__ == "__main__":
    main()
