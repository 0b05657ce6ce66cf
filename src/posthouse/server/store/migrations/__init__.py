"""Numbered SQL migrations, one folder per dialect: `NNNN_name.sql`, applied in order, each once."""

from __future__ import annotations

from importlib import resources


def load(dialect: str) -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration of a dialect, in order."""
    folder = resources.files(__package__) / dialect
    result = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            result.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(result)
