"""The README's examples, run as written and in order against a real `posthouse serve` process.

Every fenced `sh` and `python` block of README.md runs, unless EXCLUDED names it with the reason. Shell
blocks run with bash (`-e -u -o pipefail`) in the environment the README tells the reader to set up:
`POSTHOUSE_SERVER_TOKEN` and `POSTHOUSE_ACCOUNT_TOKEN` are the tokens this server printed at its first
start, `POSTHOUSE_BASE_URL` its address. Python blocks run, in order, in one Python session where
`await` works at the top level, as the README says (`python -m asyncio`). The working directory holds
`posthouse-data`, the server's data directory, as after `make run`. The only change made to an example
is the address: the server listens on free ports instead of 8080 and 2525 (other tests run beside this
one), so `127.0.0.1:8080`, `localhost:8080` and the SMTP port 2525 are replaced by its own.

After each block, CHECKS asserts that the block did what the README says it does.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support import ServerProcess, wait_for

README = Path(__file__).resolve().parents[2] / "README.md"

# A line (or part of one) of the block -> why the test does not run it.
EXCLUDED = {
    "make run     # starts Posthouse": "Starts Posthouse itself (the test has already started one, on free ports) "
    "and runs the whole test suite.",
    "export POSTHOUSE_SERVER_TOKEN=<the server token>": "Placeholders for the reader's own tokens: the test exports "
    "the tokens its server printed under these names, and POSTHOUSE_BASE_URL as the server's address.",
    "--relay smtp+starttls://user:password@smtp.example.net:587": "Needs a real smarthost at smtp.example.net, and "
    "starts a second server.",
    'EMAIL_BACKEND = "posthouse.django.EmailBackend"': "Lines of a Django project's settings.py, not a program of "
    "their own; the backend they select is tested in tests/sdk/test_sdk_django.py.",
    "Webhook(secret).verify(request_body, request_headers)": "Runs inside the receiving web application, whose "
    "framework hands it request_body and request_headers; the same verification is the `handle` example, which runs "
    "and is checked.",
    ".venv/bin/posthouse users create you@example.com": "Prompts for a password on a terminal; the `users` "
    "commands (with --password-stdin, list, delete, and the sign-in they allow) are tested in "
    "tests/e2e/test_cli_users.py.",
    "export POSTHOUSE_TEST_POSTGRES_URL=$(bash .ci/postgres.sh) && make test": "Runs the whole test suite against a "
    "throwaway PostgreSQL cluster.",
    'pg_dump --format=custom --file=posthouse.dump "$POSTHOUSE_DATABASE_URL"': "PostgreSQL's own backup tools against "
    "the reader's database, with every node stopped for the restore; `posthouse backup`/`restore` (SQLite) are "
    "tested in tests/e2e/test_cli_operate.py, and on PostgreSQL they point here.",
    "docker compose up -d --build": "Needs a container engine, which this machine has not; the Dockerfile and "
    "compose file are linted and validated against the Compose schema in tests/unit/test_deploy_files.py.",
    "cp deploy/posthouse.service /etc/systemd/system/": "Installs a system service under /opt and /etc; the unit "
    "file is checked by systemd-analyze verify in tests/unit/test_deploy_files.py.",
    "posthouse serve --role api,smtp,worker,inbound --smtp-inbound 0.0.0.0:25": "Starts a second server on port 25; "
    "the inbound listener it starts is tested in tests/integration/test_inbound.py.",
}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<language>\S*)[ \t]*$")


@dataclass
class Block:
    language: str
    code: str
    line: int  # where the block starts in README.md, for messages


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text (indented ones too, as inside a list item), dedented."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not re.match(rf"^{re.escape(opening['indent'])}```\s*$", lines[j]):
            body.append(lines[j])
            j += 1
        blocks.append(Block(opening["language"], textwrap.dedent("\n".join(body)) + "\n", i + 1))
        i = j + 1
    return blocks


def exclusion_of(block: Block) -> str | None:
    reasons = [reason for marker, reason in EXCLUDED.items() if marker in block.code]
    assert len(reasons) <= 1, f"README.md:{block.line} matches more than one exclusion"
    return reasons[0] if reasons else None


# A Python session: each block is compiled with top-level await allowed and run in one namespace, as the
# asyncio REPL (`python -m asyncio`) runs what is typed into it. Blocks come on stdin, length-prefixed; after
# each, a marker line says whether it raised (the traceback is printed before it).
_SESSION = r'''
import ast, asyncio, inspect, sys, traceback
namespace = {"__name__": "__main__"}

async def main():
    while True:
        header = sys.stdin.readline()
        if not header:
            return
        source = sys.stdin.read(int(header))
        try:
            result = eval(compile(source, "<README.md>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT), namespace)
            if inspect.iscoroutine(result):
                await result
            outcome = "ok"
        except BaseException:
            traceback.print_exc(file=sys.stdout)
            outcome = "raised"
        print("\0README-BLOCK " + outcome, flush=True)

asyncio.run(main())
'''


class PythonSession:
    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", _SESSION], cwd=cwd, env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._pumping = threading.Thread(target=self._pump, daemon=True)
        self._pumping.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def run(self, code: str, timeout: float = 60.0) -> tuple[bool, str]:
        """Run one block; (did it finish without raising, what it printed)."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{len(code)}\n{code}")
        self.process.stdin.flush()
        printed: list[str] = []
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError("the block did not finish in time:\n" + "".join(printed)) from None
            if line is None:
                raise AssertionError("the Python session ended:\n" + "".join(printed))
            if line.startswith("\0README-BLOCK "):
                return line.split()[-1] == "ok", "".join(printed)
            printed.append(line)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._pumping.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@dataclass
