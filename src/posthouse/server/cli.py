"""The composition root and the `posthouse` command: builds settings, store and services, runs the roles."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from posthouse.client.config import VERSION
from posthouse.server.config import Settings, load_settings
from posthouse.server.errors import ConfigurationError, PosthouseError
from posthouse.server.logs import configure_logging, log_event
from posthouse.server.store import open_store_for
from posthouse.server.store.base import Store

T = TypeVar("T")
log = logging.getLogger("posthouse")


def _run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run on uvloop when available (docs/architecture.md §6a); every PosthouseError is one line, no traceback."""
    try:
        try:
            import uvloop
        except ImportError:
            return asyncio.run(coro_fn())  # type: ignore[arg-type]
        return uvloop.run(coro_fn())  # type: ignore[arg-type]
    except ConfigurationError as exc:
        click.echo(f"posthouse: error: {exc}", err=True)
        sys.exit(2)
    except PosthouseError as exc:
        click.echo(f"posthouse: error: {exc}", err=True)
        sys.exit(1)


async def _open_store(settings: Settings) -> Store:
    store = open_store_for(settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous,
                           sqlite_allow_unsafe_synchronous=settings.sqlite_allow_unsafe_synchronous)
    await store.open()
    try:
        await store.migrate()
    except BaseException:
        await store.close()
        raise
    return store


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    return load_settings(overrides, config_file=ctx.obj.get("config"))


class _Bar:
    """A rich progress bar on stderr (stdout stays for what scripts read), shown from its first update: a
    command refused before any work prints its one error line and no empty bar. Updates may come from a
    thread (rich's Progress takes a lock)."""

    def __init__(self, description: str) -> None:
        self.description = description
        self._progress: Any = None
        self._task: Any = None

    def update(self, completed: int, total: int | None = None, description: str | None = None) -> None:
        if self._progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=Console(stderr=True))
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=None)
        self._progress.update(self._task, completed=completed, total=total,
                              description=description or self.description)

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def _fail(message: str, status: int = 2) -> NoReturn:
    click.echo(f"posthouse: error: {message}", err=True)
    sys.exit(status)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ConfigurationError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _raise_file_limit(settings: Settings) -> None:
    """Every connection is a file descriptor: take the hard limit for the soft one (a common soft limit
    is 1024, fewer than the two listeners' caps), and say so when even that is below the caps."""
    import resource

    # The API and the tracking listener each have their own cap (the tracking one faces the public).
    needed = 2 * settings.http_max_connections + settings.smtp_max_connections + 256  # + the store, logs, workers
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard == resource.RLIM_INFINITY else max(soft, min(hard, needed))
    if soft != resource.RLIM_INFINITY and wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning("the open-file limit (%d) is below 2 × http_max_connections + smtp_max_connections + 256 (%d): "
                    "raise it (ulimit -n) or lower the caps, or a flood of connections can exhaust it", soft, needed)


# -- serve ------------------------------------------------------------------------------------


