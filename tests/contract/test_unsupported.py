"""The one list of expected failures names only tests that exist, each with a reason."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from contract.unsupported import UNSUPPORTED

E2E = Path(__file__).resolve().parents[1] / "e2e"


def declared_suites() -> dict[str, set[str]]:
    """Test functions of each tests/e2e module that names its suite (`SUITE = "…"`), read without importing."""
    found: dict[str, set[str]] = {}
    for path in sorted(E2E.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        suite = next((node.value.value for node in tree.body
                      if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                      and any(isinstance(t, ast.Name) and t.id == "SUITE" for t in node.targets)), None)
        if isinstance(suite, str):
            found.setdefault(suite, set()).update(
                node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"))
    return found


@pytest.mark.parametrize("suite", ["postmarker", "anymail"])
def test_every_listed_test_exists_and_says_why(suite: str) -> None:
    declared = declared_suites()
    assert suite in declared, f"no tests/e2e module declares SUITE = {suite!r}"
    listed = UNSUPPORTED[suite]
    assert set(listed) <= declared[suite], sorted(set(listed) - declared[suite])
    for test_id, reason in listed.items():
        assert len(reason) > 20 and reason.endswith((".", ".)")), (test_id, reason)