class Context:
    """What checks can look at: the server, the Python session, the shell, and what each block printed."""

    server: ServerProcess
    session: PythonSession
    shell: Callable[[str], str]
    seen: list[str] = field(default_factory=list)

    def messages(self, **params: Any) -> list[dict[str, Any]]:
        with self.server.client() as client:
            response = client.get("/messages/outbound", params={"count": 100, "offset": 0, **params})
        assert response.status_code == 200, response.text
        return response.json()["Messages"]  # type: ignore[no-any-return]

    def subjects(self, **params: Any) -> list[str]:
        return sorted(m["Subject"] for m in self.messages(**params))

    def python(self, code: str) -> str:
        ok, printed = self.session.run(textwrap.dedent(code))
        assert ok, printed
        return printed


def json_objects(text: str) -> list[Any]:
    """The JSON values curl printed one after another (no separator)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := _skip_space(text, at)) < len(text):
        value, at = decoder.raw_decode(text, at)
        found.append(value)
    return found


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


# -- what each example says it does ---------------------------------------------------------------------------


def check_send_and_list(ctx: Context, printed: str) -> None:
    sent, listed = json_objects(printed)
    assert (sent["ErrorCode"], sent["Message"], sent["To"]) == (0, "OK", "user@example.com")
    assert [m["MessageID"] for m in listed["Messages"]] == [sent["MessageID"]]
    assert listed["Messages"][0]["Subject"] == "Hello"


def check_smtplib(ctx: Context, printed: str) -> None:
    [message] = ctx.messages(subject="SMTP Test", fromemail="no-reply@mailservice.com")
    assert [to["Email"] for to in message["To"]] == ["recipient@example.com"]


def check_async_send(ctx: Context, printed: str) -> None:
    message_id = re.fullmatch(r"Sent \(model\): ([0-9a-f-]{36})\n", printed)
    assert message_id is not None, printed
    with ctx.server.client() as client:
        details = client.get(f"/messages/outbound/{message_id.group(1)}/details").json()
    assert details["Metadata"] == {"user_id": "12345"} and details["From"] == "app@example.com"


def check_sync_send(ctx: Context, printed: str) -> None:
    assert len(ctx.messages(subject="SMTP Test", fromemail="app@example.com")) == 2  # the async one and this one
    ctx.python('assert response.error_code == 0 and response.message == "OK"')


def check_webhook_created(ctx: Context, printed: str) -> None:
    ctx.python('assert secret.startswith("whsec_") and webhook.url == "https://app.example.com/hooks/mail"')
    with ctx.server.client() as client:
        hooks = client.get("/webhooks").json()["Webhooks"]
    assert [h["Url"] for h in hooks] == ["https://app.example.com/hooks/mail"]


def check_receiver(ctx: Context, printed: str) -> None:
    # `handle` takes a post signed with the webhook's secret and refuses a forged one, as it says.
    ctx.python('''
        import json as _json
        from datetime import UTC as _UTC, datetime as _datetime
        _at = _datetime.now(_UTC)
        _body = _json.dumps({"RecordType": "Delivery", "Email": "a@example.com"})
        _headers = {"webhook-id": "msg_readme", "webhook-timestamp": str(int(_at.timestamp())),
                    "webhook-signature": Webhook(secret).sign("msg_readme", _at, _body)}
        handle(_body.encode(), _headers)
        try:
            handle(_body.encode(), {**_headers, "webhook-signature": "v1,Zm9yZ2Vk"})
        except PermissionError:
            pass
        else:
            raise AssertionError("a forged post was accepted")
    ''')


def check_templates(ctx: Context, printed: str) -> None:
    ctx.python('assert check.subject.rendered_content == "Hi Ann" and response.error_code == 0')
    assert ctx.subjects(subject="Welcome, Ann") == ["Welcome, Ann"]


def check_bulk(ctx: Context, printed: str) -> None:
    ctx.python('assert accepted.id and status.status in ("Accepted", "Processing", "Completed")')
    wait_for(lambda: ctx.subjects(messagestream="broadcast") == ["News for Ann", "News for Bob"], timeout=30)


def check_stats(ctx: Context, printed: str) -> None:
    with ctx.server.client() as client:
        overview = client.get("/stats/outbound").json()
        broadcast = client.get("/stats/outbound/sends", params={"messagestream": "broadcast"}).json()
    totals, *days = printed.splitlines()
    assert totals.split()[:2] == [str(overview["Sent"]), str(overview["Bounced"])] and overview["Sent"] > 0, totals
    assert days == [f"{d['Date']} {d['Sent']}" for d in broadcast["Days"]] and broadcast["Sent"] == 2  # the bulk send


def check_smtp_transport(ctx: Context, printed: str) -> None:
    assert ctx.subjects(subject="Over SMTP") == ["Over SMTP", "Over SMTP"]  # send and send_async


def check_keep_alive(ctx: Context, printed: str) -> None:
    assert sorted(m["To"][0]["Email"] for m in ctx.messages(subject="Kept")) == [
        "user0@example.com", "user1@example.com", "user2@example.com"]


def check_transport_from_url(ctx: Context, printed: str) -> None:
    ctx.python("assert isinstance(transport, posthouse.MemoryTransport)")


def check_memory_transport_test(ctx: Context, printed: str) -> None:
    ctx.python("test_signup_sends_a_welcome_mail()")


def check_postmark_python(ctx: Context, printed: str) -> None:
    message_id = printed.strip()
    with ctx.server.client() as client:
        details = client.get(f"/messages/outbound/{message_id}/details").json()
    assert (details["Subject"], details["Metadata"]) == ("Hello", {"user_id": "12345"})


def check_postmarker(ctx: Context, printed: str) -> None:
    # The quick start's "Hello" and postmarker's both went to user@example.com; postmark-python's to receiver@.
    assert len(ctx.messages(subject="Hello", recipient="user@example.com")) == 2


def check_send_with_template(ctx: Context, printed: str) -> None:
    [sent] = json_objects(printed)
    assert sent["ErrorCode"] == 0, sent
    assert ctx.subjects(subject="Welcome, Ada") == ["Welcome, Ada"]


def check_scheduled(ctx: Context, printed: str) -> None:
    moved, cancelled = json_objects(printed)
    assert moved["Status"] == "Scheduled" and moved["ErrorCode"] == 0
    assert (cancelled["Status"], cancelled["Cancelled"], cancelled["Released"]) == (
        "Cancelled", ["user@example.com"], [])
    # Listed under status=cancelled (shown as "Failed", which Postmark's clients know), never to be sent.
    [message] = ctx.messages(subject="Tomorrow", status="cancelled")
    assert message["MessageID"] == moved["MessageID"] and message["Status"] == "Failed"


def check_idempotency(ctx: Context, printed: str) -> None:
    [first] = json_objects(printed)
    assert first[0]["ErrorCode"] == 0, first
    # The same key again replays the first answer and sends nothing, as the README says.
    [again] = json_objects(ctx.shell(ctx.seen[-1]))
    assert again == first
    assert len(ctx.messages(recipient="a@example.com")) == 1


# A line of the block -> its check.
CHECKS: dict[str, Callable[[Context, str], None]] = {
    '"Subject": "Hello", "TextBody": "Hi!"': check_send_and_list,
    'test_message["Subject"] = "SMTP Test"': check_smtplib,
    'print(f"Sent (model): {response.message_id}")': check_async_send,
    "with posthouse.sync.ServerClient(": check_sync_send,
    "webhook = await client.webhooks.create(": check_webhook_created,
    "verifier = Webhook(secret)": check_receiver,
    "await client.templates.create(posthouse.TemplateRequest(": check_templates,
    "accepted = await client.bulk.send(": check_bulk,
    "overview = await client.stats.overview()": check_stats,
    "transport = posthouse.SMTPTransport(url)": check_smtp_transport,
    "posthouse.SMTPTransport(url, keep_alive=True)": check_keep_alive,
    "transport = posthouse.transport_from_url(": check_transport_from_url,
    "def test_signup_sends_a_welcome_mail():": check_memory_transport_test,
    "import postmark ": check_postmark_python,
    "from postmarker.core import PostmarkClient": check_postmarker,
    '"TemplateAlias":"welcome"': check_send_with_template,
    "TOMORROW=$(date": check_scheduled,
    "Idempotency-Key: order-4711": check_idempotency,
}


def localized(code: str, server: ServerProcess) -> str:
    """The example with the test server's ports in place of the defaults 8080 and 2525."""
    http = f"127.0.0.1:{server.port}"
    code = code.replace("127.0.0.1:8080", http).replace("localhost:8080", http)
    code = code.replace("127.0.0.1:2525", f"127.0.0.1:{server.smtp_port}")
    code = code.replace("SMTP_PORT = 2525", f"SMTP_PORT = {server.smtp_port}")
    assert not re.search(r"\b(8080|2525)\b", code), f"a default port in a form this test does not know:\n{code}"
    return code


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path / "posthouse-data", database_url) as running:
        yield running


