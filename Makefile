# Every target installs what it needs into .venv first, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: install run test soak bench lint clean stop

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## make run: start the embedded PostgreSQL, create the schema and ingest a night of ZTF alerts.
run: $(STAMP)
	$(VENV)/bin/dbp initdb
	$(PY) -m bench.ingest $(ARGS)

## make test: the whole test suite against the embedded PostgreSQL (or DBP_TEST_DSN).
test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

## make soak: the long versions of the reliability tests, and every property test with fresh hypothesis draws
## (`make test` repeats the same draws; see docs/guarantees.md).
soak: $(STAMP)
	DBP_SOAK=1 $(PY) -m pytest -q -m "soak or hypothesis" tests $(ARGS)

## make bench: side-by-side benchmarks, written to bench/RESULTS.md.
bench: $(STAMP)
	$(PY) -m bench.run $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check dbplugins db_plugins tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy tests

stop: $(STAMP)
	$(PY) -m dbplugins.cli embedded stop

clean:
	rm -rf $(VENV) .dbp .pytest_cache .mypy_cache .ruff_cache
