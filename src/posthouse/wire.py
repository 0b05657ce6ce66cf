"""Postmark's JSON shapes as msgspec Structs: PascalCase lives here and nowhere else.

Requests are lenient the way the official clients need (docs/postmark-api.md §1.4): every optional field
accepts `null`, unknown keys are ignored. Responses are the supersets the clients require (§11.3).
The SDK (`posthouse.client`) and the server's API share these types.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct, field

# -- requests ---------------------------------------------------------------------------------


class Header(Struct, rename="pascal", omit_defaults=True):
    name: str | None = None
    # A number is taken as its text: django-anymail passes header values through as given, so
    # `headers={"X-Priority": 1}` arrives as a JSON number.
    value: str | int | float | None = None


class Attachment(Struct, rename="pascal", omit_defaults=True):
    name: str | None = None
    content: str | None = None
    content_type: str | None = None
    content_id: str | None = field(default=None, name="ContentID")


class EmailRequest(Struct, rename="pascal", omit_defaults=True):
    """`POST /email` and each item of `POST /email/batch` (docs/postmark-api.md §2.1)."""

    sender: str | None = field(default=None, name="From")
    to: str | None = None
    cc: str | None = None
    bcc: str | None = None
    subject: str | None = None
    tag: str | None = None
    html_body: str | None = None
    text_body: str | None = None
    reply_to: str | None = None
    headers: list[Header] | None = None
    track_opens: bool | None = None
    track_links: str | None = None
    metadata: dict[str, Any] | None = None
    attachments: list[Attachment] | None = None
    message_stream: str | None = None
    # Posthouse extension (docs/architecture.md §7): deliver at this ISO 8601 time; a string so the server validates it.
    send_at: str | None = None


class ServerRequest(Struct, rename="pascal", omit_defaults=True):
    """`POST /servers`, `PUT /servers/{id}` and `PUT /server` (docs/postmark-api.md §8.3)."""

    name: str | None = None
    color: str | None = None
    smtp_api_activated: bool | None = None
    raw_email_enabled: bool | None = None
    delivery_type: str | None = None
    inbound_hook_url: str | None = None
    bounce_hook_url: str | None = None
    open_hook_url: str | None = None
    delivery_hook_url: str | None = None
    click_hook_url: str | None = None
    post_first_open_only: bool | None = None
    inbound_domain: str | None = None
    inbound_spam_threshold: int | None = None
    track_opens: bool | None = None
    track_links: str | None = None
    include_bounce_content_in_hook: bool | None = None
    enable_smtp_api_error_hooks: bool | None = None


class SubscriptionManagementConfiguration(Struct, rename="pascal"):
    unsubscribe_handling_type: str = "None"


class MessageStreamRequest(Struct, rename="pascal", omit_defaults=True):
    """`POST /message-streams` and `PATCH /message-streams/{id}` (docs/postmark-api.md §8.1)."""

    id: str | None = field(default=None, name="ID")
    name: str | None = None
    message_stream_type: str | None = None
    description: str | None = None
    subscription_management_configuration: SubscriptionManagementConfiguration | None = None


# -- responses --------------------------------------------------------------------------------


class SendResponse(Struct, rename="pascal", omit_defaults=True, kw_only=True):
    """The answer to one send; failed batch items carry every key too (§2.2 compat note).

    `To` is left out of an accepted send that had no To recipients (Cc or Bcc only), as Postmark
    does: django-anymail reads the key's absence as "cc- or bcc-only" and cannot parse `""`."""

    to: str | None = None
    submitted_at: str
    message_id: str = field(name="MessageID")
    error_code: int
    message: str


class ErrorResponse(Struct, rename="pascal"):
    error_code: int
    message: str


class EmailAddress(Struct, rename="pascal"):
    email: str
    name: str | None


class MessageEvent(Struct, rename="pascal"):
    recipient: str
    type: str
    received_at: str
    details: dict[str, Any]


