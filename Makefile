# Two commands a newcomer needs: `make run` and `make test`. Everything else is optional.
PY ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
        command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; \
      done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck check bench clean

$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PY)" || { echo "meshauth needs Python >= 3.11 on PATH"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	# xds-protos ships an old copy of opentelemetry-proto's files; whichever is installed last wins.
	# The exporter needs opentelemetry-proto's own (observability/otel.py, _CLASH).
	$(BIN)/python -m pip install -q -c constraints.txt --force-reinstall --no-deps opentelemetry-proto
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/meshauth up

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: install
	$(BIN)/mypy
	# The tests too (strict, as src/).
	$(BIN)/mypy tests

check: lint typecheck test

bench: install
	$(BIN)/meshauth bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
