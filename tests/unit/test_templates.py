"""Mustachio templates: Postmark's documented examples, each construct, layouts, errors with positions, suggested
models, output limits, escaping, and CSS inlining of the result."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posthouse.server.domain.inlining import inline_css
from posthouse.server.domain.templates import (
    MAX_DEPTH,
    CompiledTemplate,
    TemplateError,
    TemplateRenderError,
    TemplateSyntaxError,
    compile_cached,
    compile_template,
    render_with_layout,
    suggest_model,
    validate_layout,
)


def render(source: str, model: Any, **options: Any) -> str:
    return compile_template(source).render(model, **options)


def positions(source: str) -> list[tuple[int, int]]:
    with pytest.raises(TemplateSyntaxError) as caught:
        compile_template(source)
    return [(error.line, error.character) for error in caught.value.errors]


# -- Postmark's documented examples (docs/postmark-api.md §3.3, the "Template syntax" support article) ------------

EMPLOYEES = {"company_name": "ACME Rockets, Inc.", "employees": [{"name": "Wile E. Coyote"}, {"name": "Road Runner"}]}


@pytest.mark.parametrize(("source", "model", "expected"), [
    ("Hello {{ person.first_name }}", {"person": {"first_name": "Andrew"}}, "Hello Andrew"),
    ("{{#person}}Hello {{first_name}}{{/person}}", {"person": {"first_name": "Andrew"}}, "Hello Andrew"),
    ("{{ company_name }} Employees:\n<ul>{{#each employees}}<li>{{ name }}</li>{{/each}}</ul>", EMPLOYEES,
     "ACME Rockets, Inc. Employees:\n<ul><li>Wile E. Coyote</li><li>Road Runner</li></ul>"),
    ("{{#each employees}}<li>{{ name }} works for: {{ ../company_name }}</li>{{/each}}", EMPLOYEES,
     "<li>Wile E. Coyote works for: ACME Rockets, Inc.</li><li>Road Runner works for: ACME Rockets, Inc.</li>"),
    ("{{^ name}}Anonymous{{/name}}", {}, "Anonymous"),
    ("Hi {{x}}!", {}, "Hi !"),
])  # fmt: skip
def test_postmark_documented_examples(source: str, model: Any, expected: str) -> None:
    assert render(source, model) == expected


def test_mustachio_reaches_up_one_context_per_path_segment() -> None:
    """Mustachio's own TemplateFixture: an item's parent is the list, the list's parent is `ceo`."""
    source = "{{#each Company.ceo.products}}<li>{{ name }} has a CEO: {{../../last_name}}</li>{{/each}}"
    model = {"Company": {"ceo": {"last_name": "Smith", "products": [{"name": "a"}, {"name": "b"}]}}}
    assert render(source, model) == "<li>a has a CEO: Smith</li><li>b has a CEO: Smith</li>"


def test_inverted_section_reaches_up() -> None:
    model = {"not_here": False, "placeholder": "a placeholder value"}
    assert render("{{^not_here}}{{../placeholder}}{{/not_here}}", model) == "a placeholder value"


