PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/pupil-records: pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is required" if sys.version_info < (3, 11) else 0)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $@

run: $(BIN)/pupil-records
	$(BIN)/pupil-records run --demo

test: $(BIN)/pupil-records
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { echo "make test needs the PostgreSQL server binaries (initdb, pg_ctl), version 13 or newer:" \
	    "install them with 'apt-get install postgresql' (Debian, Ubuntu) or" \
	    "'brew install postgresql@15' (macOS); the tests start their own server" >&2; exit 1; }
	$(BIN)/pytest

lint: $(BIN)/pupil-records
	$(BIN)/ruff check services shared tests bench
	$(BIN)/ruff format --check services shared tests bench

bench: $(BIN)/pupil-records
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache
