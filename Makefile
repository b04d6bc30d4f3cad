# esbridge developer entry points. `make test` works from a clean clone (root or not).
SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { command -v $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.esbridge-installed
ES8 := $(shell sed -n 's/^ES8 = "\(.*\)"/\1/p' service/esbridge/devtools/elasticsearch.py)
ES9 := $(shell sed -n 's/^ES9 = "\(.*\)"/\1/p' service/esbridge/devtools/elasticsearch.py)
OS2 := $(shell sed -n 's/^OS2 = "\(.*\)"/\1/p' service/esbridge/devtools/opensearch.py)
OS3 := $(shell sed -n 's/^OS3 = "\(.*\)"/\1/p' service/esbridge/devtools/opensearch.py)
OS_VERSION ?= $(OS2)
BACKEND ?= elasticsearch
PYTEST_ARGS ?=

.PHONY: venv test-deps es-fetch test test-compat test-opensearch demo lint bench bench-cluster bench-smoke es-start es-stop es-status

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "need python3 >= 3.11 on PATH"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

test-deps:
	bash scripts/install-test-deps.sh

es-fetch: venv
	$(PY) -m esbridge.devtools.elasticsearch fetch --version $(ES8)

test: venv test-deps es-fetch
	$(VENV)/bin/pytest -ra $(PYTEST_ARGS)

# Re-run the Elasticsearch-backed tests against 9.x (never reuse an 8.x URL from the shell).
test-compat: venv test-deps
	$(PY) -m esbridge.devtools.elasticsearch fetch --version $(ES9)
	env -u ESBRIDGE_TEST_ES_URL ESBRIDGE_TEST_ES_VERSION=$(ES9) $(VENV)/bin/pytest -ra -m es $(PYTEST_ARGS)

# The backend-dependent tests (-m es) on OpenSearch (OS_VERSION=2|3|2.19.6|3.8.0); the tests
# that need Elasticsearch's security features (es_security) have no OpenSearch counterpart here.
test-opensearch: venv test-deps
	$(PY) -m esbridge.devtools.opensearch fetch --version $(OS_VERSION)
	env -u ESBRIDGE_TEST_ES_URL ESBRIDGE_TEST_BACKEND=opensearch ESBRIDGE_TEST_OS_VERSION=$(OS_VERSION) \
		$(VENV)/bin/pytest -ra -m "es and not es_security" $(PYTEST_ARGS)

demo: venv
	$(PY) -m esbridge.devtools.demo --backend $(BACKEND)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: venv
	$(PY) bench/run.py
	$(PY) bench/cluster.py

bench-cluster: venv
	$(PY) bench/cluster.py

bench-smoke: venv
	$(PY) bench/run.py --smoke

es-start: venv
	$(PY) -m esbridge.devtools.elasticsearch start --version $(or $(ES_VERSION),$(ES8)) $(if $(ES_PORT),--port $(ES_PORT))

es-stop: venv
	$(PY) -m esbridge.devtools.elasticsearch stop

es-status: venv
	$(PY) -m esbridge.devtools.elasticsearch status
