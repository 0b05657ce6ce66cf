"""The HTTP fuzz run: every operation of the API's own OpenAPI document, and the tracking listener's two
routes, against the real `posthouse serve` on SQLite and on PostgreSQL. The bar is zero server errors.

The API is driven by schemathesis's command line (`st run`) over `GET /openapi.json`, with a valid server
token and a valid account token (the document's two security schemes), then again on the four send routes
with the `POSTMARK_API_TEST` token. Its phases are coverage (boundary and invalid values field by field),
fuzzing (property-based bodies, parameters and headers, positive and negative) and stateful (links it infers
between operations, such as a created template's id into GET /templates/{id_or_alias}). The checks: no 5xx;
every answer's status, content type and body as the document declares (errors are `{ErrorCode, Message}`
JSON); a request without a valid token refused; a method the document does not list answered 405 with
`Allow`. Not checked: that schema-valid data is accepted or schema-invalid data refused (the document's
schemas are looser than the API's rules: an address is a string there, and empty query values mean "none"
as Postmark's clients send them), nor that `Allow` equals the document's methods (`GET /templates/push` is
the template whose alias is "push", which the document cannot say).

Bounded and reproducible: a fixed number of examples per operation (`FUZZ_EXAMPLES`), generation
derandomized (`--generation-deterministic`, the same requests on every run), one worker, and a wall-clock cap
per pass; a run that reaches the cap fails, saying how far it came. The server runs the api and tracking
roles only: no worker posts webhooks to the URLs the fuzzer saves, and no mail leaves.

Reproduce a failure by hand: start `posthouse serve`, then
`st --config-file schemathesis.toml run http://127.0.0.1:8080/openapi.json -n 100 --generation-deterministic`
with `[auth.openapi.server] api_key = "<server token>"` and `[auth.openapi.account] api_key = "<account token>"`
in schemathesis.toml (the test prints the exact command it ran).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration.dns_zone import ZoneServer
from posthouse.server.store import open_store_for
from support import ServerProcess, create_postgres_database, drop_postgres_database, require_postgres, wait_for
from tracking_helpers import APPLE_MAIL, CHROME, TrackedMessage, track

pytestmark = pytest.mark.slow

FUZZ_EXAMPLES = 100  # per operation in the fuzzing phase (the coverage and stateful phases add their own)
TEST_TOKEN_EXAMPLES = 50
TRACKING_EXAMPLES = 1500
# Wall-clock caps, seconds: each pass is sized to finish in well under half of its cap on this 2-core machine.
CAPS = {"server and account tokens": 200, "POSTMARK_API_TEST": 60, "DELETE /servers/{server_id}": 45}
CHECKS_SKIPPED = "positive_data_acceptance,negative_data_rejection,allow_header_conformance"
SEND_OPERATIONS = ("post_email", "post_email_batch", "post_email_withTemplate", "post_email_batchWithTemplates")
# Strings mixed into what schemathesis generates (one string in ten is drawn from here): what has broken
# parsers and databases before. NUL (PostgreSQL's text cannot hold it), LIKE and regex metacharacters, a
# trailing backslash (an escape with nothing to escape), numbers that overflow, digits `int()` reads but
# ASCII does not have, dots IDNA maps, header and path breakers, template syntax, lengths just past limits.
HOSTILE_STRINGS = [
    "\x00", "a\x00b", "%00", "\\", "a\\", "%", "_", "%_%\\", "[", "(?", "*", "'", "\"", "';--", "\r\nX-Injected: 1",
    "\n", "\t", " ", "", "0", "-1", "9223372036854775807", "9223372036854775808", "-9223372036854775809", "1e309",
    "NaN", "null", "true", "¹", "١٢٣", "１２３", "1_000", "a。b", "ａｄｍｉｎ", "xn--", "\u2028", "\u202e", "😀" * 3,
    "../../etc/passwd", "%2e%2e%2f", "/", "//", "{{", "}}", "{{#each x}}", "{{{@content}}}", "{{> p}}",
    "<script>", "javascript:alert(1)", "http://127.0.0.1:1/", "mailto:a@b", "a@b", "@", "<a@b>", '"a b"@c.d',
    "x" * 256, "x" * 1001, "x" * 2001, "é" * 300,
]
LINKS = [(1, "https://example.com/welcome?from=mail", "HTML"), (2, "https://example.com/help", "Text")]
READER = "reader@example.com"


@dataclass
class Target:
    server: ServerProcess
    folder: Path
    message: TrackedMessage
    summary: list[str] = field(default_factory=list)


def _seed(server: ServerProcess) -> str:
    """A little of everything, so lists answer with items and their shapes are checked too; returns the
    MessageID of a tracked message. Through the API, as a user would."""
    later = (datetime.now(UTC) + timedelta(days=20)).isoformat()
    with server.client() as api:
        def ok(method: str, path: str, body: Any) -> dict[str, Any]:
            answer = api.request(method, path, json=body)
            assert answer.status_code == 200, (path, answer.text)
            return dict(answer.json()) if isinstance(answer.json(), dict) else {}

        ok("POST", "/templates", {"Name": "Base", "Alias": "base", "TemplateType": "Layout",
                                  "HtmlBody": "<html>{{{@content}}}</html>", "TextBody": "{{{@content}}}"})
        ok("POST", "/templates", {"Name": "Welcome", "Alias": "welcome", "LayoutTemplate": "base",
                                  "Subject": "Hi {{name}}", "HtmlBody": "<p>Hi {{name}}</p>",
                                  "TextBody": "Hi {{name}}"})
        ok("POST", "/message-streams", {"ID": "news", "Name": "News", "MessageStreamType": "Broadcasts"})
        ok("POST", "/webhooks", {"Url": "https://hooks.example.com/posthouse",
                                 "Triggers": {"Delivery": {"Enabled": True}, "Open": {"Enabled": True}}})
        ok("POST", "/message-streams/outbound/suppressions", {"Suppressions": [{"EmailAddress": "gone@example.com"}]})
        ok("POST", "/email/withTemplate", {"From": "app@example.com", "To": "ann@example.com",
                                           "TemplateAlias": "welcome", "TemplateModel": {"name": "Ann"}})
        ok("POST", "/email", {"From": "app@example.com", "To": "later@example.com", "Subject": "Later",
                              "TextBody": "Later", "SendAt": later})
        ok("POST", "/email/bulk", {"From": "app@example.com", "Subject": "News", "TextBody": "News",
                                   "MessageStream": "news", "Messages": [{"To": "bob@example.com"}]})
        sent = ok("POST", "/email", {"From": "app@example.com", "To": READER, "Subject": "Tracked", "Tag": "fuzz",
                                     "HtmlBody": "<p>Hello</p>",  # its links are stored by `track`
                                     "TextBody": "Hello", "TrackOpens": True, "TrackLinks": "HtmlAndText",
                                     "Metadata": {"k": "v"}})
    return str(sent["MessageID"])


async def _track(database_url: str, message_id: str) -> TrackedMessage:
    store = open_store_for(database_url)
    await store.open()
    try:
        return await track(store, message_id, LINKS)
    finally:
        await store.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One `posthouse serve` (api and tracking roles) per store for the module, seeded through its API."""
    folder = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    base = None
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'posthouse.db'}"
    else:
        base = require_postgres()
        url = asyncio.run(create_postgres_database(base))
    try:
        # Domain verification asks DNS: an empty zone on loopback answers at once (a CI machine's own resolver
        # may take a timeout per fuzzed name).
        zone = ZoneServer()
        server = ServerProcess(folder / "data", url, env={
            "POSTHOUSE_ROLES": "api,tracking",
            "POSTHOUSE_DNS_NAMESERVERS": zone.nameserver,
            # So the fuzzed X-Forwarded-For headers are read, as behind a reverse proxy.
            "POSTHOUSE_TRACKING_TRUSTED_PROXIES": "127.0.0.1/32"})
        with zone, server:
            message = asyncio.run(_track(url, _seed(server)))
            target = Target(server, folder, message)
            yield target
            print("".join(f"\n[fuzz {request.param}] {line}" for line in target.summary))
    finally:
        if base is not None:
            asyncio.run(drop_postgres_database(base, url))