class OutboundMessage(Struct, rename="pascal"):
    """An item of `GET /messages/outbound` (docs/postmark-api.md §4.3)."""

    tag: str | None
    message_id: str = field(name="MessageID")
    message_stream: str
    to: list[EmailAddress]
    cc: list[EmailAddress]
    bcc: list[EmailAddress]
    recipients: list[str]
    received_at: str
    sender: str = field(name="From")
    subject: str
    attachments: list[str]
    status: str
    track_opens: bool
    track_links: str
    metadata: dict[str, str]
    sandboxed: bool


class OutboundMessageDetails(OutboundMessage):
    text_body: str | None = None
    html_body: str | None = None
    body: str | None = None
    message_events: list[MessageEvent] = []


class OutboundMessageList(Struct, rename="pascal"):
    total_count: int
    messages: list[OutboundMessage]


class Dump(Struct, rename="pascal"):
    body: str


class Server(Struct, rename="pascal"):
    """`GET /server`, `/servers/{id}` (docs/postmark-api.md §8.3; postmark-python requires nearly all)."""

    id: int = field(name="ID")
    name: str
    api_tokens: list[str]
    color: str
    smtp_api_activated: bool
    raw_email_enabled: bool
    delivery_type: str
    server_link: str
    inbound_address: str
    inbound_hook_url: str
    bounce_hook_url: str
    open_hook_url: str
    delivery_hook_url: str
    click_hook_url: str
    post_first_open_only: bool
    inbound_domain: str
    inbound_hash: str
    inbound_spam_threshold: int
    track_opens: bool
    track_links: str
    include_bounce_content_in_hook: bool
    enable_smtp_api_error_hooks: bool


class ServerList(Struct, rename="pascal"):
    total_count: int
    servers: list[Server]


class MessageStream(Struct, rename="pascal"):
    id: str = field(name="ID")
    server_id: int = field(name="ServerID")
    name: str
    description: str | None
    message_stream_type: str
    created_at: str
    updated_at: str | None
    archived_at: str | None
    expected_purge_date: str | None
    subscription_management_configuration: SubscriptionManagementConfiguration


class MessageStreamList(Struct, rename="pascal"):
    message_streams: list[MessageStream]
    total_count: int


class ArchivedStream(Struct, rename="pascal"):
    id: str = field(name="ID")
    server_id: int = field(name="ServerID")
    expected_purge_date: str


encoder = msgspec.json.Encoder()


# -- templates (docs/postmark-api.md §3, §2.3, §2.4) -----------------------------------------------


class TemplateRequest(Struct, rename="pascal", omit_defaults=True):
    """`POST /templates` and `PUT /templates/{idOrAlias}` (an edit leaves `null` fields as they are)."""

    name: str | None = None
    alias: str | None = None
    subject: str | None = None
    html_body: str | None = None
    text_body: str | None = None
    template_type: str | None = None
    layout_template: str | None = None


class TemplateValidationRequest(Struct, rename="pascal", omit_defaults=True):
    """`POST /templates/validate`."""

    subject: str | None = None
    html_body: str | None = None
    text_body: str | None = None
    test_render_model: Any = None  # a JSON object; checked by the service
    inline_css_for_html_test_render: bool | None = None
    template_type: str | None = None
    layout_template: str | None = None


class TemplatePushRequest(Struct, rename="pascal", omit_defaults=True):
    """`PUT /templates/push` (account token); postmark-python sends the ids as strings."""

    source_server_id: int | str | None = field(default=None, name="SourceServerID")
    destination_server_id: int | str | None = field(default=None, name="DestinationServerID")
    perform_changes: bool | None = None


class TemplateEmailRequest(EmailRequest, rename="pascal", omit_defaults=True):
    """`POST /email/withTemplate` and each item of `/email/batchWithTemplates`: §2.1 plus the template."""

    template_id: int | str | None = None
    template_alias: str | None = None
    template_model: Any = None  # a JSON object; checked per message, so one bad item fails only itself
    inline_css: bool | None = None


