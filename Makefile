# One command per habit. Each target installs what it needs into .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test test-fast lint bench stack-up stack-down clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)            ## the main job on the embedded substrate
	$(BIN)/tpf demo

test: $(STAMP)            ## every tier; LocalStack tests skip (locally) when the stack is down
	$(BIN)/python -m pytest

test-fast: $(STAMP)       ## unit tests only
	$(BIN)/python -m pytest tests/unit -q

lint: $(STAMP)            ## ruff, mypy, and the import layers (import-linter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: $(STAMP)           ## benchmarks on the LocalStack stack (make stack-up first); BENCH_ARGS to size them
	$(BIN)/tpf bench $(BENCH_ARGS)

stack-up:                 ## LocalStack (S3, SQS) and DynamoDB Local on loopback
	localstack/up

stack-down:
	localstack/down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
