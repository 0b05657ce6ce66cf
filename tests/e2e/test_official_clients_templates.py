"""The official Postmark clients manage templates on the real server process and send with them; the mail
arrives, rendered, at a real sink (docs/postmark-api.md §2.3, §2.4, §3, §11.3)."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import httpx
import postmark
import postmark.sync
import pytest
from postmark.exceptions import PostmarkException
from postmark.models.templates import TemplateAction, TemplateType, TemplateTypeFilter
from postmarker.core import PostmarkClient
from postmarker.exceptions import ClientError

from support import ServerProcess, wait_for

SENDER = "app@example.com"
HTML = "<html><head><style>p { color: red; }</style></head><body><p>Hi {{name}}</p></body></html>"


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def arrived(sink: Any, recipient: str) -> EmailMessage:
    found = wait_for(lambda: [m for m in sink.messages if m.rcpt_tos == [recipient]], timeout=10)
    return parse(found[0].data)


def bodies(message: EmailMessage) -> tuple[str, str]:
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    assert html is not None and text is not None
    return html.get_content(), text.get_content().replace("\r\n", "\n").rstrip("\n")


async def test_postmark_python_manages_and_sends_with_templates(relay_server, sink) -> None:  # type: ignore[no-untyped-def]
    async with postmark.ServerClient(relay_server.server_token, base_url=relay_server.base_url, retries=0) as client:
        layout = await client.templates.create(
            {
                "name": "Base",
                "alias": "base",
                "template_type": TemplateType.LAYOUT,
                "html_body": "<div>{{company}}{{{ @content }}}</div>",
                "text_body": "{{company}}\n{{{ @content }}}",
            }
        )
        assert layout.template_type == TemplateType.LAYOUT and layout.active
        created = await client.templates.create(
            {
                "name": "Welcome",
                "alias": "welcome",
                "subject": "Hello {{name}}",
                "html_body": HTML,
                "text_body": "Hi {{name}}",
                "layout_template": "base",
            }
        )
        assert created.alias == "welcome" and created.layout_template == "base"
        assert created.template_type == TemplateType.STANDARD

        by_id = await client.templates.get(created.template_id)
        by_alias = await client.templates.get("welcome")
        assert by_id == by_alias
        assert by_id.subject == "Hello {{name}}" and by_id.associated_server_id >= 1

        page = await client.templates.list(count=10, offset=0)
        assert page.total == 2 and [t.alias for t in page.items] == ["base", "welcome"]
        layouts = await client.templates.list(count=10, offset=0, template_type=TemplateTypeFilter.LAYOUT)
        assert [t.alias for t in layouts.items] == ["base"]

        edited = await client.templates.edit("welcome", {"name": "Welcome v2"})
        assert edited.name == "Welcome v2" and edited.template_id == created.template_id

        checked = await client.templates.validate(
            {
                "subject": "Hi {{user.name}}",
                "html_body": "<p>\n{{#each items}}</p>",
                "text_body": "{{x}}",
                "test_render_model": {"x": "y"},
            }
        )
        assert checked.all_content_is_valid is False
        assert checked.subject is not None and checked.subject.rendered_content == "Hi name_Value"
        assert checked.html_body is not None and checked.html_body.content_is_valid is False
        error = checked.html_body.validation_errors[0]
        assert (error.line, error.character_position) == (2, 1)
        assert checked.suggested_template_model == {
            "user": {"name": "name_Value"},
            "x": "y",
            "items": ["items_1", "items_2", "items_3"],
        }

        sent = await client.outbound.send_with_template(
            {
                "template_alias": "welcome",
                "template_model": {"name": "Ann", "company": "ACME"},
                "sender": SENDER,
                "to": "ann@example.com",
            }
        )
        assert sent.error_code == 0 and sent.success
        batch = await client.outbound.send_batch_with_template(
            [
                {
                    "template_id": created.template_id,
                    "template_model": {"name": "Bo"},
                    "sender": SENDER,
                    "to": "bo@example.com",
                    "inline_css": False,
                },
                {"template_alias": "missing", "template_model": {}, "sender": SENDER, "to": "nobody@example.com"},
            ]
        )
        assert [r.error_code for r in batch] == [0, 1101]

        with pytest.raises(PostmarkException) as refused:
            await client.templates.delete("base")  # still used by "welcome"
        assert refused.value.error_code == 1130
        removed = await client.templates.delete(created.template_id)
        assert removed.error_code == 0 and removed.message == f"Template {created.template_id} removed."
        assert (await client.templates.get(created.template_id)).active is False

    message = arrived(sink, "ann@example.com")
    assert message["Subject"] == "Hello Ann"
    html, text = bodies(message)
    assert '<p style="color: red;">Hi Ann</p>' in html and "ACME" in html
    assert text == "ACME\nHi Ann"
    html, _ = bodies(arrived(sink, "bo@example.com"))
    assert "<style>" in html and "<p>Hi Bo</p>" in html
    assert all(m.rcpt_tos != ["nobody@example.com"] for m in sink.messages)


def test_postmark_python_pushes_templates_between_servers(relay_server) -> None:  # type: ignore[no-untyped-def]
    base_url = relay_server.base_url
    with postmark.sync.AccountClient(relay_server.account_token, base_url=base_url, retries=0) as account:
        staging = account.server.create(name="staging")
        source_id = account.server.list().items[0].id
    with postmark.sync.ServerClient(relay_server.server_token, base_url=base_url, retries=0) as client:
        client.templates.create({"name": "Welcome", "alias": "welcome", "subject": "Hi", "text_body": "t"})
    with postmark.sync.AccountClient(relay_server.account_token, base_url=base_url, retries=0) as account:
        request = {"source_server_id": str(source_id), "destination_server_id": str(staging.id)}
        dry = account.templates.push({**request, "perform_changes": False})
        assert dry.total_count == 1
        assert dry.templates[0].action == TemplateAction.CREATE and dry.templates[0].template_id is None
        done = account.templates.push({**request, "perform_changes": True})
        assert done.templates[0].template_id is not None and done.templates[0].name == "Welcome"
    with postmark.sync.ServerClient(staging.api_tokens[0], base_url=base_url, retries=0) as client:
        assert client.templates.get("welcome").template_id == done.templates[0].template_id


def test_postmarker_manages_and_sends_with_templates(relay_server, sink) -> None:  # type: ignore[no-untyped-def]
    pm = PostmarkClient(server_token=relay_server.server_token, root_api_url=relay_server.base_url + "/")
    template = pm.templates.create(
        Name="Receipt", Subject="Order {{id}}", HtmlBody=HTML, TextBody="Hi {{name}}", Alias="receipt"
    )
    assert template.Alias == "receipt" and template.Active is True
    got = pm.templates.get(template.TemplateId)
    assert got.Subject == "Order {{id}}" and got.TemplateType == "Standard"
    assert got.get().Name == "Receipt"
    listed = pm.templates.all()
    assert [t.TemplateId for t in listed] == [template.TemplateId]

    edited = pm.templates.edit(template.TemplateId, Subject="Receipt {{id}}")  # the rest is sent as null
    assert edited["Name"] == "Receipt" and edited["TemplateId"] == template.TemplateId
    assert pm.templates.get(template.TemplateId).HtmlBody == HTML

    checked = pm.templates.validate(Subject="{{id}}", HtmlBody=HTML, TestRenderModel={"name": "Zed"})
    assert checked["AllContentIsValid"] is True
    assert 'style="color: red;"' in checked["HtmlBody"]["RenderedContent"]
    assert checked["SuggestedTemplateModel"] == {"id": "id_Value", "name": "Zed"}

    sent = pm.emails.send_with_template(
        TemplateAlias="receipt", TemplateModel={"id": 7, "name": "Cy"}, From=SENDER, To="cy@example.com"
    )
    assert sent["ErrorCode"] == 0
    results = pm.emails.send_template_batch(
        {
            "TemplateId": template.TemplateId,
            "TemplateModel": {"id": 8, "name": "Di"},
            "From": SENDER,
            "To": "di@example.com",
        },
        {
            "TemplateAlias": "receipt",
            "TemplateModel": {"id": {"not": "printable"}, "@content": 1},
            "From": SENDER,
            "To": "eve@example.com",
        },
    )
    assert [r["ErrorCode"] for r in results] == [0, 1122]

    with pytest.raises(ClientError) as refused:
        pm.emails.send_with_template(TemplateAlias="nope", TemplateModel={}, From=SENDER, To="x@example.com")
    assert refused.value.error_code == 1101
    assert pm.templates.delete(template.TemplateId) == f"Template {template.TemplateId} removed."

    message = arrived(sink, "cy@example.com")
    assert message["Subject"] == "Receipt 7"
    html, text = bodies(message)
    assert '<p style="color: red;">Hi Cy</p>' in html and text == "Hi Cy"
    assert arrived(sink, "di@example.com")["Subject"] == "Receipt 8"


def test_every_template_answer_is_json_with_postmark_errors(relay_server: ServerProcess) -> None:
    with relay_server.client() as client:
        response = client.put("/templates/push", json={"SourceServerID": 1, "DestinationServerID": 1})
        assert response.status_code == 401 and response.json()["ErrorCode"] == 10
        response = client.get("/templates?count=1")
        assert response.status_code == 422 and response.json()["ErrorCode"] == 1100
        assert response.headers["X-PM-ApiErrorCode"] == "1100"
    assert isinstance(httpx.get(relay_server.base_url + "/healthz").json(), dict)
