"""The OpenAPI 3.1 document, generated from the wire Structs (msgspec) and one table of operations.

Every route the API serves has a row here (a test holds the two together). Posthouse's extensions to
Postmark's API carry `x-posthouse-extension: true` and are described where they differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from posthouse import wire
from posthouse.server.domain.statuses import BounceType
from posthouse.server.webhooks.payloads import SuppressionOrigin, SuppressionReason

SERVER = "server"
ACCOUNT = "account"
NONE = "none"
_IDEMPOTENCY = ("Idempotency-Key", "Posthouse extension: the same key with the same body within 24 hours replays "
                "the first answer (with `Idempotent-Replayed: true`) and sends nothing; with another body the "
                "answer is 422 (ErrorCode 1610); while the first request runs, 409 (ErrorCode 1611).")


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    summary: str
    response: Any  # a wire type, or None for no JSON body
    request: Any = None
    auth: str = SERVER
    extension: bool = False
    query: tuple[str, ...] = ()
    idempotent: bool = False
    description: str = ""
    response_schema: dict[str, Any] | None = None  # for an answer no wire Struct describes (keys that are names)
    html: bool = False  # a page for a person (the sender confirmation link): HTML, 200 or 404


_HIT_FILTERS = ("count", "offset", "recipient", "tag", "client_name", "client_company", "client_family", "os_name",
                "os_family", "os_company", "platform", "country", "region", "city", "messagestream", "fromdate",
                "todate")
_STATS_FILTERS = ("tag", "fromdate", "todate", "messagestream")
_STATS_NOTE = ("Days are UTC days (Postmark's are US Eastern); without `messagestream` every stream counts. `Days` "
               "lists the days with counts, each with every key of the breakdown.")
_STATS_SERIES: tuple[tuple[str, str, Any], ...] = (
    ("sends", "Recipients accepted, per day", wire.SentCounts),
    ("bounces", "Bounces per day: hard, soft, transient, SMTP API errors", wire.BounceCounts),
    ("spam", "Spam complaints per day", wire.SpamCounts),
    ("tracked", "Recipients sent with open or link tracking, per day", wire.TrackedCounts),
    ("opens", "Opens and unique opens per day", wire.OpenCounts),
    ("opens/platforms", "Opens per platform and day", wire.PlatformCounts),
    ("opens/emailclients", "Opens per email client and day", None),
    ("opens/readtimes", "Opens per read time and day", None),
    ("clicks", "Clicks and unique clicks per day", wire.ClickCounts),
    ("clicks/browserfamilies", "Clicks per browser family and day", None),
    ("clicks/platforms", "Clicks per platform and day", wire.ClickPlatformCounts),
    ("clicks/location", "Clicks per part of the message (HTML, Text) and day", wire.ClickLocationCounts),
)
# A breakdown keyed by names (email clients, browsers, read times): counts beside `Days` and `Date`.
_COUNTS_BY_NAME = {"type": "integer"}
_USAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"Days": {"type": "array", "items": {
        "type": "object", "properties": {"Date": {"type": "string", "format": "date"}}, "required": ["Date"],
        "additionalProperties": _COUNTS_BY_NAME}}},
    "required": ["Days"],
    "additionalProperties": _COUNTS_BY_NAME,
}

_DOMAIN_NOTE = ("`DKIMRecords` is a Posthouse extension: every key's record (with `dkim_keys = both`, an RSA and an "
                "Ed25519 key under two selectors). Verification answers 200 whatever DNS says; the fields say what was "
                "found.")
_SENDER_NOTE = ("A signature's DNS fields are its domain's; adding a signature on a domain the account lacks adds the "
                "domain. The confirmation link (`/senders/confirm/{token}`, a Posthouse page) is mailed through the "
                "server named by `sender_confirmation_server`.")

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/healthz", "Readiness: 200 once every role of this process runs", None, auth=NONE,
              extension=True),
    Operation("GET", "/openapi.json", "This document", None, auth=NONE, extension=True),
    # sending (docs/postmark-api.md §2)
    Operation("POST", "/email", "Send one message", wire.SendResponse, wire.EmailRequest, idempotent=True,
              description="`SendAt` (ISO 8601 with an offset, at most `max_schedule_ahead` ahead, 30 days by "
                          "default) is a Posthouse extension: the message is Scheduled until then."),
    Operation("POST", "/email/batch", "Send up to 500 messages", list[wire.SendResponse], list[wire.EmailRequest],
              idempotent=True),
    Operation("POST", "/email/withTemplate", "Send one message rendered from a template", wire.SendResponse,
              wire.TemplateEmailRequest, idempotent=True),
    Operation("POST", "/email/batchWithTemplates", "Send up to 500 templated messages", list[wire.SendResponse],
              wire.TemplateBatchRequest, idempotent=True),
    Operation("POST", "/email/bulk", "Accept up to 50,000 recipients, expanded in the background",
              wire.BulkAccepted, wire.BulkRequest, idempotent=True),
    Operation("GET", "/email/bulk", "List bulk requests, newest first", wire.BulkList,
              query=("count", "paginationKey")),
    Operation("GET", "/email/bulk/{bulk_id}", "A bulk request's status and progress", wire.BulkStatus),
    # messages (§4)
    Operation("GET", "/messages/outbound", "Search sent messages", wire.OutboundMessageList,
              query=("count", "offset", "recipient", "fromemail", "tag", "status", "subject", "fromdate", "todate",
                     "messagestream", "metadata_<key>"),
              description="`status=scheduled` and `status=cancelled` are Posthouse extensions."),
    Operation("GET", "/messages/outbound/opens", "Search opens", wire.OpenList, query=_HIT_FILTERS,
              description="Newest first. `fromdate`/`todate` are Posthouse additions (postmark-python sends them)."),
    Operation("GET", "/messages/outbound/opens/{message_id}", "A message's opens", wire.OpenList,
              query=("count", "offset")),
    Operation("GET", "/messages/outbound/clicks", "Search clicks", wire.ClickList, query=_HIT_FILTERS,
              description="Newest first. `fromdate`/`todate` are Posthouse additions (postmark-python sends them)."),
    Operation("GET", "/messages/outbound/clicks/{message_id}", "A message's clicks", wire.ClickList,
              query=("count", "offset")),
    Operation("GET", "/messages/outbound/{message_id}/details", "A message with its events",
              wire.OutboundMessageDetails),
    Operation("GET", "/messages/outbound/{message_id}/dump", "A message's raw source", wire.Dump),
    Operation("PUT", "/messages/outbound/{message_id}/cancel", "Cancel a scheduled (unreleased) message",
              wire.ScheduleChange, extension=True,
              description="Atomic against release: every recipient is either cancelled or already released "
                          "(listed in `Released`), never both. 1601: already released; 1602: already cancelled."),
    Operation("PUT", "/messages/outbound/{message_id}/schedule", "Move a scheduled message to a new SendAt",
              wire.ScheduleChange, wire.ScheduleRequest, extension=True,
              description="A past SendAt releases it now. 1601: already released or cancelled."),
    # stats (§6)
    Operation("GET", "/stats/outbound", "Totals over a range of days", wire.OutboundOverview, query=_STATS_FILTERS,
              description=_STATS_NOTE),
    *(Operation("GET", f"/stats/outbound/{name}", summary, answer, query=_STATS_FILTERS, description=_STATS_NOTE,
                response_schema=None if answer is not None else _USAGE_SCHEMA)
      for name, summary, answer in _STATS_SERIES),
    # bounces (§5)
    Operation("GET", "/deliverystats", "Inactive addresses and bounce counts by type", wire.DeliveryStats),
    Operation("GET", "/bounces", "Search bounces", wire.BounceList,
              query=("count", "offset", "type", "inactive", "emailFilter", "tag", "messageID", "fromdate", "todate",
                     "messagestream")),
    Operation("GET", "/bounces/tags", "The tags of the server's bounces (Postmark's legacy endpoint)", list[str]),
    Operation("GET", "/bounces/{bounce_id}", "One bounce", wire.Bounce),
    Operation("GET", "/bounces/{bounce_id}/dump", "A bounce's raw source", wire.Dump),
    Operation("PUT", "/bounces/{bounce_id}/activate", "Reactivate a bounced address", wire.BounceActivation),
    # suppressions (§8.2)
    Operation("GET", "/message-streams/{stream_id}/suppressions/dump", "A stream's suppressions",
              wire.SuppressionDump, query=("SuppressionReason", "Origin", "fromdate", "todate", "EmailAddress")),
    Operation("POST", "/message-streams/{stream_id}/suppressions", "Suppress up to 50 addresses",
              wire.SuppressionResults, wire.SuppressionRequest),
    Operation("POST", "/message-streams/{stream_id}/suppressions/delete", "Reactivate up to 50 addresses",
              wire.SuppressionResults, wire.SuppressionRequest),
    # webhooks (§7)
    Operation("GET", "/webhooks", "List webhooks", wire.WebhookList, query=("MessageStream",)),
    Operation("POST", "/webhooks", "Create a webhook", wire.Webhook, wire.WebhookRequest,
              description="The answer's `Secret` (`whsec_…`, a Posthouse extension) signs every post with Standard "
                          "Webhooks headers: `webhook-id` (stable across retries), `webhook-timestamp`, "
                          "`webhook-signature`."),
    Operation("GET", "/webhooks/{webhook_id}", "One webhook", wire.Webhook),
    Operation("PUT", "/webhooks/{webhook_id}", "Edit a webhook", wire.Webhook, wire.WebhookRequest),
    Operation("DELETE", "/webhooks/{webhook_id}", "Delete a webhook", wire.ErrorResponse),
    Operation("GET", "/webhooks/{webhook_id}/deliveries", "A webhook's delivery log", wire.WebhookDeliveryList,
              extension=True, query=("count", "offset"),
              description="Each post with its state, next retry and every attempt (status code, response excerpt)."),
    Operation("POST", "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", "Post one event again",
              wire.ErrorResponse, extension=True),
    # templates (§3)
    Operation("GET", "/templates", "List templates", wire.TemplateList,
              query=("count", "offset", "TemplateType", "LayoutTemplate")),
    Operation("POST", "/templates", "Create a template", wire.TemplateSummary, wire.TemplateRequest),
    Operation("POST", "/templates/validate", "Validate and render template content", wire.TemplateValidationResponse,
              wire.TemplateValidationRequest),
    Operation("PUT", "/templates/push", "Copy templates between servers", wire.TemplatePushResponse,
              wire.TemplatePushRequest, auth=ACCOUNT),
    Operation("GET", "/templates/{id_or_alias}", "One template", wire.Template),
    Operation("PUT", "/templates/{id_or_alias}", "Edit a template", wire.TemplateSummary, wire.TemplateRequest),
    Operation("DELETE", "/templates/{id_or_alias}", "Delete a template", wire.ErrorResponse),
    # server, servers, streams (§8)
    Operation("GET", "/server", "This server", wire.Server),
    Operation("PUT", "/server", "Edit this server", wire.Server, wire.ServerRequest),
    Operation("GET", "/servers", "List servers", wire.ServerList, auth=ACCOUNT, query=("count", "offset", "name")),
    Operation("POST", "/servers", "Create a server", wire.Server, wire.ServerRequest, auth=ACCOUNT),
    Operation("GET", "/servers/{server_id}", "One server", wire.Server, auth=ACCOUNT),
    Operation("PUT", "/servers/{server_id}", "Edit a server", wire.Server, wire.ServerRequest, auth=ACCOUNT),
    Operation("DELETE", "/servers/{server_id}", "Delete a server", wire.ErrorResponse, auth=ACCOUNT),
    # domains and sender signatures (§8.4)
    Operation("GET", "/domains", "List sending domains", wire.DomainList, auth=ACCOUNT, query=("count", "offset")),
    Operation("POST", "/domains", "Add a sending domain: a DKIM key pair is made, its record to publish returned",
              wire.DomainDetails, wire.DomainRequest, auth=ACCOUNT, description=_DOMAIN_NOTE),
    Operation("GET", "/domains/{domain_id}", "One domain, with the DNS records to publish", wire.DomainDetails,
              auth=ACCOUNT, description=_DOMAIN_NOTE),
    Operation("PUT", "/domains/{domain_id}", "Change a domain's Return-Path domain", wire.DomainDetails,
              wire.DomainRequest, auth=ACCOUNT),
    Operation("DELETE", "/domains/{domain_id}", "Remove a domain and its keys", wire.ErrorResponse, auth=ACCOUNT),
    Operation("PUT", "/domains/{domain_id}/verifyDkim", "Look the pending DKIM keys up in DNS; activate them if found",
              wire.DomainDetails, auth=ACCOUNT),
    Operation("PUT", "/domains/{domain_id}/verifyReturnPath", "Look the Return-Path CNAME up in DNS",
              wire.DomainDetails, auth=ACCOUNT),
    Operation("POST", "/domains/{domain_id}/verifyspf", "Look the SPF record up in DNS (deprecated by Postmark)",
              wire.DomainDetails, auth=ACCOUNT),
    Operation("POST", "/domains/{domain_id}/rotatedkim", "Make a new pending DKIM key; the active one signs until "
              "it is verified", wire.DomainDetails, auth=ACCOUNT, description="505 while a pending key waits."),
    Operation("GET", "/senders", "List sender signatures", wire.SenderSignatureList, auth=ACCOUNT,
              query=("count", "offset")),
    Operation("POST", "/senders", "Add a sender signature; a confirmation link is mailed to it",
              wire.SenderSignatureDetails, wire.SenderSignatureRequest, auth=ACCOUNT, description=_SENDER_NOTE),
    Operation("GET", "/senders/{sender_id}", "One sender signature, with its domain's DNS records",
              wire.SenderSignatureDetails, auth=ACCOUNT),
    Operation("PUT", "/senders/{sender_id}", "Edit a sender signature", wire.SenderSignatureDetails,
              wire.SenderSignatureRequest, auth=ACCOUNT),
    Operation("DELETE", "/senders/{sender_id}", "Remove a sender signature", wire.ErrorResponse, auth=ACCOUNT),
    Operation("POST", "/senders/{sender_id}/resend", "Mail a new confirmation link", wire.ErrorResponse,
              auth=ACCOUNT),
    Operation("POST", "/senders/{sender_id}/verifyspf", "Look the signature's domain's SPF record up (deprecated)",
              wire.SenderSignatureDetails, auth=ACCOUNT),
    Operation("POST", "/senders/{sender_id}/requestnewdkim", "Rotate the signature's domain's DKIM key (deprecated)",
              wire.SenderSignatureRenewal, auth=ACCOUNT,
              description="The details with `ErrorCode` and `Message`: postmark.js reads the one, postmark-python "
                          "the other."),
    Operation("GET", "/senders/confirm/{token}", "The page a confirmation link opens (HTML, with a confirm button)",
              None, auth=NONE, extension=True, html=True),
    Operation("POST", "/senders/confirm/{token}", "Confirm the sender signature the link names (HTML)", None,
              auth=NONE, extension=True, html=True),
    Operation("GET", "/message-streams", "List message streams", wire.MessageStreamList,
              query=("MessageStreamType", "IncludeArchivedStreams")),
    Operation("POST", "/message-streams", "Create a message stream", wire.MessageStream, wire.MessageStreamRequest),
    Operation("GET", "/message-streams/{stream_id}", "One message stream", wire.MessageStream),
    Operation("PATCH", "/message-streams/{stream_id}", "Edit a message stream", wire.MessageStream,
              wire.MessageStreamRequest),
    Operation("POST", "/message-streams/{stream_id}/archive", "Archive a stream", wire.ArchivedStream),
    Operation("POST", "/message-streams/{stream_id}/unarchive", "Unarchive a stream", wire.MessageStream),
)

_HEADERS = {SERVER: "X-Postmark-Server-Token", ACCOUNT: "X-Postmark-Account-Token"}
# What a parameter takes, where it is more than any string (docs/postmark-api.md §1.4 item 9, §1.5): numeric ids
# are integers below 2^63 (routing.parse_id), MessageIDs and bulk ids UUIDs, paging numbers integers.
_INTEGER_ID = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
_UUID = {"type": "string", "format": "uuid"}
# Date filters also take `YYYY-MM-DDTHH:MM:SS` (services/history.parse_time_filter); closed vocabularies are
# matched without regard to case.
_DATE = {"type": "string", "format": "date", "description": "YYYY-MM-DD, or YYYY-MM-DDTHH:MM:SS (UTC)"}
_BOOLEAN = {"type": "boolean"}
_PARAMETER_SCHEMAS: dict[str, dict[str, Any]] = {
    "bounce_id": _INTEGER_ID, "webhook_id": _INTEGER_ID, "delivery_id": _INTEGER_ID, "server_id": _INTEGER_ID,
    "message_id": _UUID, "bulk_id": _UUID, "messageID": _UUID,
    "count": {"type": "integer", "minimum": 1, "maximum": 500}, "offset": {"type": "integer", "minimum": 0},
    "fromdate": _DATE, "todate": _DATE, "inactive": _BOOLEAN, "IncludeArchivedStreams": _BOOLEAN,
    "type": {"type": "string", "enum": [t.type_name for t in BounceType]},
    "status": {"type": "string", "enum": ["queued", "sent", "processed", "scheduled", "cancelled"]},
    "TemplateType": {"type": "string", "enum": ["All", "Standard", "Layout"]},
    "MessageStreamType": {"type": "string", "enum": ["All", "Transactional", "Broadcasts", "Inbound"]},
    "SuppressionReason": {"type": "string", "enum": [r.value for r in SuppressionReason]},
    "Origin": {"type": "string", "enum": [o.value for o in SuppressionOrigin]},
}
# Paging that these lists require (§1.5); elsewhere it has defaults. /bounces needs it unless `messageID` is given.
_REQUIRED_QUERY = {"/messages/outbound": ("count", "offset"), "/templates": ("count", "offset")}


def document(version: str) -> dict[str, Any]:
    """The whole OpenAPI document."""
    types: list[Any] = [wire.ErrorResponse]
    for op in OPERATIONS:
        types += [t for t in (op.request, op.response) if t is not None]
    schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    by_type = dict(zip(types, schemas, strict=True))
    error = {"description": "Postmark's error envelope; `ErrorCode` says what went wrong",
             "content": {"application/json": {"schema": by_type[wire.ErrorResponse]}}}
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        item: dict[str, Any] = {"summary": op.summary, "operationId": _operation_id(op),
                                "responses": {"200": {"description": "OK"}, "4XX": error, "5XX": error}}
        if op.description:
            item["description"] = op.description
        if op.response is not None:
            item["responses"]["200"]["content"] = {"application/json": {"schema": by_type[op.response]}}
        elif op.response_schema is not None:
            item["responses"]["200"]["content"] = {"application/json": {"schema": op.response_schema}}
        if op.html:
            page = {"content": {"text/html": {"schema": {"type": "string"}}}}
            item["responses"] = {"200": {"description": "The page", **page},
                                 "404": {"description": "The link is not valid (used, replaced or removed)", **page},
                                 "5XX": error}
        if op.request is not None:
            item["requestBody"] = {"required": True, "content": {"application/json": {"schema": by_type[op.request]}}}
        parameters: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": _PARAMETER_SCHEMAS.get(name, {"type": "string"})}
            for name in _path_names(op.path)]
        parameters += [{"name": name, "in": "query", "required": name in _REQUIRED_QUERY.get(op.path, ()),
                        "schema": _PARAMETER_SCHEMAS.get(name, {"type": "string"})} for name in op.query]
        if op.idempotent:
            parameters.append({"name": _IDEMPOTENCY[0], "in": "header", "required": False,
                               "description": _IDEMPOTENCY[1], "schema": {"type": "string", "maxLength": 255},
                               "x-posthouse-extension": True})
        if parameters:
            item["parameters"] = parameters
        if op.auth != NONE:
            item["security"] = [{op.auth: []}]
        if op.extension:
            item["x-posthouse-extension"] = True
        paths.setdefault(op.path, {})[op.method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "Posthouse API", "version": version,
                 "description": "Postmark's HTTP API, self-hosted; Posthouse's extensions are marked "
                                "`x-posthouse-extension`."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {kind: {"type": "apiKey", "in": "header", "name": header}
                                for kind, header in _HEADERS.items()},
        },
    }


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _operation_id(op: Operation) -> str:
    words = [p.strip("{}").replace("-", "_") for p in op.path.split("/") if p]
    return op.method.lower() + "_" + "_".join(words or ["root"])
