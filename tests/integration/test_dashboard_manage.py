"""The dashboard's management pages over HTTP (httpx over ASGI, the real runtime, both databases): templates
and layouts with their live preview, servers and tokens, message streams, webhooks with their delivery log,
and sending domains with their DNS records (issue 15, D2). What a form changes is read back through the API
(or the service the API uses), so a page that only looks right fails here."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import httpx
import pytest

from support import WEBHOOKS_TO_LOOPBACK, ApiHarness

EMAIL, PASSWORD = "ops@example.com", "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
HTMX = {"HX-Request": "true"}


@pytest.fixture
def api_settings() -> dict[str, str]:
    return dict(WEBHOOKS_TO_LOOPBACK)


async def signed_in(api: ApiHarness) -> str:
    """Sign the harness's client in as an operator; the session's CSRF token."""
    await api.runtime.operators.create_user(EMAIL, PASSWORD)
    client = api.client
    page = await client.get("/ui/login")
    form = _CSRF.search(page.text)
    assert form
    answer = await client.post("/ui/login", data={"csrf_token": form.group(1), "email": EMAIL,
                                                  "password": PASSWORD, "next": "/ui/"})
    assert answer.status_code == 303, answer.text
    page = await client.get("/ui/", follow_redirects=True)
    token = _CSRF.search(page.text)
    assert token
    return token.group(1)


def text_of(page: httpx.Response) -> str:
    """The page's text with its tags dropped and entities decoded (what a reader sees, roughly)."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.text)))


def fast(page: httpx.Response) -> None:
    """Every page < 100 ms server time (the guard's Server-Timing header)."""
    match = re.fullmatch(r"app;dur=(\d+\.\d\d)", page.headers["server-timing"])
    assert match and float(match.group(1)) < 100, page.headers["server-timing"]


# -- templates and layouts -------------------------------------------------------------------------------


def template_form(csrf: str, **fields: str) -> dict[str, str]:
    return {"csrf_token": csrf, "name": "", "alias": "", "subject": "", "html_body": "", "text_body": "",
            "layout_template": "", "test_model": "{}", **fields}