# -- each construct ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "model", "expected"), [
    # interpolation, whitespace inside tags, raw forms
    ("{{name}}|{{ name }}|{{{name}}}|{{{ name }}}|{{&name}}|{{& name }}", {"name": "<b>"},
     "&lt;b&gt;|&lt;b&gt;|<b>|<b>|<b>|<b>"),
    ("{{a.b.c}}", {"a": {"b": {"c": "deep"}}}, "deep"),
    ("[{{a.b.c}}]", {"a": {"b": "not an object"}}, "[]"),
    ("[{{a.b}}]", {"a.b": "dotted names are never single keys"}, "[]"),
    # values print as Mustachio prints them
    ("{{n}} {{f}} {{g}} {{t}} {{z}} {{none}} [{{list}}] [{{obj}}]",
     {"n": 42, "f": 1.5, "g": 3.0, "t": True, "z": False, "none": None, "list": [1], "obj": {"a": 1}},
     "42 1.5 3 True False  [] []"),
    # sections: objects scope, booleans are conditionals
    ("{{#person}}{{name}}{{/person}}", {"person": {"name": "Ann"}}, "Ann"),
    ("{{#show}}{{name}}{{/show}}", {"show": True, "name": "Ann"}, "Ann"),
    ("{{#show}}{{../name}}{{/show}}", {"show": True, "name": "Ann"}, "Ann"),
    ("{{#show}}yes{{/show}}", {"show": False}, ""),
    ("{{#a.b}}{{c}}{{/a.b}}", {"a": {"b": {"c": "in b"}}}, "in b"),
    ("{{#a.b}}{{../x}}{{/a.b}}", {"a": {"b": {"c": 1}, "x": "from a"}, "x": "from root"}, "from a"),
    ("{{#.}}{{name}}{{/.}}", {"name": "self"}, "self"),
    # Mustachio's Exists(): these are all falsy
    ("{{#v}}T{{/v}}{{^v}}F{{/v}}", {"v": 0}, "F"),
    ("{{#v}}T{{/v}}{{^v}}F{{/v}}", {"v": 0.0}, "F"),
    ("{{#v}}T{{/v}}{{^v}}F{{/v}}", {"v": ""}, "F"),
    ("{{#v}}T{{/v}}{{^v}}F{{/v}}", {"v": []}, "F"),
    ("{{#v}}T{{/v}}{{^v}}F{{/v}}", {"v": {}}, "F"),
    ("{{#v}}T{{/v}}{{^v}}F{{/v}}", {"v": None}, "F"),
    ("{{#v}}T{{/v}}{{^v}}F{{/v}}", {}, "F"),
    ("{{#v}}T{{/v}}{{^v}}F{{/v}}", {"v": "0"}, "T"),
    ("{{#v}}T{{/v}}{{^v}}F{{/v}}", {"v": -1}, "T"),
    # a plain section over a list is a conditional, rendered once (Mustachio iterates only with each)
    ("{{#items}}[{{count}}]{{/items}}", {"items": [1, 2, 3], "count": 3}, "[3]"),
    # Mustachio's if/else: reopening the open section's path closes it
    ("{{#paid}}Paid{{^paid}}Due{{/paid}}", {"paid": True}, "Paid"),
    ("{{#paid}}Paid{{^paid}}Due{{/paid}}", {"paid": False}, "Due"),
    ("{{^paid}}Due{{#paid}}Paid{{/paid}}", {"paid": True}, "Paid"),
    # each, {{.}} and ../
    ("{{#each tags}}[{{.}}]{{/each}}", {"tags": ["a", "<b>", 3]}, "[a][&lt;b&gt;][3]"),
    ("{{#each items}}{{name}}{{/each}}", {"items": []}, ""),
    ("{{#each items}}{{name}}{{/each}}", {}, ""),
    ("{{#each items}}{{name}}{{/each}}", {"items": None}, ""),
    # no walk up the context stack: a name the item lacks is missing, `../` reaches out
    ("{{#each items}}[{{title}}|{{../title}}]:{{name}} {{/each}}", {"title": "T", "items": [{"name": "a"}]},
     "[|T]:a "),
    ("{{#person}}[{{title}}|{{../title}}]{{/person}}", {"title": "T", "person": {"name": "a"}}, "[|T]"),
    ("{{#each rows}}{{#each cells}}{{.}}{{../../../sep}}{{/each}}|{{/each}}", {"sep": ",", "rows": [
        {"cells": [1, 2]}, {"cells": [3]}]}, "1,2,|3,|"),
    ("{{#each  a.items }}{{.}}{{/each}}", {"a": {"items": ["x", "y"]}}, "xy"),
    ("{{../../../name}}", {"name": "root: ../ stops at the top"}, "root: ../ stops at the top"),
    ("{{#each items}}{{#.}}{{name}}{{/.}}{{/each}}", {"items": [{"name": "a"}, {}, {"name": "c"}]}, "ac"),
    # comments
    ("a{{! a comment }}b{{!\nmultiline, with {{ inside\n}}c", {}, "abc"),
    ("a{{! a comment ends at the first }}b}}c", {}, "ab}}c"),
    # text that looks like braces but is not a tag
    ("{ single } and }} closing", {}, "{ single } and }} closing"),
    ("{{name}}}", {"name": "Mike"}, "Mike}"),
    ("{{name}}}}", {"name": "Mike"}, "Mike}}"),
    # Postmark's unsubscribe placeholder is left for the sending pipeline
    ("<a href=\"{{{ pm:unsubscribe }}}\">x</a>", {}, "<a href=\"{{{ pm:unsubscribe }}}\">x</a>"),
])  # fmt: skip
def test_constructs(source: str, model: Any, expected: str) -> None:
    assert render(source, model) == expected


