# logpipe: `make run` and `make test` set up .venv/ (only python3 needed) and run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
READY := $(VENV)/.ready
RUN_READY := $(VENV)/.ready-run
DOGSTATSD ?= off

.PHONY: run readme test test-fast lint bench fixtures clean

# logpipe and what running it needs (make run, make readme)
$(RUN_READY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_READY)

# logpipe with its test, lint and benchmark tools (the test extra)
$(READY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(READY)

# The main job (follow mode), live, with no Datadog account: copies of the bundled real gunicorn
# logs are followed while lines are appended and the files rotated once; a readable status each
# second, then a summary. Events go to .venv/run/events.ndjson; metrics nowhere unless
# DOGSTATSD=HOST:PORT.
run: $(RUN_READY)
	$(BIN)/python tests/fixtures/live_demo.py --work $(VENV)/run --dogstatsd $(DOGSTATSD)

# README.md's option tables and config keys, from the commands' parsers (logpipe/cli/usage.py).
readme: $(RUN_READY)
	$(BIN)/python -m logpipe.cli.usage --write README.md

# Both test tiers, with Hypothesis's full example counts: the fast one (pure, in-process tests)
# first, then the integration one (tests that start processes or open sockets; see README.md).
test: $(READY) lint
	LOGPIPE_TEST_PROFILE=full $(BIN)/python -m pytest -q -m "not integration"
	LOGPIPE_TEST_PROFILE=full $(BIN)/python -m pytest -q -m integration

# The fast tier alone, a fifth of the Hypothesis examples (under 30 s on two cores).
test-fast: $(READY)
	LOGPIPE_TEST_PROFILE=fast $(BIN)/python -m pytest -q -m "not integration"

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
	$(BIN)/python bench/sidecar_bench.py
	$(BIN)/python bench/outage_bench.py

# Regenerate tests/fixtures/logs/ from real gunicorn (commit the result); ONLY="uvicorn eventlet"
# redoes just those runs. Older gunicorn/eventlet get venvs of their own in ~/.cache (needs PyPI).
fixtures: $(READY)
	$(BIN)/python tests/fixtures/make_fixtures.py $(if $(ONLY),--only $(ONLY))

clean:
	rm -rf $(VENV) build dist .pytest_cache .hypothesis