async def test_templates_create_edit_preview_and_delete(api: ApiHarness) -> None:
    csrf = await signed_in(api)
    client = api.client
    listing = await client.get("/ui/servers/1/templates")
    assert listing.status_code == 200 and "No templates yet" in listing.text
    fast(listing)

    # Creating through the form: the values reach the service as written (CRLF from the textarea kept as LF).
    created = await client.post("/ui/servers/1/templates/new", data=template_form(
        csrf, name="Welcome", alias="welcome", template_type="Standard", subject="Hi {{name}}",
        html_body="<h1>Hello {{name}}</h1>\r\n<p>{{#items}}<b>{{.}}</b>{{/items}}</p>", text_body="Hello {{name}}"))
    assert created.status_code == 303, created.text
    location = created.headers["location"]
    template_id = int(re.fullmatch(r"/ui/servers/1/templates/(\d+)\?done=created", location).group(1))  # type: ignore[union-attr]
    stored = (await client.get(f"/templates/{template_id}", headers=api.server_headers)).json()
    assert stored["Name"] == "Welcome" and stored["Alias"] == "welcome" and stored["Subject"] == "Hi {{name}}"
    assert stored["HtmlBody"] == "<h1>Hello {{name}}</h1>\n<p>{{#items}}<b>{{.}}</b>{{/items}}</p>"

    # The editor: the fields, a test model suggested from the variables used, the preview rendered from it.
    page = await client.get(location)
    assert page.status_code == 200
    fast(page)
    assert "Created." in page.text
    assert 'value="Welcome"' in page.text and "Hi name_Value" in text_of(page)  # the suggested model fills {{name}}
    model = json.loads(html.unescape(re.search(r'name="test_model"[^>]*>([^<]*)</textarea>', page.text).group(1)))  # type: ignore[union-attr]
    assert model["name"] == "name_Value"
    assert f'src="/ui/servers/1/templates/{template_id}/html"' in page.text
    frame = await client.get(f"/ui/servers/1/templates/{template_id}/html")
    assert frame.status_code == 200 and "<h1>Hello name_Value</h1>" in frame.text
    assert frame.headers["content-security-policy"].startswith("sandbox;")
    assert "script-src" not in frame.headers["content-security-policy"]  # default-src 'none' covers scripts

    # The live preview (htmx): the part of the page rendered from the posted draft and model.
    draft = template_form(csrf, template_id=str(template_id), template_type="Standard", name="Welcome",
                          alias="welcome", subject="Hi {{name}}", html_body="<h1>Hello {{name}}</h1>",
                          text_body="Dear {{name}}, {{#each items}}[{{.}}]{{/each}}",
                          test_model='{"name": "Ada <3", "items": ["a", "b"]}')
    preview = await client.post("/ui/servers/1/templates/preview", data=draft, headers=HTMX)
    assert preview.status_code == 200
    assert preview.text.lstrip().startswith('<div id="template-preview"')  # the fragment, not the page
    assert "Valid: rendered from the test model." in preview.text
    assert "Hi Ada &lt;3" in preview.text and "Dear Ada &lt;3, [a][b]" in preview.text
    framed = await client.post("/ui/servers/1/templates/preview/html", data=draft)
    assert "<h1>Hello Ada &lt;3</h1>" in framed.text  # HTML-escaped by the template engine, as in a send
    assert framed.headers["content-security-policy"].startswith("sandbox;")

    # A broken tag: the error with its line and column, inline; the frame says so instead of rendering.
    broken = {**draft, "html_body": "<p>ok</p>\n<p>{{#each items}}{{.}}</p>"}
    preview = await client.post("/ui/servers/1/templates/preview", data=broken, headers=HTMX)
    assert preview.status_code == 200
    assert "The template has errors" in preview.text
    assert re.search(r"line 2, column \d+</a>: ", preview.text), preview.text
    assert "has errors" in (await client.post("/ui/servers/1/templates/preview/html", data=broken)).text
    # A model that is not JSON, or not an object.
    bad_json = await client.post("/ui/servers/1/templates/preview", data={**draft, "test_model": '{"name": '},
                                 headers=HTMX)
    assert "The test model is not valid JSON" in bad_json.text and "line 1" in bad_json.text
    listed = await client.post("/ui/servers/1/templates/preview", data={**draft, "test_model": "[1]"}, headers=HTMX)
    assert "must be a JSON object" in listed.text
    # Without JavaScript the same button gives the whole editor back with the preview in it.
    whole = await client.post("/ui/servers/1/templates/preview", data=draft)
    assert whole.status_code == 200 and "<html" in whole.text and "Dear Ada &lt;3, [a][b]" in whole.text

    # Saving: a broken tag is refused with the service's words, inline, and the draft kept in the form.
    refused = await client.post(f"/ui/servers/1/templates/{template_id}", data=broken)
    assert refused.status_code == 400
    assert "could not be parsed" in text_of(refused) and 'role="alert"' in refused.text
    assert "{{#each items}}" in html.unescape(refused.text)
    assert (await client.get(f"/templates/{template_id}", headers=api.server_headers)).json()["HtmlBody"] \
        == stored["HtmlBody"]
    saved = await client.post(f"/ui/servers/1/templates/{template_id}", data={**draft, "subject": "Welcome {{name}}"})
    assert saved.status_code == 303 and saved.headers["location"].endswith("?done=saved")
    edited = (await client.get(f"/templates/{template_id}", headers=api.server_headers)).json()
    assert edited["Subject"] == "Welcome {{name}}" and edited["TextBody"] == draft["text_body"]

    # A layout, made through the form, then used by the template; it cannot be deleted while in use.
    layout = await client.post("/ui/servers/1/templates/new", data=template_form(
        csrf, name="Frame", alias="frame", template_type="Layout",
        html_body="<div class=frame>{{{ @content }}}</div>", text_body="--\n{{{ @content }}}\n--"))
    assert layout.status_code == 303, layout.text
    layout_id = int(layout.headers["location"].split("/")[-1].split("?")[0])
    assert (await client.post(f"/ui/servers/1/templates/{template_id}",
                              data={**draft, "layout_template": "frame"})).status_code == 303
    assert (await client.get(f"/templates/{template_id}", headers=api.server_headers)).json()["LayoutTemplate"] \
        == "frame"
    inside = await client.post("/ui/servers/1/templates/preview/html", data={**draft, "layout_template": "frame"})
    assert "<div class=frame><h1>Hello Ada &lt;3</h1></div>" in inside.text
    in_use = await client.post(f"/ui/servers/1/templates/{layout_id}/delete", data={"csrf_token": csrf})
    assert in_use.status_code == 400 and "is used by 1 template" in text_of(in_use)
    # A layout without its content placeholder is refused (ErrorCode 1131's words), inline.
    no_slot = await client.post(f"/ui/servers/1/templates/{layout_id}", data=template_form(
        csrf, name="Frame", alias="frame", html_body="<div>nothing</div>", text_body="x"))
    assert no_slot.status_code == 400 and "content placeholder must be present exactly once" in text_of(no_slot)

    listing = await client.get("/ui/servers/1/templates")
    assert "Welcome" in listing.text and "Frame" in listing.text and "Layout" in listing.text

    # Deleting: gone from the list and from sending.
    deleted = await client.post(f"/ui/servers/1/templates/{template_id}/delete", data={"csrf_token": csrf})
    assert deleted.status_code == 303 and deleted.headers["location"] == "/ui/servers/1/templates?done=deleted"
    assert (await client.get(f"/ui/servers/1/templates/{template_id}")).status_code == 404
    assert "Welcome" not in (await client.get("/ui/servers/1/templates")).text
    send = await client.post("/email/withTemplate", headers=api.server_headers, json={
        "From": "a@example.com", "To": "b@example.com", "TemplateAlias": "welcome", "TemplateModel": {}})
    assert send.json()["ErrorCode"] == 1101
    # Now the layout is free to go.
    assert (await client.post(f"/ui/servers/1/templates/{layout_id}/delete",
                              data={"csrf_token": csrf})).status_code == 303


