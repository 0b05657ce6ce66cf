"""Templates through the SDK against the real server process, async and sync: the template calls, sending
with templates (one, a batch, scheduled, idempotent), and pushing templates between servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import posthouse
from sdk.sdk_support import Tenant

SENDER = "app@example.com"
LAYOUT = posthouse.TemplateRequest(
    name="Base",
    alias="base",
    template_type="Layout",
    html_body="<div>{{{ @content }}}</div>",
    text_body="{{{ @content }}}",
)
WELCOME = posthouse.TemplateRequest(
    name="Welcome",
    alias="welcome",
    subject="Hi {{name}}",
    html_body="<p>Hello {{name}}</p>",
    text_body="Hello {{name}}",
    layout_template="base",
)


async def test_templates_are_created_read_listed_edited_validated_and_deleted(tenant: Tenant, flavour) -> None:  # type: ignore[no-untyped-def]
    client = flavour.server_client(tenant.token, tenant.base_url)
    try:
        layout = await flavour(client.templates.create(LAYOUT))
        created = await flavour(client.templates.create(WELCOME))
        assert isinstance(created, posthouse.TemplateSummary)
        assert (created.name, created.alias, created.template_type, created.active) == (
            "Welcome", "welcome", "Standard", True
        )
        assert created.layout_template == "base" and layout.template_type == "Layout"

        by_id = await flavour(client.templates.get(created.template_id))
        assert isinstance(by_id, posthouse.Template)
        assert (by_id.subject, by_id.text_body) == ("Hi {{name}}", "Hello {{name}}")
        assert by_id.associated_server_id == tenant.id
        assert await flavour(client.templates.get("welcome")) == by_id

        listed = await flavour(client.templates.list())
        assert isinstance(listed, posthouse.TemplateList)
        assert listed.total_count == 2 and {t.alias for t in listed.templates} == {"base", "welcome"}
        layouts = await flavour(client.templates.list(template_type="Layout"))
        assert [t.alias for t in layouts.templates] == ["base"]
        using_base = await flavour(client.templates.list(layout_template="base"))
        assert [t.alias for t in using_base.templates] == ["welcome"]
        assert [t.alias for t in (await flavour(client.templates.list(1, 1))).templates] == ["welcome"]

        edited = await flavour(client.templates.edit("welcome", posthouse.TemplateRequest(subject="Welcome {{name}}")))
        assert edited.template_id == created.template_id
        again = await flavour(client.templates.get(created.template_id))
        assert (again.subject, again.text_body) == ("Welcome {{name}}", "Hello {{name}}")  # the rest stays

        valid = await flavour(
            client.templates.validate(
                posthouse.TemplateValidationRequest(
                    subject="Hi {{name}}",
                    text_body="Items: {{#each items}}{{.}} {{/each}}",
                    test_render_model={"name": "Ann"},
                )
            )
        )
        assert isinstance(valid, posthouse.TemplateValidationResponse)
        assert valid.all_content_is_valid is True and valid.html_body is None
        assert valid.subject is not None and valid.subject.rendered_content == "Hi Ann"
        assert isinstance(valid.text_body, posthouse.TemplateContentValidation)
        assert set(valid.suggested_template_model) == {"name", "items"}
        broken = await flavour(
            client.templates.validate(posthouse.TemplateValidationRequest(html_body="<p>{{#if}}</p>"))
        )
        assert broken.all_content_is_valid is False
        assert broken.html_body is not None and broken.html_body.validation_errors
        assert broken.html_body.rendered_content is None

        with pytest.raises(posthouse.InvalidRequestError):  # a retry-unsafe create is refused, not repeated
            await flavour(client.templates.create(WELCOME))
        assert await flavour(client.templates.delete(created.template_id)) is None
        assert (await flavour(client.templates.get(created.template_id))).active is False  # still read by id
        with pytest.raises(posthouse.InvalidRequestError) as gone:
            await flavour(client.templates.get("welcome"))
        assert gone.value.error_code == 1101
        assert (await flavour(client.templates.list())).total_count == 1
    finally:
        await flavour.close(client)


async def test_sending_with_templates(tenant: Tenant, flavour) -> None:  # type: ignore[no-untyped-def]
    client = flavour.server_client(tenant.token, tenant.base_url)
    try:
        await flavour(client.templates.create(LAYOUT))
        welcome = await flavour(client.templates.create(WELCOME))
        email = posthouse.TemplateEmail(
            sender=SENDER,
            to="ann@example.com",
            template_alias="welcome",
            template_model={"name": "Ann & Co"},
            tag="welcome",
            metadata={"user": "ann"},
        )
        sent = await flavour(client.outbound.send_with_template(email, idempotency_key=f"welcome-ann-{flavour}"))
        assert isinstance(sent, posthouse.SendResponse) and sent.error_code == 0
        replayed = await flavour(client.outbound.send_with_template(email, idempotency_key=f"welcome-ann-{flavour}"))
        assert replayed.message_id == sent.message_id  # the same key: the same send, not a second one
        details = await flavour(client.outbound.get(sent.message_id))
        assert (details.subject, details.text_body) == ("Hi Ann & Co", "Hello Ann & Co")
        assert details.html_body == "<div><p>Hello Ann &amp; Co</p></div>"  # escaped, inside the layout
        assert (details.tag, details.metadata) == ("welcome", {"user": "ann"})

        batch = [
            posthouse.TemplateEmail(
                sender=SENDER, to="bob@example.com", template_id=welcome.template_id, template_model={"name": "Bob"}
            ),
            posthouse.TemplateEmail(sender=SENDER, to="x@example.com", template_alias="nope", template_model={}),
        ]
        results = await flavour(
            client.outbound.send_batch_with_templates(
                batch,
                idempotency_key=f"batch-{flavour}",
            )
        )
        assert [r.error_code for r in results] == [0, 1101]  # a refused item is a result, not an exception
        assert (await flavour(client.outbound.get(results[0].message_id))).subject == "Hi Bob"
        replayed_batch = await flavour(
            client.outbound.send_batch_with_templates(
                batch,
                idempotency_key=f"batch-{flavour}",
            )
        )
        assert [r.message_id for r in replayed_batch] == [r.message_id for r in results]

        later = datetime.now(UTC) + timedelta(hours=1)
        welcome_cy, welcome_di = (
            posthouse.TemplateEmail(sender=SENDER, to=to, template_alias="welcome", template_model={})
            for to in ("cy@example.com", "di@example.com")
        )
        scheduled = await flavour(
            client.outbound.send_with_template(
                welcome_cy,
                send_at=later,
            )
        )
        scheduled_batch = await flavour(
            client.outbound.send_batch_with_templates(
                [welcome_di],
                send_at=later.isoformat(),
            )
        )
        for message_id in (scheduled.message_id, scheduled_batch[0].message_id):
            assert (await flavour(client.outbound.get(message_id))).status == "Scheduled"
            assert (await flavour(client.outbound.cancel(message_id))).status == "Cancelled"

        with pytest.raises(posthouse.InvalidRequestError) as missing:
            await flavour(
                client.outbound.send_with_template(
                    posthouse.TemplateEmail(sender=SENDER, to="a@example.com", template_alias="nope", template_model={})
                )
            )
        assert missing.value.error_code == 1101
    finally:
        await flavour.close(client)


async def test_an_account_pushes_templates_to_another_server(tenant: Tenant, flavour) -> None:  # type: ignore[no-untyped-def]
    client = flavour.server_client(tenant.token, tenant.base_url)
    account = flavour.account_client(tenant.account_token, tenant.base_url)
    try:
        await flavour(client.templates.create(LAYOUT))
        await flavour(client.templates.create(WELCOME))
        staging = await flavour(account.servers.create(posthouse.ServerRequest(name=f"{tenant.name}-push")))
        try:
            preview = await flavour(account.templates.push(tenant.id, staging.id, perform_changes=False))
            assert isinstance(preview, posthouse.TemplatePushResponse)
            assert preview.total_count == 2
            assert [(t.action, t.alias, t.template_type) for t in preview.templates] == [
                ("Create", "base", "Layout"),
                ("Create", "welcome", "Standard"),
            ]
            assert all(isinstance(t, posthouse.PushedTemplate) for t in preview.templates)
            staged = flavour.server_client(staging.api_tokens[0], tenant.base_url)
            try:
                assert (await flavour(staged.templates.list())).total_count == 0  # a preview changes nothing

                pushed = await flavour(account.templates.push(tenant.id, staging.id))
                assert [t.action for t in pushed.templates] == ["Create", "Create"]
                copied = await flavour(staged.templates.get("welcome"))
                assert (copied.subject, copied.layout_template) == ("Hi {{name}}", "base")
                assert [t.template_id for t in pushed.templates] == [
                    (await flavour(staged.templates.get(alias))).template_id for alias in ("base", "welcome")
                ]
                assert (await flavour(account.templates.push(tenant.id, staging.id))).total_count == 0  # identical
            finally:
                await flavour.close(staged)
            with pytest.raises(posthouse.InvalidRequestError) as unknown:
                await flavour(account.templates.push(tenant.id, 999_999_999))
            assert unknown.value.error_code == 601
        finally:
            await flavour(account.servers.delete(staging.id))
    finally:
        await flavour.close(account)
        await flavour.close(client)
