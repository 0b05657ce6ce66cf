"""Wiring: the services, worker and API of one process, built from settings and an opened store.

The CLI (`cli.serve`) and the in-process tests build the same object, so what is tested is what runs.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import uuid
from pathlib import Path
from typing import Any

from posthouse.server.api.app import create_app
from posthouse.server.api.limits import LimitSettings, RequestLimits
from posthouse.server.api.metrics import MetricsApp
from posthouse.server.api.state import ApiState
from posthouse.server.api.tracking import TrackingApp, create_tracking_app
from posthouse.server.config import Settings, parse_duration
from posthouse.server.dashboard.app import create_dashboard
from posthouse.server.dashboard.state import DashboardState
from posthouse.server.delivery.base import Transport
from posthouse.server.delivery.dns import Resolver
from posthouse.server.delivery.mta_sts import MtaSts
from posthouse.server.delivery.mx import MxSettings, MxTransport
from posthouse.server.delivery.relay import RelayTransport
from posthouse.server.delivery.sandbox import SandboxTransport
from posthouse.server.domain.addresses import AddressError, parse_address
from posthouse.server.domain.retry import RetryPolicy
from posthouse.server.errors import ConfigurationError
from posthouse.server.metrics import Metrics
from posthouse.server.services.accounts import AccountService
from posthouse.server.services.activity import ActivityService
from posthouse.server.services.bounces import BounceService
from posthouse.server.services.bulk import BulkService
from posthouse.server.services.clock import Clock
from posthouse.server.services.dkim_keys import KEY_KINDS, SigningKeys, StaticSigningKeys, StoredSigningKeys
from posthouse.server.services.dkim_signing import MessageSigner
from posthouse.server.services.dns_lookup import DnsPythonLookup
from posthouse.server.services.domains import DomainService, DomainSettings
from posthouse.server.services.geoip import GeoIp
from posthouse.server.services.hints import WebhookHints
from posthouse.server.services.history import HistoryService
from posthouse.server.services.inbound import InboundService, InboundSmtpHandler
from posthouse.server.services.inbound_bounces import BounceReceiver
from posthouse.server.services.operators import OperatorService, TokenLogin
from posthouse.server.services.queue_gauges import QueueGauges
from posthouse.server.services.rate_limits import RateLimiter
from posthouse.server.services.retention import DataRemovalService, RetentionService
from posthouse.server.services.returnpaths import ReturnPaths
from posthouse.server.services.sender_policy import SenderPolicy
from posthouse.server.services.sending import SendingService
from posthouse.server.services.signing_process import SigningProcess
from posthouse.server.services.spamd import SpamChecker
from posthouse.server.services.spf import SpfChecker
from posthouse.server.services.stats import StatsService
from posthouse.server.services.submission import SubmissionService
from posthouse.server.services.suppressions import SuppressionService
from posthouse.server.services.templates import TemplateService
from posthouse.server.services.tracking import TrackingService
from posthouse.server.services.tracking_key import TrackingKey
from posthouse.server.services.wakeup import Wakeup
from posthouse.server.services.webhooks import WebhookService
from posthouse.server.store.base import Store
from posthouse.server.webhooks.poster import WebhookPoster
from posthouse.server.workers.attempt_log import AttemptLog
from posthouse.server.workers.bulk import BulkWorker
from posthouse.server.workers.delivery import DeliveryWorker
from posthouse.server.workers.housekeeping import Housekeeper
from posthouse.server.workers.presence import WorkerPresence
from posthouse.server.workers.tracking import TrackingRecorder
from posthouse.server.workers.webhooks import WebhookDispatcher

BULK_LEASE_SECONDS = 60.0  # extended after every chunk, so only a dead expander's lease runs out


def relay_ssl_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if settings.relay_ca_file:
        try:
            context.load_verify_locations(settings.relay_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"cannot load relay CA file {settings.relay_ca_file}: {exc}") from None
    if not settings.relay_tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def mx_transport(settings: Settings, hostname: str) -> MxTransport:
    """The mx transport with its resolver and MTA-STS policies, from the settings."""
    connect, reply, idle, wait, dns_timeout = settings.mx_timeouts
    resolver = Resolver(settings.dns_servers, timeout=dns_timeout, dnssec=settings.dns_dnssec)
    mta_sts = None
    if settings.mx_mta_sts:
        context = ssl.create_default_context()
        if settings.mx_tls_ca_file:
            try:
                context.load_verify_locations(settings.mx_tls_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigurationError(f"cannot load mx_tls_ca_file {settings.mx_tls_ca_file}: {exc}") from None
        mta_sts = MtaSts(resolver, ssl_context=context, timeout=connect)
    versions = {"both": (6, 4), "4": (4,), "6": (6,)}[settings.mx_ip_version]
    return MxTransport(MxSettings(
        ehlo_name=settings.mx_ehlo_name or hostname, port=settings.mx_port, ip_versions=versions,
        limits=settings.mx_limits, sources=settings.mx_sources,
        recipients_per_transaction=settings.mx_recipients_per_transaction, connect_timeout=connect,
        command_timeout=reply, idle_seconds=idle, max_addresses=settings.mx_max_addresses, destination_wait=wait,
        dane=settings.mx_dane, ca_file=settings.mx_tls_ca_file), resolver, mta_sts)


class Runtime:
    """Services for every role; the worker runs only after `start_worker()`."""

    def __init__(self, settings: Settings, store: Store, *, clock: Clock | None = None,
                 transport: Transport | None = None, signing_keys: SigningKeys | None = None,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock or Clock()
        # Prometheus series of this process (metrics.py): the store's commits and write queue, from here on.
        self.metrics = metrics or Metrics()
        store.on_commit = lambda size, seconds: self.metrics.observe_commit(store.dialect, size, seconds)
        self.metrics.write_queue.set_function(lambda: store.pending_writes)
        self.wakeup = Wakeup()
        self.webhook_hints = WebhookHints(store)
        self.accounts = AccountService(store, self.clock, settings.webhook_networks, self.webhook_hints,
                                       default_retention_days=settings.retention_days)
        self.history = HistoryService(store, self.clock)
        self.sending = SendingService(store, self.accounts, self.clock, self.wakeup,
                                      sandbox_all=settings.delivery == "sandbox",
                                      max_schedule_ahead=settings.max_schedule_ahead_seconds,
                                      tracking_base_url=settings.resolved_tracking_base_url, metrics=self.metrics,
                                      rate_limit=RateLimiter(settings.rate_limit_per_server, settings.rate_limit_burst)
                                      if settings.rate_limit_per_server > 0 else None)
        hostname = settings.smtp_hostname or socket.getfqdn()
        return_path = settings.return_path_parts(hostname)
        self.return_paths = ReturnPaths(store, *return_path) if return_path else None
        self.bounce_receiver = BounceReceiver(store, self.return_paths, self.clock) if self.return_paths else None
        # Sending domains and sender signatures (issue 14). `signing_keys` is what DKIM signing reads.
        bounce_domain = return_path[1] if return_path else hostname.lower()
        self.signing_keys = StoredSigningKeys(store)
        confirmation_from = settings.sender_confirmation_from.strip() or f"postmaster@{bounce_domain}"
        try:
            operator = [parse_address(confirmation_from).email]
        except AddressError:
            operator = []  # its confirmation mail is refused with the reason, at create and resend
        self.sender_policy = SenderPolicy(store, settings.sender_policy, always_allowed=operator)
        self.sending.sender_policy = self.sender_policy
        self.dns = DnsPythonLookup(settings.dns_servers, settings.dns_timeout_seconds)
        self.domains = DomainService(store, self.accounts, self.sending, self.clock, self.dns, DomainSettings(
            key_kinds=KEY_KINDS[settings.dkim_keys], bounce_domain=bounce_domain,
            spf_include=settings.spf_include.strip() or bounce_domain, confirmation_from=confirmation_from,
            confirmation_server=settings.sender_confirmation_server.strip(),
            confirmation_base_url=settings.resolved_api_base_url))
        self.submission = SubmissionService(self.accounts, self.sending, settings.trusted_networks, hostname,
                                            bounces=self.bounce_receiver)
        self.sandbox = SandboxTransport(settings.bounce_testing_domain, hostname, self.clock.now)
        if transport is None and settings.delivery == "relay" and settings.relay is not None:
            transport = RelayTransport(
                settings.relay, max_connections=settings.relay_max_connections,
                messages_per_connection=settings.relay_messages_per_connection,
                ssl_context=relay_ssl_context(settings), timeout=settings.smtp_timeout_seconds)
        if transport is None and settings.delivery == "mx":
            transport = mx_transport(settings, hostname)
        self.transport: Transport = transport or self.sandbox
        # DKIM (issue 14): keys given to the constructor, else an operator's key folder (`dkim_key_dir`), else
        # the verified keys of the Domains API. A domain without a key is sent unsigned.
        if signing_keys is None and settings.dkim_key_dir:
            signing_keys = StaticSigningKeys.from_directory(settings.dkim_key_dir)
        self.signer = MessageSigner(signing_keys if signing_keys is not None else self.signing_keys, self.clock,
                                    process=SigningProcess() if settings.dkim_signing_process else None)
        self.ready: dict[str, bool] = {role: False for role in settings.role_set}
        self.bounces = BounceService(store, self.clock)
        self.suppressions = SuppressionService(store, self.accounts, self.clock)
        self.webhooks = WebhookService(store, self.accounts, self.clock, settings.webhook_networks,
                                       hints=self.webhook_hints)
        self.templates = TemplateService(store, self.accounts, self.sending, self.clock)
        self.bulk_wakeup = Wakeup()
        self.bulk = BulkService(store, self.sending, self.accounts, self.clock, self.bulk_wakeup, self.templates)
        self.webhook_wakeup = Wakeup()
        # Inbound mail (issue 16): the MX-style listener's handler stores it, the webhook dispatcher posts it.
        spamd = settings.inbound_spamd_address
        self.inbound = InboundService(
            store, self.accounts, self.clock, hostname=hostname,
            address_domain=settings.resolved_inbound_address_domain(hostname),
            max_message_size=settings.inbound_max_message_size,
            max_attachments_size=settings.inbound_max_attachments_size,
            spf=SpfChecker(receiver=hostname, nameservers=settings.dns_servers,
                           timeout=parse_duration(settings.inbound_dns_timeout)) if settings.inbound_spf else None,
            spam=SpamChecker(spamd[0], spamd[1], timeout=parse_duration(settings.inbound_spamd_timeout),
                             max_size=settings.inbound_spamd_max_size) if spamd else None,
            on_stored=self.webhook_wakeup.notify)
        _, _, body_timeout, body_wait = settings.http_timeouts
        self.limits = RequestLimits(LimitSettings(
            body_budget=settings.http_body_budget, body_wait=body_wait, body_timeout=body_timeout,
            test_token_max_body=settings.test_token_max_body, test_token_concurrency=settings.test_token_concurrency,
            requests_per_token=settings.api_rate_limit_per_token, requests_burst=settings.api_rate_limit_burst))
        self.housekeeping_wakeup = Wakeup()  # a data removal was requested: the housekeeper starts on it now
        self.retention = RetentionService(store, self.accounts, self.clock)
        self.removals = DataRemovalService(store, self.clock, self.housekeeping_wakeup)
        self.http_guard: Any = None  # the HTTP listener's ConnectionGuard, set by cli.serve when it listens
        self.queue_gauges = QueueGauges(store, self.metrics, self.clock)
        # /metrics on the API listener (and alone on `metrics_http`); None when metrics are turned off.
        self.metrics_app = MetricsApp(self.metrics, self.queue_gauges, token=settings.metrics_token,
                                      networks=settings.metrics_networks, ready=lambda: all(self.ready.values())) \
            if settings.metrics_enabled else None
        stats = StatsService(store)
        self.operators = OperatorService(store, self.clock, self.accounts,
                                         token_login=TokenLogin(settings.dashboard_token_login),
                                         session_seconds=settings.dashboard_session_seconds)
        self.activity = ActivityService(store, self.history, stats, self.clock)
        dashboard = create_dashboard(DashboardState(
            accounts=self.accounts, activity=self.activity, operators=self.operators,
            templates=self.templates, webhooks=self.webhooks, domains=self.domains,
            sandbox_all=settings.delivery == "sandbox", secure_cookies=settings.dashboard_secure_cookies,
            stats=stats, suppressions=self.suppressions, bounces=self.bounces, inbound=self.inbound,
        )) if settings.dashboard else None
        self.app = create_app(ApiState(accounts=self.accounts, sending=self.sending, history=self.history,
                                       bounces=self.bounces, suppressions=self.suppressions, webhooks=self.webhooks,
                                       templates=self.templates, bulk=self.bulk,
                                       idempotency=self.sending.idempotency, stats=stats,
                                       domains=self.domains,
                                       ready=lambda: all(self.ready.values()), limits=self.limits,
                                       removals=self.removals, inbound=self.inbound,
                                       metrics=self.metrics, metrics_endpoint=self.metrics_app), dashboard)
        self.tracking_key = TrackingKey(store)  # one read of the installation key for the worker and listener
        self.worker: DeliveryWorker | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self.dispatcher: WebhookDispatcher | None = None
        self._dispatcher_task: asyncio.Task[None] | None = None
        self.bulk_worker: BulkWorker | None = None
        self._bulk_task: asyncio.Task[None] | None = None
        self.housekeeper: Housekeeper | None = None
        self._housekeeping_task: asyncio.Task[None] | None = None
        self.presence: WorkerPresence | None = None
        self._presence_task: asyncio.Task[None] | None = None
        self.tracking: TrackingService | None = None
        self.tracking_recorder: TrackingRecorder | None = None
        self._tracking_task: asyncio.Task[None] | None = None
        self.geo: GeoIp | None = None

    def smtp_server(self) -> Any:
        """The SMTP submission server for this process's settings (not started): TLS from the configured
        certificate, or a self-signed one made once in the data dir."""
        from posthouse.server.smtp.certificates import ensure_self_signed, server_context
        from posthouse.server.smtp.server import SmtpServer, SmtpServerConfig

        s = self.settings
        hostname = s.smtp_hostname or socket.getfqdn()
        if s.smtp_tls_cert:
            cert, key = s.smtp_tls_cert, s.smtp_tls_key
        else:
            cert, key = ensure_self_signed(s.data_dir, hostname)  # type: ignore[assignment]
        config = SmtpServerConfig(
            hostname=hostname, max_message_size=s.smtp_max_message_size, max_recipients=s.smtp_max_recipients,
            command_timeout=parse_duration(s.smtp_command_timeout), data_timeout=parse_duration(s.smtp_data_timeout),
            max_connections=s.smtp_max_connections, max_connections_per_client=s.smtp_max_connections_per_client,
            unauthenticated_timeout=parse_duration(s.smtp_unauthenticated_timeout),
            auth_requires_tls=s.smtp_auth_requires_tls,
            plaintext_auth_networks=s.plaintext_auth_networks,
            return_domain=self.return_paths.domain if self.return_paths else "",
            other_return_domain=self.return_paths.is_return_domain if self.return_paths else None)
        self.smtp_certificate = str(cert)
        return SmtpServer(self.submission, config, server_context(cert, key), tally=self.metrics.smtp)

    def inbound_smtp_server(self) -> Any:
        """The inbound (MX, port-25 style) SMTP server (not started): no AUTH, mail for inbound addresses and
        return paths only, STARTTLS with the submission listener's certificate."""
        from posthouse.server.smtp.certificates import ensure_self_signed, server_context
        from posthouse.server.smtp.server import SmtpServer, SmtpServerConfig

        s = self.settings
        hostname = s.smtp_hostname or socket.getfqdn()
        if s.smtp_tls_cert:
            cert, key = s.smtp_tls_cert, s.smtp_tls_key
        else:
            cert, key = ensure_self_signed(s.data_dir, hostname)  # type: ignore[assignment]
        config = SmtpServerConfig(
            hostname=hostname, max_message_size=s.inbound_max_message_size, max_recipients=s.smtp_max_recipients,
            command_timeout=parse_duration(s.smtp_command_timeout), data_timeout=parse_duration(s.smtp_data_timeout),
            max_connections=s.smtp_max_connections, max_connections_per_client=s.smtp_max_connections_per_client,
            unauthenticated_timeout=parse_duration(s.smtp_unauthenticated_timeout),
            return_domain=self.return_paths.domain if self.return_paths else "",
            other_return_domain=self.return_paths.is_return_domain if self.return_paths else None,
            inbound=True, inbound_recipient=self.inbound.is_inbound_recipient)
        return SmtpServer(InboundSmtpHandler(self.inbound, self.bounce_receiver), config, server_context(cert, key))

    async def start_worker(self) -> None:
        """Register this worker process (lock file, heartbeat), release what gone workers held, then start
        the delivery worker, webhook dispatcher, bulk expander and housekeeping (one lease owner for all)."""
        s = self.settings
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # A post cannot outlive its timeout, so a lease of twice that is never taken from a live attempt.
        webhook_lease = 2 * s.webhook_timeout_seconds + 1
        self.presence = WorkerPresence(
            self.store, self.clock, owner=owner, lock_dir=Path(s.data_dir) / "workers",
            lease_seconds=max(s.lease_seconds, webhook_lease, BULK_LEASE_SECONDS),
            heartbeat_seconds=s.worker_heartbeat_seconds, dead_after_seconds=s.worker_dead_after_seconds,
            on_released=self._wake_workers)
        await self.presence.start()
        self.worker = DeliveryWorker(
            self.store, self.transport, self.sandbox, RetryPolicy(s.retry_delays, s.max_message_age_seconds),
            self.clock, self.wakeup, owner=owner, concurrency=s.worker_concurrency,
            batch_size=s.claim_batch_size, lease_seconds=s.lease_seconds, poll_seconds=s.poll_seconds,
            return_paths=self.return_paths, on_recorded=self.webhook_wakeup.notify, webhook_hints=self.webhook_hints,
            tracking_key=self.tracking_key, signer=self.signer,
            attempt_log=AttemptLog(self.metrics, repeat_interval=s.log_repeat_seconds))
        self._worker_task = asyncio.create_task(self.worker.run(), name="delivery-worker")
        self.webhook_poster = WebhookPoster(total_timeout=s.webhook_timeout_seconds,
                                            connect_timeout=min(5.0, s.webhook_timeout_seconds),
                                            allowed_networks=s.webhook_networks)
        self.dispatcher = WebhookDispatcher(
            self.store, self.webhook_poster, self.clock, self.webhook_wakeup, owner=owner,
            schedule=s.webhook_retry_delays, concurrency=s.webhook_concurrency, poll_seconds=s.poll_seconds,
            lease_seconds=webhook_lease, inbound_payload=self.inbound.payload_for,
            inbound_schedule=s.inbound_retry_delays, metrics=self.metrics,
            repeat_interval=s.log_repeat_seconds)
        self._dispatcher_task = asyncio.create_task(self.dispatcher.run(), name="webhook-dispatcher")
        self.bulk_worker = BulkWorker(self.bulk, self.clock, self.bulk_wakeup, owner=owner,
                                      lease_seconds=BULK_LEASE_SECONDS, poll_seconds=s.poll_seconds)
        self._bulk_task = asyncio.create_task(self.bulk_worker.run(), name="bulk-worker")
        self.housekeeper = Housekeeper(self.store, self.clock, retention=self.retention, removals=self.removals,
                                       owner=owner, wakeup=self.housekeeping_wakeup)
        self._housekeeping_task = asyncio.create_task(self.housekeeper.run(), name="housekeeping")
        self._presence_task = asyncio.create_task(self.presence.run(), name="worker-presence")
        self.ready["worker"] = True

    def _wake_workers(self) -> None:
        """Leases of a gone worker were released: their work is due now."""
        self.wakeup.notify()
        self.webhook_wakeup.notify()
        self.bulk_wakeup.notify()

    async def start_tracking(self) -> TrackingApp:
        """The tracking service and its recorder (started), and the listener's ASGI app (not served yet)."""
        s = self.settings
        key = await self.tracking_key.get()
        self.geo = GeoIp(s.geoip_database) if s.geoip_database else None
        self.tracking = TrackingService(self.store, key, self.clock, queue_size=s.tracking_queue_size, geo=self.geo,
                                        hints=self.webhook_hints, on_recorded=self.webhook_wakeup.notify)
        self.tracking_recorder = TrackingRecorder(self.tracking, metrics=self.metrics)
        tracking = self.tracking
        self.metrics.tracking_queue.set_function(lambda: tracking.queue.qsize())
        self._tracking_task = asyncio.create_task(self.tracking_recorder.run(), name="tracking-recorder")
        return create_tracking_app(self.tracking, trusted_proxies=s.tracking_proxy_networks,
                                   ready=lambda: all(self.ready.values()))

    @property
    def worker_task(self) -> asyncio.Task[None] | None:
        return self._worker_task

    async def stop(self) -> None:
        """Record the tracking hits still queued, stop the worker (in-flight deliveries finish and are
        recorded), then close the transports."""
        if self.tracking_recorder is not None and self._tracking_task is not None:
            self.tracking_recorder.stop()
            await asyncio.gather(self._tracking_task, return_exceptions=True)
        if self.geo is not None:
            self.geo.close()
            self.geo = None
        if self.worker is not None and self._worker_task is not None:
            self.worker.stop()
            await asyncio.gather(self._worker_task, return_exceptions=True)
        if self.housekeeper is not None and self._housekeeping_task is not None:
            self.housekeeper.stop()
            await asyncio.gather(self._housekeeping_task, return_exceptions=True)
        if self.bulk_worker is not None and self._bulk_task is not None:
            self.bulk_worker.stop()
            await asyncio.gather(self._bulk_task, return_exceptions=True)
        if self.dispatcher is not None and self._dispatcher_task is not None:
            self.dispatcher.stop()
            await asyncio.gather(self._dispatcher_task, return_exceptions=True)
            await self.webhook_poster.aclose()
        if self.presence is not None:
            self.presence.stop()
            if self._presence_task is not None:
                await asyncio.gather(self._presence_task, return_exceptions=True)
            await self.presence.close()
            self.presence = None
        await self.signer.close()
        transports: list[Any] = [self.transport] if self.transport is not self.sandbox else []
        for transport in [*transports, self.sandbox]:
            await transport.close()
