# logpipe: `make run` and `make test` set up .venv/ (only python3 needed) and run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
READY := $(VENV)/.ready
LOGS := tests/fixtures/logs/default

.PHONY: run test lint bench fixtures clean

$(READY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(READY)

# The main job on the bundled real gunicorn logs: events as NDJSON on stdout.
run: $(READY)
	$(BIN)/logpipe parse --kind access $(LOGS)/access.log
	$(BIN)/logpipe parse --kind error $(LOGS)/error.log

test: $(READY) lint
	$(BIN)/python -m pytest -q

lint: $(READY)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict logpipe

bench: $(READY)
	$(BIN)/python bench/parse_bench.py
	$(BIN)/python bench/follow_bench.py

# Regenerate tests/fixtures/logs/ from real gunicorn (commit the result).
fixtures: $(READY)
	$(BIN)/python tests/fixtures/make_fixtures.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .hypothesis