_LOGGED_ERROR = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")


def _server_errors(server: ServerProcess) -> list[str]:
    """Lines the server logged at ERROR or above (a 500 logs its traceback; the tracking recorder logs its
    failures, which no answer shows)."""
    return [line for line in list(server.lines) if _LOGGED_ERROR.search(line)]


# -- the tracking listener ---------------------------------------------------------------------------------

_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)
# What h11 lets a client send as a header value: Latin-1 without controls, no space at either end.
_LATIN1_HEADER = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                         max_size=80).map(lambda text: text.strip(" "))


def _mutations(token: str) -> st.SearchStrategy[str]:
    """A signed token changed a little: one character replaced, cut short, lengthened, case changed."""
    index = st.integers(min_value=0, max_value=max(len(token) - 1, 0))
    return st.one_of(
        st.builds(lambda i, c: token[:i] + c + token[i + 1:], index, st.sampled_from("AZaz09-_=.%/")),
        st.builds(lambda i: token[:i], index),
        st.builds(lambda extra: token + extra, _TEXT),
        st.just(token.swapcase()),
    )


@st.composite
def _tracking_requests(draw: st.DrawFn, message: TrackedMessage) -> tuple[str, str, dict[str, bytes], str | None]:
    """(method, path and query, headers, `/o/` or `/c/` when the path is that and a signed token unchanged)."""
    valid = [message.pixel(READER), message.link(READER, 1), message.link(READER, 2)]
    unknown_link = message.link(READER, 3)  # signed, but the message has no link 3
    token = draw(st.one_of(
        st.sampled_from(valid),
        st.just(unknown_link),
        st.sampled_from(valid).flatmap(_mutations),
        st.sampled_from(["https://evil.example/", "//evil.example", "http:%2F%2Fevil.example", "..%2F..%2Fc"]),
        _TEXT,
    ))
    prefix = draw(st.sampled_from(["/o/", "/c/", "/c/", "/C/", "/c//", "/o", "/x/", "//c/", "/healthz", "/"]))
    path = prefix + draw(st.sampled_from([quote(token, safe=""), quote(token, safe="/=:"),
                                                 quote(token, safe="/=:;@!$&'()*+,%")]))
    if draw(st.booleans()):
        path += "?" + draw(st.sampled_from(["url=https://evil.example/", "u=", "next=%2F%2Fevil.example"]) | _TEXT.map(
            lambda t: quote(t, safe="=&")))
    headers = {"User-Agent": draw(_LATIN1_HEADER).encode("latin-1")}
    if draw(st.booleans()):
        headers["X-Forwarded-For"] = draw(st.one_of(
            _LATIN1_HEADER, st.ip_addresses().map(str),
            st.lists(st.ip_addresses().map(str) | _LATIN1_HEADER, max_size=4).map(", ".join))
        ).strip(" ").encode("latin-1")
    method = draw(st.sampled_from(["GET"] * 8 + ["HEAD"] * 2 + ["POST", "PUT", "DELETE", "OPTIONS"]))
    # A signed token has only base64url characters: each spelling above is the same path to the server.
    exact = prefix if prefix in ("/o/", "/c/") and token in valid else None
    return method, path, headers, exact


