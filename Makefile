# The only commands anyone needs: run, test, lint, fix, bench. Each installs what it needs
# into .venv first, so a fresh clone with Python >= 3.11 and make is enough.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint fix bench install clean citus run-citus test-citus

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "gramlogs needs Python >= 3.11; set PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

# The viewer's JavaScript is checked by Biome (formatter and linter in one binary), pinned in
# package.json and package-lock.json and installed from the npm registry; needs Node >= 20.
JS_STAMP := node_modules/.installed
BIOME := node_modules/.bin/biome

$(JS_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "make lint needs Node >= 20 and npm (apt-get install nodejs npm)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(STAMP) $(JS_STAMP)

run: $(STAMP)
	$(BIN)/gramlogs serve

# The suite, then the coverage of gramlogs/ (files at 100% left out), failing under the floor in
# pyproject.toml. It costs about a quarter of the suite's time on Python 3.11 (C tracer: 485 s
# -> 616 s); on Python >= 3.12 coverage uses sys.monitoring, which costs less.
# `make test COVERAGE=` runs the suite without it.
COVERAGE ?= --cov --cov-report=term:skip-covered
test: $(STAMP) lint
	COVERAGE_CORE=$(COVERAGE_CORE) $(BIN)/pytest $(COVERAGE)

COVERAGE_CORE = $(shell $(BIN)/python -c 'import sys; print("sysmon" if sys.version_info >= (3, 12) else "")')

# Citus, for the local cluster of run-citus and test-citus: found in the embedded PostgreSQL,
# or built into it once from the source tarball CITUS_SOURCE names (about 2 minutes).
CITUS_SOURCE ?=
citus: $(STAMP)
	@CITUS_SOURCE="$(CITUS_SOURCE)" $(BIN)/python -m testkit.citus build

run-citus: citus
	$(BIN)/gramlogs serve --local-citus-workers 2

# The test suite on a local cluster (a coordinator and two workers): every test database is
# made on all three nodes with its tables distributed.
test-citus: citus
	GRAMLOGS_TEST_CITUS=1 $(BIN)/pytest

lint: $(STAMP) $(JS_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIOME) ci --error-on-warnings

fix: $(STAMP) $(JS_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIOME) check --write

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $@

# The full scale suite: seeds 1M and 10M rows once (cached in benchmarks/.cache), installs wrk
# from Debian's packages when missing, writes benchmarks/RESULTS.md and the plot.
# `make bench BENCH_ARGS="--sizes 1m"` for a shorter run; `python -m benchmarks.paging` for the
# keyset paging benchmark. The other benchmarks and their figures: docs/benchmarks.md.
BENCH_ARGS ?=
bench: $(BENCH_STAMP)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } \
		|| echo "wrk is missing and cannot be installed here: no throughput runs" >&2
	$(BIN)/python -m benchmarks.suite --profile --out benchmarks/RESULTS.md \
		--plot benchmarks/latency.png $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .hypothesis .coverage