class TemplateBatchRequest(Struct, rename="pascal", omit_defaults=True):
    """`POST /email/batchWithTemplates`: `{"Messages": [...]}`."""

    messages: list[TemplateEmailRequest] | None = None


class TemplateSummary(Struct, rename="pascal"):
    """A `GET /templates` item, and the answer to create and edit."""

    template_id: int
    name: str
    active: bool
    alias: str | None
    template_type: str
    layout_template: str | None


class Template(Struct, rename="pascal"):
    """`GET /templates/{idOrAlias}`."""

    template_id: int
    name: str
    subject: str | None
    html_body: str | None
    text_body: str | None
    associated_server_id: int
    active: bool
    alias: str | None
    template_type: str
    layout_template: str | None


class TemplateList(Struct, rename="pascal"):
    total_count: int
    templates: list[TemplateSummary]


class TemplateValidationError(Struct, rename="pascal"):
    message: str
    line: int | None
    character_position: int | None


class TemplateContentValidation(Struct, rename="pascal"):
    content_is_valid: bool
    validation_errors: list[TemplateValidationError]
    rendered_content: str | None


class TemplateValidationResponse(Struct, rename="pascal"):
    all_content_is_valid: bool
    html_body: TemplateContentValidation | None
    text_body: TemplateContentValidation | None
    subject: TemplateContentValidation | None
    suggested_template_model: dict[str, Any]


class PushedTemplate(Struct, rename="pascal"):
    action: str  # Create | Edit
    template_id: int | None
    alias: str
    name: str
    template_type: str


class TemplatePushResponse(Struct, rename="pascal"):
    total_count: int
    templates: list[PushedTemplate]


# -- bounces (docs/postmark-api.md §5) -------------------------------------------------------------


class Bounce(Struct, rename="pascal"):
    """A bounce record; `Content` (the dump) only on single-bounce reads."""

    record_type: str
    id: int = field(name="ID")
    type: str
    type_code: int
    name: str
    tag: str | None
    message_id: str = field(name="MessageID")
    server_id: int = field(name="ServerID")
    message_stream: str
    description: str
    details: str
    email: str
    sender: str = field(name="From")
    bounced_at: str
    dump_available: bool
    inactive: bool
    can_activate: bool
    subject: str
    content: str | msgspec.UnsetType = msgspec.UNSET


class BounceList(Struct, rename="pascal"):
    total_count: int
    bounces: list[Bounce]


class BounceActivation(Struct, rename="pascal"):
    message: str
    bounce: Bounce


class BounceTypeCount(Struct, rename="pascal"):
    """A `/deliverystats` row; `Type` and `TypeCode` on every row, "All" too (§5 compat note)."""

    type: str
    type_code: int
    name: str
    count: int


class DeliveryStats(Struct, rename="pascal"):
    inactive_mails: int
    bounces: list[BounceTypeCount]


# -- suppressions (docs/postmark-api.md §8.2) ------------------------------------------------------


class SuppressionAddress(Struct, rename="pascal", omit_defaults=True):
    email_address: str | None = None


class SuppressionRequest(Struct, rename="pascal", omit_defaults=True):
    """`POST /message-streams/{stream}/suppressions` and `…/suppressions/delete`."""

    suppressions: list[SuppressionAddress] | None = None


class SuppressionEntry(Struct, rename="pascal"):
    email_address: str
    suppression_reason: str
    origin: str
    created_at: str


class SuppressionDump(Struct, rename="pascal"):
    suppressions: list[SuppressionEntry]


class SuppressionResult(Struct, rename="pascal"):
    email_address: str
    status: str  # Suppressed | Deleted | Failed
    message: str | None


class SuppressionResults(Struct, rename="pascal"):
    suppressions: list[SuppressionResult]


# -- webhooks (docs/postmark-api.md §7.1) ----------------------------------------------------------
# The trigger Structs serve requests (every field optional: PUT changes only what is sent) and
# responses (every field filled: postmark-python requires all six triggers with all sub-fields).


