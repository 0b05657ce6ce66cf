"""Templates through the real ASGI app and a real database: management, layouts, validate, push, and sending
with templates (docs/postmark-api.md §2.3, §2.4, §3)."""

from __future__ import annotations

from typing import Any

import pytest

from support import assert_api_error

WELCOME = {
    "Name": "Welcome",
    "Alias": "welcome",
    "Subject": "Hello {{name}}",
    "HtmlBody": "<html><head><style>p { color: red; }</style></head><body><p>Hi {{name}}</p></body></html>",
    "TextBody": "Hi {{name}}",
}
LAYOUT = {
    "Name": "Base",
    "Alias": "base",
    "TemplateType": "Layout",
    "HtmlBody": "<div class='frame'>{{company}}|{{{ @content }}}|footer</div>",
    "TextBody": "{{company}}\n{{{ @content }}}\n--",
}
ENVELOPE = {"From": "sender@example.com", "To": "receiver@example.com"}


async def create(api, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = await api.client.post("/templates", json=body, headers=headers or api.server_headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def details(api, message_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = await api.client.get(f"/messages/outbound/{message_id}/details", headers=api.server_headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def second_server(api) -> tuple[int, dict[str, str]]:  # type: ignore[no-untyped-def]
    response = await api.client.post("/servers", json={"Name": "staging"}, headers=api.account_headers)
    assert response.status_code == 200, response.text
    server = response.json()
    return server["ID"], {"X-Postmark-Server-Token": server["ApiTokens"][0], "Accept": "application/json"}


# -- management ---------------------------------------------------------------------------------------


async def test_create_get_list_edit_delete(api) -> None:  # type: ignore[no-untyped-def]
    server_id = (await api.client.get("/server", headers=api.server_headers)).json()["ID"]
    created = await create(api, WELCOME)
    assert created == {
        "TemplateId": created["TemplateId"],
        "Name": "Welcome",
        "Active": True,
        "Alias": "welcome",
        "TemplateType": "Standard",
        "LayoutTemplate": None,
    }
    template_id = created["TemplateId"]
    for key in (str(template_id), "welcome", "WELCOME"):
        response = await api.client.get(f"/templates/{key}", headers=api.server_headers)
        assert response.status_code == 200, response.text
        got = response.json()
        assert got["TemplateId"] == template_id
        assert got["Subject"] == WELCOME["Subject"] and got["HtmlBody"] == WELCOME["HtmlBody"]
        assert got["TextBody"] == WELCOME["TextBody"]
        assert got["AssociatedServerId"] == server_id
        assert got["Active"] is True and got["TemplateType"] == "Standard" and got["LayoutTemplate"] is None

    other = await create(api, {"Name": "Plain", "Subject": "s", "TextBody": "t"})
    assert other["Alias"] is None
    listed = (await api.client.get("/templates?Count=10&Offset=0", headers=api.server_headers)).json()
    assert listed["TotalCount"] == 2
    assert [t["TemplateId"] for t in listed["Templates"]] == [template_id, other["TemplateId"]]
    assert set(listed["Templates"][0]) == {"Active", "TemplateId", "Name", "Alias", "TemplateType", "LayoutTemplate"}
    page = (await api.client.get("/templates?count=1&offset=1", headers=api.server_headers)).json()
    assert page["TotalCount"] == 2 and [t["TemplateId"] for t in page["Templates"]] == [other["TemplateId"]]

    # An edit leaves null fields as they are (postmarker sends every field, unset ones as null).
    edited = await api.client.put(
        "/templates/Welcome",
        json={"Name": "Welcome v2", "Subject": None, "HtmlBody": None, "Alias": "welcome-2"},
        headers=api.server_headers,
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["Name"] == "Welcome v2" and edited.json()["Alias"] == "welcome-2"
    got = (await api.client.get(f"/templates/{template_id}", headers=api.server_headers)).json()
    assert got["Subject"] == WELCOME["Subject"] and got["Alias"] == "welcome-2"

    deleted = await api.client.delete("/templates/welcome-2", headers=api.server_headers)
    assert deleted.status_code == 200
    assert deleted.json() == {"ErrorCode": 0, "Message": f"Template {template_id} removed."}
    # A deleted template still reads back by id, inactive; by alias it is gone, and the alias is free again.
    gone = (await api.client.get(f"/templates/{template_id}", headers=api.server_headers)).json()
    assert gone["Active"] is False
    assert_api_error(await api.client.get("/templates/welcome-2", headers=api.server_headers), 1101)
    assert_api_error(await api.client.delete(f"/templates/{template_id}", headers=api.server_headers), 1101)
    assert_api_error(
        await api.client.put(f"/templates/{template_id}", json={"Name": "x"}, headers=api.server_headers), 1101
    )
    listed = (await api.client.get("/templates?count=10&offset=0", headers=api.server_headers)).json()
    assert listed["TotalCount"] == 1
    again = await create(api, {**WELCOME, "Alias": "welcome-2"})
    assert again["TemplateId"] > other["TemplateId"]  # ids are never reused


async def test_templates_belong_to_their_server(api) -> None:  # type: ignore[no-untyped-def]
    created = await create(api, WELCOME)
    _, other = await second_server(api)
    assert_api_error(await api.client.get(f"/templates/{created['TemplateId']}", headers=other), 1101)
    assert_api_error(await api.client.get("/templates/welcome", headers=other), 1101)
    assert (await api.client.get("/templates?count=10&offset=0", headers=other)).json()["TotalCount"] == 0
    await create(api, WELCOME, headers=other)  # the same alias on another server is fine


def base(**changes: Any) -> dict[str, Any]:
    body = dict(WELCOME)
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


CREATE_REFUSALS = [
    ({}, 1109, "no template data"),
    (base(Name=...), 1120, "'Name'"),
    (base(Name="  "), 1120, "'Name'"),
    (base(Subject=...), 1120, "'Subject'"),
    (base(Subject=""), 1120, "'Subject'"),
    (base(HtmlBody=..., TextBody=...), 1120, "HtmlBody"),
    (base(HtmlBody="", TextBody=""), 1120, "HtmlBody"),
    (base(Name="n" * 256), 1121, "'Name'"),
    (base(Subject="s" * 2001), 1121, "'Subject'"),
    (base(Alias=""), 1122, "'Alias'"),
    (base(Alias="1st"), 1122, "Invalid 'Alias': '1st'"),
    (base(Alias="has space"), 1122, "Invalid 'Alias'"),
    (base(Alias="a" * 256), 1121, "'Alias'"),
    (base(TemplateType="Fancy"), 1122, "Invalid 'TemplateType': 'Fancy'"),
    (base(HtmlBody="<p>{{#each items}}</p>"), 1122, "'HtmlBody' could not be parsed: line 1, character 4"),
    (base(Subject="Hi {{name"), 1122, "'Subject' could not be parsed"),
    (base(TextBody="{{{ @content }}}"), 1131, "The layout content placeholder ('{{{ @content }}}') cannot be present"),
    (base(LayoutTemplate="nosuchlayout"), 1101,
     "The 'LayoutTemplate' associated with this request is not valid or was not found."),
    ({**LAYOUT, "Subject": "Hi"}, 1123, "'Subject'"),
    ({**LAYOUT, "LayoutTemplate": "other"}, 1123, "'LayoutTemplate'"),
    ({**LAYOUT, "HtmlBody": "<p>no placeholder</p>"}, 1131,
     "The layout content placeholder must be present exactly once in the 'HtmlBody'"),
    ({**LAYOUT, "TextBody": "{{{ @content }}} and {{{ @content }}}"}, 1131, "2 times"),
    ({**LAYOUT, "HtmlBody": "{{ @content }}"}, 1122, "could not be parsed"),
]


@pytest.mark.parametrize(("body", "code", "text"), CREATE_REFUSALS)
async def test_create_refusals(api, body, code, text) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.post("/templates", json=body, headers=api.server_headers)
    assert_api_error(response, code, text=text)
    assert await api.count("templates") == 0


async def test_alias_is_unique_per_server_case_insensitively(api) -> None:  # type: ignore[no-untyped-def]
    first = await create(api, WELCOME)
    assert_api_error(
        await api.client.post("/templates", json=base(Alias="WELCOME"), headers=api.server_headers),
        1122,
        text="already used by template",
    )
    second = await create(api, base(Alias="other"))
    response = await api.client.put(
        f"/templates/{second['TemplateId']}", json={"Alias": "Welcome"}, headers=api.server_headers
    )
    assert_api_error(response, 1122, text=f"template {first['TemplateId']}")
    # Re-casing one's own alias is not a clash.
    response = await api.client.put("/templates/welcome", json={"Alias": "Welcome"}, headers=api.server_headers)
    assert response.status_code == 200 and response.json()["Alias"] == "Welcome"


async def test_a_server_holds_at_most_100_templates(api) -> None:  # type: ignore[no-untyped-def]
    for n in range(100):
        await create(api, {"Name": f"t{n}", "Subject": "s", "TextBody": "t"})
    response = await api.client.post("/templates", json=WELCOME, headers=api.server_headers)
    assert_api_error(response, 1105, text="100")
    await api.client.delete("/templates/1", headers=api.server_headers)
    await create(api, WELCOME)


EDIT_REFUSALS = [
    ({}, 1109),
    ({"TemplateType": "Layout"}, 1123),
    ({"Name": ""}, 1120),
    ({"Subject": ""}, 1120),
    ({"HtmlBody": "", "TextBody": ""}, 1120),
    ({"Alias": "9"}, 1122),
    ({"HtmlBody": "{{/x}}"}, 1122),
    ({"LayoutTemplate": "missing"}, 1101),
]


@pytest.mark.parametrize(("body", "code"), EDIT_REFUSALS)
async def test_edit_refusals_change_nothing(api, body, code) -> None:  # type: ignore[no-untyped-def]
    created = await create(api, WELCOME)
    assert_api_error(await api.client.put("/templates/welcome", json=body, headers=api.server_headers), code)
    got = (await api.client.get(f"/templates/{created['TemplateId']}", headers=api.server_headers)).json()
    assert {k: got[k] for k in WELCOME} == WELCOME


async def test_unknown_template_and_no_body(api) -> None:  # type: ignore[no-untyped-def]
    # Postmark's words (postmarker's recorded exchange for templates.get(123)), 422 like every 1101.
    by_id = "The 'TemplateId' associated with this request is not valid or was not found."
    by_alias = "The Template's 'Alias' associated with this request is not valid or was not found."
    for response, words in (
        (await api.client.get("/templates/12345", headers=api.server_headers), by_id),
        (await api.client.delete("/templates/12345", headers=api.server_headers), by_id),
        (await api.client.get("/templates/nope", headers=api.server_headers), by_alias),
        (await api.client.put("/templates/nope", json={"Name": "x"}, headers=api.server_headers), by_alias),
        (await api.client.delete("/templates/nope", headers=api.server_headers), by_alias),
    ):
        assert_api_error(response, 1101)
        assert response.json()["Message"] == words
    response = await api.client.post(
        "/templates", content=b"null", headers={**api.server_headers, "Content-Type": "application/json"}
    )
    assert_api_error(response, 1109)
    assert_api_error(await api.client.post("/templates", json={"Name": 5}, headers=api.server_headers), 403)


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ("offset=0", "count"),
        ("count=10", "offset"),
        ("count=501&offset=0", "count"),
        ("count=x&offset=0", "count"),
        ("count=10&offset=0&TemplateType=Fancy", "TemplateType"),
    ],
)
async def test_list_query_errors_are_1100(api, query, text) -> None:  # type: ignore[no-untyped-def]
    assert_api_error(await api.client.get(f"/templates?{query}", headers=api.server_headers), 1100, text=text)


async def test_templates_need_a_server_token(api) -> None:  # type: ignore[no-untyped-def]
    assert_api_error(await api.client.get("/templates?count=1&offset=0"), 10, 401)
    assert_api_error(await api.client.post("/templates", json=WELCOME, headers=api.account_headers), 10, 401)


# -- layouts ------------------------------------------------------------------------------------------


async def test_layouts_list_filters_rename_and_delete_rules(api) -> None:  # type: ignore[no-untyped-def]
    layout = await create(api, LAYOUT)
    assert layout["TemplateType"] == "Layout" and layout["LayoutTemplate"] is None
    got = (await api.client.get("/templates/base", headers=api.server_headers)).json()
    assert got["Subject"] is None and got["TemplateType"] == "Layout"
    standard = await create(api, base(LayoutTemplate="BASE"))
    assert standard["LayoutTemplate"] == "base"  # stored as the layout's own alias
    await create(api, base(Alias="plain", Name="Plain"))
    # A Standard template cannot name a Standard template as its layout.
    assert_api_error(
        await api.client.post("/templates", json=base(Alias="x", LayoutTemplate="plain"), headers=api.server_headers),
        1122,
        text="not a layout",
    )

    async def listed(query: str) -> list[str]:
        response = await api.client.get(f"/templates?count=10&offset=0&{query}", headers=api.server_headers)
        assert response.status_code == 200, response.text
        return [t["Alias"] for t in response.json()["Templates"]]

    assert await listed("templateType=Layout") == ["base"]
    assert await listed("TemplateType=standard") == ["welcome", "plain"]
    assert await listed("TemplateType=All") == ["base", "welcome", "plain"]
    assert await listed("LayoutTemplate=Base") == ["welcome"]

    # A layout in use cannot be deleted (1131's sibling, 1130), and it stays a layout (TemplateType is fixed).
    assert_api_error(await api.client.delete("/templates/base", headers=api.server_headers), 1130, text="1 template")
    assert_api_error(
        await api.client.put("/templates/base", json={"TemplateType": "Standard"}, headers=api.server_headers), 1123
    )
    assert_api_error(await api.client.put("/templates/base", json={"Subject": "s"}, headers=api.server_headers), 1123)
    assert_api_error(  # postmark.js's "editTemplate - layout / invalid" expects these opening words
        await api.client.put("/templates/base", json={"HtmlBody": "<p>none</p>"}, headers=api.server_headers), 1131,
        text="The layout content placeholder must be present",
    )
    # Renaming the layout renames it in the templates that use it.
    renamed = await api.client.put("/templates/base", json={"Alias": "frame"}, headers=api.server_headers)
    assert renamed.status_code == 200, renamed.text
    assert (await api.client.get("/templates/welcome", headers=api.server_headers)).json()["LayoutTemplate"] == (
        "frame"
    )
    # `""` takes the layout off; then the layout can go.
    cleared = await api.client.put("/templates/welcome", json={"LayoutTemplate": ""}, headers=api.server_headers)
    assert cleared.status_code == 200 and cleared.json()["LayoutTemplate"] is None
    assert (await api.client.delete("/templates/frame", headers=api.server_headers)).status_code == 200


# -- validate -----------------------------------------------------------------------------------------


async def validate(api, body: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = await api.client.post("/templates/validate", json=body, headers=api.server_headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_validate_renders_with_the_suggested_model(api) -> None:  # type: ignore[no-untyped-def]
    result = await validate(
        api,
        {
            "Subject": "Order {{order.id}}",
            "HtmlBody": "<style>p { color: red; }</style><p>{{#each items}}{{name}} {{/each}}{{user}}</p>",
            "TextBody": "{{#vip}}VIP {{/vip}}{{user}}",
            "TestRenderModel": {"user": "<Ann>", "order": {"total": 5}},
        },
    )
    assert result["AllContentIsValid"] is True
    assert result["SuggestedTemplateModel"] == {
        "order": {"id": "id_Value", "total": 5},
        "items": [{"name": "name_Value"}],
        "user": "<Ann>",
        "vip": {},
    }
    assert result["Subject"] == {"ContentIsValid": True, "ValidationErrors": [], "RenderedContent": "Order id_Value"}
    html = result["HtmlBody"]["RenderedContent"]
    assert "name_Value" in html and "&lt;Ann&gt;" in html and 'style="color: red;"' in html  # escaped, inlined
    assert result["TextBody"]["RenderedContent"] == "<Ann>"  # not escaped; an empty object is falsy


async def test_validate_reports_errors_with_positions(api) -> None:  # type: ignore[no-untyped-def]
    result = await validate(
        api,
        {
            "Subject": "ok {{name}}",
            "HtmlBody": "<p>\n  {{#each items}}\n</p>",
            "TextBody": "line one\nsee {{{ @content }}}",
            "InlineCssForHtmlTestRender": False,
        },
    )
    assert result["AllContentIsValid"] is False
    assert result["Subject"]["ContentIsValid"] is True
    html = result["HtmlBody"]
    assert html["ContentIsValid"] is False and html["RenderedContent"] is None
    assert [(e["Line"], e["CharacterPosition"]) for e in html["ValidationErrors"]] == [(2, 3)]
    assert "items" in html["ValidationErrors"][0]["Message"]
    text = result["TextBody"]
    assert [(e["Line"], e["CharacterPosition"]) for e in text["ValidationErrors"]] == [(2, 5)]
    assert "layout" in text["ValidationErrors"][0]["Message"]
    assert result["SuggestedTemplateModel"] == {"name": "name_Value", "items": ["items_1", "items_2", "items_3"]}


async def test_validate_a_render_failure_and_missing_parts(api) -> None:  # type: ignore[no-untyped-def]
    result = await validate(api, {"HtmlBody": "{{#each items}}x{{/each}}", "TestRenderModel": {"items": "scalar"}})
    assert result["AllContentIsValid"] is False
    assert result["Subject"] is None and result["TextBody"] is None
    error = result["HtmlBody"]["ValidationErrors"][0]
    assert "used like an array" in error["Message"] and error["Line"] is None
    assert_api_error(
        await api.client.post("/templates/validate", json={"TestRenderModel": {}}, headers=api.server_headers), 1109
    )
    assert_api_error(
        await api.client.post(
            "/templates/validate", json={"HtmlBody": "x", "TestRenderModel": [1]}, headers=api.server_headers
        ),
        1122,
    )


async def test_validate_layouts_and_with_a_layout(api) -> None:  # type: ignore[no-untyped-def]
    await create(api, LAYOUT)
    result = await validate(
        api,
        {"Subject": "S", "TextBody": "Hi {{name}}", "LayoutTemplate": "base", "TestRenderModel": {"company": "ACME"}},
    )
    assert result["TextBody"]["RenderedContent"] == "ACME\nHi name_Value\n--"
    assert result["SuggestedTemplateModel"] == {"name": "name_Value", "company": "ACME"}
    result = await validate(
        api, {"TemplateType": "Layout", "HtmlBody": "<p>{{x}}</p>", "TextBody": "{{{ @content }}} {{{ @content }}}"}
    )
    assert result["AllContentIsValid"] is False
    assert "missing" in result["HtmlBody"]["ValidationErrors"][0]["Message"]
    assert [(e["Line"], e["CharacterPosition"]) for e in result["TextBody"]["ValidationErrors"]] == [(1, 18)]
    ok = await validate(api, {"TemplateType": "Layout", "TextBody": "[{{{ @content }}}]"})
    assert ok["TextBody"]["RenderedContent"] == "[]"
    assert_api_error(
        await api.client.post(
            "/templates/validate", json={"Subject": "x", "LayoutTemplate": "nope"}, headers=api.server_headers
        ),
        1101,
    )
    assert_api_error(
        await api.client.post(
            "/templates/validate", json={"TemplateType": "Layout", "Subject": "x"}, headers=api.server_headers
        ),
        1123,
    )


# -- push ---------------------------------------------------------------------------------------------


async def test_push_dry_run_then_real_then_edit(api) -> None:  # type: ignore[no-untyped-def]
    await create(api, LAYOUT)
    welcome = await create(api, base(LayoutTemplate="base"))
    await create(api, {"Name": "No alias", "Subject": "s", "TextBody": "t"})  # never pushed
    destination, dest_headers = await second_server(api)
    source = (await api.client.get("/server", headers=api.server_headers)).json()["ID"]

    async def push(perform: Any, src: Any = source, dst: Any = destination) -> Any:
        return await api.client.put(
            "/templates/push",
            json={"SourceServerID": src, "DestinationServerID": dst, "PerformChanges": perform},
            headers=api.account_headers,
        )

    dry = await push(False)
    assert dry.status_code == 200, dry.text
    assert dry.json() == {
        "TotalCount": 2,
        "Templates": [
            {"Action": "Create", "TemplateId": None, "Alias": "base", "Name": "Base", "TemplateType": "Layout"},
            {"Action": "Create", "TemplateId": None, "Alias": "welcome", "Name": "Welcome", "TemplateType": "Standard"},
        ],
    }
    assert (await api.client.get("/templates?count=10&offset=0", headers=dest_headers)).json()["TotalCount"] == 0

    real = (await push(True, str(source), str(destination))).json()  # postmark-python sends the ids as strings
    assert [(t["Action"], t["Alias"]) for t in real["Templates"]] == [("Create", "base"), ("Create", "welcome")]
    copied = (await api.client.get("/templates/welcome", headers=dest_headers)).json()
    assert copied["TemplateId"] == real["Templates"][1]["TemplateId"] != welcome["TemplateId"]
    assert copied["HtmlBody"] == WELCOME["HtmlBody"] and copied["LayoutTemplate"] == "base"
    assert copied["AssociatedServerId"] == destination

    assert (await push(True)).json() == {"TotalCount": 0, "Templates": []}  # already in sync
    await api.client.put("/templates/welcome", json={"Subject": "New {{name}}"}, headers=api.server_headers)
    edit = (await push(True)).json()
    assert edit["Templates"] == [
        {
            "Action": "Edit",
            "TemplateId": copied["TemplateId"],
            "Alias": "welcome",
            "Name": "Welcome",
            "TemplateType": "Standard",
        }
    ]
    assert (await api.client.get("/templates/welcome", headers=dest_headers)).json()["Subject"] == "New {{name}}"


async def test_push_refusals(api) -> None:  # type: ignore[no-untyped-def]
    destination, dest_headers = await second_server(api)
    source = (await api.client.get("/server", headers=api.server_headers)).json()["ID"]

    async def push(body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        return await api.client.put("/templates/push", json=body, headers=headers or api.account_headers)

    body = {"SourceServerID": source, "DestinationServerID": destination, "PerformChanges": True}
    assert_api_error(await push(body), 1124, text="nothing to push")
    # Postmark's words, exactly as postmark.js's own push tests expect them.
    for changes, words in (
        ({"SourceServerID": 0, "DestinationServerID": 9999}, "The source and destination servers were not found."),
        ({"SourceServerID": 9999}, "The source server was not found."),
        ({"DestinationServerID": 9999}, "The destination server was not found."),
        ({"DestinationServerID": "x"}, "The destination server was not found."),
        ({"SourceServerID": None}, "The source server was not found."),
    ):
        refused = await push({**body, **changes})
        assert_api_error(refused, 601)
        assert refused.json()["Message"] == words
    assert_api_error(await push(body, api.server_headers), 10, 401)
    await create(api, WELCOME)
    await create(api, {**LAYOUT, "Alias": "welcome"}, headers=dest_headers)
    assert_api_error(await push(body), 1125, text="'welcome'")


# -- sending with templates ---------------------------------------------------------------------------


async def test_send_with_template_by_alias_and_id(api) -> None:  # type: ignore[no-untyped-def]
    created = await create(api, WELCOME)
    response = await api.client.post(
        "/email/withTemplate/",  # postmarker's trailing slash
        json={
            **ENVELOPE,
            "TemplateAlias": "Welcome",
            "TemplateModel": {"name": "<Ann & Bob>"},
            "TemplateId": None,
            "Subject": None,
            "Tag": "welcome",
        },
        headers=api.server_headers,
    )
    assert response.status_code == 200, response.text
    sent = response.json()
    assert sent["ErrorCode"] == 0 and sent["Message"] == "OK" and sent["To"] == "receiver@example.com"
    message = await details(api, sent["MessageID"])
    assert message["Subject"] == "Hello <Ann & Bob>"  # Subject and TextBody are not HTML-escaped
    assert message["TextBody"].rstrip("\n") == "Hi <Ann & Bob>"
    assert "Hi &lt;Ann &amp; Bob&gt;" in message["HtmlBody"]
    assert '<p style="color: red;">' in message["HtmlBody"]  # InlineCss defaults to true
    assert message["Tag"] == "welcome"

    by_id = await api.client.post(
        "/email/withTemplate",
        json={
            **ENVELOPE,
            "TemplateId": created["TemplateId"],
            "TemplateAlias": "ignored-when-id-given",
            "TemplateModel": {"name": "Cy"},
            "InlineCss": False,
        },
        headers=api.server_headers,
    )
    assert by_id.status_code == 200, by_id.text
    message = await details(api, by_id.json()["MessageID"])
    assert message["Subject"] == "Hello Cy"
    assert "<p>Hi Cy</p>" in message["HtmlBody"] and "<style>" in message["HtmlBody"]


async def test_send_with_a_layout(api) -> None:  # type: ignore[no-untyped-def]
    await create(api, LAYOUT)
    await create(api, base(HtmlBody="<b>{{name}}</b>", LayoutTemplate="base"))
    response = await api.client.post(
        "/email/withTemplate",
        json={**ENVELOPE, "TemplateAlias": "welcome", "TemplateModel": {"name": "Ann", "company": "ACME"}},
        headers=api.server_headers,
    )
    assert response.status_code == 200, response.text
    message = await details(api, response.json()["MessageID"])
    assert "ACME|<b>Ann</b>|footer" in message["HtmlBody"]
    assert message["TextBody"].replace("\r\n", "\n").rstrip("\n") == "ACME\nHi Ann\n--"
    # A layout is not something to send.
    layout_id = (await api.client.get("/templates/base", headers=api.server_headers)).json()["TemplateId"]
    assert_api_error(
        await api.client.post(
            "/email/withTemplate",
            json={**ENVELOPE, "TemplateId": layout_id, "TemplateModel": {}},
            headers=api.server_headers,
        ),
        1101,
    )


SEND_REFUSALS = [
    ({"TemplateModel": {}}, 1101, "'TemplateId' or a 'TemplateAlias'"),
    ({"TemplateAlias": "nope", "TemplateModel": {}}, 1101, "The Template's 'Alias' associated with this request"),
    ({"TemplateId": 99999, "TemplateModel": {}}, 1101, "The 'TemplateId' associated with this request"),
    ({"TemplateId": "abc", "TemplateModel": {}}, 1101, "'TemplateId'"),
    ({"TemplateAlias": "welcome"}, 1120, "'TemplateModel'"),
    ({"TemplateAlias": "welcome", "TemplateModel": [1]}, 1122, "JSON object"),
    ({"TemplateAlias": "welcome", "TemplateModel": {"@content": "x"}}, 1122, "reserved key '@content'"),
    ({"TemplateAlias": "welcome", "TemplateModel": {}, "Subject": "s"}, 1123, "'Subject'"),
    ({"TemplateAlias": "welcome", "TemplateModel": {}, "HtmlBody": "<p>"}, 1123, "'HtmlBody'"),
    ({"TemplateAlias": "welcome", "TemplateModel": {"items": {"a": 1}}}, 1122, "could not be rendered"),
    ({"TemplateAlias": "welcome", "TemplateModel": {}, "From": "nobody"}, 300, "Invalid 'From'"),
]


@pytest.mark.parametrize(("changes", "code", "text"), SEND_REFUSALS)
async def test_send_with_template_refusals(api, changes, code, text) -> None:  # type: ignore[no-untyped-def]
    await create(api, base(TextBody="{{#each items}}{{.}}{{/each}}"))
    response = await api.client.post("/email/withTemplate", json={**ENVELOPE, **changes}, headers=api.server_headers)
    assert_api_error(response, code, text=text)
    assert await api.count("messages") == 0


async def test_send_with_template_test_token_stores_nothing(api) -> None:  # type: ignore[no-untyped-def]
    headers = {"X-Postmark-Server-Token": "POSTMARK_API_TEST", "Accept": "application/json"}
    response = await api.client.post(
        "/email/withTemplate", json={**ENVELOPE, "TemplateAlias": "any", "TemplateModel": {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["Message"] == "Test job accepted"
    batch = await api.client.post(
        "/email/batchWithTemplates",
        json={"Messages": [{**ENVELOPE, "TemplateId": 1, "TemplateModel": {}}, {**ENVELOPE, "TemplateModel": {}}]},
        headers=headers,
    )
    assert [r["ErrorCode"] for r in batch.json()] == [0, 1101]
    assert await api.count("messages") == 0
    assert_api_error(await api.client.post("/email/withTemplate", json={**ENVELOPE, "TemplateAlias": "w"}), 10, 401)


async def test_batch_with_templates_fails_only_the_item_that_cannot_render(api) -> None:  # type: ignore[no-untyped-def]
    await create(api, base(TextBody="{{#each items}}[{{.}}]{{/each}}"))
    messages = [
        {**ENVELOPE, "To": "one@example.com", "TemplateAlias": "welcome", "TemplateModel": {"items": [1, 2]}},
        {**ENVELOPE, "To": "two@example.com", "TemplateAlias": "welcome", "TemplateModel": {"items": "nope"}},
        {**ENVELOPE, "To": "three@example.com", "TemplateAlias": "missing", "TemplateModel": {}},
        {**ENVELOPE, "To": "four@example.com", "TemplateAlias": "welcome", "TemplateModel": {"name": "D"}},
        {**ENVELOPE, "To": "bad", "TemplateAlias": "welcome", "TemplateModel": {}},
    ]
    response = await api.client.post(
        "/email/batchWithTemplates/", json={"Messages": messages}, headers=api.server_headers
    )
    assert response.status_code == 200, response.text
    results = response.json()
    assert [r["ErrorCode"] for r in results] == [0, 1122, 1101, 0, 300]
    assert [r["To"] for r in results] == [
        "one@example.com",
        "two@example.com",
        "three@example.com",
        "four@example.com",
        "bad",
    ]
    assert "used like an array" in results[1]["Message"]
    assert results[2]["Message"] == "The Template's 'Alias' associated with this request is not valid or was not found."
    for failed in (results[1], results[2], results[4]):  # postmark-python needs every key on failed items
        assert failed["MessageID"] == "00000000-0000-0000-0000-000000000000" and failed["SubmittedAt"]
    assert await api.count("messages") == 2
    first = await details(api, results[0]["MessageID"])
    assert first["TextBody"].rstrip("\n") == "[1][2]" and first["Recipients"] == ["one@example.com"]
    assert (await details(api, results[3]["MessageID"]))["Subject"] == "Hello D"


async def test_batch_with_templates_request_errors(api) -> None:  # type: ignore[no-untyped-def]
    await create(api, WELCOME)
    one = {**ENVELOPE, "TemplateAlias": "welcome", "TemplateModel": {}}
    assert_api_error(
        await api.client.post("/email/batchWithTemplates", json={"Messages": [one] * 501}, headers=api.server_headers),
        410,
    )
    assert_api_error(
        await api.client.post("/email/batchWithTemplates", json={}, headers=api.server_headers), 300, text="'Messages'"
    )
    bare = await api.client.post("/email/batchWithTemplates", json=[one, one], headers=api.server_headers)
    assert [r["ErrorCode"] for r in bare.json()] == [0, 0]
    assert (
        await api.client.post("/email/batchWithTemplates", json={"Messages": []}, headers=api.server_headers)
    ).json() == []


async def test_concurrent_creates_with_one_alias(api) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    responses = await asyncio.gather(
        *(api.client.post("/templates", json=WELCOME, headers=api.server_headers) for _ in range(5))
    )
    codes = sorted(r.json().get("ErrorCode", 0) if r.status_code != 200 else 0 for r in responses)
    assert codes == [0, 1122, 1122, 1122, 1122], [r.text for r in responses]
    assert await api.count("templates") == 1
