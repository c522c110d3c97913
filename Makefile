# Every target works on a fresh Debian/Ubuntu machine: the venv and the packages are made on demand.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PIP_QUIET := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_ARGS ?= # e.g. make demo DEMO_ARGS=--keep-running
APT_PACKAGES := prometheus bind9-dnsutils knot-dnsutils unbound dnsperf pdns-server pdns-backend-bind etcd-server openssl curl

.PHONY: demo test test-unit lint fmt bench soak system-deps clean deploy

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || bash scripts/system-deps.sh python3-venv
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip $(PIP_QUIET)
	$(BIN)/python -m pip install --quiet -e '.[dev]' $(PIP_QUIET)
	touch $(STAMP)

system-deps:
	@bash scripts/system-deps.sh $(APT_PACKAGES)

demo: $(STAMP) system-deps
	$(BIN)/ubiq demo examples/three-regions-loop --loop $(DEMO_ARGS)

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

lint: $(STAMP)
	$(BIN)/ruff check controlplane tests bench
	$(BIN)/ruff format --check controlplane tests bench
	$(BIN)/mypy controlplane bench

fmt: $(STAMP)
	$(BIN)/ruff check --fix controlplane tests bench
	$(BIN)/ruff format controlplane tests bench

deploy: $(STAMP)
	$(BIN)/python -m controlplane.deploy

bench: $(STAMP) system-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache

# About 10 minutes of churn against real Envoys and Prometheus (not in CI); SOAK_SECONDS=180 for a short run.
soak: $(STAMP) system-deps
	$(BIN)/python -m bench.soak
