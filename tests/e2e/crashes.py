"""What each kill -9 of a crash test cost: how long until everything acknowledged before it arrived, and how
many messages arrived again because of it (issue 12: recovery in seconds, duplicates bounded)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from integration.smtp_peers import ReceivedMessage
from support import wait_for

RECOVERY_SECONDS = 30.0  # every acknowledged message arrives within this of the restart (or of the crash)


def message_id_of(data: bytes) -> str | None:
    """The X-PM-Message-Id the server put in the header of a relayed message."""
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"x-pm-message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    return None


@dataclass
class Kill:
    acknowledged: frozenset[str]  # MessageIDs acknowledged before the kill
    arrivals_before: int  # how many messages the relay had received at the kill
    killed_at: float
    restarted_at: float | None = None  # when the process that takes over was started (None: nothing restarted)
    up_after: float | None = None  # seconds from the restart until that process answered /healthz
    recovered_after: float | None = None  # seconds from the restart (or the kill) until all of them arrived
    duplicates: int = 0  # recipients that got a message again, counted from this kill to the next


class KillLog:
    """Kills of one test, in order, against the relay's list of received messages."""

    def __init__(self, received: list[ReceivedMessage]) -> None:
        self.received = received
        self.kills: list[Kill] = []
        self.duplicates_without_kill = 0

    def killed(self, acknowledged: Iterable[str]) -> Kill:
        kill = Kill(frozenset(acknowledged), len(self.received), time.monotonic())
        self.kills.append(kill)
        return kill

    def arrived(self) -> set[str]:
        return {mid for m in list(self.received) if (mid := message_id_of(m.data)) is not None}

    @staticmethod
    def restarting(kill: Kill) -> None:
        """Call just before starting the process that takes over (its start-up counts against the 30 s)."""
        kill.restarted_at = time.monotonic()

    @staticmethod
    def up(kill: Kill) -> None:
        assert kill.restarted_at is not None
        kill.up_after = time.monotonic() - kill.restarted_at

    def wait_recovered(self, kill: Kill) -> None:
        """Wait until every message acknowledged before `kill` arrived: at most RECOVERY_SECONDS after the
        restart, or after the kill itself where nothing restarted (another node takes over)."""
        start = kill.restarted_at if kill.restarted_at is not None else kill.killed_at
        try:
            wait_for(lambda: kill.acknowledged <= self.arrived(),
                     timeout=max(0.0, start + RECOVERY_SECONDS - time.monotonic()), interval=0.05)
        except AssertionError:
            missing = len(kill.acknowledged - self.arrived())
            since = "the restart" if kill.restarted_at is not None else "the kill"
            raise AssertionError(f"{missing} of {len(kill.acknowledged)} messages acknowledged before kill "
                                 f"{self.kills.index(kill) + 1} did not arrive within {RECOVERY_SECONDS:.0f} s "
                                 f"of {since}") from None
        kill.recovered_after = time.monotonic() - start

    def count_duplicates(self) -> None:
        """Attribute each repeated arrival of a (MessageID, recipient) to the last kill before it arrived."""
        seen: set[tuple[str, str]] = set()
        for kill in self.kills:
            kill.duplicates = 0
        self.duplicates_without_kill = 0
        boundaries = [k.arrivals_before for k in self.kills]
        for index, message in enumerate(list(self.received)):
            mid = message_id_of(message.data) or "?"
            for rcpt in message.rcpt_tos:
                if (mid, rcpt) not in seen:
                    seen.add((mid, rcpt))
                    continue
                owner = [k for k, start in zip(self.kills, boundaries, strict=True) if start <= index]
                if owner:
                    owner[-1].duplicates += 1
                else:
                    self.duplicates_without_kill += 1

    def report(self) -> str:
        lines = []
        for n, kill in enumerate(self.kills, 1):
            after = f"{kill.recovered_after:.1f} s" if kill.recovered_after is not None else "not measured"
            since = f"the restart (up after {kill.up_after or 0:.1f} s)" if kill.restarted_at is not None \
                else "the kill"
            lines.append(f"kill {n}: {len(kill.acknowledged)} acknowledged before it, all arrived {after} after "
                         f"{since}; {kill.duplicates} arrived again")
        return "\n".join(lines)
