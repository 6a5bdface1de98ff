# filesvc — every target installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run migrate cluster cluster-down cluster-status test lint typecheck check bench clean

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

## nginx + two instances + SeaweedFS on this machine (README, "Local cluster"):
## http://127.0.0.1:$${FILESVC_CLUSTER_PORT:-8080}, state in $${FILESVC_CLUSTER_DIR:-./cluster}.
cluster: install
	deploy/local-cluster up

cluster-down:
	deploy/local-cluster down

cluster-status:
	deploy/local-cluster status

## Unit, API (SQLite + local disk, PostgreSQL + S3 on a SeaweedFS the tests start) and end-to-end tests.
test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check filesvc tests deploy
	$(BIN)/ruff format --check filesvc tests deploy

typecheck: install
	$(BIN)/mypy filesvc tests
	$(BIN)/mypy deploy/local_cluster.py deploy/cluster_processes.py deploy/cluster_nginx.py

check: lint typecheck test

## Throughput and memory against nginx (installs nginx and wrk with apt if missing), on S3
## (SeaweedFS) against boto3 direct, tracked against untracked transfers, and the SSE
## fan-out (1,000 subscribers on one worker), durable writes against dd conv=fsync (one big
## and 64 parallel 1 MiB uploads), small requests under wrk against copyparty, a 1 GiB tus
## upload in 8 and 64 MiB chunks against curl -T, and the cluster figure (uploads/s and p99
## through nginx + two instances against one, wrk, 64 clients); BENCH_ARGS="--skip-s3",
## "--s3-only", "--uploads-only", "--skip-small", "--small-only", "--tus-only",
## "--skip-cluster" or "--cluster-only".
bench: install
	$(BIN)/python -m tests.benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