def test_root_model_need_not_be_an_object() -> None:
    assert render("{{.}}", "world") == "world"
    assert render("[{{name}}]", ["a"]) == "[]"


@pytest.mark.parametrize("items", [{"a": 1}, "a string", 5, True])
def test_each_over_a_non_list_fails_as_in_mustachio(items: Any) -> None:
    with pytest.raises(TemplateRenderError, match="'items' is used like an array"):
        render("{{#each items}}x{{/each}}", {"items": items})


def test_html_escaping_of_every_special_character() -> None:
    model = {"v": "& < > \" ' plain é"}
    assert render("{{v}}", model) == "&amp; &lt; &gt; &quot; &#39; plain é"
    assert render("{{{v}}}|{{&v}}", model) == "& < > \" ' plain é|& < > \" ' plain é"
    assert render("{{v}}", model, escape_html=False) == "& < > \" ' plain é"
    assert render("{{#each l}}{{.}}{{/each}}", {"l": ["<", "&"]}) == "&lt;&amp;"


def test_model_is_data_only() -> None:
    """Callables are never called, objects never converted or read as attributes, overridden methods never run."""

    class Trap:
        def __str__(self) -> str:
            raise AssertionError("__str__ called")

        def __bool__(self) -> bool:
            raise AssertionError("__bool__ called")

        def __getattr__(self, name: str) -> Any:
            raise AssertionError("attribute read")

    class TrapDict(dict[str, Any]):
        def get(self, *args: Any) -> Any:
            raise AssertionError("get called")

        def __getitem__(self, key: str) -> Any:
            raise AssertionError("__getitem__ called")

    class TrapList(list[Any]):
        def __iter__(self) -> Any:
            raise AssertionError("__iter__ called")

        def __len__(self) -> int:
            raise AssertionError("__len__ called")

    def boom() -> str:
        raise AssertionError("called")

    model = {"f": boom, "o": Trap(), "d": TrapDict(name="dict"), "l": TrapList([1, 2])}
    source = "[{{f}}{{#f}}x{{/f}}{{o}}{{o.name}}{{#o}}y{{/o}}{{d.name}}{{#each l}}{{.}}{{/each}}]"
    assert render(source, model) == "[dict12]"


def test_compile_once_render_many() -> None:
    template = compile_template("Hi {{name}}")
    assert [template.render({"name": n}) for n in ("a", "b")] == ["Hi a", "Hi b"]
    assert compile_cached("Hi {{name}}") is compile_cached("Hi {{name}}")
    assert compile_cached("Hi {{name}}") is not compile_cached("Hi {{name}}", standalone_lines=True)


def test_standalone_lines_option_tidies_text_bodies() -> None:
    source = "Items:\n{{#each items}}\n- {{name}}\n{{/each}}\nTotal\n"
    model = {"items": [{"name": "a"}, {"name": "b"}]}
    assert render(source, model) == "Items:\n\n- a\n\n- b\n\nTotal\n"  # what Postmark sends
    tidy = compile_template(source, standalone_lines=True).render(model)
    assert tidy == "Items:\n- a\n- b\nTotal\n"


def test_template_nesting_is_bounded() -> None:
    def nested(depth: int) -> str:
        return (
            "".join(f"{{{{#s{i}}}}}" for i in range(depth))
            + "x"
            + "".join(f"{{{{/s{i}}}}}" for i in reversed(range(depth)))
        )

    model: dict[str, Any] = {}
    inner = model
    for i in range(MAX_DEPTH):
        inner[f"s{i}"] = inner = {"level": i}  # an empty object would be falsy
    assert compile_template(nested(MAX_DEPTH)).render(model) == "x"
    with pytest.raises(TemplateSyntaxError) as caught:
        compile_template(nested(MAX_DEPTH + 1))
    assert [(e.line, e.character) for e in caught.value.errors] == [
        (1, 1 + sum(len(f"{{{{#s{i}}}}}") for i in range(MAX_DEPTH)))
    ]
    assert "nested more than 100 levels" in caught.value.errors[0].message


