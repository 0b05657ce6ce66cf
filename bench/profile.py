"""Where the CPU goes: py-spy samples `posthouse serve` under the HTTP batch and the SMTP load.

Prints, per scenario, the share of samples by the innermost Posthouse or library function (self time)
and by our own modules (inclusive). Run: `.venv/bin/python bench/profile.py` (needs root or
ptrace permission for py-spy).
"""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import relay_throughput
from harness import Posthouse
from postfix_peer import SmtpSink, run_smtp_source


def record(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    py_spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen([str(py_spy), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250",
                             "--format", "raw", "--nonblocking", "--threads", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize(raw: Path, top: int = 12) -> None:
    self_time: collections.Counter[str] = collections.Counter()
    modules: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        self_time[frames[-1].split(" (")[0] + " (" + frames[-1].split(" (")[-1].split(":")[0].rsplit("/", 1)[-1]] += n
        seen = set()
        for frame in frames:
            if "posthouse/" in frame:
                module = frame.split("posthouse/", 1)[1].split(":")[0]
                if module not in seen:
                    seen.add(module)
                    modules[module] += n
    print(f"  {total} samples; self time by function:")
    for name, n in self_time.most_common(top):
        print(f"    {100 * n / total:5.1f}%  {name}")
    print("  inclusive by Posthouse module:")
    for name, n in modules.most_common(top):
        print(f"    {100 * n / total:5.1f}%  {name}")


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        out = Path(work)
        print("HTTP batch, 40,000 messages (4 clients × 500 per call), relay to smtp-sink:")
        with SmtpSink() as sink:
            server = Posthouse(sink.port, None)
            try:
                spy = record(server.process.pid, 12, out / "http.txt")
                asyncio.run(relay_throughput.batch_round(server, sink, 40000))
                spy.wait(60)
            finally:
                server.stop()
        summarize(out / "http.txt")
        print("\nSMTP, smtp-source -s 20 -l 1024, 20,000 messages, relay to smtp-sink:")
        with SmtpSink() as sink:
            server = Posthouse(sink.port, None, {"POSTHOUSE_SMTP_TRUSTED_NETWORKS": "127.0.0.1/32=default"})
            try:
                spy = record(server.process.pid, 8, out / "smtp.txt")
                load = threading.Thread(target=run_smtp_source, args=(server.smtp_port, 20000))
                load.start()
                load.join()
                spy.wait(60)
            finally:
                server.stop()
        summarize(out / "smtp.txt")
    print(f"\n({os.cpu_count()} cores; samples include the SQLite writer and reader threads)")


if __name__ == "__main__":
    main()