async def serve(settings: Settings, *, announce: Callable[[str], None] = click.echo) -> None:
    """Run every configured role in this process until SIGINT/SIGTERM, then stop in order:
    stop accepting HTTP, let the worker finish what it holds, close transports, close the store."""

    from posthouse.server.runtime import Runtime

    roles = settings.role_set
    _raise_file_limit(settings)
    # Bind every listener first, so a port in use is reported before anything else happens.
    sock = _bind(*settings.http_address) if "api" in roles else None
    tracking_sock = _bind(*settings.tracking_address) if "tracking" in roles else None
    metrics_address = settings.metrics_address if settings.metrics_enabled else None
    metrics_sock = _bind(*metrics_address) if metrics_address is not None else None
    smtp_socks = [(_bind(host, port), implicit) for host, port, implicit in settings.smtp_listeners] \
        if "smtp" in roles else []
    inbound_socks = [(_bind(host, port), False) for host, port in settings.inbound_listeners] \
        if "inbound" in roles else []
    store = await _open_store(settings)
    runtime = Runtime(settings, store)
    tokens = await runtime.accounts.bootstrap()
    await runtime.accounts.adopt_legacy_hooks()
    if tokens is not None:
        announce('Created server "default". These tokens are shown once; only their hashes are stored.')
        announce(f"  Server token:  {tokens[0]}")
        announce(f"  Account token: {tokens[1]}")
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    tasks: list[asyncio.Task[Any]] = []
    http_server: Any = None
    tracking_server: Any = None
    tracking_task: asyncio.Task[Any] | None = None
    metrics_server: Any = None
    metrics_task: asyncio.Task[Any] | None = None
    smtp_server: Any = None
    inbound_server: Any = None
    listening: list[str] = []
    try:
        if smtp_socks:
            smtp_server = runtime.smtp_server()
            await smtp_server.start_on_sockets(smtp_socks)
            runtime.ready["smtp"] = True
            names = ", ".join(("smtps://" if implicit else "") + "{}:{}".format(*s.getsockname()[:2])
                              for s, implicit in smtp_socks)
            listening.append(f"SMTP on {names}")
            announce(f"SMTP TLS certificate: {runtime.smtp_certificate}")
        if inbound_socks:
            inbound_server = runtime.inbound_smtp_server()
            await inbound_server.start_on_sockets(inbound_socks)
            runtime.ready["inbound"] = True
            listening.append("inbound SMTP on " + ", ".join("{}:{}".format(*s.getsockname()[:2])
                                                            for s, _ in inbound_socks))
        if "worker" in roles:
            await runtime.start_worker()
            assert runtime.worker_task is not None
            tasks.append(runtime.worker_task)
        if tracking_sock is not None:
            # The tracking listener faces every reader of every message: the same connection cap and
            # deadlines as the API's (api/listener.py), a guard of its own.
            tracking_config, _ = _guarded_http_config(await runtime.start_tracking(), settings)
            tracking_server = _uvicorn_server(tracking_config)
            tracking_task = asyncio.create_task(tracking_server.serve(sockets=[tracking_sock]), name="tracking-http")
            tasks.append(tracking_task)
            while not tracking_server.started and not tracking_task.done():  # noqa: ASYNC110 — uvicorn has only a flag
                await asyncio.sleep(0.01)
            runtime.ready["tracking"] = True
            listening.append("tracking on http://{}:{}".format(*tracking_sock.getsockname()[:2]))
        if metrics_sock is not None and runtime.metrics_app is not None:
            # /metrics and /healthz alone, for a process without the api role (a worker node).
            metrics_config, _ = _guarded_http_config(runtime.metrics_app, settings)
            metrics_server = _uvicorn_server(metrics_config)
            metrics_task = asyncio.create_task(metrics_server.serve(sockets=[metrics_sock]), name="metrics-http")
            tasks.append(metrics_task)
            while not metrics_server.started and not metrics_task.done():  # noqa: ASYNC110 — uvicorn has only a flag
                await asyncio.sleep(0.01)
            listening.append("metrics on http://{}:{}/metrics".format(*metrics_sock.getsockname()[:2]))
        if sock is not None:
            config, runtime.http_guard = _guarded_http_config(runtime.app, settings)
            http_server = _uvicorn_server(config)
            tasks.append(asyncio.create_task(http_server.serve(sockets=[sock]), name="http"))
            while not http_server.started and not tasks[-1].done():  # noqa: ASYNC110 — uvicorn has only a flag
                await asyncio.sleep(0.01)
            runtime.ready["api"] = True
            host, port = sock.getsockname()[:2]
            listening.insert(0, f"HTTP API on http://{host}:{port}")
        # What startup made (modules, the runtime and its caches) lives as long as the process: out of the cycle
        # collector's way. Each full collection walked every such object (about 65,000); with them frozen the
        # collector's time under the SMTP benchmark halved (0.10-0.16 s -> 0.06 s for 5,000 messages).
        gc.freeze()
        announce(f"Posthouse is listening: {', '.join(listening) or 'no listeners'} "
                 f"(roles: {','.join(sorted(roles))}; delivery: {settings.delivery}; database: {store.dialect})")
        log_event(log, logging.INFO, "started", listening=", ".join(listening), roles=",".join(sorted(roles)),
                  delivery=settings.delivery, database=store.dialect)
        waiter = asyncio.create_task(stopping.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        for task in done:
            if task is not waiter and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        if http_server is not None:
            http_server.should_exit = True
            await asyncio.gather(tasks[-1], return_exceptions=True)
        if tracking_server is not None and tracking_task is not None:
            tracking_server.should_exit = True
            await asyncio.gather(tracking_task, return_exceptions=True)
        if metrics_server is not None and metrics_task is not None:
            metrics_server.should_exit = True
            await asyncio.gather(metrics_task, return_exceptions=True)
        if smtp_server is not None:
            await smtp_server.stop(grace=10.0)
        if inbound_server is not None:
            await inbound_server.stop(grace=10.0)
        await runtime.stop()
        await store.close()


def _guarded_http_config(app: Any, settings: Settings) -> tuple[Any, Any]:
    """uvicorn's configuration for one HTTP listener behind its own ConnectionGuard (cap and deadlines)."""
    import uvicorn

    from posthouse.server.api.listener import ConnectionGuard

    header_timeout, keep_alive_timeout, _, _ = settings.http_timeouts
    guard = ConnectionGuard(max_connections=settings.http_max_connections, header_timeout=header_timeout,
                            keep_alive_timeout=keep_alive_timeout)
    # uvicorn calls `http` to make each connection's protocol, so a factory works where its stubs say a class.
    protocol: Any = guard.protocol_factory()
    # log_config=None: uvicorn's lines go through the one handler `logs.configure_logging` set up, in its format.
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False, loop="none", log_config=None,
                            http=protocol, timeout_keep_alive=max(1, round(keep_alive_timeout)))
    return config, guard


