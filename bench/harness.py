"""Posthouse as a benchmark subject: `posthouse serve` in relay mode as a separate process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _admin(server_url: str, sql: str) -> None:
    """One statement on a PostgreSQL server (CREATE/DROP DATABASE cannot run in a transaction)."""
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


class Posthouse:
    """`posthouse serve` in relay mode on a fresh data dir; given a PostgreSQL server URL, on a fresh
    database there (dropped at stop)."""

    def __init__(self, relay_port: int, database_url: str | None, extra_env: dict[str, str] | None = None, *,
                 data_dir: str | None = None, token: str | None = None, argv: list[str] | None = None) -> None:
        """A fresh data dir (and database) unless `data_dir` (and then `token`) name an existing one; `argv`
        replaces `python -m posthouse.server.cli serve` (a wrapper that ends by running it)."""
        self.port = free_port()
        self.smtp_port = free_port()
        self.dir = None if data_dir else tempfile.TemporaryDirectory(prefix="posthouse-bench-")
        self.data_dir = data_dir or self.dir.name  # type: ignore[union-attr]
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOUSE_")}
        env.update({"POSTHOUSE_HTTP": f"127.0.0.1:{self.port}", "POSTHOUSE_DATA_DIR": self.data_dir,
                    "POSTHOUSE_DELIVERY": "relay", "POSTHOUSE_RELAY_URL": f"smtp://127.0.0.1:{relay_port}",
                    "POSTHOUSE_SMTP": f"127.0.0.1:{self.smtp_port}", "POSTHOUSE_LOG_LEVEL": "warning",
                    # Not the default 127.0.0.1:8081, which another program on a shared machine may hold.
                    "POSTHOUSE_TRACKING_HTTP": f"127.0.0.1:{free_port()}",
                    **(extra_env or {})})
        self.postgres: tuple[str, str] | None = None
        if database_url and token is None:
            # A fresh database on the given PostgreSQL server for each fresh Posthouse.
            database_url = self._create_database(database_url)
        if database_url:
            env["POSTHOUSE_DATABASE_URL"] = database_url
        self.process = subprocess.Popen(argv or [sys.executable, "-m", "posthouse.server.cli", "serve"], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.token = token or ""
        self.account_token = ""
        deadline = time.monotonic() + 30
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if "Server token:" in line:
                self.token = line.split()[-1]
            if "Account token:" in line:
                self.account_token = line.split()[-1]
            if "Posthouse is listening" in line or time.monotonic() > deadline:
                break
        if not self.token:
            self.stop()
            raise SystemExit("posthouse did not start (or the database was not empty)")
        self.base_url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self.dir is not None:
            self.dir.cleanup()
        self._drop_database()

    def _create_database(self, server_url: str) -> str:
        name = f"posthouse_bench_{os.getpid()}_{int(time.time() * 1000)}"
        _admin(server_url, f'CREATE DATABASE "{name}"')
        self.postgres = (server_url, name)
        return server_url.rsplit("/", 1)[0] + "/" + name

    def _drop_database(self) -> None:
        if self.postgres is not None:
            server_url, name = self.postgres
            _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self.postgres = None

    def rss_mib(self) -> float:
        """Resident memory of the server process now (VmRSS), in MiB."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0


# -- results -------------------------------------------------------------------------------------

Row = tuple[str, float, "float | None", str]  # scenario, Posthouse, peer (same run) or None, unit


def machine() -> str:
    """One line naming the machine the figures come from."""
    import platform

    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({model or platform.machine()}), {memory:.0f} GiB, "
            f"Linux {platform.release()}, Python {platform.python_version()}")


def print_table(title: str, rows: list[Row]) -> None:
    """Markdown: scenario | Posthouse | peer | ratio (Posthouse / peer, or peer / Posthouse for times)."""
    print(f"\n{title}\n")
    print("| scenario | Posthouse | Postfix (same run) | ratio |")
    print("|---|---:|---:|---:|")
    for scenario, ours, peer, unit in rows:
        if peer is None:
            print(f"| {scenario} | {ours:,.1f} {unit} | | |")
            continue
        lower_is_better = unit in ("ms", "MiB")
        ratio = (peer / ours if lower_is_better else ours / peer) if ours and peer else float("nan")
        print(f"| {scenario} | {ours:,.1f} {unit} | {peer:,.1f} {unit} | {ratio:.2f}x |")
