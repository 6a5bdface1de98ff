# filesvc — every target installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run migrate test lint typecheck check bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Serve on http://127.0.0.1:8000 with the embedded defaults (SQLite + ./data); migrates first.
run: install
	$(BIN)/filesvc serve

migrate: install
	$(BIN)/filesvc migrate

## Unit, API (SQLite + local disk, PostgreSQL + S3 on a SeaweedFS the tests start) and end-to-end tests.
test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check filesvc tests
	$(BIN)/ruff format --check filesvc tests

typecheck: install
	$(BIN)/mypy filesvc tests

check: lint typecheck test

## Throughput and memory against nginx (installs nginx with apt if it is missing), on S3
## (SeaweedFS) against boto3 direct, tracked against untracked transfers, and the SSE
## fan-out (1,000 subscribers on one worker), durable writes against dd conv=fsync (one big
## and 64 parallel 1 MiB uploads); BENCH_ARGS="--skip-s3", "--s3-only" or "--uploads-only".
bench: install
	$(BIN)/python -m tests.benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