def _uvicorn_server(config: Any) -> Any:
    """uvicorn's Server without its own signal handling: `serve` owns SIGINT/SIGTERM and the stop order."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(config)


@click.group()
@click.version_option(VERSION, "--version", prog_name="posthouse", message="%(prog)s %(version)s")
@click.option("--config", "config_file", envvar="POSTHOUSE_CONFIG", default=None,
              help="TOML file with settings (keys as in `posthouse settings`).")
@click.pass_context
def main(ctx: click.Context, config_file: str | None) -> None:
    """Posthouse: self-hosted transactional email with a Postmark-compatible API."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config_file


@main.command("serve")
@click.option("--http", help="HOST:PORT for the HTTP API [POSTHOUSE_HTTP, 127.0.0.1:8080].")
@click.option("--data-dir", help="Data folder [POSTHOUSE_DATA_DIR, ./posthouse-data].")
@click.option("--database", "database_url", help="sqlite:///PATH or postgresql://… [POSTHOUSE_DATABASE_URL].")
@click.option("--delivery", type=click.Choice(["sandbox", "relay", "mx"]),
              help="Delivery mode: sandbox, relay (a smarthost) or mx (recipients' MX hosts) [POSTHOUSE_DELIVERY].")
@click.option("--relay", "relay_url", help="Smarthost URL for relay delivery [POSTHOUSE_RELAY_URL].")
@click.option("--smtp", multiple=True, help="SMTP listener HOST:PORT, or smtps://HOST:PORT for implicit TLS; "
              "repeat for several [POSTHOUSE_SMTP, 127.0.0.1:2525].")
@click.option("--tracking", "tracking_http",
              help="HOST:PORT for the tracking listener [POSTHOUSE_TRACKING_HTTP, 127.0.0.1:8081].")
