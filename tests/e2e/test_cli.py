"""The `posthouse` command: scripts get tokens alone on stdout, mistakes get one line and no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import httpx
import pytest

from support import ServerProcess, free_port


def posthouse(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOUSE_")}
    # Never the default ports: a flag given by the test still wins over these.
    clean.update({"POSTHOUSE_HTTP": f"127.0.0.1:{free_port()}", "POSTHOUSE_SMTP": f"127.0.0.1:{free_port()}",
                  "POSTHOUSE_TRACKING_HTTP": f"127.0.0.1:{free_port()}"})
    return subprocess.run([sys.executable, "-m", "posthouse.server.cli", *args], capture_output=True, text=True,
                          env={**clean, **(env or {})}, timeout=timeout, check=False)


def assert_one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("posthouse: error: ")
    assert text in lines[0]


def test_servers_create_and_tokens_create_print_the_token_alone(tmp_path, database_url) -> None:  # type: ignore[no-untyped-def]
    env = {"POSTHOUSE_DATABASE_URL": database_url, "POSTHOUSE_DATA_DIR": str(tmp_path)}
    created = posthouse("servers", "create", "billing", env=env)
    assert created.returncode == 0, created.stderr
    server_token = created.stdout.strip()
    assert len(server_token) == 36 and "\n" not in server_token
    duplicate = posthouse("servers", "create", "billing", env=env)
    assert_one_line_error(duplicate, "already exists")
    account = posthouse("tokens", "create", "--account", env=env)
    assert account.returncode == 0
    account_token = account.stdout.strip()
    extra = posthouse("tokens", "create", "--server", "billing", env=env)
    assert extra.returncode == 0
    assert_one_line_error(posthouse("tokens", "create", "--server", "nope", env=env), "no server named 'nope'")
    with ServerProcess(tmp_path / "data", database_url) as server:
        for token in (server_token, extra.stdout.strip()):
            response = httpx.post(server.base_url + "/email", headers={"X-Postmark-Server-Token": token},
                                  json={"From": "a@example.com", "To": "b@example.com", "Subject": "s",
                                        "TextBody": "t"})
            assert response.status_code == 200
        servers = httpx.get(server.base_url + "/servers?count=10&offset=0",
                            headers={"X-Postmark-Account-Token": account_token}).json()
        assert "billing" in [s["Name"] for s in servers["Servers"]]


def test_db_upgrade_applies_once(tmp_path, database_url) -> None:  # type: ignore[no-untyped-def]
    env = {"POSTHOUSE_DATABASE_URL": database_url}
    first = posthouse("db", "upgrade", env=env)
    assert first.returncode == 0 and "0001_initial.sql" in first.stdout
    second = posthouse("db", "upgrade", env=env)
    assert second.returncode == 0 and "up to date" in second.stdout


def test_port_in_use_is_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = posthouse("serve", "--http", f"127.0.0.1:{port}", "--data-dir", str(tmp_path))
    assert_one_line_error(result, "address already in use")


@pytest.mark.parametrize(("args", "text"), [
    (["--delivery", "relay", "--relay", "http://relay.example.com"], "invalid relay URL"),
    (["--delivery", "relay"], "relay delivery needs a relay URL"),
    (["--http", "localhost"], "invalid HTTP address"),
    (["--database", "mysql://db"], "invalid database URL"),
    (["--database", "postgresql://nobody@127.0.0.1:1/none"], "cannot connect to PostgreSQL"),
    (["--role", "api,mailman"], "unknown role"),
    (["--tracking", "localhost"], "invalid tracking address"),
])
def test_bad_settings_are_one_line(tmp_path, args, text) -> None:  # type: ignore[no-untyped-def]
    assert_one_line_error(posthouse("serve", "--data-dir", str(tmp_path), *args), text)


def test_a_missing_geoip_database_is_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    missing = str(tmp_path / "no.mmdb")
    result = posthouse("serve", "--data-dir", str(tmp_path), env={"POSTHOUSE_GEOIP_DATABASE": missing})
    assert_one_line_error(result, "cannot open the GeoIP database")


def test_bad_environment_and_config_file_are_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = posthouse("serve", env={"POSTHOUSE_RETRY_SCHEDULE": "soonish", "POSTHOUSE_DATA_DIR": str(tmp_path)})
    assert_one_line_error(result, "invalid duration 'soonish'")
    config = tmp_path / "posthouse.toml"
    config.write_text("http = [\n")
    assert_one_line_error(posthouse("--config", str(config), "serve"), "invalid config file")


def test_toml_file_sets_the_listen_address(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port, smtp_port, tracking_port = free_port(), free_port(), free_port()
    config = tmp_path / "posthouse.toml"
    config.write_text(f'http = "127.0.0.1:{port}"\nsmtp = "127.0.0.1:{smtp_port}"\ndata_dir = "{tmp_path / "d"}"\n'
                      f'tracking_http = "127.0.0.1:{tracking_port}"\n')
    process = subprocess.Popen([sys.executable, "-m", "posthouse.server.cli", "--config", str(config), "serve"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(5)]
        listening = next(line for line in lines if "Posthouse is listening" in line)
        assert f"http://127.0.0.1:{port}" in listening and f"SMTP on 127.0.0.1:{smtp_port}" in listening
        assert f"tracking on http://127.0.0.1:{tracking_port}" in listening
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{tracking_port}/healthz").status_code == 200
    finally:
        process.terminate()
        assert process.wait(15) == 0
        process.stdout.close()  # type: ignore[union-attr]


def test_settings_lists_every_setting() -> None:
    result = posthouse("settings")
    assert result.returncode == 0
    for name in ("POSTHOUSE_HTTP", "POSTHOUSE_DATABASE_URL", "POSTHOUSE_RETRY_SCHEDULE", "POSTHOUSE_MAX_MESSAGE_AGE"):
        assert name in result.stdout
