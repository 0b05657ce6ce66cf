"""Posthouse as a benchmark subject: `posthouse serve` in relay mode as a separate process."""

from __future__ import annotations

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


class Posthouse:
    """`posthouse serve` in relay mode on a fresh data dir (or a fresh PostgreSQL database)."""

    def __init__(self, relay_port: int, database_url: str | None, extra_env: dict[str, str] | None = None, *,
                 data_dir: str | None = None, token: str | None = None) -> None:
        """A fresh data dir (and database) unless `data_dir` (and then `token`) name an existing one."""
        self.port = free_port()
        self.smtp_port = free_port()
        self.dir = None if data_dir else tempfile.TemporaryDirectory(prefix="posthouse-bench-")
        self.data_dir = data_dir or self.dir.name  # type: ignore[union-attr]
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOUSE_")}
        env.update({"POSTHOUSE_HTTP": f"127.0.0.1:{self.port}", "POSTHOUSE_DATA_DIR": self.data_dir,
                    "POSTHOUSE_DELIVERY": "relay", "POSTHOUSE_RELAY_URL": f"smtp://127.0.0.1:{relay_port}",
                    "POSTHOUSE_SMTP": f"127.0.0.1:{self.smtp_port}", "POSTHOUSE_LOG_LEVEL": "warning",
                    **(extra_env or {})})
        if database_url:
            env["POSTHOUSE_DATABASE_URL"] = database_url
        self.process = subprocess.Popen([sys.executable, "-m", "posthouse.server.cli", "serve"], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.token = token or ""
        deadline = time.monotonic() + 30
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if "Server token:" in line:
                self.token = line.split()[-1]
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

    def rss_mib(self) -> float:
        """Resident memory of the server process now (VmRSS), in MiB."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0
