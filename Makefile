# gusher: `make run` runs it for real, `make test` runs the whole test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test check lint typecheck clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/gusher up

# The JavaScript client's test dependencies (ws, typescript); its Node tests skip without npm.
JS_STAMP := clients/js/node_modules/.installed

$(JS_STAMP): clients/js/package.json clients/js/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix clients/js --no-audit --no-fund --silent && touch $(JS_STAMP); \
	else echo "npm not found: the JavaScript client's Node tests will be skipped"; fi

# The real Pusher libraries (pusher-js, laravel-echo, the `pusher` server SDK) the Pusher
# compatibility tests drive (issue 13); their tests skip without npm (not under GUSHER_CI).
PUSHER_STAMP := tests/pusher/node_modules/.installed

$(PUSHER_STAMP): tests/pusher/package.json tests/pusher/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/pusher --no-audit --no-fund --silent && touch $(PUSHER_STAMP); \
	else echo "npm not found: the Pusher libraries' Node tests will be skipped"; fi

# Test files run side by side in 3 processes (pytest-xdist; a file's tests stay in one, so its
# module fixtures are shared): most tests wait on real processes (a failover, a killed worker,
# a heartbeat's expiry), so on 2 cores the suite takes ~4 min instead of ~8.5. PYTEST_WORKERS=0
# runs it in one process.
PYTEST_WORKERS ?= 3

test: $(STAMP) $(JS_STAMP) $(PUSHER_STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check gusher tests
	$(VENV)/bin/ruff format --check gusher tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Benchmarks (issue 3): bench/setup.sh installs the bench's own tools and the
# peers (not in requirements.txt); see BENCHMARKS.md for what is measured.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) bench/requirements.txt bench/peers/node/package.json bench/setup.sh
	PY=$(PY) bash bench/setup.sh
	touch $(BENCH_STAMP)

.PHONY: bench bench-quick

bench: $(STAMP) $(BENCH_STAMP)
	$(PY) -m bench.run $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(PY) -m bench.run --quick $(BENCH_ARGS)
