"""postmark.js's own integration tests, as published in the npm package, run unmodified against Posthouse.

The harness in `postmarkjs/` pins the package and what its tests need (`npm ci` installs them into
`postmarkjs/node_modules`, as `.ci/run` does). The published files under
`node_modules/postmark/test/integration` are run as they are, by mocha under node, against the real
server process; they are configured only through what they read themselves (the environment variables
`SERVER_API_TOKEN`, `ACCOUNT_API_TOKEN`, `SENDER_EMAIL_ADDRESS`, `RECIPIENT_EMAIL_ADDRESS`,
`DOMAIN_NAME`) and `postmarkjs/setup.js`, which points the library at Posthouse through its documented
`HttpClient.DefaultOptions`. Each published test becomes one pytest result per database; the ones
Posthouse cannot pass yet are listed, with the reason, in `unsupported.py` (strict: a listed test that
passes fails here).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from contract.unsupported import UNSUPPORTED, reason_for
from integration.dns_zone import ZoneServer
from support import (
    ServerProcess,
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
    wait_for,
)

SUITE = "postmark.js"
HARNESS = Path(__file__).parent / "postmarkjs"
SPEC = "node_modules/postmark/test/integration/*.test.ts"
RUN_TIMEOUT = 300.0  # seconds for the whole published suite (it takes a few); mocha bounds each test at 30 s
# What the published tests read (their CI's .env); the addresses are any the sandbox accepts.
SENDER = "sender@example.com"
RECIPIENT = "recipient@example.com"
DOMAIN = "example.com"


@dataclass(frozen=True)
class Outcome:
    state: str  # passed | failed | pending | not run
    error: str


def harness_missing() -> str | None:
    """Why the suite cannot run here, or None when node and the pinned packages are installed."""
    if shutil.which("node") is None:
        return "node is not installed (.ci/run installs it: apt-get install nodejs npm)"
    pinned = json.loads((HARNESS / "package.json").read_text())["dependencies"]["postmark"]
    installed = HARNESS / "node_modules" / "postmark" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != pinned:
        return f"postmark {pinned} is not installed for the harness: run `npm ci` in {HARNESS}"
    return None


def run_mocha(env: dict[str, str], *extra: str) -> dict[str, Outcome]:
    """Run the published suite once; every test's outcome by its id (file > describe > … > title)."""
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "results.json"
        command = [
            "node", "node_modules/mocha/bin/mocha.js", "--timeout", "30000",
            "--require", "ts-node/register", "--require", "./setup.js",
            "--reporter", "./reporter.js", "--reporter-option", f"output={output}", *extra, SPEC,
        ]
        # No `--retries` (the package's own script retries once): a test that needs a second try fails here.
        process = subprocess.Popen(
            command, cwd=HARNESS, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "TS_NODE_PROJECT": str(HARNESS / "tsconfig.json"), **env},
            start_new_session=True)
        try:
            log, _ = process.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            log, _ = process.communicate()
            raise AssertionError(f"the postmark.js suite did not finish within {RUN_TIMEOUT} s:\n{log}") from None
        if not output.exists():
            raise AssertionError(f"mocha wrote no results (exit {process.returncode}):\n{log}")
        tests = json.loads(output.read_text())["tests"]
    return {t["id"]: Outcome(t["state"], t["error"]) for t in tests}


def published_tests() -> list[str]:
    """The ids of every published integration test, listed by a dry run (nothing is sent)."""
    if harness_missing():
        return []
    placeholders = {"POSTHOUSE_URL": "http://127.0.0.1:9", "SERVER_API_TOKEN": "listing",
                    "ACCOUNT_API_TOKEN": "listing"}  # the clients built at load time refuse an empty token
    return sorted(run_mocha(placeholders, "--dry-run"))


PUBLISHED = published_tests()


def test_node_and_the_harness_are_installed() -> None:
    missing = harness_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    assert len(PUBLISHED) == 80, PUBLISHED  # the integration tests postmark 5.1.0 publishes (package.json pins it)


def test_every_expected_failure_names_a_published_test() -> None:
    if not PUBLISHED:
        pytest.skip("the suite is not installed here")
    listed = set(UNSUPPORTED[SUITE])
    assert listed <= set(PUBLISHED), sorted(listed - set(PUBLISHED))
    assert all(reason.strip() for reason in UNSUPPORTED[SUITE].values())