async def test_template_editor_takes_large_bodies_only_when_signed_in(api: ApiHarness) -> None:
    body = "<p>{{name}}</p>\n" + "<p>" + "x" * 300_000 + "</p>"  # larger than the other forms' 64 KB
    anonymous = await api.client.post("/ui/servers/1/templates/new", data={"name": "Big", "html_body": body})
    assert anonymous.status_code == 413  # refused unread: no session
    csrf = await signed_in(api)
    created = await api.client.post("/ui/servers/1/templates/new", data=template_form(
        csrf, name="Big", template_type="Standard", subject="s", html_body=body))
    assert created.status_code == 303, created.text[:500]
    listed = (await api.client.get("/templates?count=10&offset=0", headers=api.server_headers)).json()
    big = next(t for t in listed["Templates"] if t["Name"] == "Big")
    stored = (await api.client.get(f"/templates/{big['TemplateId']}", headers=api.server_headers)).json()
    assert stored["HtmlBody"] == body


async def test_template_pages_of_unknown_things_are_404(api: ApiHarness) -> None:
    await signed_in(api)
    assert (await api.client.get("/ui/servers/1/templates/999")).status_code == 404
    assert (await api.client.get("/ui/servers/1/templates/x1")).status_code == 404
    assert (await api.client.get("/ui/servers/77/templates")).status_code == 404


# -- servers and tokens -----------------------------------------------------------------------------------

_TOKEN = re.compile(r'id="new-token"[^>]*value="([0-9a-f-]{36})"')


def server_form(csrf: str, **fields: str) -> dict[str, str]:
    return {"csrf_token": csrf, "name": "", "color": "Purple", "track_links": "None", "retention_days": "",
            "smtp_api_activated": "on", **fields}