# -- layouts -------------------------------------------------------------------------------------------------------

LAYOUT = "<html><title>{{ title }}</title>{{{ @content }}}<footer>{{ company }}</footer></html>"


def test_layout_receives_the_rendered_content_once() -> None:
    layout, content = compile_template(LAYOUT), compile_template("<p>Hi {{ name }}</p>{{{ raw }}}")
    model = {"title": "T", "company": "C&Co", "name": "<Ann>", "raw": "{{ title }}"}
    out = render_with_layout(layout, content, model)
    # The content's own output is data: the layout does not interpolate it again.
    assert out == "<html><title>T</title><p>Hi &lt;Ann&gt;</p>{{ title }}<footer>C&amp;Co</footer></html>"
    assert render_with_layout(layout, content, model, escape_html=False).count("<Ann>") == 1


def test_layout_misuse_is_a_render_error() -> None:
    layout, content = compile_template(LAYOUT), compile_template("x")
    with pytest.raises(TemplateRenderError, match="only be rendered in a layout"):
        layout.render({})
    with pytest.raises(TemplateRenderError, match="exactly once"):
        render_with_layout(content, content, {})
    with pytest.raises(TemplateRenderError, match="belongs in the layout"):
        render_with_layout(layout, layout, {})
    with pytest.raises(TemplateRenderError, match="exactly once"):
        render_with_layout(compile_template(LAYOUT + LAYOUT), content, {})


def test_validate_layout() -> None:
    assert validate_layout(LAYOUT) == []
    assert validate_layout("a{{& @content }}b") == []
    assert validate_layout("<html>{{ title }}</html>") == [
        TemplateError(
            "The layout content placeholder must be present exactly once in a layout ('{{{ @content }}}'); "
            "it is missing.", 1, 1)
    ]
    assert validate_layout("{{{ @content }}}\n  {{{@content}}}") == [
        TemplateError(
            "The layout content placeholder must be present exactly once in a layout ('{{{ @content }}}'); "
            "this is occurrence 2.", 2, 3)
    ]
    errors = validate_layout("{{#a}}\n{{ @content }}")
    assert [(e.line, e.character) for e in errors] == [(1, 1), (1, 1), (2, 1)]
    assert compile_template(LAYOUT).content_slots == 1


# -- errors, with positions ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "expected", "message"), [
    ("ab\n{{#items}}x", [(2, 1)], "opened but not closed: 'items'"),
    ("ab\n{{#each items}}x", [(2, 1)], "opened but not closed: 'items'"),
    ("{{#a}}\n  x {{/b}}", [(1, 1), (2, 5)], "mismatched"),
    ("{{#each a}}{{/a}}", [(1, 1), (1, 12)], "'{{/each}}' was expected"),
    ("{{#a}}{{/each}}", [(1, 1), (1, 7)], "no corresponding opening element"),
    ("line\n\tx {{ name", [(2, 4)], "never closed with '}}'"),
    ("{{ a {{ b }}", [(1, 1)], "never closed with '}}'"),
    ("x\r\n {{ }}", [(2, 2)], "This tag is empty"),
    ("{{}}", [(1, 1)], "This tag is empty"),
    ("{{#}}{{/}}", [(1, 1), (1, 6)], "This tag is empty"),
    ("{{{ }}}", [(1, 1)], "This tag is empty"),
    ("a\nb\nc {{/x}}", [(3, 3)], "closes a block that was never opened"),
    ("Hi {{{ name }}!", [(1, 4)], "must be closed with '}}}'"),
    ("{{#each}}{{/each}}", [(1, 1)], "requires a model path"),
    ("{{#each items}}{{/each items}}", [(1, 1), (1, 16)], "close the 'each' block"),
    ("{{first name}}", [(1, 1)], "The path 'first name' is not valid"),
    ("{{first-name}}", [(1, 1)], "The path 'first-name' is not valid"),
    ("{{a..b}}", [(1, 1)], "not valid"),
    ("{{.name}}", [(1, 1)], "not valid"),
    ("{{> partial}}", [(1, 1)], "Partials"),
    ("{{=<% %>=}}", [(1, 1)], "Set-delimiter"),
    ("{{ @content }}", [(1, 1)], "placeholder must be written"),
])  # fmt: skip
def test_error_positions(source: str, expected: list[tuple[int, int]], message: str) -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        compile_template(source)
    assert [(e.line, e.character) for e in caught.value.errors] == expected
    assert any(message in e.message for e in caught.value.errors), caught.value.errors


