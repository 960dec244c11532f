# K2: two set-up commands (see README): `make demo` and `make test`.
# Each creates .venv, installs everything, and starts the services it needs.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
K2_HOME ?= $(CURDIR)/.k2
export K2_HOME

.PHONY: demo test test-unit test-integration test-notebooks test-browser test-brokers lint bench up down \
        system-deps clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/ -/'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

system-deps:  ## Debian packages the tests use: chromium (browser test), promtool (metrics lint)
	@./scripts/system-deps.sh

up: $(BIN)/.installed  ## start the local stack (broker, Redis, catalog) under K2_HOME
	$(BIN)/k2 up

down:  ## stop what `make up` started
	$(BIN)/k2 down

demo: $(BIN)/.installed  ## run the whole demo headless and write the HTML report
	$(BIN)/k2 up
	$(BIN)/k2 demo

lint: $(BIN)/.installed  ## ruff and mypy
	$(BIN)/ruff check k2lib tests
	$(BIN)/ruff format --check k2lib tests
	$(BIN)/mypy k2lib

test: $(BIN)/.installed system-deps  ## everything: lint, unit, integration, notebooks, browser
	$(BIN)/k2 up
	$(MAKE) lint
	$(BIN)/pytest tests/unit tests/integration -p no:cacheprovider
	$(MAKE) test-notebooks
	$(MAKE) test-browser

test-unit: $(BIN)/.installed  ## unit tests only (no services)
	$(BIN)/pytest tests/unit

test-integration: $(BIN)/.installed  ## integration tests against the live stack
	$(BIN)/k2 up
	$(BIN)/pytest tests/integration

# The integration suite against a second Kafka-protocol broker, noida-db (PyPI; one binary),
# as an external broker (K2_KAFKA_BOOTSTRAP): on a free loopback port, its data in a temporary
# folder removed afterwards. The binary itself is run (the `noida-db` script's child would
# outlive a signal to the script). Redis and the catalog are the local stack's. Not part of `make test`:
# it runs the whole integration suite a second time (see docs/operations/brokers.md).
NOIDA_DB_VERSION ?= 0.2.3
# A part of the suite: make test-brokers BROKER_TESTS=tests/integration/test_api.py
BROKER_TESTS ?= tests/integration

test-brokers: $(BIN)/.installed  ## the integration suite against noida-db as an external broker
	$(BIN)/pip install --quiet 'noida-db==$(NOIDA_DB_VERSION)'
	@set -e; dir=$$(mktemp -d); \
	port=$$($(BIN)/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); \
	noida=$$($(BIN)/python -c 'from importlib.resources import files; print(files("noida_db") / "noida-db")'); \
	"$$noida" start --data-dir "$$dir" --only kafka --kafka-port "$$port" >"$$dir/noida.log" 2>&1 & pid=$$!; \
	trap 'rc=$$?; kill -INT $$pid 2>/dev/null; wait $$pid 2>/dev/null || true; rm -rf "$$dir"; exit $$rc' EXIT; \
	$(BIN)/python -c 'import sys, time; from k2lib.stack.process import port_open; \
	  up = any(port_open("127.0.0.1", int(sys.argv[1])) or time.sleep(0.2) for _ in range(150)); \
	  sys.exit(0 if up else "noida-db did not listen within 30 s")' "$$port" \
	  || { cat "$$dir/noida.log"; exit 1; }; \
	echo "noida-db $(NOIDA_DB_VERSION) on 127.0.0.1:$$port"; \
	K2_KAFKA_BOOTSTRAP=127.0.0.1:$$port $(BIN)/pytest $(BROKER_TESTS) -p no:cacheprovider

test-notebooks: $(BIN)/.installed  ## the notebooks under nbval, against the live stack
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
	  $(BIN)/k2 up && $(BIN)/pytest --nbval notebooks \
	    --nbval-sanitize-with notebooks/nbval_sanitize.cfg -p no:cacheprovider; \
	else echo "no notebooks yet"; fi

test-browser: $(BIN)/.installed  ## JupyterLab driven in headless Chromium
	@if [ -d tests/browser ]; then $(BIN)/pytest tests/browser -p no:cacheprovider; fi

bench: $(BIN)/.installed  ## k2 bench all (notebooks included) -> bench/results.json and docs/performance.md
	$(BIN)/k2 up
	$(BIN)/k2 bench all --write

clean:  ## stop services and remove local state
	-$(BIN)/k2 down
	rm -rf $(K2_HOME) reports
