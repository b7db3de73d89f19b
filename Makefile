# Every target creates the virtualenv and installs what it needs on a fresh machine.
# `run` installs the server alone; test, bench and lint install the test and bench
# extras and torch (the tests save and load torch checkpoints) into the same venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SERVER_STAMP := $(VENV)/.installed-server
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run run-cluster test soak bench bench-peers lint clean

KERNELS := $(wildcard ckptstore/store/codecs/*.c ckptstore/store/codecs/kernels/*)

$(STAMP): pyproject.toml $(KERNELS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]' 'torch==2.13.0'
	touch $(STAMP)

$(SERVER_STAMP): pyproject.toml $(KERNELS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[server]'
	touch $(SERVER_STAMP)

run: $(SERVER_STAMP)
	$(BIN)/ckptstore serve --data ./data --port 8000

# Two replicas on 8001 and 8002 sharing a PostgreSQL catalog (a new schema on
# 127.0.0.1:5432/test, or CKPTSTORE_TEST_POSTGRES) and a bucket on moto's S3 server
# (or the endpoint in CKPTSTORE_S3_ENDPOINT); prints the key. Ctrl-C stops all.
run-cluster: $(STAMP)
	$(BIN)/python -m ckptstore.testing.cluster --ports 8001 8002

# The web interface's browser tests drive Debian's chromium (Playwright's own browser
# download is not used); installed here when missing.
test: $(STAMP)
	command -v chromium >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }
	$(BIN)/ruff check ckptstore tests bench examples
	$(BIN)/ruff format --check ckptstore tests bench examples
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# The longer crash and stress runs, which `make test` leaves out (the soak marker).
soak: $(STAMP)
	$(BIN)/python -m pytest -q -m soak --durations=10

bench: $(STAMP)
	$(BIN)/python -m bench.chunk_params
	$(BIN)/python -m bench.engine
	$(BIN)/python -m bench.server --workers 2
	$(BIN)/python -m bench.catalogs
	$(BIN)/python -m bench.client
	$(BIN)/python -m bench.transfer
	$(BIN)/python -m bench.corpora
	$(BIN)/python -m bench.corpora --scale medium --no-variants
	$(BIN)/python -m bench.byte_planes
	$(BIN)/python -m bench.entropy
	$(BIN)/python -m bench.s3_endpoint
	$(BIN)/python -m bench.sha256
	$(BIN)/python -m bench.integrations
	$(BIN)/python -m bench.ingest_stages
	$(BIN)/python -m bench.block_size --scale medium --corpora bf16
	$(BIN)/python -m bench.old_restore
	$(BIN)/python -m bench.list_load
	$(BIN)/python -m bench.targets
	$(BIN)/python -m bench.scale
	$(BIN)/python -m bench.small_tensors
	$(BIN)/python -m bench.summary

# The peer tools bench.corpora compares with (it skips those not installed).
bench-peers: $(STAMP)
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q restic borgbackup zstd wrk
	$(BIN)/pip install -q zipnn z4ai blosc2 constriction

lint: $(STAMP)
	$(BIN)/ruff check --fix ckptstore tests bench examples
	$(BIN)/ruff format ckptstore tests bench examples

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