class WebhookHttpAuth(Struct, rename="pascal"):
    username: str | None = None
    password: str | None = None


class OpenTrigger(Struct, rename="pascal"):
    enabled: bool | None = None
    post_first_open_only: bool | None = None


class EnabledTrigger(Struct, rename="pascal"):
    enabled: bool | None = None


class ContentTrigger(Struct, rename="pascal"):
    enabled: bool | None = None
    include_content: bool | None = None


class WebhookTriggers(Struct, rename="pascal"):
    open: OpenTrigger | None = None
    click: EnabledTrigger | None = None
    delivery: EnabledTrigger | None = None
    bounce: ContentTrigger | None = None
    spam_complaint: ContentTrigger | None = None
    subscription_change: EnabledTrigger | None = None


class WebhookRequest(Struct, rename="pascal", omit_defaults=True):
    """`POST /webhooks` and `PUT /webhooks/{id}`; `ID` is read only to refuse it (1356, 1357)."""

    id: int | str | None = field(default=None, name="ID")
    url: str | None = None
    message_stream: str | None = None
    http_auth: WebhookHttpAuth | None = None
    http_headers: list[Header] | None = None
    triggers: WebhookTriggers | None = None
    verify: bool | None = None  # accepted and ignored: nothing is verified by a test post


class Webhook(Struct, rename="pascal"):
    id: int = field(name="ID")
    url: str
    message_stream: str
    http_auth: WebhookHttpAuth | None
    http_headers: list[Header]
    triggers: WebhookTriggers
    secret: str  # Posthouse extension: the Standard Webhooks signing secret (whsec_…)


class WebhookList(Struct, rename="pascal"):
    webhooks: list[Webhook]


class WebhookAttempt(Struct, rename="pascal"):
    """Posthouse extension: one attempt of a webhook post."""

    attempted_at: str
    outcome: str
    status_code: int | None
    response_excerpt: str
    duration_ms: float
    error: str | None


class WebhookDelivery(Struct, rename="pascal"):
    """Posthouse extension: one post of one event to one webhook, with its attempts."""

    id: int = field(name="ID")
    event_id: str = field(name="EventID")
    record_type: str
    state: str
    attempts: int
    next_attempt_at: str | None
    created_at: str
    updated_at: str
    history: list[WebhookAttempt]


class WebhookDeliveryList(Struct, rename="pascal"):
    total_count: int
    deliveries: list[WebhookDelivery]


# -- scheduled sending (Posthouse extension; README "Scheduled sending") ----------------------


class ScheduleRequest(Struct, rename="pascal", omit_defaults=True):
    """`PUT /messages/outbound/{id}/schedule`: the new release time (ISO 8601 with an offset)."""

    send_at: str | None = None


class ScheduleChange(Struct, rename="pascal"):
    """The answer to cancel and reschedule: which recipients it changed, which were already released."""

    message_id: str = field(name="MessageID")
    status: str
    send_at: str | None = None
    cancelled: list[str] = []
    released: list[str] = []
    error_code: int = 0
    message: str = "OK"


# -- bulk sending (docs/postmark-api.md §2.5) ------------------------------------------------------


class BulkMessage(Struct, rename="pascal", omit_defaults=True):
    """One recipient of a bulk send; its Metadata and Headers win over the request's."""

    to: str | None = None
    cc: str | None = None
    bcc: str | None = None
    template_model: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    headers: list[Header] | None = None


class BulkRequest(Struct, rename="pascal", omit_defaults=True):
    """`POST /email/bulk`: a shared body (Mustachio with each message's TemplateModel) or a template."""

    sender: str | None = field(default=None, name="From")
    reply_to: str | None = None
    subject: str | None = None
    html_body: str | None = None
    text_body: str | None = None
    template_id: int | None = None
    template_alias: str | None = None
    inline_css: bool | None = None
    tag: str | None = None
    metadata: dict[str, Any] | None = None
    message_stream: str | None = None
    track_opens: bool | None = None
    track_links: str | None = None
    attachments: list[Attachment] | None = None
    headers: list[Header] | None = None
    messages: list[BulkMessage] | None = None
    send_at: str | None = None  # Posthouse extension: every message is scheduled for this time


