"""The dashboard's pages at scale: server time of the activity list (with and without filters) and of a
message page, with N messages stored (SQLite), beside the same searches through the API.

1. `posthouse serve` with only the `api` role (nothing is delivered, so the messages stay put) on a fresh
   SQLite data dir takes `--messages` messages through the bulk path, `POST /email/batch` (500 a call, 4
   clients; the loader of bench/queue_scale.py), stopping early at `--max-load-seconds`.
2. `posthouse users create` makes an operator; the bench signs in as a browser does (form, cookie).
3. Each page is requested `--repeats` times; the median of its `Server-Timing: app;dur=` (the dashboard's
   time from the request's arrival to its response, header and body rendered) and of the client's wall time
   on loopback are reported. The peer, where one exists, is the same search through the API,
   `GET /messages/outbound` with the same filter and count=50 (client wall time: the API sends no
   Server-Timing), which also counts every match (TotalCount) where the page reads one row past its 50.

Target (issue 15): every page < 100 ms server time at 1M messages.

Run: `.venv/bin/python bench/dashboard.py --messages 1000000` (default 100,000 for a quick run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from harness import Posthouse, free_port, machine
from queue_scale import message

TARGET_MS = 100.0
PASSWORD = "a bench operator passphrase"
# (label, the page's query, the API's query or None where the API has no such search)
ACTIVITY = [
    ("no filter", {}, {}),
    ("recipient", {"recipient": "user4242@example.com"}, {"recipient": "user4242@example.com"}),
    ("tag", {"tag": "tag-17"}, {"tag": "tag-17"}),
    ("status=queued", {"status": "queued"}, {"status": "queued"}),
    ("subject", {"subject": "order 99999"}, {"subject": "order 99999"}),
    ("date range (one day)", {"fromdate": "DAY", "todate": "DAY"}, {"fromdate": "DAY", "todate": "DAY"}),
    ("tag + status + subject", {"tag": "tag-17", "status": "queued", "subject": "order 1"},
     {"tag": "tag-17", "status": "queued", "subject": "order 1"}),
]

# The statistics and management pages, each once: the statistics read the day's counters of every message
# loaded (one day, 100 tags); the other lists hold what the load made (one server, its streams; no bounces,
# suppressions, webhooks, templates, domains or inbound mail).
OTHER_PAGES = [
    ("statistics (one day)", "/ui/servers/1/streams/outbound/stats"),
    ("bounces", "/ui/servers/1/streams/outbound/bounces"),
    ("suppressions", "/ui/servers/1/streams/outbound/suppressions"),
    ("webhooks", "/ui/servers/1/streams/outbound/webhooks"),
    ("inbound mail", "/ui/servers/1/streams/inbound/inbound"),
    ("servers", "/ui/servers"),
    ("server settings", "/ui/servers/1/settings"),
    ("streams", "/ui/servers/1/streams"),
    ("templates", "/ui/servers/1/templates"),
    ("sending domains", "/ui/domains"),
]


async def load(server: Posthouse, total: int, max_seconds: float, clients: int = 4, per_call: int = 500) -> int:
    """Messages accepted through /email/batch, stopping at `max_seconds`; how many were."""
    headers = {"X-Postmark-Server-Token": server.token}
    starts = iter(range(0, total, per_call))
    deadline = time.monotonic() + max_seconds
    done = [0]

    async def client_loop(client: httpx.AsyncClient) -> None:
        for start in starts:
            if time.monotonic() > deadline:
                return
            body = [message(i) for i in range(start, min(start + per_call, total))]
            response = await client.post("/email/batch", json=body)
            if response.status_code != 200 or any(r["ErrorCode"] for r in response.json()):
                raise SystemExit(f"load failed: {response.status_code} {response.text[:200]}")
            done[0] += len(body)
            if done[0] % 100_000 < per_call:
                print(f"  loaded {done[0]:,}", flush=True)

    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=300) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
    return done[0]


def create_user(data_dir: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOUSE_")}
    env["POSTHOUSE_DATA_DIR"] = data_dir
    done = subprocess.run([sys.executable, "-m", "posthouse.server.cli", "users", "create", "bench@example.com",
                           "--password-stdin"], input=PASSWORD + "\n", capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    if done.returncode != 0:
        raise SystemExit(f"users create failed: {done.stderr}")


def sign_in(client: httpx.Client) -> None:
    form = client.get("/ui/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    if token is None:
        raise SystemExit("no sign-in form")
    answer = client.post("/ui/login", data={"csrf_token": token.group(1), "email": "bench@example.com",
                                            "password": PASSWORD, "next": "/ui/"})
    if answer.status_code != 303:
        raise SystemExit(f"sign-in failed: {answer.status_code}")


def timed(client: httpx.Client, path: str, params: dict[str, str], repeats: int,
          headers: dict[str, str] | None = None) -> tuple[float | None, float, httpx.Response]:
    """(median Server-Timing ms or None, median wall ms, the last response)."""
    server_ms: list[float] = []
    wall_ms: list[float] = []
    response = client.get(path, params=params, headers=headers)  # warm: the first read of cold pages
    for _ in range(repeats):
        began = time.perf_counter()
        response = client.get(path, params=params, headers=headers)
        wall_ms.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"GET {path} {params}: {response.status_code} {response.text[:300]}")
        timing = response.headers.get("server-timing", "")
        if timing.startswith("app;dur="):
            server_ms.append(float(timing.removeprefix("app;dur=")))
    return (statistics.median(server_ms) if server_ms else None), statistics.median(wall_ms), response


def measure(messages: int, repeats: int, max_load_seconds: float) -> None:
    server = Posthouse(free_port(), None, {"POSTHOUSE_ROLES": "api"})
    try:
        began = time.monotonic()
        loaded = asyncio.run(load(server, messages, max_load_seconds))
        seconds = time.monotonic() - began
        print(f"loaded {loaded:,} messages through POST /email/batch in {seconds:.0f} s "
              f"({loaded / seconds:,.0f}/s)", flush=True)
        create_user(server.data_dir)
        day = time.strftime("%Y-%m-%d", time.gmtime())
        api_headers = {"X-Postmark-Server-Token": server.token, "Accept": "application/json"}
        rows: list[tuple[str, float | None, float, float | None]] = []
        with httpx.Client(base_url=server.base_url, timeout=120) as client:
            sign_in(client)
            for label, page_query, api_query in ACTIVITY:
                page_query = {k: (day if v == "DAY" else v) for k, v in page_query.items()}
                server_ms, wall_ms, page = timed(client, "/ui/servers/1/streams/outbound/activity", page_query,
                                                 repeats)
                shown = page.text.count('<td class="subject">')
                peer = None
                if api_query is not None:
                    api_query = {k: (day if v == "DAY" else v) for k, v in api_query.items()}
                    _, peer, answer = timed(client, "/messages/outbound",
                                            {"count": "50", "offset": "0", **api_query}, repeats, api_headers)
                    label += f" ({shown} shown; API TotalCount {answer.json()['TotalCount']:,})"
                rows.append((f"activity: {label}", server_ms, wall_ms, peer))
            listed = client.get("/messages/outbound", params={"count": "1", "offset": "0", "recipient":
                                                              "user4242@example.com"}, headers=api_headers).json()
            message_id = listed["Messages"][0]["MessageID"]
            page_path, api_path = f"/ui/servers/1/messages/{message_id}", f"/messages/outbound/{message_id}"
            for label, path, peer_path in (
                    ("message page", page_path, f"{api_path}/details"),
                    ("message HTML frame", f"{page_path}/html", None),
                    ("message raw source", f"{page_path}/raw", f"{api_path}/dump")):
                server_ms, wall_ms, _ = timed(client, path, {}, repeats)
                peer = timed(client, peer_path, {}, repeats, api_headers)[1] if peer_path else None
                rows.append((label, server_ms, wall_ms, peer))
            inbox_ms, inbox_wall, _ = timed(client, "/ui/servers/1/streams/outbound/inbox", {}, repeats)
            rows.append(("sandbox inbox (first page)", inbox_ms, inbox_wall, None))
            for label, path in OTHER_PAGES:
                server_ms, wall_ms, _ = timed(client, path, {}, repeats)
                rows.append((label, server_ms, wall_ms, None))
    finally:
        server.stop()
    print(f"\nDashboard pages at {loaded:,} messages, SQLite (synchronous=FULL), median of {repeats} requests; "
          f"{machine()}")
    print(f"target: every page < {TARGET_MS:.0f} ms server time\n")
    print(f"| page | server time (Server-Timing) | wall, loopback | API peer, wall | < {TARGET_MS:.0f} ms |")
    print("|---|---:|---:|---:|---|")
    for label, server_ms, wall_ms, peer in rows:
        verdict = "yes" if server_ms is not None and server_ms < TARGET_MS else "NO"
        print(f"| {label} | {_ms(server_ms)} | {_ms(wall_ms)} | {_ms(peer)} | {verdict} |")
    print("\nAPI peers: the same filter through GET /messages/outbound?count=50 (it also counts every match), "
          "/details for the message page, /dump for the raw source.")


def _ms(value: Any) -> str:
    return "—" if value is None else f"{value:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=15, help="requests per page (median)")
    parser.add_argument("--max-load-seconds", type=float, default=600, help="stop loading after this long")
    args = parser.parse_args()
    measure(args.messages, args.repeats, args.max_load_seconds)


if __name__ == "__main__":
    main()
