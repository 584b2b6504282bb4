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

install: $(STAMP)

run: $(STAMP)
	$(BIN)/gramlogs serve

test: $(STAMP) lint
	$(BIN)/pytest

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

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

fix: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

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
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