def prepare_the_account(server: ServerProcess) -> str:
    """An account like the one postmark.js's CI uses; the token of the server the suite is given.

    On Postmark server IDs are global, so the account under test owns no server 1: the template push tests
    push to and from server 1 and expect "not found". A fresh Posthouse's first server is ID 1, so the suite
    gets a server of its own and the first one is deleted. The account also has bounce history (the Bounce
    tests skip without one): a sandbox bounce, made as Postmark documents for tests (a recipient at the bounce
    testing domain)."""
    account = {"X-Postmark-Account-Token": server.account_token or "", "Accept": "application/json"}
    with httpx.Client(base_url=server.base_url, headers=account, timeout=10) as client:
        created = client.post("/servers", json={"Name": "postmark.js integration tests"})
        assert created.status_code == 200, created.text
        first = client.get("/server", headers={"X-Postmark-Server-Token": server.server_token or ""})
        assert first.status_code == 200, first.text
        assert client.delete(f"/servers/{first.json()['ID']}").status_code == 200
        listed = client.get("/servers", params={"count": 500, "offset": 0})
        assert listed.status_code == 200, listed.text
        assert 1 not in [s["ID"] for s in listed.json()["Servers"]], listed.text
        token: str = created.json()["ApiTokens"][0]
    with httpx.Client(base_url=server.base_url, timeout=10,
                      headers={"X-Postmark-Server-Token": token, "Accept": "application/json"}) as client:
        sent = client.post("/email", json={"From": SENDER, "To": "HardBounce@bounce-testing.postmarkapp.com",
                                           "Subject": "A bounce for the postmark.js suite", "TextBody": "bounce"})
        assert sent.status_code == 200, sent.text

        def bounced() -> bool:
            found = client.get("/bounces", params={"count": 10, "offset": 0})
            return found.status_code == 200 and found.json()["TotalCount"] > 0

        wait_for(bounced, timeout=30)
    return token


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def suite_results(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    """The published suite, run once per database against a fresh Posthouse in sandbox delivery."""
    if harness_missing():
        pytest.skip("the suite is not installed here (see test_node_and_the_harness_are_installed)")
    folder = tmp_path_factory.mktemp(f"postmark-js-{request.param}")
    base = database_url = None
    if request.param == "sqlite":
        database_url = f"sqlite:///{folder / 'posthouse.db'}"
    else:
        base = require_postgres()
        database_url = asyncio.run(create_postgres_database(base))
    try:
        # Issue 14: the operator address sender confirmations are mailed from (the machine's own name may be one no
        # From may use, `localhost`, as Postmark's sending domain never is), and a DNS server on loopback for the
        # suite's verifyDomainDKIM/ReturnPath calls, so that their lookups never leave the machine (it has no
        # records: the suite's domains are not published anywhere, and are not verified).
        with ZoneServer() as zone, ServerProcess(folder / "data", database_url, env={
                "POSTHOUSE_SENDER_CONFIRMATION_FROM": "postmaster@posthouse-mail.net",
                "POSTHOUSE_DNS_NAMESERVERS": zone.nameserver}) as server:
            assert server.server_token and server.account_token, "".join(server.lines)
            server_token = prepare_the_account(server)
            yield run_mocha({
                "POSTHOUSE_URL": server.base_url,
                "SERVER_API_TOKEN": server_token,
                "ACCOUNT_API_TOKEN": server.account_token,
                "SENDER_EMAIL_ADDRESS": SENDER,
                "RECIPIENT_EMAIL_ADDRESS": RECIPIENT,
                "DOMAIN_NAME": DOMAIN,
            })
    finally:
        if base is not None:
            asyncio.run(drop_postgres_database(base, database_url))


@pytest.mark.slow
@pytest.mark.parametrize("test_id", PUBLISHED)
def test_published(test_id: str, suite_results: dict[str, Outcome]) -> None:
    outcome = suite_results.get(test_id)
    assert outcome is not None, f"the run did not report {test_id!r}"
    reason = reason_for(SUITE, test_id)
    if reason is not None:
        if outcome.state == "passed":
            pytest.fail(f"listed in tests/contract/unsupported.py ({reason}) but it passes: remove it from the list")
        pytest.xfail(f"{reason} [{outcome.state}: {outcome.error}]")
    if outcome.state == "pending":
        pytest.fail("the test skipped itself: Posthouse lacks the data it looks for")
    assert outcome.state == "passed", outcome.error or outcome.state


def test_the_harness_reaches_only_the_server_it_is_given() -> None:
    """setup.js refuses to run without POSTHOUSE_URL, so the published tests can never reach api.postmarkapp.com."""
    if harness_missing():
        pytest.skip("the suite is not installed here")
    env = {k: v for k, v in os.environ.items() if k != "POSTHOUSE_URL"}
    completed = subprocess.run(["node", "-r", "./setup.js", "-e", "0"], cwd=HARNESS, env=env,
                               capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode != 0
    assert "POSTHOUSE_URL is not set" in completed.stderr

