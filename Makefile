# esbridge developer entry points. `make test` works from a clean clone (root or not).
SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { command -v $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.esbridge-installed
ES8 := $(shell sed -n 's/^ES8 = "\([^"]*\)".*/\1/p' devtools/esbridge_dev/distribution.py)
ES9 := $(shell sed -n 's/^ES9 = "\([^"]*\)".*/\1/p' devtools/esbridge_dev/distribution.py)
OS2 := $(shell sed -n 's/^OS2 = "\([^"]*\)".*/\1/p' devtools/esbridge_dev/opensearch.py)
OS3 := $(shell sed -n 's/^OS3 = "\([^"]*\)".*/\1/p' devtools/esbridge_dev/opensearch.py)
OS_VERSION ?= $(OS2)
BACKEND ?= elasticsearch
PYTEST_ARGS ?=
# What a test phase needs first; `make test-all` installs it once and runs its phases (which
# run at the same time) with DEPS= so that they never race for the package manager.
DEPS ?= venv test-deps

.PHONY: venv test-deps es-fetch test test-main test-main-es test-main-sec test-main-rest test-once test-once-heavy test-once-clients test-once-rest test-compat test-opensearch test-all backend-phases demo lint \
	bench bench-cluster bench-smoke bench-check es-start es-stop es-status

venv: $(STAMP)

# The service with its dev extra, and the dev tooling (test-cluster harness, sample data, demo),
# a package of its own under devtools/ that the service's wheel never ships. Installed by uv
# (itself from PyPI, into the venv): the same packages in ~15 s where pip took ~2 minutes of
# CPU on a 2-core machine, the first step of every CI run. --system-certs: the certificate
# authorities the system trusts (as pip, with its cert setting, does), not uv's bundled ones.
$(STAMP): pyproject.toml devtools/pyproject.toml
	@test -n "$(PYTHON)" || { echo "need python3 >= 3.11 on PATH"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q 'uv>=0.13.9'
	$(VENV)/bin/uv pip install --system-certs --python $(PY) -q -e '.[dev]' -e ./devtools
	@touch $(STAMP)

test-deps:
	bash scripts/install-test-deps.sh

es-fetch: venv
	$(PY) -m esbridge_dev.elasticsearch fetch --version $(ES8)

test: $(DEPS) es-fetch
	$(VENV)/bin/pytest -ra $(PYTEST_ARGS)

# `make test` in two halves that `make test-all` runs side by side: what depends on the search
# server (and every test without one), and what runs once (marked version_independent).
test-main: $(DEPS) es-fetch
	$(VENV)/bin/pytest -ra -m "not version_independent" $(PYTEST_ARGS)

test-once: $(DEPS) es-fetch
	$(VENV)/bin/pytest -ra -m "version_independent" $(PYTEST_ARGS)

# `test-main` in three parts that `make test-all` puts in different lanes: the tests on the
# session's search server (marked `es`: the same set every backend phase runs again), those on
# the secured cluster (`secured_cluster`: minutes of their own, with no plain server), and the
# rest (no server, or one of their own).
test-main-es: $(DEPS) es-fetch
	$(VENV)/bin/pytest -ra -m "not version_independent and es and not secured_cluster" $(PYTEST_ARGS)

test-main-sec: $(DEPS) es-fetch
	$(VENV)/bin/pytest -ra -m "not version_independent and secured_cluster" $(PYTEST_ARGS)

test-main-rest: $(DEPS) es-fetch
	$(VENV)/bin/pytest -ra -m "not version_independent and not es and not secured_cluster" $(PYTEST_ARGS)

# `test-once` in three parts that `make test-all` puts in different lanes: its `heavy` tests
# (the bench smoke run, three replicas under Prometheus: minutes of both cores), those that
# drive real Nagios, Icinga 2, Prometheus or Chromium programs (`clients`), and the rest.
test-once-heavy: $(DEPS) es-fetch
	$(VENV)/bin/pytest -ra -m "version_independent and heavy" $(PYTEST_ARGS)

test-once-clients: $(DEPS) es-fetch
	$(VENV)/bin/pytest -ra -m "version_independent and not heavy and clients" $(PYTEST_ARGS)

test-once-rest: $(DEPS) es-fetch
	$(VENV)/bin/pytest -ra -m "version_independent and not heavy and not clients" $(PYTEST_ARGS)

# Backend phases: re-run the tests whose outcome depends on the search server against another
# backend (never reuse a URL from the shell). Tests marked version_independent (Chromium,
# Nagios, Icinga 2, Prometheus, the bench, HTTP and API shape; see pyproject.toml) ran in
# `make test` already and are deselected here;
# OpenSearch's test distribution has no security plugin, so es_security tests stay on
# Elasticsearch. One line per backend:
#   $(eval $(call backend_phase,<name>,<elasticsearch|opensearch>,<version>,<marker expression>))
# .ci/run runs every phase listed by `make -s backend-phases`.
BACKEND_PHASES :=
define backend_phase
BACKEND_PHASES += $(1)
.PHONY: test-$(1)
test-$(1): $$(DEPS)
	$$(PY) -m esbridge_dev.$(2) fetch --version $(3)
	env -u ESBRIDGE_TEST_ES_URL ESBRIDGE_TEST_BACKEND=$(2) \
		ESBRIDGE_TEST_$(if $(filter opensearch,$(2)),OS,ES)_VERSION=$(3) \
		$$(VENV)/bin/pytest -ra -m "$(4)" $$(PYTEST_ARGS)
endef
COMPAT_MARK := es and not version_independent and not secured_cluster
SEC_MARK := not version_independent and secured_cluster
OS_MARK := es and not version_independent and not es_security
$(eval $(call backend_phase,es9,elasticsearch,$(ES9),$(COMPAT_MARK)))
$(eval $(call backend_phase,es9-sec,elasticsearch,$(ES9),$(SEC_MARK)))
$(eval $(call backend_phase,os2,opensearch,$(OS2),$(OS_MARK)))
$(eval $(call backend_phase,os3,opensearch,$(OS3),$(OS_MARK)))

test-compat: test-es9 test-es9-sec

# `make test-opensearch OS_VERSION=2|3|2.19.6|3.8.0`: the OpenSearch phase of that major.
test-opensearch: test-os$(firstword $(subst ., ,$(OS_VERSION)))

backend-phases:
	@echo $(BACKEND_PHASES)

# The whole suite: `make test` and every backend phase, in lanes, with phase times (.ci/run).
test-all:
	bash scripts/test-all.sh

demo: venv
	$(PY) -m esbridge_dev.demo --backend $(BACKEND)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: venv
	$(PY) bench/run.py
	$(PY) bench/cluster.py
	$(PY) bench/cluster.py --values changing --trials 0

bench-cluster: venv
	$(PY) bench/cluster.py
	$(PY) bench/cluster.py --values changing --trials 0

bench-smoke: venv
	$(PY) bench/run.py --smoke

# Ratios of a smoke run against bench/baseline.json; fails on a > 25 % regression (not CI).
bench-check: venv
	$(PY) bench/check.py

es-start: venv
	$(PY) -m esbridge_dev.elasticsearch start --version $(or $(ES_VERSION),$(ES8)) $(if $(ES_PORT),--port $(ES_PORT))

es-stop: venv
	$(PY) -m esbridge_dev.elasticsearch stop

es-status: venv
	$(PY) -m esbridge_dev.elasticsearch status