class BulkAccepted(Struct, rename="pascal"):
    """The POST answer: both `ID` (postmark-python) and `Id` (the docs), §2.5 SDK drift."""

    id: str = field(name="Id")
    id_upper: str = field(name="ID")
    status: str
    submitted_at: str


class BulkStatus(Struct, rename="pascal", omit_defaults=True):
    id: str = field(name="Id")
    submitted_at: str
    status: str
    total_messages: int
    percentage_completed: float
    released_count: int
    failed_count: int
    subject: str | None = None


class BulkList(Struct, rename="pascal", omit_defaults=True):
    requests: list[BulkStatus]
    pagination_key: str | None = None



# -- stats (docs/postmark-api.md §6) ----------------------------------------------------------------
# Every day of a series carries every fixed key of that series, zeros written out, and `Days` is
# always there (possibly empty): postmark-python's models require both (§6 compat note).


class OutboundOverview(Struct, rename="pascal"):
    """`GET /stats/outbound`: totals over the range, no `Days`."""

    sent: int
    bounced: int
    smtp_api_errors: int = field(name="SMTPApiErrors")
    bounce_rate: float  # percent of Sent
    spam_complaints: int
    spam_complaints_rate: float  # percent of Sent
    opens: int
    unique_opens: int
    tracked: int
    with_link_tracking: int
    with_open_tracking: int
    total_tracked_links_sent: int
    unique_links_clicked: int
    total_clicks: int
    with_client_recorded: int
    with_platform_recorded: int
    with_read_time_recorded: int


class SentDay(Struct, rename="pascal"):
    date: str
    sent: int


class SentCounts(Struct, rename="pascal"):
    """`GET /stats/outbound/sends`: recipients accepted for sending."""

    days: list[SentDay]
    sent: int


class BounceDay(Struct, rename="pascal"):
    date: str
    hard_bounce: int
    smtp_api_error: int = field(name="SMTPApiError")
    soft_bounce: int
    transient: int


class BounceCounts(Struct, rename="pascal"):
    """`GET /stats/outbound/bounces`: Postmark's four bounce keys."""

    days: list[BounceDay]
    hard_bounce: int
    smtp_api_error: int = field(name="SMTPApiError")
    soft_bounce: int
    transient: int


class SpamDay(Struct, rename="pascal"):
    date: str
    spam_complaint: int


class SpamCounts(Struct, rename="pascal"):
    """`GET /stats/outbound/spam`."""

    days: list[SpamDay]
    spam_complaint: int


class TrackedDay(Struct, rename="pascal"):
    date: str
    tracked: int


class TrackedCounts(Struct, rename="pascal"):
    """`GET /stats/outbound/tracked`: recipients sent with open or link tracking."""

    days: list[TrackedDay]
    tracked: int


class OpenDay(Struct, rename="pascal"):
    date: str
    opens: int
    unique: int


class OpenCounts(Struct, rename="pascal"):
    """`GET /stats/outbound/opens`: every open, and first opens of each recipient's copy."""

    days: list[OpenDay]
    opens: int
    unique: int


class PlatformDay(Struct, rename="pascal"):
    date: str
    desktop: int
    mobile: int
    unknown: int
    web_mail: int


class PlatformCounts(Struct, rename="pascal"):
    """`GET /stats/outbound/opens/platforms`."""

    days: list[PlatformDay]
    desktop: int
    mobile: int
    unknown: int
    web_mail: int


class ClickDay(Struct, rename="pascal"):
    date: str
    clicks: int
    unique: int


class ClickCounts(Struct, rename="pascal"):
    """`GET /stats/outbound/clicks`."""

    days: list[ClickDay]
    clicks: int
    unique: int