async def test_servers_create_edit_and_tokens_shown_once(api: ApiHarness) -> None:
    csrf = await signed_in(api)
    client = api.client
    listing = await client.get("/ui/servers")
    assert listing.status_code == 200 and "default" in listing.text
    fast(listing)

    # A new server: its token is on the answer to the POST, and works against the API.
    created = await client.post("/ui/servers", data=server_form(
        csrf, name="Shop", color="Green", delivery_type="Sandbox", track_opens="on", track_links="HtmlOnly"))
    assert created.status_code == 200, created.text
    token = _TOKEN.search(created.text)
    assert token, created.text
    assert "shown this once" in created.text
    mine = await client.get("/server", headers={"X-Postmark-Server-Token": token.group(1)})
    assert mine.status_code == 200
    server = mine.json()
    assert (server["Name"], server["Color"], server["DeliveryType"], server["TrackOpens"], server["TrackLinks"]) == \
        ("Shop", "Green", "Sandbox", True, "HtmlOnly")
    server_id = server["ID"]
    # … and never again: not on the list, not on the settings page (only its last four characters).
    for path in ("/ui/servers", f"/ui/servers/{server_id}/settings"):
        page = await client.get(path)
        assert token.group(1) not in page.text and 'id="new-token"' not in page.text
    settings = await client.get(f"/ui/servers/{server_id}/settings")
    fast(settings)
    assert f"********{token.group(1)[-4:]}" in settings.text

    # A refused server is explained on the form, which keeps what was typed.
    taken = await client.post("/ui/servers", data=server_form(csrf, name="Shop", delivery_type="Live"))
    assert taken.status_code == 400 and "A server named 'Shop' already exists." in text_of(taken)
    assert 'value="Shop"' in taken.text

    # Editing the settings (delivery type is set at creation and stays).
    saved = await client.post(f"/ui/servers/{server_id}/settings", data=server_form(
        csrf, name="Shop EU", color="Red", track_links="HtmlAndText", retention_days="30"))
    assert saved.status_code == 303 and saved.headers["location"] == f"/ui/servers/{server_id}/settings?done=saved"
    edited = (await client.get(f"/servers/{server_id}", headers=api.account_headers)).json()
    assert (edited["Name"], edited["Color"], edited["TrackOpens"], edited["TrackLinks"], edited["DeliveryType"],
            edited["RetentionDays"]) == ("Shop EU", "Red", False, "HtmlAndText", "Sandbox", 30)
    for bad, words in (("3", "RetentionDays must be between"), ("a week", "whole number of days")):
        refused = await client.post(f"/ui/servers/{server_id}/settings",
                                    data=server_form(csrf, name="Shop EU", retention_days=bad))
        assert refused.status_code == 400 and words in text_of(refused), bad
    assert (await client.get(f"/servers/{server_id}", headers=api.account_headers)).json()["RetentionDays"] == 30

    # Adding a token: shown once; the first one keeps working.
    added = await client.post(f"/ui/servers/{server_id}/tokens", data={"csrf_token": csrf})
    second = _TOKEN.search(added.text)
    assert added.status_code == 200 and second and second.group(1) != token.group(1)
    for t in (token.group(1), second.group(1)):
        assert (await client.get("/server", headers={"X-Postmark-Server-Token": t})).status_code == 200

    # Rotating: one new token; both old ones refused at once.
    rotated = await client.post(f"/ui/servers/{server_id}/tokens/rotate", data={"csrf_token": csrf, "grace": "0"})
    assert rotated.status_code == 200
    assert "2 tokens replaced, refused now" in text_of(rotated)
    fresh = _TOKEN.search(rotated.text)
    assert fresh
    for old in (token.group(1), second.group(1)):
        refused = await client.get("/server", headers={"X-Postmark-Server-Token": old, "Accept": "application/json"})
        assert refused.status_code == 401 and refused.json()["ErrorCode"] == 10
    assert (await client.get("/server", headers={"X-Postmark-Server-Token": fresh.group(1)})).status_code == 200
    # With a grace period the replaced token keeps working until it ends.
    graced = await client.post(f"/ui/servers/{server_id}/tokens/rotate", data={"csrf_token": csrf, "grace": "3600"})
    newest = _TOKEN.search(graced.text)
    assert newest and "refused in 1 hour" in text_of(graced)
    for t in (fresh.group(1), newest.group(1)):
        assert (await client.get("/server", headers={"X-Postmark-Server-Token": t})).status_code == 200
    # The default server's token was never touched.
    assert (await client.get("/server", headers=api.server_headers)).status_code == 200
    assert (await client.get("/ui/servers/999/settings")).status_code == 404


# -- message streams --------------------------------------------------------------------------------------