def test_every_error_is_collected_in_source_order() -> None:
    source = "Hello {{ first name }}\n{{#each items}}\n  {{{ price }}\n{{/list}}\n{{/each}}\n{{#open}}"
    assert positions(source) == [(1, 7), (3, 3), (4, 1), (6, 1)]
    with pytest.raises(ValueError, match=r"^line 1, character 7: .*\(and 3 more\)$") as caught:
        compile_template(source)
    assert isinstance(caught.value, TemplateSyntaxError)


# -- suggested model -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sources", "expected"), [
    (["{{Name}}"], {"Name": "Name_Value"}),
    (["no mustache here"], {}),
    (["{{#Person}}{{Name}}{{/Person}}"], {"Person": {"Name": "Name_Value"}}),
    # Mustachio's own fixtures (ParserFixture.ParserCanInfer*)
    (["{{#Person}}{{Name}}{{#each ../Person.FavoriteColors}}{{.}}{{/each}}{{/Person}}"],
     {"Person": {"Name": "Name_Value", "FavoriteColors": ["FavoriteColors_1", "FavoriteColors_2",
                                                          "FavoriteColors_3"]}}),
    (["{{#each Employees}}{{name}}{{/each}}"], {"Employees": [{"name": "name_Value"}]}),
    (["{{#each Employees}}{{person.name}}{{#each favoriteColors}}{{hue}}{{/each}}{{#each workplaces}}{{.}}{{/each}}"
      "{{/each}}"],
     {"Employees": [{"person": {"name": "name_Value"}, "favoriteColors": [{"hue": "hue_Value"}],
                     "workplaces": ["workplaces_1", "workplaces_2", "workplaces_3"]}]}),
    (["{{ a.b.c }}"], {"a": {"b": {"c": "c_Value"}}}),
    (["{{#show}}yes{{/show}}{{^hide}}no{{/hide}}"], {"show": {}, "hide": {}}),
    (["{{#each items}}{{../title}}{{/each}}"], {"items": ["items_1", "items_2", "items_3"], "title": "title_Value"}),
    (["{{{ @content }}} {{{ pm:unsubscribe }}} {{! comment }}"], {}),
    # Subject, HtmlBody and TextBody together
    (["Receipt {{ receipt_id }}", "<p>{{ name }}</p>{{#each items}}{{ title }}{{/each}}", "{{ name }}"],
     {"receipt_id": "receipt_id_Value", "name": "name_Value", "items": [{"title": "title_Value"}]}),
    # a body with syntax errors still contributes what could be parsed
    (["{{ name }} {{#broken}}{{ inside }}", "{{{ unclosed }}"], {"name": "name_Value",
                                                                 "broken": {"inside": "inside_Value"}}),
])  # fmt: skip
def test_suggest_model(sources: list[str], expected: dict[str, Any]) -> None:
    assert suggest_model(*sources) == expected


def test_suggested_model_renders_its_placeholders() -> None:
    source = "{{#person}}{{ name }}{{/person}} {{#each items}}{{ title }}{{/each}}"
    assert render(source, suggest_model(source)) == "name_Value title_Value"


# -- output limit --------------------------------------------------------------------------------------------------


def test_max_output() -> None:
    template = compile_template("ab{{v}}")
    assert template.render({"v": "x" * 8}, max_output=10) == "ab" + "x" * 8
    with pytest.raises(TemplateRenderError, match="exceed 10 characters"):
        template.render({"v": "x" * 9}, max_output=10)
    with pytest.raises(TemplateRenderError):
        compile_template("static text").render({}, max_output=3)
    # A loop that prints nothing is bounded too: each iteration counts.
    with pytest.raises(TemplateRenderError):
        compile_template("{{#each l}}{{#each l}}{{/each}}{{/each}}").render({"l": list(range(1000))}, max_output=10_000)
    # The layout's budget covers the content inserted into it.
    with pytest.raises(TemplateRenderError):
        render_with_layout(compile_template(LAYOUT), compile_template("{{v}}"), {"v": "x" * 60}, max_output=80)


