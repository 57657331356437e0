# make demo: set up .venv and train the default model on ../shared/abid
# make test: set up .venv and run lint (ruff, import contracts) + the test suite (what CI runs)
# make bench: every benchmark in under 15 minutes, tables in benchmarks/RESULTS.md
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-long test-sagemaker-slow test-all lint format clean chromium bench

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) train.py $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

test: lint chromium
	$(PY) -m pytest $(PYTEST_ARGS)

# The real runs of 15 s to 1.5 min each (marked long), which CI runs after `make test`.
test-long: $(STAMP)
	$(PY) -m pytest -m long $(PYTEST_ARGS)

# The slow SageMaker container checks (two hosts, spot restart), which CI runs after `make test`.
test-sagemaker-slow: $(STAMP)
	$(PY) -m pytest -m slow tests/sagemaker $(PYTEST_ARGS)

# Everything, the slow checks too.
test-all: lint chromium
	$(PY) -m pytest -m "slow or long or not slow" $(PYTEST_ARGS)

# Every benchmark (benchmarks/run_all.py), under 15 minutes: tables in benchmarks/RESULTS.md.
bench: $(STAMP)
	$(PY) benchmarks/run_all.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Headless Chromium and its driver for the upload page's browser test (Debian packages).
chromium:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver; \
	fi