def test_every_readme_example_runs_as_written(server: ServerProcess, tmp_path: Path) -> None:
    blocks = [b for b in readme_blocks(README.read_text(encoding="utf-8")) if b.language in ("sh", "python")]
    for marker in EXCLUDED:
        assert sum(marker in b.code for b in blocks) == 1, f"EXCLUDED names no single README block: {marker!r}"
    for marker in CHECKS:
        assert sum(marker in b.code for b in blocks if exclusion_of(b) is None) == 1, \
            f"CHECKS names no single README block that runs: {marker!r}"
    assert server.server_token and server.account_token
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOUSE_")}
    env.update({
        # What the README tells the reader to export after `make run` printed the tokens.
        "POSTHOUSE_SERVER_TOKEN": server.server_token,
        "POSTHOUSE_ACCOUNT_TOKEN": server.account_token,
        "POSTHOUSE_BASE_URL": server.base_url,
        # The reader runs the examples where Posthouse (and its SDK) is installed.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    })

    def shell(code: str) -> str:
        # -u as well: a variable the README never sets fails here, not as an empty string in a URL.
        result = subprocess.run(["bash", "-e", "-u", "-o", "pipefail", "-c", code], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout}{result.stderr}"
        return result.stdout

    session = PythonSession(tmp_path, env)
    ctx = Context(server, session, shell)
    ran = 0
    try:
        for block in blocks:
            if exclusion_of(block) is not None:
                continue
            code = localized(block.code, server)
            if block.language == "sh":
                printed = shell(code)
            else:
                ok, printed = session.run(code)
                assert ok, f"README.md:{block.line} raised:\n{printed}"
            ctx.seen.append(code)
            for marker, check in CHECKS.items():
                if marker in block.code:
                    try:
                        check(ctx, printed)
                    except AssertionError as exc:
                        raise AssertionError(f"README.md:{block.line} did not do what it says: {exc}\n"
                                             f"It printed:\n{printed}") from exc
            ran += 1
    finally:
        session.close()
    assert ran == len(blocks) - len(EXCLUDED)