def test_number_too_large_to_print_is_a_render_error() -> None:
    with pytest.raises(TemplateRenderError, match="too large to print"):
        render("{{n}}", {"n": 10**5000})


# -- properties ----------------------------------------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "items", "name", "v"]) | st.text(max_size=3)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=40,
)
FRAGMENTS = st.sampled_from([
    "{{a}}", "{{{b}}}", "{{&name}}", "{{.}}", "{{../name}}", "{{../../v}}", "{{a.b.name}}", "{{#a}}", "{{/a}}",
    "{{^b}}", "{{/b}}", "{{#each items}}", "{{#each a.items}}", "{{/each}}", "{{#.}}", "{{/.}}", "{{! note }}", "x",
    "<&>", "\n", "  ", "{{", "}}", "{", "{{{ @content }}}",
])  # fmt: skip
WELL_FORMED = [
    "{{a}} {{{b}}} {{a.b.name}} {{#a}}{{name}}{{../v}}{{/a}}{{^b}}none{{/b}}",
    "{{#each items}}{{.}}{{name}}{{../name}}{{#each items}}{{../../v}}{{/each}}{{/each}}",
    "{{#each a.items}}{{#.}}{{b}}{{/.}}{{/each}}{{#v}}{{.}}{{/v}}",
]


@given(JSON)
def test_rendering_any_json_model_fails_only_with_render_errors(model: Any) -> None:
    for source in WELL_FORMED:
        for escape_html in (True, False):
            with contextlib.suppress(TemplateRenderError):
                compile_cached(source).render(model, escape_html=escape_html, max_output=100_000)


@settings(max_examples=300)
@given(st.lists(FRAGMENTS, max_size=30).map("".join), JSON)
def test_any_template_fails_only_with_template_errors(source: str, model: Any) -> None:
    template: CompiledTemplate | None = None
    errors: list[TemplateError] = []
    try:
        template = compile_template(source)
    except TemplateSyntaxError as error:
        errors = error.errors
    assert (template is None) == bool(errors)
    assert all(e.line >= 1 and e.character >= 1 for e in errors)
    if template is not None:
        with contextlib.suppress(TemplateRenderError):
            template.render(model, max_output=100_000)
    suggest_model(source)


# -- CSS inlining --------------------------------------------------------------------------------------------------


def test_inline_css() -> None:
    html = (
        "<html><head><style>p { color: red } .big { font-size: 20px } @media (max-width: 600px) { p { color: "
        'blue } }</style></head><body><p class="big">Hi</p></body></html>'
    )
    out = inline_css(html)
    assert '<p class="big" style="color: red;font-size: 20px;">Hi</p>' in out
    assert "@media" in out  # kept in <style> for clients that read it


def test_inline_css_leaves_html_without_style_untouched() -> None:
    html = "<p>no <b>style</b> here & there"
    assert inline_css(html) is html


def test_inline_css_falls_back_to_the_input() -> None:
    html = "<style>p{color:red}</style><p>\ud800</p>"  # a lone surrogate: css-inline cannot take it
    assert inline_css(html) == html


@given(st.text(max_size=200))
def test_inline_css_never_raises(text: str) -> None:
    assert isinstance(inline_css("<style>p{color:red}</style>" + text), str)


def test_nested_loops_over_a_large_model_stop_at_the_iteration_budget_quickly() -> None:
    """Review finding: four nested `{{#each}}` over 100 items cost 0.3 s per message before the output
    limit stopped them. The iteration budget stops them first."""
    import time

    from posthouse.server.domain.templates import MAX_ITERATIONS, TemplateRenderError, compile_template

    template = compile_template("{{#each a}}{{#each ../a}}{{#each ../../a}}{{#each ../../../a}}x{{/each}}"
                                "{{/each}}{{/each}}{{/each}}")
    began = time.perf_counter()
    with pytest.raises(TemplateRenderError, match="loops more than"):
        template.render({"a": list(range(100))})
    assert time.perf_counter() - began < 0.5
    assert compile_template("{{#each a}}{{.}}{{/each}}").render({"a": list(range(MAX_ITERATIONS))}).endswith("99999")
