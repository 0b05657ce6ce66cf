"""What the dashboard's pages are given: the services they call and the settings they follow."""

from __future__ import annotations

from dataclasses import dataclass

from posthouse.server.services.accounts import AccountService
from posthouse.server.services.activity import ActivityService
from posthouse.server.services.bounces import BounceService
from posthouse.server.services.domains import DomainService
from posthouse.server.services.inbound import InboundService
from posthouse.server.services.operators import OperatorService
from posthouse.server.services.stats import StatsService
from posthouse.server.services.suppressions import SuppressionService
from posthouse.server.services.templates import TemplateService
from posthouse.server.services.webhooks import WebhookService


@dataclass(frozen=True, slots=True)
class DashboardState:
    accounts: AccountService
    activity: ActivityService
    operators: OperatorService
    templates: TemplateService  # D2 management pages: templates and layouts
    webhooks: WebhookService  # … webhooks and their delivery log
    domains: DomainService  # … sending domains and their DNS records
    sandbox_all: bool = False  # the installation delivers in sandbox mode: every server has an inbox
    secure_cookies: bool = False  # cookies Secure even on plain HTTP (TLS ends at a proxy)
    stats: StatsService | None = None  # the statistics page (D2); None: not served
    suppressions: SuppressionService | None = None  # the suppressions page (D2); None: not served
    bounces: BounceService | None = None  # the bounces pages (D2); None: not served
    inbound: InboundService | None = None  # the inbound mail pages (D2, issue 16); None: not served
