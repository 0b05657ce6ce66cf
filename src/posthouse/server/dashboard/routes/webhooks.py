"""Webhooks (docs/postmark-api.md §7.1) and, as Posthouse's extensions, each one's delivery log, a retry of
one post, and a test post: a stream's webhooks and a new one, a webhook's settings (URL, triggers, Basic
credentials, custom headers), delete, "send test post", and the recent posts with their attempts.

Every value goes through `WebhookService`, so a URL or header the API refuses (SSRF checks, header injection)
is refused here with the same words. The stored Basic password is never put back into the page: the
password field is empty, and left empty it keeps the stored one.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from posthouse import wire
from posthouse.server.dashboard.rendering import layout, render
from posthouse.server.dashboard.routes.manage import checked, field, notice, see_other
from posthouse.server.dashboard.routes.scope import server_of, server_url, stream_of
from posthouse.server.dashboard.sessions import state_of
from posthouse.server.errors import ApiError
from posthouse.server.services.webhooks import TEST_RECORD_TYPES

POSTS_SHOWN = 50  # the delivery log's page
# The trigger checkboxes: (form name, label).
TRIGGERS = (
    ("delivery", "Delivery"), ("bounce", "Bounce"), ("bounce_content", "… with the bounce's content"),
    ("spam_complaint", "Spam complaint"), ("spam_complaint_content", "… with the complaint's content"),
    ("open", "Open"), ("open_first_only", "… first open only"), ("click", "Click"),
    ("subscription_change", "Subscription change"),
)


def _triggers(request: Request) -> wire.WebhookTriggers:
    on = {name: checked(request, name) for name, _ in TRIGGERS}
    return wire.WebhookTriggers(
        open=wire.OpenTrigger(enabled=on["open"], post_first_open_only=on["open_first_only"]),
        click=wire.EnabledTrigger(enabled=on["click"]), delivery=wire.EnabledTrigger(enabled=on["delivery"]),
        bounce=wire.ContentTrigger(enabled=on["bounce"], include_content=on["bounce_content"]),
        spam_complaint=wire.ContentTrigger(enabled=on["spam_complaint"], include_content=on["spam_complaint_content"]),
        subscription_change=wire.EnabledTrigger(enabled=on["subscription_change"]))


def _trigger_state(triggers: wire.WebhookTriggers) -> dict[str, bool]:
    """The checkboxes of a stored webhook."""
    t = triggers
    return {"delivery": bool(t.delivery and t.delivery.enabled), "bounce": bool(t.bounce and t.bounce.enabled),
            "bounce_content": bool(t.bounce and t.bounce.include_content),
            "spam_complaint": bool(t.spam_complaint and t.spam_complaint.enabled),
            "spam_complaint_content": bool(t.spam_complaint and t.spam_complaint.include_content),
            "open": bool(t.open and t.open.enabled), "open_first_only": bool(t.open and t.open.post_first_open_only),
            "click": bool(t.click and t.click.enabled),
            "subscription_change": bool(t.subscription_change and t.subscription_change.enabled)}


def _headers(text: str) -> list[wire.Header]:
    """`Name: value` lines (empty lines skipped)."""
    headers = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise ApiError(1358, f"Invalid 'HttpHeaders': line {number} is not 'Name: value'.")
        headers.append(wire.Header(name=name.strip(), value=value.strip()))
    return headers


def _auth(request: Request, current: wire.WebhookHttpAuth | None) -> wire.WebhookHttpAuth:
    """Basic credentials from the form: an empty password keeps the stored one; no username removes them."""
    username, password = field(request, "auth_username"), field(request, "auth_password")
    if username and not password and current is not None:
        password = current.password or ""
    return wire.WebhookHttpAuth(username=username, password=password if username else "")


def _draft(request: Request) -> dict[str, Any]:
    return {"url": field(request, "url"), "auth_username": field(request, "auth_username"),
            "headers": field(request, "headers", multiline=True),
            "triggers": {name: checked(request, name) for name, _ in TRIGGERS}}


def _draft_of(hook: wire.Webhook) -> dict[str, Any]:
    return {"url": hook.url, "auth_username": hook.http_auth.username if hook.http_auth else "",
            "has_password": bool(hook.http_auth and hook.http_auth.password),
            "headers": "\n".join(f"{h.name}: {h.value}" for h in hook.http_headers),
            "triggers": _trigger_state(hook.triggers)}


async def _list_page(request: Request, server: Any, stream: str, *, error: str | None = None, status: int = 200,
                     draft: dict[str, Any] | None = None) -> Response:
    hooks = (await state_of(request).webhooks.search(server.id, stream)).webhooks
    streams = await state_of(request).accounts.streams(server.id)
    return render(request, "webhooks.html", {
        **await layout(request, server=server, stream=stream, view="webhooks"), "hooks": hooks,
        "stream_id": stream, "stream_type": streams[stream].stream_type, "triggers": TRIGGERS, "error": error,
        "notice": notice(request), "base": server_url(server.id, stream, "webhooks"),
        "draft": draft or {"url": "", "auth_username": "", "headers": "", "triggers": {"delivery": True,
                                                                                     "bounce": True}}},
        status=status)


async def webhook_list(request: Request) -> Response:
    server = await server_of(request)
    return await _list_page(request, server, await stream_of(request, server))


async def webhook_create(request: Request) -> Response:
    server = await server_of(request)
    stream = await stream_of(request, server)
    draft = _draft(request)
    try:
        created = await state_of(request).webhooks.create(server.id, wire.WebhookRequest(
            url=draft["url"], message_stream=stream, http_auth=_auth(request, None),
            http_headers=_headers(draft["headers"]), triggers=_triggers(request)))
    except ApiError as exc:
        return await _list_page(request, server, stream, error=exc.message, status=400, draft=draft)
    return see_other(f"/ui/servers/{server.id}/webhooks/{created.id}", "created")


def _hook_id(request: Request) -> str:
    return str(request.path_params["webhook_id"])


async def _hook_page(request: Request, server: Any, hook: wire.Webhook, *, error: str | None = None,
                     status: int = 200, draft: dict[str, Any] | None = None) -> Response:
    state = state_of(request)
    log = await state.webhooks.deliveries(server.id, str(hook.id), POSTS_SHOWN, 0)
    return render(request, "webhook.html", {
        **await layout(request, server=server, stream=hook.message_stream, view="webhooks"), "hook": hook,
        "draft": draft or _draft_of(hook), "triggers": TRIGGERS, "error": error, "notice": notice(request),
        "log": log, "test_types": TEST_RECORD_TYPES, "base": f"/ui/servers/{server.id}/webhooks/{hook.id}",
        "list_url": server_url(server.id, hook.message_stream, "webhooks")}, status=status)


async def webhook_page(request: Request) -> Response:
    server = await server_of(request)
    return await _hook_page(request, server, await state_of(request).webhooks.get(server.id, _hook_id(request)))


async def webhook_save(request: Request) -> Response:
    server = await server_of(request)
    webhooks = state_of(request).webhooks
    hook = await webhooks.get(server.id, _hook_id(request))
    draft = {**_draft(request), "has_password": bool(hook.http_auth and hook.http_auth.password)}
    try:
        await webhooks.edit(server.id, str(hook.id), wire.WebhookRequest(
            url=draft["url"], http_auth=_auth(request, hook.http_auth), http_headers=_headers(draft["headers"]),
            triggers=_triggers(request)))
    except ApiError as exc:
        return await _hook_page(request, server, hook, error=exc.message, status=400, draft=draft)
    return see_other(f"/ui/servers/{server.id}/webhooks/{hook.id}", "saved")


async def webhook_delete(request: Request) -> Response:
    server = await server_of(request)
    webhooks = state_of(request).webhooks
    hook = await webhooks.get(server.id, _hook_id(request))
    await webhooks.delete(server.id, str(hook.id))
    return see_other(server_url(server.id, hook.message_stream, "webhooks"), "deleted")


async def webhook_test(request: Request) -> Response:
    server = await server_of(request)
    webhooks = state_of(request).webhooks
    hook = await webhooks.get(server.id, _hook_id(request))
    try:
        await webhooks.send_test(server.id, str(hook.id), field(request, "record_type"))
    except ApiError as exc:
        return await _hook_page(request, server, hook, error=exc.message, status=400)
    return see_other(f"/ui/servers/{server.id}/webhooks/{hook.id}", "queued")


async def delivery_retry(request: Request) -> Response:
    server = await server_of(request)
    hook_id = _hook_id(request)
    await state_of(request).webhooks.redeliver(server.id, hook_id, str(request.path_params["delivery_id"]))
    return see_other(f"/ui/servers/{server.id}/webhooks/{hook_id}", "retried")


ROUTES = [
    Route("/ui/servers/{server_id}/streams/{stream}/webhooks", webhook_list, methods=["GET"]),
    Route("/ui/servers/{server_id}/streams/{stream}/webhooks", webhook_create, methods=["POST"]),
    Route("/ui/servers/{server_id}/webhooks/{webhook_id}", webhook_page, methods=["GET"]),
    Route("/ui/servers/{server_id}/webhooks/{webhook_id}", webhook_save, methods=["POST"]),
    Route("/ui/servers/{server_id}/webhooks/{webhook_id}/delete", webhook_delete, methods=["POST"]),
    Route("/ui/servers/{server_id}/webhooks/{webhook_id}/test", webhook_test, methods=["POST"]),
    Route("/ui/servers/{server_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/retry", delivery_retry,
          methods=["POST"]),
]
