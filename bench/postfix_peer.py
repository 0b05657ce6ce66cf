"""Postfix as the named benchmark peer: its smtp-sink and smtp-source tools, and a private relay instance on loopback.

Importable by the side-by-side benchmarks (they share `SmtpSink` as the final hop and `run_smtp_source`
as the load generator), and runnable alone for a Postfix-only figure:

    .venv/bin/python bench/postfix_peer.py --messages 5000 --rounds 3

Everything listens on 127.0.0.1 only. The private instance lives in its own temporary directory
(config_directory, queue_directory, data_directory, maillog_file) and never reads or writes
/etc/postfix/main.cf, /etc/postfix/master.cf or /var/spool/postfix.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = [
    "PostfixInstance",
    "PostfixPeerError",
    "SmtpSink",
    "measure_postfix_relay",
    "postfix_version",
    "run_smtp_source",
]

LOOPBACK = "127.0.0.1"
SENDER = "sender@example.com"
RECIPIENT = "rcpt@example.com"

# Debian ships the programs in /usr/sbin, which is not on a non-root PATH.
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_INSTALL_HINT = "Postfix is the benchmark peer but {tool!r} was not found; install it with: apt-get install postfix"

# Bounds on every wait, so a wedged peer fails the run instead of hanging it.
_START_TIMEOUT = 60.0  # `postfix start` runs post-install create-missing and postsuper first
_READY_TIMEOUT = 30.0
_STOP_TIMEOUT = 20.0  # postfix-script waits 5 s for master, then kill -9s its process group
_EXIT_TIMEOUT = 10.0
_PORT_ATTEMPTS = 3  # a port found free can be taken before the peer binds it
_POLL_INTERVAL = 0.01  # delivery completion is timed to within this


class PostfixPeerError(RuntimeError):
    """The peer could not be started, driven or stopped; the message is one line."""


class _PortInUseError(PostfixPeerError):
    """Someone else listens on the chosen port; with a port of our own choosing, pick another."""


def postfix_version() -> str:
    """Return Postfix's mail_version (e.g. "3.7.11"), for naming the peer beside its figures."""
    result = _run([_tool("postconf"), "-dh", "mail_version"], timeout=_START_TIMEOUT, what="postconf")
    return result.stdout.strip()


class SmtpSink:
    """Postfix's smtp-sink on 127.0.0.1:<port>: accepts and discards every message, and counts them.

    It is the common final hop for Postfix and Posthouse alike, so both relays are timed against the
    same fast, event-driven receiver. `count_received()` reads smtp-sink's own `-c` counters, which it
    rewrites on every "." (smtp-sink(1)), so the count is exact and independent of the relay under test.
    """

    def __init__(self, port: int | None = None, backlog: int = 256) -> None:
        self._fixed_port = port is not None
        self.port: int = port if port is not None else _free_port()
        self.backlog = backlog
        self._process: subprocess.Popen[bytes] | None = None
        self._counters: IO[bytes] | None = None
        self._errors: IO[bytes] | None = None

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        sink = _tool("smtp-sink")
        try:
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                try:
                    self._try_start(sink)
                    return
                except _PortInUseError:
                    if self._fixed_port or attempt == _PORT_ATTEMPTS:
                        raise
                self.port = _free_port()
        except BaseException:
            self.stop()
            raise

    def _try_start(self, sink: str) -> None:
        self._close_process()
        _check_port_free(self.port)
        # Unlinked files: nothing to clean up, and smtp-sink can never block on a full pipe.
        # They live as long as the sink and are closed by _close_process, hence no `with`.
        self._counters = tempfile.TemporaryFile()  # noqa: SIM115
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115
        command = [sink, "-c"]
        if os.geteuid() == 0:
            # smtp-sink(1): -u "is required when the process runs with super-user privileges".
            command += ["-u", "nobody"]
        command += [f"{LOOPBACK}:{self.port}", str(self.backlog)]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._counters, stderr=self._errors)
        process = self._process
        reason = _wait_until_serving(self.port, process.pid, lambda: process.poll() is None)
        if reason:
            reason = (self._stderr_line() if process.poll() is not None else "") or reason
            error = _PortInUseError if "in use" in reason else PostfixPeerError
            raise error(f"smtp-sink did not start on {LOOPBACK}:{self.port}: {reason}")

    def count_received(self) -> int:
        """Messages smtp-sink has received (a "." was read) since it started."""
        if self._counters is None:
            return 0
        # Records look like "sess=3 quit=3 mesg=2\r"; only the newest complete one matters.
        size = os.fstat(self._counters.fileno()).st_size
        tail = os.pread(self._counters.fileno(), 256, max(0, size - 256))
        records = tail.split(b"\r")[:-1]  # the last piece is empty or still being written
        for record in reversed(records):
            for field in record.split():
                if field.startswith(b"mesg="):
                    return int(field[5:])
        return 0

    def stop(self) -> None:
        self._close_process()

    def _close_process(self) -> None:
        if self._process is not None:
            _terminate(self._process)
            self._process = None
        for stream in (self._counters, self._errors):
            if stream is not None:
                stream.close()
        self._counters = self._errors = None

    def _stderr_line(self) -> str:
        if self._errors is None:
            return "no output"
        self._errors.seek(0)
        return _last_line(self._errors.read().decode(errors="replace")) or "it exited without a message"


