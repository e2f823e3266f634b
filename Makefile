# Every target installs what it needs into .venv by itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## run: serve HTTPS on :8443 with the bundled sample cluster state
run: $(STAMP)
	$(BIN)/migration-policy-webhook serve

## test: lint, then the whole test suite
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

## bench: the benchmarks under bench/ (run by hand; they print figures)
bench: $(STAMP)
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/live_state.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
