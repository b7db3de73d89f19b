# Every target creates the virtualenv and installs what it needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]' 'torch==2.13.0'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/ckptstore serve --data ./data --port 8000

test: $(STAMP)
	$(BIN)/ruff check ckptstore tests bench examples
	$(BIN)/ruff format --check ckptstore tests bench examples
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench.chunk_params
	$(BIN)/python -m bench.engine
	$(BIN)/python -m bench.server --workers 2
	$(BIN)/python -m bench.client
	$(BIN)/python -m bench.corpora

lint: $(STAMP)
	$(BIN)/ruff check --fix ckptstore tests bench examples
	$(BIN)/ruff format ckptstore tests bench examples

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