def test_the_tracking_listener_under_fuzzing(target: Target) -> None:
    """Any path, token, query and headers: never a 5xx, and a redirect only ever to the link that was signed
    (the stored one, never a URL that came with the request)."""
    message = target.message
    locations = {message.link(READER, number): url for number, url, _ in LINKS}
    statuses: dict[int, int] = {}
    started = time.monotonic()

    with httpx.Client(base_url=target.server.tracking_url, timeout=10) as reader:
        @settings(max_examples=TRACKING_EXAMPLES, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(request=_tracking_requests(message))
        def fuzz(request: tuple[str, str, dict[str, bytes], str | None]) -> None:
            method, path, headers, exact = request
            answer = reader.request(method, path, headers=headers)
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
            assert answer.status_code in (200, 302, 404, 405), (method, path, headers, answer.status_code)
            if answer.status_code == 302:
                assert answer.headers["location"] in locations.values(), (path, answer.headers["location"])
                assert method in ("GET", "HEAD") and urlsplit(path).path.lower().startswith("/c/"), path
            if exact is not None and method in ("GET", "HEAD"):
                token = urlsplit(path).path[len(exact):]
                if exact == "/o/":  # the pixel, whatever the token
                    assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif", path
                elif token in locations:  # a signed link: to its stored URL
                    assert answer.status_code == 302 and answer.headers["location"] == locations[token], path
                else:  # the pixel's token is no link
                    assert answer.status_code == 404, path

        fuzz()

    # The recorder writes in batches: a reader's open and click after the fuzzing must still reach the
    # message's events; then look for anything it (or a request) logged as an error.
    with httpx.Client(base_url=target.server.tracking_url, timeout=10) as reader:
        assert reader.get(f"/o/{message.pixel(READER)}", headers={"User-Agent": APPLE_MAIL}).status_code == 200
        assert reader.get(f"/c/{message.link(READER, 1)}", headers={"User-Agent": CHROME}).status_code == 302
    with target.server.client() as api:
        def recorded() -> bool:
            details = api.get(f"/messages/outbound/{message.message_id}/details").json()
            return {e["Type"] for e in details["MessageEvents"]} >= {"Opened", "LinkClicked"}

        wait_for(recorded, timeout=30)
    assert _server_errors(target.server) == []
    target.summary.append(f"tracking listener: {TRACKING_EXAMPLES} requests, statuses "
                          f"{dict(sorted(statuses.items()))}, {time.monotonic() - started:.1f} s")


# -- the API, through its OpenAPI document -----------------------------------------------------------------

@dataclass
class Pass:
    name: str
    server_token: str
    examples: int
    filters: list[str]


def _run_schemathesis(target: Target, run: Pass) -> dict[str, Any]:
    """One `st run` over the server's /openapi.json; its JSON report. Fails at the pass's wall-clock cap."""
    folder = target.folder / f"schemathesis-{run.name.split()[0].strip('/')}"
    folder.mkdir()
    hostile = ", ".join(json.dumps(text, ensure_ascii=False) for text in HOSTILE_STRINGS)  # TOML basic strings
    (folder / "schemathesis.toml").write_text(
        f'[auth.openapi.server]\napi_key = "{run.server_token}"\n'
        f'[auth.openapi.account]\napi_key = "{target.server.account_token}"\n'
        f'[dictionaries.hostile]\nvalues = [{hostile}]\n'
        '[generation.dictionaries.string]\ndictionary = "hostile"\nprobability = 0.1\n', encoding="utf-8")
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", "schemathesis.toml", "--no-color",
        "run", f"{target.server.base_url}/openapi.json",
        "--max-examples", str(run.examples), "--generation-deterministic",
        "--workers", "1", "--request-timeout", "20",
        "--exclude-checks", CHECKS_SKIPPED,
        "--report", "json", "--report-json-path", "report.json", *run.filters]
    started = time.monotonic()
    # Its own folder as the working directory: schemathesis keeps caches there, not in the repository.
    process = subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=CAPS[run.name])
        capped = False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)  # it stops, reports what it ran, and writes the report
        output, _ = process.communicate(timeout=30)
        capped = True
    elapsed = time.monotonic() - started
    shown = " ".join(["st", *command[3:]])
    report_file = folder / "report.json"
    assert report_file.exists(), f"{shown}\n{output[-5000:]}"
    report: dict[str, Any] = json.loads(report_file.read_text())
    cases = report["test_cases"]
    operations = report["operations"]
    target.summary.append(f"{run.name}: {operations['tested']} operations, {cases['generated']} test cases, "
                          f"{elapsed:.0f} s; `{shown}` (run in {folder})")
    failures = "\n".join(output.splitlines()[-200:])
    assert not capped, f"the fuzz pass '{run.name}' reached its {CAPS[run.name]} s cap:\n{failures}"
    assert report["failures"] == [] and report["exit_code"] == 0, failures
    assert report["errors"] == [], failures
    assert report["complete"] and operations["errored"] == 0 and operations["tested"] == operations["selected"]
    # A token that stopped working would leave the rest of the run testing only the 401 path.
    assert report["warnings"]["missing_auth"] == [], report["warnings"]["missing_auth"]
    return report