# Debian's master.cf services, minus the pipe(8) examples. chroot is "n" (the upstream default since
# Postfix 3.0; Debian sets "y"): a chroot would need copies of /etc files inside the private queue
# directory, and it does not change the work done per message. The smtpd line listens on loopback only.
_MASTER_CF = """\
# Written by bench/postfix_peer.py; see master(5).
{listen} inet n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

# Only what the comparison needs differs from the compiled-in (Debian) defaults; process limits,
# concurrency, queue_run_delay and the cleanup(8) fsync before "250" all stay as shipped.
_MAIN_CF = """\
# Written by bench/postfix_peer.py; see postconf(5).
compatibility_level = 3.6
queue_directory = {queue_directory}
data_directory = {data_directory}
# Everything goes to the sink; the brackets turn off MX lookups for the relayhost.
relayhost = [{loopback}]:{relay_port}
inet_interfaces = {loopback}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# No local delivery: every recipient is remote, so all mail takes the relay path.
mydestination =
smtp_tls_security_level = none
smtpd_tls_security_level = none
# postlogd(8) writes here, so no syslog daemon is needed; the prefix list must allow the path.
maillog_file_prefixes = {directory}
maillog_file = {maillog_file}
syslog_name = postfix-bench
"""


class PostfixInstance:
    """A private Postfix instance on 127.0.0.1:<listen_port> that relays all mail to 127.0.0.1:<relay_port>.

    It is started with `postfix -c <dir> start`: as root, the postfix(1) command accepts any
    config_directory, so the default instance's alternate_config_directories need not list it and
    /etc/postfix is never edited. `postfix start` itself creates the queue directories (post-install
    create-missing). The instance directory is made under `workdir` (default: the system temp dir)
    and removed on stop, after the master and all its children have exited.
    """

    def __init__(self, relay_port: int, listen_port: int | None = None, workdir: Path | None = None,
                 extra_config: str = "") -> None:
        self.relay_port = relay_port
        self.extra_config = extra_config  # main.cf lines appended (tests: transport_maps for bounces)
        self._fixed_port = listen_port is not None
        self.listen_port: int = listen_port if listen_port is not None else _free_port()
        self._workdir = workdir
        self.directory: Path | None = None
        self._master_pid: int | None = None

    @property
    def config_directory(self) -> Path:
        return self._require_directory() / "etc"

    @property
    def maillog_file(self) -> Path:
        return self._require_directory() / "maillog"

    def __enter__(self) -> PostfixInstance:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        postfix = _tool("postfix")
        if os.geteuid() != 0:
            raise PostfixPeerError("a private Postfix instance must be started as root (master(8) drops to mail_owner)")
        try:
            mail_owner = pwd.getpwnam("postfix")
        except KeyError:
            raise PostfixPeerError(
                "user 'postfix' (mail_owner) does not exist; reinstall the postfix package"
            ) from None
        try:
            self._create_directory(mail_owner)
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                self._write_config()
                try:
                    self._try_start(postfix)
                    return
                except _PortInUseError:
                    self._stop_master()
                    if self._fixed_port or attempt == _PORT_ATTEMPTS:
                        raise
                self.listen_port = _free_port()
        except BaseException:
            self.stop()
            raise

    def _create_directory(self, mail_owner: pwd.struct_passwd) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="posthouse-postfix-", dir=self._workdir))
        # The daemons run as mail_owner and must traverse to the queue; mkdtemp makes 0700.
        self.directory.chmod(0o755)
        (self.directory / "etc").mkdir(mode=0o755)
        (self.directory / "spool").mkdir(mode=0o755)  # root-owned, as postfix-script check-fatal expects
        data = self.directory / "data"
        data.mkdir(mode=0o700)
        # master(8) creates data_directory/master.lock after dropping to mail_owner.
        os.chown(data, mail_owner.pw_uid, mail_owner.pw_gid)

    def _write_config(self) -> None:
        directory = self._require_directory()
        main_cf = _MAIN_CF.format(
            queue_directory=directory / "spool",
            data_directory=directory / "data",
            loopback=LOOPBACK,
            relay_port=self.relay_port,
            directory=directory,
            maillog_file=self.maillog_file,
        )
        (self.config_directory / "main.cf").write_text(main_cf + self.extra_config)
        (self.config_directory / "master.cf").write_text(_MASTER_CF.format(listen=f"{LOOPBACK}:{self.listen_port}"))

    def _try_start(self, postfix: str) -> None:
        """Start the instance and wait for its greeting."""
        _check_port_free(self.listen_port)
        log_offset = self._maillog_size()
        try:
            result = subprocess.run(
                [postfix, "-c", str(self.config_directory), "start"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_START_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            reason = f"`postfix start` took longer than {_START_TIMEOUT:.0f} s"
        else:
            reason = "" if result.returncode == 0 else _last_line(result.stderr + result.stdout)
        self._master_pid = self._read_master_pid()
        pid = self._master_pid
        if reason:
            pass
        elif pid is None:
            reason = "master(8) wrote no pid file"
        else:
            reason = _wait_until_serving(self.listen_port, pid, lambda: _is_alive(pid))
        if reason:
            # master(8) logs the real cause (e.g. "bind 127.0.0.1 port N: Address already in use").
            reason = self._first_fatal_line(log_offset) or reason
            error = _PortInUseError if "in use" in reason else PostfixPeerError
            raise error(f"Postfix did not start on {LOOPBACK}:{self.listen_port}: {reason}")

    def stop(self) -> None:
        """Stop master(8) and its children (bounded), then remove the instance directory."""
        if self.directory is None:
            return
        try:
            self._stop_master()
        finally:
            shutil.rmtree(self.directory)
            self.directory = None

    def _stop_master(self) -> None:
        pid = self._master_pid or self._read_master_pid()
        self._master_pid = None
        if pid is None or not _is_alive(pid):
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            # postfix-script stop: SIGTERM to master, which SIGTERMs its process group.
            subprocess.run(
                [_tool("postfix"), "-c", str(self.config_directory), "stop"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=_STOP_TIMEOUT,
                check=False,
            )
        # master(8) runs setsid(), so its pid is the group of every daemon it spawned.
        if not _wait_for(lambda: not _live_group_members(pid), _EXIT_TIMEOUT):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            if not _wait_for(lambda: not _live_group_members(pid), _EXIT_TIMEOUT):
                raise PostfixPeerError(f"Postfix processes in group {pid} survived SIGKILL")

    def _read_master_pid(self) -> int | None:
        if self.directory is None:
            return None
        try:
            return int((self.directory / "spool" / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _maillog_size(self) -> int:
        try:
            return self.maillog_file.stat().st_size
        except OSError:
            return 0

    def _first_fatal_line(self, offset: int) -> str:
        """The first "fatal:" logged after `offset`: the cause, not postfix-script's "startup failed"."""
        try:
            with self.maillog_file.open("rb") as maillog:
                maillog.seek(offset)
                lines = maillog.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        fatal = [line for line in lines if "fatal:" in line]
        return fatal[0].split(": ", 1)[-1] if fatal else ""

    def _require_directory(self) -> Path:
        if self.directory is None:
            raise PostfixPeerError("the Postfix instance is not started")
        return self.directory


