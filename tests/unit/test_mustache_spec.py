"""The official Mustache spec vectors against our Mustachio engine: every vector is run or skipped with its reason.

Each vector runs twice: in Postmark's mode (whitespace verbatim, the default) and with `standalone_lines=True` (the
spec's standalone-line rule). The dictionaries below are the documentation of where Mustachio and Mustache differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from posthouse.server.domain.templates import compile_template

SPEC_DIR = Path(__file__).parents[1] / "data" / "mustache-spec"  # the official spec files (MIT), in the repository

SKIPPED_FILES = {
    "partials.json": "Mustachio has no partials: '{{> name}}' is a syntax error.",
    "delimiters.json": "Mustachio has no set-delimiter tags: '{{=<% %>=}}' is a syntax error.",
}

_NO_STACK_WALK = (
    "Mustachio looks a name up in the current scope only (no walk up the context stack); templates reach outer "
    "scopes with '../'."
)
_NO_LIST_SECTIONS = "Mustachio iterates only with '{{#each list}}'; a plain section over a list renders once."
_REOPEN_CLOSES = (
    "Mustachio reads '{{#x}}' or '{{^x}}' inside an open '{{#x}}'/'{{^x}}' as closing it (its '{{#x}}…{{^x}}…"
    "{{/x}}' if/else), so the second '{{/x}}' is a syntax error."
)

# Vectors where Mustachio's language differs from Mustache's: skipped in both modes.
SKIPPED = {
    "sections: Parent contexts": _NO_STACK_WALK,
    "sections: Deeply Nested Contexts": _NO_STACK_WALK,
    "sections: List Contexts": _NO_LIST_SECTIONS,
    "sections: List": _NO_LIST_SECTIONS,
    "sections: Implicit Iterator - String": _NO_LIST_SECTIONS,
    "sections: Implicit Iterator - Integer": _NO_LIST_SECTIONS,
    "sections: Implicit Iterator - Decimal": _NO_LIST_SECTIONS,
    "sections: Implicit Iterator - Array": _NO_LIST_SECTIONS,
    "sections: Implicit Iterator - HTML Escaping": _NO_LIST_SECTIONS,
    "sections: Implicit Iterator - Triple mustache": _NO_LIST_SECTIONS,
    "sections: Implicit Iterator - Ampersand": _NO_LIST_SECTIONS,
    "sections: Implicit Iterator - Root-level": _NO_LIST_SECTIONS,
    "sections: Nested (Truthy)": _REOPEN_CLOSES,
    "sections: Nested (Falsey)": _REOPEN_CLOSES,
    "inverted: Nested (Truthy)": _REOPEN_CLOSES,
    "inverted: Nested (Falsey)": _REOPEN_CLOSES,
}

_VERBATIM = (
    "Mustachio (Postmark) keeps a standalone tag's line verbatim; the spec's rule runs with standalone_lines=True."
)

# Vectors about the spec's standalone-line rule: skipped in Postmark's mode only.
STANDALONE_ONLY = {
    f"{group}: {name}": _VERBATIM
    for group, names in {
        "comments": ["Standalone", "Indented Standalone", "Standalone Line Endings", "Standalone Without Previous Line",
                     "Standalone Without Newline", "Multiline Standalone", "Indented Multiline Standalone"],
        "sections": ["Doubled", "Standalone Lines", "Indented Standalone Lines", "Standalone Line Endings",
                     "Standalone Without Previous Line", "Standalone Without Newline"],
        "inverted": ["Doubled", "Standalone Lines", "Standalone Indented Lines", "Standalone Line Endings",
                     "Standalone Without Previous Line", "Standalone Without Newline"],
    }.items()
    for name in names
}  # fmt: skip


def vectors() -> list[Any]:
    params = []
    for path in sorted(SPEC_DIR.glob("*.json")):
        group = path.stem
        for test in json.loads(path.read_text())["tests"]:
            key = f"{group}: {test['name']}"
            for mode in ("postmark", "standalone"):
                reason = SKIPPED_FILES.get(path.name) or SKIPPED.get(key)
                if mode == "postmark" and reason is None:
                    reason = STANDALONE_ONLY.get(key)
                marks = [pytest.mark.skip(reason=reason)] if reason else []
                params.append(pytest.param(test, mode == "standalone", id=f"{key} [{mode}]", marks=marks))
    return params


@pytest.mark.parametrize(("vector", "standalone_lines"), vectors())
def test_spec_vector(vector: dict[str, Any], standalone_lines: bool) -> None:
    template = compile_template(vector["template"], standalone_lines=standalone_lines)
    assert template.render(vector["data"]) == vector["expected"], vector["desc"]


def test_every_listed_vector_exists() -> None:
    """The skip lists name real vectors, so a typo cannot silently run (or hide) one."""
    names = {f"{path.stem}: {test['name']}" for path in SPEC_DIR.glob("*.json")
             for test in json.loads(path.read_text())["tests"]}  # fmt: skip
    assert set(SKIPPED) <= names
    assert set(STANDALONE_ONLY) <= names
    assert set(SKIPPED_FILES) <= {path.name for path in SPEC_DIR.glob("*.json")}


def test_standalone_vectors_keep_their_lines_in_postmark_mode() -> None:
    """What Postmark sends for the spec's standalone example: the tags' lines stay, as empty lines."""
    source = "| This Is\n{{#boolean}}\n|\n{{/boolean}}\n| A Line\n"
    assert compile_template(source).render({"boolean": True}) == "| This Is\n\n|\n\n| A Line\n"
