"""The services the API's handlers call, injected by the composition root (`runtime.py`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from posthouse.server.api.limits import RequestLimits
from posthouse.server.services.accounts import AccountService
from posthouse.server.services.bounces import BounceService
from posthouse.server.services.bulk import BulkService
from posthouse.server.services.domains import DomainService
from posthouse.server.services.history import HistoryService
from posthouse.server.services.idempotency import IdempotencyService
from posthouse.server.services.sending import SendingService
from posthouse.server.services.stats import StatsService
from posthouse.server.services.suppressions import SuppressionService
from posthouse.server.services.templates import TemplateService
from posthouse.server.services.webhooks import WebhookService


@dataclass(frozen=True, slots=True)
class ApiState:
    """Every service is required: each role that serves the API runs all of them (`Runtime`)."""

    accounts: AccountService
    sending: SendingService
    history: HistoryService
    bounces: BounceService
    suppressions: SuppressionService
    webhooks: WebhookService
    templates: TemplateService
    bulk: BulkService
    idempotency: IdempotencyService  # the sends' `Idempotency-Key` answers (the one SendingService records into)
    stats: StatsService
    domains: DomainService  # domains and sender signatures (account API)
    ready: Callable[[], bool]  # /healthz: every role of this process is running
    limits: RequestLimits = field(default_factory=RequestLimits)  # body budget, test-token limits (api/limits.py)
