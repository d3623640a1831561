# nsfw_lab — two commands set everything up: `make study` and `make test`.
# Both create .venv when it is missing (a no-op when it is current), install the package
# editable through the lock file, and register the Jupyter kernel `nsfw-lab` inside the venv.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements/lock.txt
STAMP := $(VENV)/.nsfw-lab-installed
PROFILE ?= cpu
DATA ?=
PYTEST_ARGS ?=
QUICK ?=

.PHONY: help env study test bench lint lab lock docs clean distclean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

env: $(STAMP)  ## create/refresh .venv from the lock file and register the `nsfw-lab` kernel

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 11) else "nsfw_lab needs Python 3.11 (found %d.%d at $(PYTHON)); set PYTHON=/path/to/python3.11" % v)'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint $(LOCK) --editable '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name nsfw-lab --display-name 'Python 3 (nsfw-lab)' >/dev/null
	@touch $@

study: $(STAMP)  ## build the environment and run the study (PROFILE=smoke|cpu|gpu, DATA=curated-or-raw dir)
	$(BIN)/nsfw-lab prepare --profile $(PROFILE) $(if $(DATA),--data '$(DATA)')
	$(BIN)/nsfw-lab bench --if-missing $(if $(filter gpu,$(PROFILE)),,--quick)
	$(BIN)/nsfw-lab study --profile $(PROFILE) $(if $(DATA),--data '$(DATA)')

test: $(STAMP)  ## lint and run the whole offline test suite
	$(BIN)/ruff check nsfw_lab tests
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)  ## measure data path, training loop and inference into reports/benchmarks/ (QUICK=1: minutes)
	$(BIN)/nsfw-lab bench $(if $(QUICK),--quick)

lint: $(STAMP)  ## ruff lint + format check
	$(BIN)/ruff check nsfw_lab tests
	$(BIN)/ruff format --check nsfw_lab tests

lab: $(STAMP)  ## JupyterLab on notebooks/ with the nsfw-lab kernel
	$(BIN)/jupyter lab --notebook-dir=notebooks

lock: $(STAMP)  ## recompile requirements/lock.txt from pyproject.toml (needs the registry)
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --universal --no-header --quiet -o $(LOCK)

docs: $(STAMP)  ## regenerate docs/cli.md from the argument parser (a test checks it is current)
	$(BIN)/python -c 'from nsfw_lab.cli import write_reference; print("wrote", write_reference())'

clean:  ## remove generated data, reports and caches (keeps .venv)
	find data -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	find reports -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean  ## clean, and remove .venv too
	rm -rf $(VENV)
