"""The composition root and the `posthouse` command: builds settings, store and services, runs the roles."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import click

from posthouse.server.config import Settings, load_settings
from posthouse.server.errors import ConfigurationError, PosthouseError
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
    smtp_socks = [(_bind(host, port), implicit) for host, port, implicit in settings.smtp_listeners] \
        if "smtp" in roles else []
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
    smtp_server: Any = None
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
        if smtp_server is not None:
            await smtp_server.stop(grace=10.0)
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
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False, loop="none",
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
@click.option("--role", "roles",
              help="Roles to run: api, smtp, worker, tracking (comma-separated) [POSTHOUSE_ROLES].")
@click.pass_context
def serve_command(ctx: click.Context, /, **flags: Any) -> None:
    """Start the HTTP API, the SMTP submission server, the delivery workers and the tracking listener."""
    flags["smtp"] = ",".join(flags["smtp"]) or None
    try:
        settings = _settings(ctx, **flags)
    except ConfigurationError as exc:
        click.echo(f"posthouse: error: {exc}", err=True)
        sys.exit(2)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
            return await store.migrate()
        finally:
            await store.close()

    applied = _run(run)
    click.echo("applied: " + ", ".join(applied) if applied else "the database is up to date")


@main.command("settings")
def settings_command() -> None:
    """List every setting: TOML key, environment variable, default, description."""
    from posthouse.server.config import describe_settings

    for key, env, default, description in describe_settings():
        click.echo(f"{key:32} {env:42} {default!s:28} {description}")


if __name__ == "__main__":
    main()