class ClickPlatformDay(Struct, rename="pascal"):
    date: str
    desktop: int
    mobile: int
    unknown: int


class ClickPlatformCounts(Struct, rename="pascal"):
    """`GET /stats/outbound/clicks/platforms`."""

    days: list[ClickPlatformDay]
    desktop: int
    mobile: int
    unknown: int


class ClickLocationDay(Struct, rename="pascal"):
    date: str
    html: int = field(name="HTML")
    text: int


class ClickLocationCounts(Struct, rename="pascal"):
    """`GET /stats/outbound/clicks/location`: clicks on links in the HTML part and in the text part."""

    days: list[ClickLocationDay]
    html: int = field(name="HTML")
    text: int


class UsageDay(Struct):
    date: str
    counts: dict[str, int]


class UsageCounts(Struct):
    """A breakdown whose keys are names (`opens/emailclients`, `opens/readtimes`, `clicks/browserfamilies`).

    On the wire the names are keys beside `Days` and `Date`: `{"Days": [{"Date": "2026-01-05", "Apple
    Mail": 3}], "Apple Mail": 3}`. `usage_to_json` and `usage_from_json` convert between the two; a day
    lists the names counted that day, the totals every name of the range."""

    days: list[UsageDay]
    totals: dict[str, int]


def usage_to_json(usage: UsageCounts) -> dict[str, Any]:
    return {"Days": [{"Date": day.date, **day.counts} for day in usage.days], **usage.totals}


def usage_from_json(value: dict[str, Any]) -> UsageCounts:
    days = [UsageDay(date=str(day["Date"]), counts={k: int(v) for k, v in day.items() if k != "Date"})
            for day in value.get("Days", [])]
    return UsageCounts(days=days, totals={k: int(v) for k, v in value.items() if k != "Days"})


# -- opens and clicks (docs/postmark-api.md §4.5) ---------------------------------------------------


class AgentDetails(Struct, rename="pascal"):
    """An email client, browser or operating system as read from a user agent; nulls when unknown."""

    name: str | None = None
    company: str | None = None
    family: str | None = None


class Geo(Struct, rename="pascal"):
    """Where an open or click came from; nulls when unknown (no GeoIP database, a private address)."""

    country_iso_code: str | None = field(default=None, name="CountryISOCode")
    country: str | None = None
    region_iso_code: str | None = field(default=None, name="RegionISOCode")
    region: str | None = None
    city: str | None = None
    zip: str | None = None
    coords: str | None = None
    ip: str | None = field(default=None, name="IP")


class OpenEvent(Struct, rename="pascal", kw_only=True):
    """An item of `GET /messages/outbound/opens` (and `/opens/{messageid}`)."""

    record_type: str = "Open"
    first_open: bool
    client: AgentDetails
    os: AgentDetails = field(name="OS")
    platform: str
    user_agent: str
    read_seconds: int
    geo: Geo
    message_id: str = field(name="MessageID")
    message_stream: str
    received_at: str
    tag: str | None
    recipient: str


class OpenList(Struct, rename="pascal"):
    total_count: int
    opens: list[OpenEvent]


class ClickEvent(Struct, rename="pascal", kw_only=True):
    """An item of `GET /messages/outbound/clicks` (and `/clicks/{messageid}`)."""

    record_type: str = "Click"
    click_location: str  # HTML or Text
    client: AgentDetails
    os: AgentDetails = field(name="OS")
    platform: str
    user_agent: str
    original_link: str
    geo: Geo
    message_id: str = field(name="MessageID")
    message_stream: str
    received_at: str
    tag: str | None
    recipient: str


class ClickList(Struct, rename="pascal"):
    total_count: int
    clicks: list[ClickEvent]


# -- domains and sender signatures (docs/postmark-api.md §8.4) ---------------------------------------


class DomainRequest(Struct, rename="pascal", omit_defaults=True):
    """`POST /domains` (`Name` required) and `PUT /domains/{id}` (`ReturnPathDomain`)."""

    name: str | None = None
    return_path_domain: str | None = None