async def test_streams_create_archive_and_unarchive(api: ApiHarness) -> None:
    csrf = await signed_in(api)
    client = api.client
    page = await client.get("/ui/servers/1/streams")
    assert page.status_code == 200
    fast(page)
    assert all(f"<code>{s}</code>" in page.text for s in ("outbound", "inbound", "broadcast"))

    created = await client.post("/ui/servers/1/streams", data={
        "csrf_token": csrf, "id": "news-eu", "name": "EU newsletter", "stream_type": "Broadcasts",
        "description": "Monthly"})
    assert created.status_code == 303
    assert created.headers["location"] == "/ui/servers/1/streams?stream=news-eu&done=created"
    stream = (await client.get("/message-streams/news-eu", headers=api.server_headers)).json()
    assert (stream["Name"], stream["MessageStreamType"], stream["Description"]) == ("EU newsletter", "Broadcasts",
                                                                                    "Monthly")
    # The picker of the page it leads to has the new stream selected.
    assert '<option value="news-eu" selected>' in (await client.get(created.headers["location"])).text
    # Refusals are the service's words, on the form, which keeps what was typed.
    for fields, words in (({"id": "news-eu", "name": "Again"}, "already exists"),
                          ({"id": "Bad ID", "name": "x"}, "must start with a letter"),
                          ({"id": "x1", "name": "<b>y</b>", "description": "<b>no</b>"}, "cannot contain HTML")):
        refused = await client.post("/ui/servers/1/streams", data={"csrf_token": csrf, "stream_type": "Broadcasts",
                                                                  **fields})
        assert refused.status_code == 400 and words in text_of(refused), fields
        assert f'value="{html.escape(fields["id"])}"' in refused.text

    # Archiving: it takes no mail, and leaves the picker; unarchiving brings it back.
    archived = await client.post("/ui/servers/1/streams/news-eu/archive", data={"csrf_token": csrf})
    assert archived.status_code == 303 and archived.headers["location"] == "/ui/servers/1/streams?done=archived"
    assert (await client.get("/message-streams/news-eu", headers=api.server_headers)).json()["ArchivedAt"]
    send = await client.post("/email", headers=api.server_headers, json={
        "From": "a@example.com", "To": "b@example.com", "Subject": "s", "TextBody": "t", "MessageStream": "news-eu"})
    assert send.json()["ErrorCode"] == 1235
    page = await client.get("/ui/servers/1/streams?done=archived")
    assert "Archived." in page.text and 'value="news-eu"' not in page.text.split("</header>")[0]
    assert "Unarchive" in page.text
    restored = await client.post("/ui/servers/1/streams/news-eu/unarchive", data={"csrf_token": csrf})
    assert restored.status_code == 303
    assert (await client.get("/message-streams/news-eu", headers=api.server_headers)).json()["ArchivedAt"] is None
    again = await client.post("/ui/servers/1/streams/news-eu/unarchive", data={"csrf_token": csrf})
    assert again.status_code == 400 and "is not archived" in text_of(again)
    # The default streams cannot be archived; an unknown one is 404.
    refused = await client.post("/ui/servers/1/streams/outbound/archive", data={"csrf_token": csrf})
    assert refused.status_code == 400 and "cannot be archived" in text_of(refused)
    assert (await client.post("/ui/servers/1/streams/nope/archive", data={"csrf_token": csrf})).status_code == 404


# -- webhooks ---------------------------------------------------------------------------------------------


def hook_form(csrf: str, url: str, **fields: str) -> dict[str, str]:
    return {"csrf_token": csrf, "url": url, "auth_username": "", "auth_password": "", "headers": "", **fields}


