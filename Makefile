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

# The main job (follow mode) on the bundled real gunicorn logs, with no Datadog account: events
# as NDJSON on stdout, metrics to DogStatsD on localhost:8125; exits once the logs are drained.
run: $(READY)
	rm -rf $(VENV)/run-state
	$(BIN)/logpipe --access $(LOGS)/access.log --error $(LOGS)/error.log --output stdout \
		--state-dir $(VENV)/run-state --start-at beginning --exit-idle 2 --status-interval 1

test: $(READY) lint
	$(BIN)/python -m pytest -q

lint: $(READY)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict logpipe

# Bytecode compiled first, as an installed package has it (with PYTHONDONTWRITEBYTECODE set, an
# edited module would otherwise be compiled again at every start the benchmarks time).
bench: $(READY)
	$(BIN)/python -m compileall -q logpipe
	$(BIN)/python bench/parse_bench.py
	$(BIN)/python bench/follow_bench.py
	$(BIN)/python bench/replay_bench.py

# Regenerate tests/fixtures/logs/ from real gunicorn (commit the result).
fixtures: $(READY)
	$(BIN)/python tests/fixtures/make_fixtures.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .hypothesis
