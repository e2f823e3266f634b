# Every target installs what it needs into .venv by itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint fuzz bench clean

# Exactly the locks: requirements-dev.lock is the dev tools and requirements.lock's runtime
# versions, all with hashes (docs/install.md). Then the project alone: no dependency
# resolution, and built by the locked setuptools (build isolation would fetch one unhashed).
$(STAMP): pyproject.toml requirements.lock requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

## run: serve HTTPS on :8443 with the bundled sample cluster state
run: $(STAMP)
	$(BIN)/migration-policy-webhook serve

## test: the static checks (ruff, the layers contract, mypy strict), then the whole test suite
test: lint kube-binaries
	$(BIN)/python -m pytest -q

## test-fast: the static checks, then every tier but tests/cluster (no API server started),
## while working; kubectl and promtool from kube-binaries, as make test has them
.PHONY: test-fast
test-fast: lint kube-binaries
	$(BIN)/python -m pytest -q --ignore=tests/cluster

## test-cluster: tests/cluster alone, against a real kube-apiserver and etcd
.PHONY: test-cluster
test-cluster: kube-binaries
	$(BIN)/python -m pytest -q tests/cluster

## kube-binaries: kube-apiserver, kubectl and etcd for tests/cluster (kubectl also for the
## plugin's and kustomize's tests), and promtool for the alerting rules' tests, built from
## their Go modules (hack/) once, into ~/.cache/migration-policy-webhook (not the repository)
.PHONY: kube-binaries
kube-binaries: $(STAMP)
	$(BIN)/python -m tests.support.kube_binaries

## lint: ruff, import-linter's layers contract (.importlinter), mypy --strict on app/
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

## fuzz: the fuzz suite's long run (make test runs a short one)
fuzz: $(STAMP)
	FUZZ_LONG=1 $(BIN)/python -m pytest -q tests/service/test_fuzz.py

## bench: issue 9's benchmark, service vs floor over TLS (docs/benchmarks.md); then live_state.py,
## then api_server.py (creates through a real kube-apiserver, without and with the webhooks),
## then coverage.py (issue 20: coverage, impact warnings and the coverage keeper, in process)
bench: $(STAMP) kube-binaries
	PYTHONPATH=. $(BIN)/python bench/run.py
	PYTHONPATH=. $(BIN)/python bench/live_state.py
	PYTHONPATH=. $(BIN)/python bench/api_server.py
	PYTHONPATH=. $(BIN)/python bench/coverage.py

## bench-quick: bench/run.py with 3 s per measurement on a tenth of the cluster (indicative only)
.PHONY: bench-quick
bench-quick: $(STAMP)
	PYTHONPATH=. $(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
