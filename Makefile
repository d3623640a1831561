# nsfw_lab — two commands set everything up: `make study` and `make test`.
# Both create .venv when it is missing (a no-op when it is current), install the package
# editable through the lock file, and register the Jupyter kernel `nsfw-lab` inside the venv.
# An environment that already has PyTorch: scripts/install_existing_torch.py (docs/install.md).

SHELL := /bin/bash
.DEFAULT_GOAL := help

# The lock is made on 3.11 (the first supported Python); 3.12 and 3.13 take it too (CI runs the floor on 3.13).
PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3; do command -v $$p >/dev/null 2>&1 && $$p -c '' 2>/dev/null && { command -v $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements/lock.txt
STAMP := $(VENV)/.nsfw-lab-installed
PROFILE ?= cpu
DATA ?=
PYTEST_ARGS ?=
QUICK ?=
WHEELS ?=
GPU_VENV := .venv-gpu
# gpu-check: the machine's own Python with its PyTorch (the first that imports torch)
TORCH_PYTHON ?= $(shell for p in python3 python python3.13 python3.12 python3.11; do $$p -c 'import torch' 2>/dev/null && { command -v $$p; break; }; done)

.PHONY: help env study test bench gpu-check lint lab lock docs clean distclean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

env: $(STAMP)  ## create/refresh .venv from the lock file and register the `nsfw-lab` kernel

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 11) <= v <= (3, 13) else "nsfw_lab needs Python 3.11 to 3.13 (found %d.%d at $(PYTHON)); set PYTHON=/path/to/python3.11" % v)'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint $(LOCK) --editable '.[dev,decode]'
	$(BIN)/python -m ipykernel install --sys-prefix --name nsfw-lab --display-name 'Python 3 (nsfw-lab)' >/dev/null
	@touch $@

study: $(STAMP)  ## build the environment and run the study (PROFILE=smoke|cpu|gpu, DATA=curated-or-raw dir)
	$(BIN)/nsfw-lab prepare --profile $(PROFILE) $(if $(DATA),--data '$(DATA)')
	$(BIN)/nsfw-lab bench --if-missing $(if $(filter gpu,$(PROFILE)),,--quick)
	$(BIN)/nsfw-lab study --profile $(PROFILE) $(if $(DATA),--data '$(DATA)')

test: $(STAMP)  ## lint and run the whole offline test suite
	$(BIN)/ruff check nsfw_lab tests scripts
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)  ## measure data path, training loop and inference into reports/benchmarks/ (QUICK=1: minutes)
	$(BIN)/nsfw-lab bench $(if $(QUICK),--quick)

gpu-check:  ## on a CUDA machine with its own PyTorch, offline (WHEELS=dir of missing wheels): reports/benchmarks/gpu_check.*
	@test -n "$(TORCH_PYTHON)" || { echo "gpu-check: no Python here imports torch; set TORCH_PYTHON=/path/to/python" >&2; exit 2; }
	$(TORCH_PYTHON) scripts/install_existing_torch.py --venv $(GPU_VENV) --extras dev,decode $(if $(WHEELS),--wheels '$(WHEELS)')
	$(GPU_VENV)/bin/nsfw-lab gpu-check

lint: $(STAMP)  ## ruff lint + format check
	$(BIN)/ruff check nsfw_lab tests scripts
	$(BIN)/ruff format --check nsfw_lab tests scripts

lab: $(STAMP)  ## JupyterLab on notebooks/ with the nsfw-lab kernel
	$(BIN)/jupyter lab --notebook-dir=notebooks

lock: $(STAMP)  ## recompile requirements/lock.txt from pyproject.toml (needs the registry)
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra decode --python-version 3.11 --universal --no-header --quiet -o $(LOCK)

docs: $(STAMP)  ## regenerate docs/cli.md from the argument parser (a test checks it is current)
	$(BIN)/python -c 'from nsfw_lab.cli import write_reference; print("wrote", write_reference())'

clean:  ## remove generated data, reports and caches (keeps .venv)
	find data -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	find reports -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean  ## clean, and remove .venv too
	rm -rf $(VENV)