@click.option("--smtp-inbound", "smtp_inbound",
              help="Inbound (MX) SMTP listeners HOST:PORT, comma-separated; run with the inbound role "
              "[POSTHOUSE_SMTP_INBOUND].")
@click.option("--role", "roles",
              help="Roles to run: api, smtp, worker, tracking, inbound (comma-separated) [POSTHOUSE_ROLES].")
@click.option("--log-format", "log_format", type=click.Choice(["human", "json"]),
              help="Log lines for people or one JSON object per line [POSTHOUSE_LOG_FORMAT, human].")
@click.pass_context
def serve_command(ctx: click.Context, /, **flags: Any) -> None:
    """Start the HTTP API, the SMTP submission server, the delivery workers and the tracking listener."""
    flags["smtp"] = ",".join(flags["smtp"]) or None
    try:
        settings = _settings(ctx, **flags)
    except ConfigurationError as exc:
        click.echo(f"posthouse: error: {exc}", err=True)
        sys.exit(2)
    configure_logging(settings.log_level, settings.log_format)
    _run(lambda: serve(settings))


@main.group("servers")
def servers_group() -> None:
    """Manage servers."""


@servers_group.command("create")
@click.argument("name")
@click.option("--database", "database_url", help="Database URL [POSTHOUSE_DATABASE_URL].")
@click.option("--data-dir", help="Data folder [POSTHOUSE_DATA_DIR].")
@click.pass_context
def servers_create(ctx: click.Context, /, name: str, **flags: Any) -> None:
    """Create a server; print its server token alone on stdout."""
    from posthouse import wire
    from posthouse.server.errors import ApiError
    from posthouse.server.services.accounts import AccountService
    from posthouse.server.services.clock import Clock

    async def run() -> str:
        store = await _open_store(_settings(ctx, **flags))
        try:
            _, token = await AccountService(store, Clock()).create_server(wire.ServerRequest(name=name))
            return token
        except ApiError as exc:
            raise ConfigurationError(exc.message) from None
        finally:
            await store.close()

    click.echo(_run(run))


@servers_group.command("list")
@click.option("--database", "database_url", help="Database URL [POSTHOUSE_DATABASE_URL].")
@click.option("--data-dir", help="Data folder [POSTHOUSE_DATA_DIR].")
@click.pass_context
def servers_list(ctx: click.Context, /, **flags: Any) -> None:
    """List servers: ID, name, delivery type, retention days, token hints (the last 4 characters)."""

    async def run() -> list[tuple[int, str, str, str, str]]:
        settings = _settings(ctx, **flags)
        store = await _open_store(settings)
        try:
            rows = []
            offset = 0
            while True:
                _, page = await store.list_servers(offset, 500, None)
                for record in page:
                    hints = ",".join("…" + h for h in await store.token_hints(record.id))
                    rows.append((record.id, record.name, str(record.settings.get("delivery_type", "Live")),
                                 str(record.settings.get("retention_days") or settings.retention_days), hints))
                if len(page) < 500:
                    return rows
                offset += len(page)
        finally:
            await store.close()

    rows = _run(run)
    click.echo(f"{'ID':>6}  {'NAME':32} {'DELIVERY':9} {'RETENTION':9} TOKENS")
    for server_id, name, delivery, retention, hints in rows:
        click.echo(f"{server_id:>6}  {name:32} {delivery:9} {retention + ' d':9} {hints}")


@main.group("tokens")
def tokens_group() -> None:
    """Manage API tokens."""


