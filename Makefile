# Salud Universal. `make run` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_ADMIN ?= postgresql://postgres@127.0.0.1:5432/postgres
export SALUD_TEST_PG := $(PG_ADMIN)

.DEFAULT_GOAL := help
.PHONY: help install run migrate demo test test-sqlite test-postgresql check fmt bench clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	@# Browser tests use Debian's Chromium (never a downloaded browser).
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && \
	  { [ "$$(id -u)" = 0 ] && SUDO= || SUDO=sudo; \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }; } || \
	  echo "chromium is missing: install Debian's chromium for the browser tests"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install pinned dependencies

migrate: install ## Migrate the database (SALUD_DATABASE_URL, default SQLite under var/)
	$(BIN)/salud db upgrade

demo: migrate ## Load the real CLUES catalog and synthetic persons
	$(BIN)/salud demo load

run: demo ## Install, migrate, load demo data and serve on http://127.0.0.1:8000
	$(BIN)/salud serve --host 127.0.0.1 --port 8000

check: install ## ruff, mypy --strict, import-linter
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: install ## Format and autofix
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

test-sqlite: install ## The whole suite on SQLite
	SALUD_TEST_DB=sqlite $(BIN)/pytest -q -p no:cacheprovider

test-postgresql: install ## The database tests on a fresh PostgreSQL database
	SALUD_TEST_DB=postgresql $(BIN)/pytest -q -p no:cacheprovider -m db

test: check test-sqlite test-postgresql ## Everything CI runs: checks, SQLite and PostgreSQL

bench: install ## Benchmarks (figures go to bench/RESULTS.md by hand)
	$(BIN)/python -m bench.run_all

clean: ## Remove the virtual environment and local data
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
