# One command per habit. Each target installs what it needs into .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
# The benchmarks' own dependencies (the peer's Celery), on top of the development install.
BENCH_STAMP = $(VENV)/.installed-bench
# checkov pins its dependencies tighter than the project does: it gets a virtualenv of its own.
CHECKOV_VENV  ?= .venv-checkov
CHECKOV_STAMP  = $(CHECKOV_VENV)/.installed

.PHONY: demo test test-fast lint scan bench stack-up stack-down clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

$(CHECKOV_STAMP): requirements/checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements/checkov.txt
	touch $(CHECKOV_STAMP)

demo: $(STAMP)            ## the main job on the embedded substrate
	$(BIN)/tpf demo

# Two processes, a module each at a time (module fixtures start fleets once), the modules with
# most tests first: end-to-end modules, which mostly wait on their processes, then overlap with
# CPU-bound unit and integration modules. (Handing out the longest modules first ran two
# fleets side by side: 24 minutes instead of 19.)
TEST_WORKERS ?= 2

test: $(STAMP) $(CHECKOV_STAMP)  ## every tier; LocalStack tests skip (locally) when the stack is down
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope

test-fast: $(STAMP) $(CHECKOV_STAMP)  ## unit tests only
	$(BIN)/python -m pytest tests/unit -q

lint: $(STAMP)            ## ruff, mypy, the import layers (import-linter), hadolint on the Dockerfile
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/hadolint --failure-threshold style Dockerfile

scan: $(STAMP) $(CHECKOV_STAMP)  ## checkov and cfn-lint over the generated template, hadolint on the Dockerfile
	$(BIN)/python -m pytest -q tests/unit/test_template_scan.py tests/unit/test_template.py \
	    tests/unit/test_template_coordinator_service.py tests/unit/test_dockerfile.py

bench: $(BENCH_STAMP)     ## benchmarks on the LocalStack stack (make stack-up first); BENCH_ARGS to size them
	$(BIN)/tpf bench $(BENCH_ARGS)

stack-up:                 ## LocalStack (S3, SQS) and DynamoDB Local on loopback
	localstack/up

stack-down:
	localstack/down

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache
