"""The operator's commands, run as `posthouse …` subprocesses: --version, servers list, tokens rotate,
data-removal, db upgrade's progress, and backup/restore of SQLite while a server process writes mail."""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path

import httpx
import pytest

import posthouse
from e2e.test_cli import assert_one_line_error
from e2e.test_cli import posthouse as run_cli
from support import ServerProcess, wait_for

MESSAGE = {"From": "app@example.com", "To": "ann@example.com", "Subject": "Receipt", "TextBody": "Thanks"}


def env_for(data_dir: Path, database_url: str) -> dict[str, str]:
    return {"POSTHOUSE_DATABASE_URL": database_url, "POSTHOUSE_DATA_DIR": str(data_dir)}


def total(server: ServerProcess, token: str | None = None, **query: str) -> int:
    answer = httpx.get(server.base_url + "/messages/outbound", params={"count": 1, "offset": 0, **query},
                       headers={"X-Postmark-Server-Token": token or server.server_token or "",
                                "Accept": "application/json"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["TotalCount"])


def status_with(server: ServerProcess, header: str, token: str, path: str = "/server") -> int:
    return httpx.get(server.base_url + path, headers={header: token, "Accept": "application/json"},
                     timeout=10).status_code


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"posthouse {posthouse.__version__}"


def test_db_upgrade_shows_its_progress_on_stderr(tmp_path: Path) -> None:
    result = run_cli("db", "upgrade", env=env_for(tmp_path, f"sqlite:///{tmp_path / 'p.db'}"))
    assert result.returncode == 0, result.stderr
    applied = result.stdout.removeprefix("applied: ").strip().split(", ")
    assert "0050_retention.sql" in applied
    # The bar's last state: every pending migration done, the last one named.
    assert f"{len(applied)}/{len(applied)}" in result.stderr and applied[-1] in result.stderr, result.stderr
    again = run_cli("db", "upgrade", env=env_for(tmp_path, f"sqlite:///{tmp_path / 'p.db'}"))
    assert again.stdout.strip() == "the database is up to date" and again.stderr == ""


def test_servers_list_and_tokens_rotate(tmp_path: Path, database_url: str) -> None:
    env = env_for(tmp_path / "data", database_url)
    with ServerProcess(tmp_path / "data", database_url) as server:
        assert server.server_token and server.account_token
        created = run_cli("servers", "create", "billing", env=env)
        assert created.returncode == 0, created.stderr
        billing_token = created.stdout.strip()

        listed = run_cli("servers", "list", env=env)
        assert listed.returncode == 0, listed.stderr
        rows = {line.split()[1]: line for line in listed.stdout.splitlines()[1:]}
        assert "billing" in rows and len(rows) == 2, listed.stdout
        assert "…" + billing_token[-4:] in rows["billing"] and "45 d" in rows["billing"]

        assert status_with(server, "X-Postmark-Server-Token", billing_token) == 200
        rotated = run_cli("tokens", "rotate", "--server", "billing", env=env)
        assert rotated.returncode == 0, rotated.stderr
        new_token = rotated.stdout.strip()
        assert len(new_token) == 36 and new_token != billing_token and "\n" not in new_token
        assert "replaced 1 token(s)" in rotated.stderr and new_token not in rotated.stderr
        # The running server stops taking the old token within its token cache (5 s).
        wait_for(lambda: status_with(server, "X-Postmark-Server-Token", billing_token) == 401, timeout=15,
                 interval=0.25)
        assert status_with(server, "X-Postmark-Server-Token", new_token) == 200
        assert status_with(server, "X-Postmark-Server-Token", server.server_token) == 200  # another server's
        assert "…" + new_token[-4:] in run_cli("servers", "list", env=env).stdout

        account = run_cli("tokens", "rotate", "--account", env=env)
        assert account.returncode == 0, account.stderr
        servers_path = "/servers?count=5&offset=0"
        wait_for(lambda: status_with(server, "X-Postmark-Account-Token", server.account_token or "",
                                     servers_path) == 401, timeout=15, interval=0.25)
        assert status_with(server, "X-Postmark-Account-Token", account.stdout.strip(), servers_path) == 200

    assert_one_line_error(run_cli("tokens", "rotate", env=env), "exactly one of --account or --server")
    assert_one_line_error(run_cli("tokens", "rotate", "--server", "nope", env=env), "no server named 'nope'")


def test_data_removal_from_the_command_line(tmp_path: Path, database_url: str) -> None:
    env = env_for(tmp_path / "data", database_url)
    with ServerProcess(tmp_path / "data", database_url) as server, server.client() as client:
        for to in ("ann@example.com", "Ann <ANN@example.com>", "bob@example.com"):
            assert client.post("/email", json={**MESSAGE, "To": to}).status_code == 200
        assert total(server, recipient="ann@example.com") == 2
        removed = run_cli("data-removal", "ann@example.com", "--requested-by", "dpo@example.com", env=env)
        assert removed.returncode == 0, removed.stderr
        found = re.fullmatch(r"data removal (\d+): Done, (\d+) row\(s\) removed", removed.stdout.strip())
        assert found is not None and int(found[2]) >= 2, removed.stdout
        assert "rows removed" in removed.stderr  # the progress bar
        assert total(server, recipient="ann@example.com") == 0 and total(server) == 1
        answer = client.get(f"/data-removals/{found[1]}", headers={
            "X-Postmark-Account-Token": server.account_token or "", "Accept": "application/json"})
        assert answer.json()["Status"] == "Done"
    assert_one_line_error(run_cli("data-removal", "not-an-address", "--requested-by", "dpo@example.com", env=env),
                          "not a valid email address")


def test_backup_while_the_server_writes_then_restore(tmp_path: Path) -> None:
    data = tmp_path / "data"
    database = data / "posthouse.db"
    env = env_for(data, f"sqlite:///{database}")
    copy = tmp_path / "backup.db"
    with ServerProcess(data, f"sqlite:///{database}") as server, server.client() as client:
        body = "x" * 4000
        for start in range(0, 1500, 500):  # some megabytes, so the copy takes several steps
            batch = client.post("/email/batch", json=[{**MESSAGE, "TextBody": f"{start + i} {body}"}
                                                      for i in range(500)])
            assert batch.status_code == 200, batch.text
        stop = threading.Event()
        sent: list[int] = []

        def keep_sending() -> None:  # bounded: until the backup is done, or 3,000 messages
            with server.client() as writer:
                while not stop.is_set() and len(sent) < 3000:
                    assert writer.post("/email", json=MESSAGE).status_code == 200
                    sent.append(1)

        sender = threading.Thread(target=keep_sending)
        sender.start()
        try:
            wait_for(lambda: len(sent) >= 20, timeout=30)
            before = total(server)
            result = run_cli("backup", str(copy), env=env, timeout=120)
            after = total(server)
        finally:
            stop.set()
            sender.join(timeout=30)
        assert result.returncode == 0, result.stderr
        assert f"to {copy}" in result.stdout and "backing up (pages)" in result.stderr
        assert len(sent) > 20 and after > before, (before, after)  # mail was accepted during the backup
        with sqlite3.connect(copy) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
            in_copy = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        conn.close()
        assert before <= in_copy <= after  # one moment of the database, during the backup
        assert not copy.with_name(copy.name + ".partial").exists()
        assert_one_line_error(run_cli("backup", str(copy), env=env), "already exists")
        # The server holds the database: restore refuses, and changes nothing.
        refused = run_cli("restore", str(copy), env=env)
        assert_one_line_error(refused, "in use by a running Posthouse")
        final = total(server)
        assert final > in_copy

    restored = run_cli("restore", str(copy), env=env, timeout=120)
    assert restored.returncode == 0, restored.stderr
    with ServerProcess(data, f"sqlite:///{database}") as server:
        server.server_token = server.server_token or _first_token(server, env)
        assert total(server) == in_copy  # the database as backed up, served again
    assert_one_line_error(run_cli("restore", str(tmp_path / "missing.db"), env=env), "no backup file")
    not_posthouse = tmp_path / "other.db"
    sqlite3.connect(not_posthouse).close()
    assert_one_line_error(run_cli("restore", str(not_posthouse), env=env), "not a Posthouse SQLite database")


def _first_token(server: ServerProcess, env: dict[str, str]) -> str:
    """The restarted server prints no token (the database has them): make one for its first server."""
    name = run_cli("servers", "list", env=env).stdout.splitlines()[1].split()[1]
    made = run_cli("tokens", "create", "--server", name, env=env)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_backup_and_restore_point_postgresql_users_to_pg_dump(tmp_path: Path, command: str) -> None:
    env = env_for(tmp_path, "postgresql://nobody@127.0.0.1:1/none")
    assert_one_line_error(run_cli(command, str(tmp_path / "b.db"), env=env), "pg_dump")
