# imdb-sentiment: one-command local pipeline (`make demo`) and the test command (`make test`).
# Plain make + Python 3.11: every tool below is installed into .venv from the pinned requirement files.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Re-install only when a requirement file changes: a second `make demo` skips pip entirely.
STAMP := $(VENV)/.installed
REQUIREMENT_FILES := requirements.txt requirements-dev.txt workload/pyproject.toml devtools/pyproject.toml
# Extra pip options, e.g. PIP_OPTIONS="--extra-index-url https://download.pytorch.org/whl/cpu" on a Linux
# machine whose pip has no CPU-only torch wheel at hand (PyPI's Linux torch wheel pulls the CUDA libraries).
PIP_OPTIONS ?=
DEMO_SAMPLE_FAST ?= 500
IMAGE ?= imdb-sentiment-api:dev

.PHONY: help venv demo demo-fast image lint test system-deps clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "error: no python3.11 or python3 on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || { echo "error: '$(PYTHON) -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(REQUIREMENT_FILES) | $(BIN)/python
	$(BIN)/pip install $(PIP_OPTIONS) -r requirements.txt -r requirements-dev.txt -e 'workload[serve,train,dev]' -e devtools
	touch $@

venv: $(STAMP)  ## create .venv and install the pinned requirements (idempotent)

demo: $(STAMP)  ## the whole pipeline on an embedded S3, then serve the API (IMDB_SOURCE=..., DEMO_SAMPLE=N, DEMO_EXIT=1)
	$(BIN)/python scripts/demo.py

demo-fast: $(STAMP)  ## `make demo` on a small sample of the data (DEMO_SAMPLE, default 500 per split and label)
	DEMO_SAMPLE=$${DEMO_SAMPLE:-$(DEMO_SAMPLE_FAST)} $(BIN)/python scripts/demo.py

image: system-deps $(STAMP)  ## build workload/Dockerfile as $(IMAGE) with Docker or Podman (see docs/image.md)
	$(BIN)/python scripts/build_image.py --tag $(IMAGE)

# hadolint and the GitHub workflow schema check run as tests (tests/workload/test_docker.py, tests/test_repo.py).
lint: $(STAMP)  ## ruff, ruff format, shellcheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/shellcheck .ci/run $$(find . -path ./.venv -prune -o -path ./.git -prune -o -name '*.sh' -print)

system-deps:  ## install missing system packages (Chromium; Podman and mmdebstrap for the image) with apt-get
	scripts/install-system-deps.sh

test: system-deps lint  ## lint + the whole pytest suite (workload, API, infra under mocks, end-to-end on moto)
	$(BIN)/pytest

clean:  ## remove the virtual environment and local demo state
	rm -rf $(VENV) .demo