def test_every_operation_under_fuzzing(target: Target) -> None:
    server = target.server
    assert server.server_token and server.account_token
    everything = _run_schemathesis(target, Pass(
        "server and account tokens", server.server_token, FUZZ_EXAMPLES,
        # Deleting the server whose token the pass uses would blind the rest of it: that one runs last.
        ["--exclude-operation-id", "delete_servers_server_id"]))
    # Every operation but the one left for last (schemathesis leaves out GET /openapi.json, which it loaded).
    assert everything["operations"]["tested"] == everything["operations"]["total"] - 1 >= 48
    with server.client() as api:
        assert api.get("/server").status_code == 200  # the token still worked at the end
    sends = _run_schemathesis(target, Pass("POSTMARK_API_TEST", "POSTMARK_API_TEST", TEST_TOKEN_EXAMPLES,
                                   [arg for op in SEND_OPERATIONS for arg in ("--include-operation-id", op)]))
    assert sends["operations"]["tested"] == len(SEND_OPERATIONS)
    last = _run_schemathesis(target, Pass("DELETE /servers/{server_id}", server.server_token, FUZZ_EXAMPLES,
                                          ["--include-operation-id", "delete_servers_server_id"]))
    assert last["operations"]["tested"] == 1
    assert _server_errors(server) == []
