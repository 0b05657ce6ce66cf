"""`posthouse users create/list/delete`: the dashboard's operator accounts from the command line, on both
databases; a mistake is one line on stderr and no traceback, and the account made signs in for real."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from support import ServerProcess

PASSWORD = "a passphrase long enough"


def assert_refused(result: subprocess.CompletedProcess[str], text: str, code: int = 1) -> None:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("posthouse: error: "), lines
    assert text in lines[0], lines


def users(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOUSE_")}
    return subprocess.run([sys.executable, "-m", "posthouse.server.cli", "users", *args], input=stdin,
                          capture_output=True, text=True, env={**clean, **env}, timeout=60, check=False)


def test_users_create_list_delete(tmp_path: Path, database_url: str) -> None:
    env = {"POSTHOUSE_DATABASE_URL": database_url, "POSTHOUSE_DATA_DIR": str(tmp_path / "data")}
    empty = users("list", env=env)
    assert empty.returncode == 0, empty.stderr
    assert "no dashboard users" in empty.stdout

    made = users("create", "Ops@Example.com", "--password-stdin", env=env, stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "Created dashboard user ops@example.com."
    assert PASSWORD not in made.stdout + made.stderr

    # Mistakes: one clear line each, exit status 1, nothing made.
    assert_refused(users("create", "ops@example.com", "--password-stdin", env=env, stdin=PASSWORD + "\n"),
                   "exists already")
    assert_refused(users("create", "not an address", "--password-stdin", env=env, stdin=PASSWORD + "\n"),
                   "not an email address")
    assert_refused(users("create", "short@example.com", "--password-stdin", env=env, stdin="short\n"),
                   "10 to 1024 characters")
    assert_refused(users("create", "empty@example.com", "--password-stdin", env=env, stdin=""),
                   "10 to 1024 characters")
    assert_refused(users("delete", "nobody@example.com", env=env), "there is no user nobody@example.com")
    # Without a terminal to prompt on, and without --password-stdin, it says what to do instead of hanging.
    assert_refused(users("create", "typo@example.com", env=env, stdin=PASSWORD + "\n"), "--password-stdin", code=2)
    second = users("create", "second@example.com", "--password-stdin", env=env, stdin=PASSWORD + "\r\n")
    assert second.returncode == 0, second.stderr

    listed = users("list", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split()[0] for line in listed.stdout.strip().splitlines()]
    assert sorted(rows) == ["ops@example.com", "second@example.com"]
    assert all("last sign-in never" in line for line in listed.stdout.strip().splitlines())

    # The user signs in to the dashboard of a real server; `list` then shows the sign-in.
    with ServerProcess(tmp_path / "data", database_url) as server, httpx.Client(base_url=server.base_url) as client:
        form = client.get("/ui/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token
        answer = client.post("/ui/login", data={"csrf_token": token.group(1), "email": "ops@example.com",
                                               "password": PASSWORD, "next": "/ui/"})
        assert answer.status_code == 303, answer.text
        assert client.get("/ui/servers/1/streams/outbound/activity").status_code == 200
        listed = users("list", env=env)
        line = next(x for x in listed.stdout.splitlines() if x.startswith("ops@example.com"))
        assert "last sign-in never" not in line
        assert re.search(r"last sign-in \d{4}-\d\d-\d\d \d\d:\d\d", line), line

        deleted = users("delete", "OPS@example.com", env=env)
        assert deleted.returncode == 0, deleted.stderr
        assert deleted.stdout.strip() == "Deleted dashboard user ops@example.com."
        # Its session ended with it, on the running server.
        assert client.get("/ui/servers/1/streams/outbound/activity").status_code == 303
    listed = users("list", env=env)
    assert [line.split()[0] for line in listed.stdout.strip().splitlines()] == ["second@example.com"]


def test_users_without_a_database_say_so(tmp_path: Path) -> None:
    env = {"POSTHOUSE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "POSTHOUSE_DATA_DIR": str(tmp_path)}
    result = users("list", env=env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("posthouse: error: "), result.stderr
