"""Bulk sending end to end: 50,000 recipients in one call, progress while it runs, all delivered to a sink."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from support import ServerProcess, wait_for


def _smtp_sink() -> type:
    """Postfix's smtp-sink counts what it receives, fast enough that the sink is not what is measured."""
    if shutil.which("smtp-sink") is None and not Path("/usr/sbin/smtp-sink").exists():
        if os.environ.get("CI"):
            raise AssertionError("smtp-sink (Debian's postfix) is not installed; .ci/run installs it")
        pytest.skip("smtp-sink is not installed (bench/install-peers.sh installs it)")
    sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
    from postfix_peer import SmtpSink

    return SmtpSink  # type: ignore[no-any-return]


@pytest.mark.slow
def test_fifty_thousand_recipients_in_one_call_all_arrive(tmp_path, database_url: str) -> None:  # type: ignore[no-untyped-def]
    sink_type = _smtp_sink()
    total = 50_000
    body = {"From": "news@example.com", "Subject": "Issue {{n}}", "TextBody": "Hello {{name}}, this is issue {{n}}.",
            "Messages": [{"To": f"reader{i}@example.com", "TemplateModel": {"name": f"reader{i}", "n": i}}
                         for i in range(total)]}
    with sink_type() as sink, ServerProcess(tmp_path / "data", database_url, delivery="relay",
                                            relay_url=f"smtp://127.0.0.1:{sink.port}",
                                            env={"POSTHOUSE_POLL_INTERVAL": "200ms"}) as server:
        with server.client(timeout=60) as client:
            began = time.monotonic()
            answer = client.post("/email/bulk", json=body)
            accepted_in = time.monotonic() - began
            assert answer.status_code == 200, answer.text
            bulk_id = answer.json()["ID"]
            seen: list[float] = []

            def completed() -> bool:
                status = client.get(f"/email/bulk/{bulk_id}").json()
                seen.append(status["PercentageCompleted"])
                return status["Status"] == "Completed"

            wait_for(completed, timeout=240, interval=0.2)
            final = client.get(f"/email/bulk/{bulk_id}").json()
        wait_for(lambda: sink.count_received() >= total, timeout=300, interval=0.5)
        time.sleep(1.0)
        received = sink.count_received()
    assert accepted_in < 10, f"accepting took {accepted_in:.1f} s: it must not wait for the expansion"
    assert (final["TotalMessages"], final["ReleasedCount"], final["FailedCount"]) == (total, total, 0)
    assert any(0 < p < 100 for p in seen), f"no progress seen between 0 and 100: {sorted(set(seen))[:5]}…"
    assert seen == sorted(seen)  # progress only grows
    assert received == total
