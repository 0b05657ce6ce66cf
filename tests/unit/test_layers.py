"""Imports run one way and each third-party library has one owner (docs/architecture.md, "Import layering")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "posthouse"
S = "posthouse.server."

# module prefix → prefixes it must never import
FORBIDDEN = {
    S + "domain": [S + p for p in ("store", "delivery", "smtp", "webhooks", "services", "workers", "api", "cli",
                                   "runtime")],
    S + "store": [S + p for p in ("delivery", "smtp", "webhooks", "services", "workers", "api", "cli", "runtime")],
    S + "delivery": [S + p for p in ("store", "smtp", "webhooks", "services", "workers", "api", "cli", "runtime")],
    S + "smtp": [S + p for p in ("store", "delivery", "webhooks", "services", "workers", "api", "cli", "runtime")],
    S + "services": [S + p for p in ("workers", "api", "dashboard", "cli", "runtime")],
    S + "workers": [S + p for p in ("api", "cli", "runtime")],
    S + "api": [S + p for p in ("workers", "cli", "runtime", "dashboard")],
    # Logs and metrics are used by every layer, so they sit at the bottom with config and errors.
    S + "logs": [S + p for p in ("domain", "store", "delivery", "smtp", "webhooks", "services", "workers", "api", "cli",
                                 "runtime", "metrics")],
    S + "metrics": [S + p for p in ("domain", "store", "delivery", "smtp", "webhooks", "services", "workers", "api",
                                    "cli", "runtime", "logs", "dashboard")],
    # The dashboard calls the services the API uses: no SQL of its own, no second business layer (issue 15).
    S + "dashboard": [S + p for p in ("store", "delivery", "smtp", "webhooks", "workers", "api", "cli", "runtime")],
    "posthouse.client": ["posthouse.server"],
    "posthouse.wire": ["posthouse.server"],
}
# third-party module → the only prefixes allowed to import it
OWNERS = {
    "sqlite3": [S + "store"],
    "asyncpg": [S + "store"],
    "starlette": [S + "api", S + "dashboard"],
    "jinja2": [S + "dashboard"],
    "argon2": [S + "services.operators"],
    "uvicorn": [S + "cli", S + "api.listener"],
    "click": [S + "cli"],
    "css_inline": [S + "domain.inlining"],
    "ua_parser": [S + "domain.useragents"],
    "maxminddb": [S + "services.geoip"],
    "prometheus_client": [S + "metrics"],
    # dnspython: MX delivery's resolver (delivery.dns); domain verification's uncached lookups (services.dns_lookup).
    # … and inbound SPF checks (services.spf: pyspf asks a blocking dnspython resolver on a thread).
    "dns": [S + "delivery.dns", S + "services.dns_lookup", S + "services.spf"],
    "spf": [S + "services.spf"],
}


def modules() -> list[tuple[str, set[str]]]:
    result = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
        result.append((name, imported))
    return result


MODULES = modules()


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize(("name", "imported"), MODULES, ids=[m[0] for m in MODULES])
def test_imports_run_one_way(name: str, imported: set[str]) -> None:
    for layer, banned in FORBIDDEN.items():
        if _under(name, layer):
            wrong = sorted(i for i in imported for b in banned if _under(i, b))
            assert not wrong, f"{name} must not import {wrong}"
    for library, owners in OWNERS.items():
        if any(_under(i, library) for i in imported):
            assert any(_under(name, o) for o in owners), f"{name} imports {library}, owned by {owners}"


def test_the_sdk_package_does_not_import_the_server() -> None:
    top = dict(MODULES)["posthouse"]
    assert not any(_under(i, "posthouse.server") for i in top)