@tokens_group.command("create")
@click.option("--account", is_flag=True, help="Create an account token.")
@click.option("--server", "server_name", help="Create another token for this server.")
@click.option("--database", "database_url", help="Database URL [POSTHOUSE_DATABASE_URL].")
@click.option("--data-dir", help="Data folder [POSTHOUSE_DATA_DIR].")
@click.pass_context
def tokens_create(ctx: click.Context, /, account: bool, server_name: str | None, **flags: Any) -> None:
    """Create a token and print it alone on stdout (only its hash is stored)."""
    from posthouse.server.services.accounts import AccountService
    from posthouse.server.services.clock import Clock

    if account == bool(server_name):
        click.echo("posthouse: error: give exactly one of --account or --server NAME", err=True)
        sys.exit(2)

    async def run() -> str:
        store = await _open_store(_settings(ctx, **flags))
        try:
            accounts = AccountService(store, Clock())
            if account:
                return await accounts.create_account_token()
            record = await store.get_server_by_name(server_name or "")
            if record is None:
                raise ConfigurationError(f"no server named {server_name!r}")
            return await accounts.create_server_token(record.id)
        finally:
            await store.close()

    click.echo(_run(run))


@tokens_group.command("rotate")
@click.option("--account", is_flag=True, help="Rotate the account token(s).")
@click.option("--server", "server_name", help="Rotate this server's token(s).")
@click.option("--grace", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds the replaced tokens keep working (0: refused at once).")
@click.option("--database", "database_url", help="Database URL [POSTHOUSE_DATABASE_URL].")
@click.option("--data-dir", help="Data folder [POSTHOUSE_DATA_DIR].")
@click.pass_context
def tokens_rotate(ctx: click.Context, /, account: bool, server_name: str | None, grace: float, **flags: Any) -> None:
    """Replace every token of a server (or the account) with one new token, printed alone on stdout, once.
    Running processes stop taking a replaced token within 5 s (their token cache)."""
    from posthouse.server.services.accounts import AccountService
    from posthouse.server.services.clock import Clock

    if account == bool(server_name):
        _fail("give exactly one of --account or --server NAME")

    async def run() -> tuple[str, int]:
        store = await _open_store(_settings(ctx, **flags))
        try:
            server_id = None
            if server_name:
                record = await store.get_server_by_name(server_name)
                if record is None:
                    raise ConfigurationError(f"no server named {server_name!r}")
                server_id = record.id
            return await AccountService(store, Clock()).rotate_token(server_id, grace)
        finally:
            await store.close()

    token, replaced = _run(run)
    click.echo(token)
    after = f"after {grace:g} s" if grace else "now"
    click.echo(f"replaced {replaced} token(s); they are refused {after}. The new token is not shown again.",
               err=True)


@main.group("users")
def users_group() -> None:
    """Manage the dashboard's operator accounts (they sign in at /ui/)."""


def _operators(store: Store) -> Any:
    from posthouse.server.services.accounts import AccountService
    from posthouse.server.services.clock import Clock
    from posthouse.server.services.operators import OperatorService

    return OperatorService(store, Clock(), AccountService(store, Clock()))


@users_group.command("create")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.option("--database", "database_url", help="Database URL [POSTHOUSE_DATABASE_URL].")
@click.option("--data-dir", help="Data folder [POSTHOUSE_DATA_DIR].")
@click.pass_context
def users_create(ctx: click.Context, /, email: str, password_stdin: bool, **flags: Any) -> None:
    """Create a dashboard user; the password is asked for twice (or read from stdin), only its hash is stored."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif not sys.stdin.isatty():
        click.echo("posthouse: error: no terminal to ask for the password on; pipe it in with --password-stdin",
                   err=True)
        sys.exit(2)
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password")

    async def run() -> str:
        store = await _open_store(_settings(ctx, **flags))
        try:
            return str((await _operators(store).create_user(email, password)).email)
        finally:
            await store.close()

    click.echo(f"Created dashboard user {_run(run)}.")


@users_group.command("list")
@click.option("--database", "database_url", help="Database URL [POSTHOUSE_DATABASE_URL].")
@click.option("--data-dir", help="Data folder [POSTHOUSE_DATA_DIR].")
@click.pass_context
def users_list(ctx: click.Context, /, **flags: Any) -> None:
    """List the dashboard users: email, when made, last sign-in (UTC)."""
    from posthouse.server.services.clock import from_micros

    async def run() -> list[Any]:
        store = await _open_store(_settings(ctx, **flags))
        try:
            return list(await _operators(store).list_users())
        finally:
            await store.close()

    users = _run(run)
    if not users:
        click.echo("no dashboard users (sign in with the account token, or run `posthouse users create EMAIL`)")
    for user in users:
        last = from_micros(user.last_login_at).strftime("%Y-%m-%d %H:%M") if user.last_login_at else "never"
        click.echo(f"{user.email:40} created {from_micros(user.created_at):%Y-%m-%d %H:%M}  last sign-in {last}")


@users_group.command("delete")
@click.argument("email")
@click.option("--database", "database_url", help="Database URL [POSTHOUSE_DATABASE_URL].")
@click.option("--data-dir", help="Data folder [POSTHOUSE_DATA_DIR].")
@click.pass_context
def users_delete(ctx: click.Context, /, email: str, **flags: Any) -> None:
    """Delete a dashboard user; their sessions end at once."""

    async def run() -> None:
        store = await _open_store(_settings(ctx, **flags))
        try:
            await _operators(store).delete_user(email)
        finally:
            await store.close()

    _run(run)
    click.echo(f"Deleted dashboard user {email.strip().lower()}.")


@main.group("db")
def db_group() -> None:
    """Database maintenance."""


@db_group.command("upgrade")
@click.option("--database", "database_url", help="Database URL [POSTHOUSE_DATABASE_URL].")
@click.option("--data-dir", help="Data folder [POSTHOUSE_DATA_DIR].")
@click.pass_context
def db_upgrade(ctx: click.Context, /, **flags: Any) -> None:
    """Apply pending migrations."""

    async def run() -> list[str]:
        settings = _settings(ctx, **flags)
        store = open_store_for(settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous,
                               sqlite_allow_unsafe_synchronous=settings.sqlite_allow_unsafe_synchronous)
        await store.open()
        try:
            with _Bar("migrating") as bar:
                return await store.migrate(on_applied=lambda name, done, pending: bar.update(
                    done, pending, f"migration {name}"))
        finally:
            await store.close()

    applied = _run(run)
    click.echo("applied: " + ", ".join(applied) if applied else "the database is up to date")


@main.command("data-removal")
@click.argument("address")
@click.option("--requested-by", required=True, help="Who asks for the removal (an email address; recorded).")
@click.option("--database", "database_url", help="Database URL [POSTHOUSE_DATABASE_URL].")
@click.option("--data-dir", help="Data folder [POSTHOUSE_DATA_DIR].")
@click.pass_context
def data_removal(ctx: click.Context, /, address: str, requested_by: str, **flags: Any) -> None:
    """Remove everything stored about ADDRESS on every server now, as POST /data-removals does in the
    background (docs/postmark-api.md §8.4); prints the request's ID and the rows removed."""
    from posthouse import wire
    from posthouse.server.errors import ApiError
    from posthouse.server.services.clock import Clock
    from posthouse.server.services.retention import DataRemovalService

    async def run() -> tuple[int, str, int]:
        store = await _open_store(_settings(ctx, **flags))
        try:
            removals = DataRemovalService(store, Clock())
            try:
                created = await removals.request(wire.DataRemovalRequest(
                    requested_by=requested_by, requested_for=address, notify_when_completed=False))
            except ApiError as exc:
                raise ConfigurationError(exc.message) from None
            with _Bar("removing") as bar:
                await removals.run_pending(f"cli-{socket.gethostname()}-{os.getpid()}", removal_id=created.id,
                                           progress=lambda stage, removed: bar.update(
                                               removed, None, f"rows removed ({stage})"))
            status = await removals.get(created.id)
            return created.id, status.status, status.removed or 0
        finally:
            await store.close()

    removal_id, status, removed = _run(run)
    click.echo(f"data removal {removal_id}: {status}, {removed} row(s) removed")
    if status != "Done":
        click.echo("posthouse: some of its mail is being delivered right now; the housekeeping worker finishes "
                   f"the removal (GET /data-removals/{removal_id})", err=True)


def _sqlite_path(settings: Settings) -> Path:
    url = settings.resolved_database_url
    if not url.startswith("sqlite:///"):
        _fail("backup and restore are for SQLite; for PostgreSQL use pg_dump and pg_restore (README, \"Backups\")")
    return Path(url.removeprefix("sqlite:///") or "posthouse.db")


@main.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--database", "database_url", help="Database URL [POSTHOUSE_DATABASE_URL].")
@click.option("--data-dir", help="Data folder [POSTHOUSE_DATA_DIR].")
@click.pass_context
def backup_command(ctx: click.Context, /, path: Path, **flags: Any) -> None:
    """Copy the SQLite database to PATH (a new file), safely while the server runs (SQLite's backup API)."""
    from posthouse.server.store.backup import backup_sqlite

    try:
        database = _sqlite_path(_settings(ctx, **flags))
    except ConfigurationError as exc:
        _fail(str(exc))

    async def run() -> int:
        with _Bar("backing up (pages)") as bar:
            return await asyncio.to_thread(backup_sqlite, database, path, bar.update)

    pages = _run(run)
    click.echo(f"backed up {database} to {path} ({pages} pages, {path.stat().st_size} bytes)")


@main.command("restore")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--database", "database_url", help="Database URL [POSTHOUSE_DATABASE_URL].")
@click.option("--data-dir", help="Data folder [POSTHOUSE_DATA_DIR].")
@click.pass_context
def restore_command(ctx: click.Context, /, path: Path, **flags: Any) -> None:
    """Replace the SQLite database with the backup at PATH. Refused while a Posthouse process uses it."""
    from posthouse.server.store.backup import restore_sqlite
    from posthouse.server.workers.presence import Liveness, try_lock

    try:
        settings = _settings(ctx, **flags)
        database = _sqlite_path(settings)
    except ConfigurationError as exc:
        _fail(str(exc))

    async def running() -> list[str]:
        """Worker processes registered in the database that are alive: their lock file is held (flock), or
        (one that has no lock file) their heartbeat is recent. Every process of a SQLite database runs on this
        machine, so a lock file that is gone or not held is a process that is gone: a row a backup carried
        over from the server it was taken from is not mistaken for a running one."""
        store = open_store_for(settings.resolved_database_url)
        await store.open()
        try:
            found = []
            for worker in await store.list_workers():
                liveness, fd = try_lock(worker.lock_file)
                if fd is not None:
                    os.close(fd)
                recent = worker.heartbeat_age < settings.worker_dead_after_seconds * 1_000_000
                if liveness is Liveness.ALIVE or (not worker.lock_file and recent):
                    found.append(worker.owner)
            return found
        finally:
            await store.close()

    async def run() -> int:
        if database.exists():
            alive = await running()
            if alive:
                raise ConfigurationError(f"{database} is in use by a running Posthouse ({', '.join(alive)}); "
                                         "stop it first")
        with _Bar("restoring (pages)") as bar:
            return await asyncio.to_thread(restore_sqlite, path, database, bar.update)

    version = _run(run)
    click.echo(f"restored {database} from {path} (schema version {version}; `posthouse serve` upgrades it if older)")


@main.command("settings")
def settings_command() -> None:
    """List every setting: TOML key, environment variable, default, description."""
    from posthouse.server.config import describe_settings

    for key, env, default, description in describe_settings():
        click.echo(f"{key:32} {env:42} {default!s:28} {description}")


if __name__ == "__main__":
    main()