class DomainSummary(Struct, rename="pascal"):
    """An item of `GET /domains`."""

    id: int = field(name="ID")
    name: str
    spf_verified: bool = field(name="SPFVerified")
    dkim_verified: bool = field(name="DKIMVerified")
    weak_dkim: bool = field(name="WeakDKIM")
    return_path_domain_verified: bool


class DomainList(Struct, rename="pascal"):
    total_count: int
    domains: list[DomainSummary]


class DkimRecord(Struct, rename="pascal"):
    """One DKIM key's DNS record (a Posthouse extension, `DKIMRecords`): with `dkim_keys = both` a domain has
    an RSA and an Ed25519 key, each under its own selector, which Postmark's one-key fields cannot show."""

    host: str
    text_value: str
    algorithm: str  # rsa-sha256 | ed25519-sha256
    state: str  # Pending (publish it, then verify) | Active (signing) | Revoked (remove it once safe)


class DomainDnsFields(Struct, rename="pascal", kw_only=True):
    """What a domain (and a sender signature, of its domain) asks to be published, and what was verified."""

    spf_verified: bool = field(name="SPFVerified")
    spf_host: str = field(name="SPFHost")
    spf_text_value: str = field(name="SPFTextValue")
    dkim_verified: bool = field(name="DKIMVerified")
    weak_dkim: bool = field(name="WeakDKIM")
    dkim_host: str = field(name="DKIMHost")
    dkim_text_value: str = field(name="DKIMTextValue")
    dkim_pending_host: str = field(name="DKIMPendingHost")
    dkim_pending_text_value: str = field(name="DKIMPendingTextValue")
    dkim_revoked_host: str = field(name="DKIMRevokedHost")
    dkim_revoked_text_value: str = field(name="DKIMRevokedTextValue")
    safe_to_remove_revoked_key_from_dns: bool = field(name="SafeToRemoveRevokedKeyFromDNS")
    dkim_update_status: str = field(name="DKIMUpdateStatus")  # Pending | Verified
    return_path_domain: str
    return_path_domain_verified: bool
    return_path_domain_cname_value: str = field(name="ReturnPathDomainCNAMEValue")
    dkim_records: list[DkimRecord] = field(default_factory=list, name="DKIMRecords")


class DomainDetails(DomainDnsFields, rename="pascal", kw_only=True):
    """`GET/POST/PUT /domains…`: a domain with the DNS records to publish."""

    id: int = field(name="ID")
    name: str


class SenderSignatureRequest(Struct, rename="pascal", omit_defaults=True):
    """`POST /senders` (`FromEmail` and `Name` required) and `PUT /senders/{id}`."""

    from_email: str | None = None
    name: str | None = None
    reply_to_email: str | None = None
    return_path_domain: str | None = None
    confirmation_personal_note: str | None = None


class SenderSignatureSummary(Struct, rename="pascal"):
    """An item of `GET /senders`."""

    id: int = field(name="ID")
    domain: str
    email_address: str
    reply_to_email_address: str
    name: str
    confirmed: bool


class SenderSignatureList(Struct, rename="pascal"):
    total_count: int
    sender_signatures: list[SenderSignatureSummary]


class SenderSignatureDetails(DomainDnsFields, rename="pascal", kw_only=True):
    """`GET/POST/PUT /senders…`: the signature, and its domain's DNS records and verification."""

    id: int = field(name="ID")
    domain: str
    email_address: str
    reply_to_email_address: str
    name: str
    confirmed: bool
    confirmation_personal_note: str


class SenderSignatureRenewal(SenderSignatureDetails, rename="pascal", kw_only=True):
    """`POST /senders/{id}/requestnewdkim` (deprecated by Postmark): the clients disagree on its answer, postmark.js
    reading the signature's details and postmark-python `{ErrorCode, Message}`, so it carries both."""

    error_code: int = 0
    message: str = ""