async def test_webhooks_create_edit_test_post_log_retry_and_delete(
        store: Any, tmp_path: Any, api_settings: dict[str, str]) -> None:
    from posthouse.server.config import load_settings
    from posthouse.server.runtime import Runtime
    from support import async_wait_for
    from webhook_receiver import WebhookReceiver

    # The dispatcher runs (a quick retry schedule: one retry, then the post has failed).
    settings = load_settings({"delivery": "sandbox", "data_dir": str(tmp_path / "data"), **api_settings,
                              "webhook_retry_schedule": "100ms", "poll_interval": "100ms"}, environ={})
    runtime = Runtime(settings, store)
    tokens = await runtime.accounts.bootstrap()
    assert tokens is not None
    await runtime.start_worker()
    try:
        with WebhookReceiver() as receiver:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.app),
                                         base_url="http://posthouse.test") as client:
                api = ApiHarness(runtime, client, tokens[0], tokens[1])
                csrf = await signed_in(api)
                page = await client.get("/ui/servers/1/streams/outbound/webhooks")
                assert page.status_code == 200 and "No webhooks on this stream yet." in page.text
                fast(page)

                # Created through the form: URL, triggers, Basic credentials and headers as the API reads them.
                created = await client.post("/ui/servers/1/streams/outbound/webhooks", data=hook_form(
                    csrf, receiver.url, delivery="on", bounce="on", bounce_content="on", auth_username="hooks",
                    auth_password="s3cret", headers="X-App: shop\n\nX-Env: test"))
                assert created.status_code == 303, created.text
                hook_id = int(created.headers["location"].split("/")[-1].split("?")[0])
                hook = (await client.get(f"/webhooks/{hook_id}", headers=api.server_headers)).json()
                assert hook["Url"] == receiver.url and hook["MessageStream"] == "outbound"
                assert hook["HttpAuth"] == {"Username": "hooks", "Password": "s3cret"}
                assert hook["HttpHeaders"] == [{"Name": "X-App", "Value": "shop"}, {"Name": "X-Env", "Value": "test"}]
                t = hook["Triggers"]
                assert t["Delivery"]["Enabled"] and t["Bounce"]["Enabled"] and t["Bounce"]["IncludeContent"]
                assert not t["Open"]["Enabled"] and not t["Click"]["Enabled"]
                page = await client.get(created.headers["location"])
                fast(page)
                assert "s3cret" not in page.text  # the stored password is never put back into the page
                assert "Nothing posted yet." in page.text

                # Refusals: the service's words, inline, the draft kept.
                for fields, words in (({"url": "http://10.1.2.3/hook"}, "Invalid 'Url'"),
                                      ({"headers": "no colon here"}, "line 1 is not 'Name: value'"),
                                      ({"headers": "Authorization: x", "auth_username": "u", "auth_password": "p"},
                                       "Invalid 'HttpHeaders'")):
                    refused = await client.post("/ui/servers/1/streams/outbound/webhooks",
                                                data={**hook_form(csrf, receiver.url), **fields})
                    assert refused.status_code == 400 and words in text_of(refused), (fields, text_of(refused)[-800:])
                inbound = await client.get("/ui/servers/1/streams/inbound/webhooks")
                assert "InboundHookUrl" in inbound.text and "New webhook" not in inbound.text

                # Editing: an empty password keeps the stored one; new triggers and headers replace the old.
                saved = await client.post(f"/ui/servers/1/webhooks/{hook_id}", data=hook_form(
                    csrf, receiver.url, auth_username="hooks2", open="on", open_first_only="on",
                    headers="X-App: shop2"))
                assert saved.status_code == 303 and saved.headers["location"].endswith("?done=saved")
                hook = (await client.get(f"/webhooks/{hook_id}", headers=api.server_headers)).json()
                assert hook["HttpAuth"] == {"Username": "hooks2", "Password": "s3cret"}
                assert hook["HttpHeaders"] == [{"Name": "X-App", "Value": "shop2"}]
                t = hook["Triggers"]
                assert t["Open"] == {"Enabled": True, "PostFirstOpenOnly": True} and not t["Delivery"]["Enabled"]
                # No username: no credentials.
                await client.post(f"/ui/servers/1/webhooks/{hook_id}", data=hook_form(csrf, receiver.url, open="on",
                                                                                      headers="X-App: shop2"))
                assert (await client.get(f"/webhooks/{hook_id}", headers=api.server_headers)).json()["HttpAuth"] is None

                # A test post: queued, posted by the dispatcher with the webhook's headers, in the log.
                queued = await client.post(f"/ui/servers/1/webhooks/{hook_id}/test",
                                           data={"csrf_token": csrf, "record_type": "Bounce"})
                assert queued.status_code == 303 and queued.headers["location"].endswith("?done=queued")
                async def bounced() -> bool:
                    return bool(receiver.of_type("Bounce"))

                await async_wait_for(bounced, timeout=15)
                got = receiver.of_type("Bounce")
                assert got[0].json["MessageID"] == "00000000-0000-0000-0000-000000000000"
                assert got[0].json["Tag"] == "test" and got[0].json["RecordType"] == "Bounce"
                assert got[0].headers["x-app"] == "shop2" and "webhook-signature" in got[0].headers

                async def logged(state: str, count: int = 1) -> bool:
                    page = await client.get(f"/ui/servers/1/webhooks/{hook_id}")
                    return page.text.count(f'class="status status-{state}"') == count

                await async_wait_for(lambda: logged("delivered"), timeout=15)
                page = await client.get(f"/ui/servers/1/webhooks/{hook_id}")
                assert "HTTP 200" in page.text

                # A post that fails twice (the first try and the one retry) is failed; "Retry" posts it again.
                receiver.script.extend([500, 500])
                await client.post(f"/ui/servers/1/webhooks/{hook_id}/test", data={"csrf_token": csrf,
                                                                               "record_type": "Delivery"})
                await async_wait_for(lambda: logged("failed"), timeout=15)
                page = await client.get(f"/ui/servers/1/webhooks/{hook_id}")
                assert "HTTP 500" in page.text and "answer 500" in page.text
                failed = (await client.get(f"/webhooks/{hook_id}/deliveries", headers=api.server_headers)).json()
                failed_post = next(d for d in failed["Deliveries"] if d["State"] == "failed")
                assert failed_post["Attempts"] == 2
                assert f'/deliveries/{failed_post["ID"]}/retry"' in page.text and ">Retry<" in page.text
                retried = await client.post(f"/ui/servers/1/webhooks/{hook_id}/deliveries/{failed_post['ID']}/retry",
                                            data={"csrf_token": csrf})
                assert retried.status_code == 303 and retried.headers["location"].endswith("?done=retried")
                await async_wait_for(lambda: logged("delivered", 2), timeout=15)
                assert len(receiver.of_type("Delivery")) == 3
                assert (await client.post(f"/ui/servers/1/webhooks/{hook_id}/deliveries/999999/retry",
                                          data={"csrf_token": csrf})).status_code == 404
                bad_type = await client.post(f"/ui/servers/1/webhooks/{hook_id}/test",
                                             data={"csrf_token": csrf, "record_type": "Inbound"})
                assert bad_type.status_code == 400 and "A test post is one of" in text_of(bad_type)

                # Deleting: gone from the API and the stream's list.
                deleted = await client.post(f"/ui/servers/1/webhooks/{hook_id}/delete", data={"csrf_token": csrf})
                assert deleted.status_code == 303
                assert deleted.headers["location"] == "/ui/servers/1/streams/outbound/webhooks?done=deleted"
                assert (await client.get(f"/webhooks/{hook_id}", headers=api.server_headers)).status_code == 422
                assert (await client.get(f"/ui/servers/1/webhooks/{hook_id}")).status_code == 404
    finally:
        await runtime.stop()


