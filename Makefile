# Posthouse: `make run` starts the server on its embedded default, `make test` runs every test.
# Only Python 3.11+ is needed: uv is installed with pip into .tools, dependencies come from uv.lock.
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
export UV_PYTHON_DOWNLOADS := never

.PHONY: run test lint bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==0.13.8

.venv/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --all-extras --quiet
	touch $@

run: .venv/.synced
	$(UV) run --frozen posthouse serve

test: .venv/.synced
	$(UV) run --frozen pytest $(PYTEST_ARGS)

lint: .venv/.synced
	$(UV) run --frozen ruff check src tests bench
	$(UV) run --frozen mypy

bench: .venv/.synced
	bash bench/install-peers.sh
	$(UV) run --frozen python bench/run.py

clean:
	rm -rf .venv $(TOOLS) posthouse-data