def run_smtp_source(
    port: int, messages: int, sessions: int = 20, size: int = 1024, recipients: int = 1, *, timeout: float = 300.0
) -> float:
    """Send `messages` through Postfix's smtp-source to 127.0.0.1:port; return the seconds until it exits.

    smtp-source aborts on the first reply other than the expected 2xx/3xx (it is run without -A),
    so a zero exit means every message was acknowledged with 250.
    """
    for name, value in (("messages", messages), ("sessions", sessions), ("size", size), ("recipients", recipients)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    command = [_tool("smtp-source"), "-s", str(sessions), "-m", str(messages), "-l", str(size)]
    command += ["-f", SENDER, "-t", RECIPIENT]
    if recipients > 1:
        command += ["-r", str(recipients)]
    command.append(f"{LOOPBACK}:{port}")
    started = time.perf_counter()
    _run(command, timeout=timeout, what="smtp-source")
    return time.perf_counter() - started


def measure_postfix_relay(
    messages: int = 5000, sessions: int = 20, size: int = 1024, timeout: float = 300
) -> dict[str, Any]:
    """Time smtp-source -> a fresh PostfixInstance -> SmtpSink, end to end.

    accepted: until smtp-source exits (every message acknowledged 250, after Postfix's fsync).
    delivered: until the sink has counted all `messages`; both are timed from the start of smtp-source.
    """
    deadline = time.monotonic() + timeout
    with SmtpSink() as sink, PostfixInstance(relay_port=sink.port) as postfix:
        baseline = sink.count_received()
        started = time.perf_counter()
        seconds_accept = run_smtp_source(
            postfix.listen_port, messages, sessions, size, timeout=max(1.0, deadline - time.monotonic())
        )
        if not _wait_for(lambda: sink.count_received() - baseline >= messages, deadline - time.monotonic()):
            delivered = sink.count_received() - baseline
            raise PostfixPeerError(
                f"Postfix delivered {delivered} of {messages} messages within {timeout:.0f} s; "
                f"see deferrals in {postfix.maillog_file}: {_last_deferral(postfix.maillog_file)}"
            )
        seconds_deliver = time.perf_counter() - started
    return {
        "accepted_per_s": messages / seconds_accept,
        "delivered_per_s": messages / seconds_deliver,
        "messages": messages,
        "seconds_accept": seconds_accept,
        "seconds_deliver": seconds_deliver,
    }


def _tool(name: str) -> str:
    """Path of a Postfix program; a missing one ends the run with exit status 2 and the install command."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN_DIRS])
    path = shutil.which(name, path=search)
    if path is None:
        print(_INSTALL_HINT.format(tool=name), file=sys.stderr)
        raise SystemExit(2)
    return path


def _run(command: list[str], *, timeout: float, what: str) -> subprocess.CompletedProcess[str]:
    """Run a program to completion; failure or timeout becomes a one-line PostfixPeerError."""
    try:
        # subprocess.run kills the child when the timeout expires.
        result = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise PostfixPeerError(f"{what} did not finish within {timeout:.0f} s") from None
    if result.returncode != 0:
        reason = _last_line(result.stderr + result.stdout) or f"exit status {result.returncode}"
        raise PostfixPeerError(f"{what} failed: {reason}")
    return result


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _listener_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP `port` at any address (/proc/net/tcp and tcp6; state 0A is LISTEN)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue  # no IPv6 in this kernel: nothing can listen there
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    fd_directory = Path(f"/proc/{pid}/fd")
    inodes = set()
    with contextlib.suppress(OSError):  # the process exited; it owns nothing
        for fd in fd_directory.iterdir():
            with contextlib.suppress(OSError):  # the descriptor closed while we looked
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def _check_port_free(port: int) -> None:
    if _listener_inodes(port):
        raise _PortInUseError(f"{LOOPBACK}:{port} is already in use")


def _wait_until_serving(port: int, pid: int, is_alive: Callable[[], bool]) -> str:
    """Wait until `pid` alone listens on 127.0.0.1:port and greets with 220; return "" or why not.

    smtp-sink and master(8) both listen with SO_REUSEPORT (seen with Postfix 3.7), so a second
    root-owned listener on the same port binds without error, the kernel splits the connections
    between the two, and a greeting may come from the other one: hence the check on who listens.
    """
    if not _wait_for(lambda: bool(_listener_inodes(port) & _socket_inodes(pid)) or not is_alive(), _READY_TIMEOUT):
        return f"not listening after {_READY_TIMEOUT:.0f} s"
    if not is_alive():
        return "it exited"
    if _listener_inodes(port) - _socket_inodes(pid):
        raise _PortInUseError(f"{LOOPBACK}:{port} is shared with another listener (SO_REUSEPORT)")
    if not _wait_for_greeting(port, _READY_TIMEOUT, is_alive):
        return f"no 220 greeting within {_READY_TIMEOUT:.0f} s"
    return ""


def _wait_for(predicate: Callable[[], bool], timeout: float, interval: float = _POLL_INTERVAL) -> bool:
    """Poll `predicate` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _wait_for_greeting(port: int, timeout: float, is_alive: Callable[[], bool]) -> bool:
    """Connect to 127.0.0.1:port until a server says "220 " (RFC 5321 §4.2), it dies, or `timeout` passes."""
    deadline = time.monotonic() + timeout
    greeted = False

    def is_settled() -> bool:
        nonlocal greeted
        greeted = _read_greeting(port, max(0.1, min(2.0, deadline - time.monotonic())))
        return greeted or not is_alive()

    _wait_for(is_settled, timeout, interval=0.05)
    return greeted


def _read_greeting(port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as connection:
            reader = connection.makefile("rb")
            for _ in range(20):  # a multiline greeting is "220-" lines ending in one "220 " line
                line = reader.readline(1000)
                if not line.startswith(b"220"):
                    return False
                if line.startswith(b"220 "):
                    connection.sendall(b"QUIT\r\n")
                    return True
    except OSError:
        return False
    return False


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()


def _is_alive(pid: int) -> bool:
    # A daemon reparented to init stays a zombie until reaped; it has exited all the same.
    fields = _proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _live_group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(int(entry))
            if fields is not None and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                members.append(int(entry))
    return members


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _last_deferral(maillog: Path) -> str:
    try:
        lines = maillog.read_text(errors="replace").splitlines()
    except OSError:
        return "no maillog"
    deferred = [line for line in lines if "status=deferred" in line or "status=bounced" in line]
    return deferred[-1].split(": ", 1)[-1] if deferred else "none logged"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Postfix relay throughput on loopback (the peer's figure alone).")
    parser.add_argument("--messages", type=int, default=5000, help="messages per round (default 5000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported (default 3)")
    parser.add_argument("--sessions", type=int, default=20, help="parallel smtp-source sessions (default 20)")
    parser.add_argument("--size", type=int, default=1024, help="message body bytes (default 1024)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per round (default 300)")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 100 or not 1 <= args.messages <= 1_000_000:
        parser.error("--rounds must be 1..100 and --messages 1..1000000")

    # SIGTERM unwinds like Ctrl-C, so the context managers stop and remove the instance.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        print(
            f"Postfix {postfix_version()}: smtp-source -s {args.sessions} -m {args.messages} -l {args.size} "
            f"-> postfix (relayhost) -> smtp-sink, all on {LOOPBACK}; {os.cpu_count()} CPUs",
            flush=True,
        )
        results = []
        for round_number in range(1, args.rounds + 1):
            result = measure_postfix_relay(args.messages, args.sessions, args.size, args.timeout)
            results.append(result)
            print(
                f"round {round_number}/{args.rounds}: accepted {result['accepted_per_s']:8.1f} msg/s "
                f"({result['seconds_accept']:.2f} s)  delivered {result['delivered_per_s']:8.1f} msg/s "
                f"({result['seconds_deliver']:.2f} s)",
                flush=True,
            )
    except PostfixPeerError as error:
        print(f"postfix_peer: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("postfix_peer: interrupted; the Postfix instance was stopped and removed", file=sys.stderr)
        return 130
    accepted = statistics.median(r["accepted_per_s"] for r in results)
    delivered = statistics.median(r["delivered_per_s"] for r in results)
    print(f"median of {args.rounds}: accepted {accepted:8.1f} msg/s  delivered {delivered:8.1f} msg/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