# -- sending domains --------------------------------------------------------------------------------------


async def test_domains_records_verify_rotate_and_delete(store: Any, tmp_path: Any) -> None:
    from integration.dns_zone import ZoneServer
    from posthouse.server.config import load_settings
    from posthouse.server.runtime import Runtime

    bounce_domain = "bounces.posthouse-mail.net"
    with ZoneServer() as zone:
        settings = load_settings({"delivery": "sandbox", "data_dir": str(tmp_path / "data"),
                                  "dns_nameservers": zone.nameserver, "dns_timeout": "3s",
                                  "return_path": f"pm_bounces@{bounce_domain}"}, environ={})
        runtime = Runtime(settings, store)
        tokens = await runtime.accounts.bootstrap()
        assert tokens is not None
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.app),
                                         base_url="http://posthouse.test") as client:
                api = ApiHarness(runtime, client, tokens[0], tokens[1])
                csrf = await signed_in(api)
                page = await client.get("/ui/domains?server=1&stream=outbound")
                assert page.status_code == 200 and "No sending domains yet" in page.text
                fast(page)
                refused = await client.post("/ui/domains", data={"csrf_token": csrf, "name": "shop.example",
                                                                 "return_path": "bounces.other.example"})
                assert refused.status_code == 400 and "must be a subdomain of shop.example" in text_of(refused)
                assert 'value="bounces.other.example"' in refused.text
                created = await client.post("/ui/domains?server=1&stream=outbound", data={
                    "csrf_token": csrf, "name": "Shop.Example", "return_path": "pm-bounces.shop.example"})
                assert created.status_code == 303, created.text
                location = created.headers["location"]
                domain_id = int(location.split("/")[-1].split("?")[0])
                assert location.endswith("?server=1&stream=outbound&done=created")
                details = (await client.get(f"/domains/{domain_id}", headers=api.account_headers)).json()
                assert details["Name"] == "shop.example" and details["ReturnPathDomain"] == "pm-bounces.shop.example"

                # The records to publish, as the API gives them.
                page = await client.get(location)
                fast(page)
                shown = html.unescape(page.text)
                pending = [r for r in details["DKIMRecords"] if r["State"] == "Pending"]
                assert pending
                for record in pending:
                    assert record["Host"] in shown and record["TextValue"] in shown
                assert "CNAME" in shown and bounce_domain in shown and details["SPFTextValue"] in shown
                assert "Created." in page.text

                # Verify before publishing: nothing changes, the page says what to publish.
                early = await client.post(f"/ui/domains/{domain_id}/verify-dkim", data={"csrf_token": csrf})
                assert early.status_code == 200
                assert f"DNS does not hold the pending TXT record at {pending[0]['Host']}" in text_of(early)
                assert not (await client.get(f"/domains/{domain_id}", headers=api.account_headers)).json()[
                    "DKIMVerified"]
                rp = await client.post(f"/ui/domains/{domain_id}/verify-return-path", data={"csrf_token": csrf})
                assert "Return-Path not verified" in text_of(rp)

                # Published: both verify.
                for record in pending:
                    zone.txt(record["Host"], record["TextValue"])
                zone.cname("pm-bounces.shop.example", bounce_domain)
                verified = await client.post(f"/ui/domains/{domain_id}/verify-dkim", data={"csrf_token": csrf})
                assert "DKIM verified" in text_of(verified)
                rp = await client.post(f"/ui/domains/{domain_id}/verify-return-path", data={"csrf_token": csrf})
                assert "Return-Path verified: pm-bounces.shop.example points to" in text_of(rp)
                details = (await client.get(f"/domains/{domain_id}", headers=api.account_headers)).json()
                assert details["DKIMVerified"] and details["ReturnPathDomainVerified"]
                listing = await client.get("/ui/domains")
                assert listing.text.count('class="state-ok">Verified') == 2

                # Rotation: a new pending key beside the active one; a second rotation waits for it.
                rotated = await client.post(f"/ui/domains/{domain_id}/rotate-dkim", data={"csrf_token": csrf})
                assert rotated.status_code == 200 and "A new DKIM key is pending" in text_of(rotated)
                states = [r["State"] for r in (await client.get(f"/domains/{domain_id}",
                                                                headers=api.account_headers)).json()["DKIMRecords"]]
                assert "Active" in states and "Pending" in states
                again = await client.post(f"/ui/domains/{domain_id}/rotate-dkim", data={"csrf_token": csrf})
                assert again.status_code == 400 and "DKIM already scheduled for renewal" in text_of(again)

                # The Return-Path domain changed (and checked again), then a bad one refused inline.
                saved = await client.post(f"/ui/domains/{domain_id}/return-path",
                                          data={"csrf_token": csrf, "return_path": "rp.shop.example"})
                assert saved.status_code == 303
                details = (await client.get(f"/domains/{domain_id}", headers=api.account_headers)).json()
                assert details["ReturnPathDomain"] == "rp.shop.example" and not details["ReturnPathDomainVerified"]
                bad = await client.post(f"/ui/domains/{domain_id}/return-path",
                                        data={"csrf_token": csrf, "return_path": "elsewhere.example"})
                assert bad.status_code == 400 and "must be a subdomain" in text_of(bad)

                deleted = await client.post(f"/ui/domains/{domain_id}/delete?server=1", data={"csrf_token": csrf})
                assert deleted.status_code == 303 and deleted.headers["location"] == "/ui/domains?server=1&done=deleted"
                assert (await client.get(f"/domains/{domain_id}", headers=api.account_headers)).status_code == 404
                assert (await client.get(f"/ui/domains/{domain_id}")).status_code == 404
                assert (await client.get("/ui/domains/abc")).status_code == 404
        finally:
            await runtime.stop()
