# Two entry points: `make run` (pipeline on the demo cohort) and `make test`.
# Each sets up the virtual env from the pinned requirements on first use.
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
BIN := $(VENV)/bin

.PHONY: run test test-fast lint docs bench clean

run: $(VENV)/.run-deps
	$(BIN)/snakemake --cores $(CORES)

test: $(VENV)/.dev-deps
	$(BIN)/pytest

# The fast tier: no Snakemake run, no server process, no exhaustive sweep (under a minute),
# in two worker processes.
test-fast: $(VENV)/.dev-deps
	$(BIN)/pytest -n 2 -m "not workflow and not slurm and not slow"

lint: $(VENV)/.dev-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

# Pages generated from the code: the configuration reference, from the config schema.
docs: $(VENV)/.dev-deps
	$(BIN)/python -c "from embedpatch.config import config_reference; print(config_reference(), end='')" > docs/.configuration.md.tmp
	mv docs/.configuration.md.tmp docs/configuration.md

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) || { echo "error: '$(PYTHON) -m venv' failed; on Debian/Ubuntu run: apt-get install python3-venv" >&2; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip

# The package itself is installed editable: the pipeline, the tests and your own code use
# the checkout's embedpatch. pip byte-compiles what it installs, but not an editable
# package: it is compiled here, or where PYTHONDONTWRITEBYTECODE is set (as in many
# containers) every job would compile the modules it imports again (0.1 s per job).
INSTALL_PACKAGE = $(BIN)/pip install --quiet --no-deps -e . && $(BIN)/python -m compileall -q workflow/scripts
$(VENV)/.run-deps: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	$(INSTALL_PACKAGE)
	touch $@

$(VENV)/.dev-deps: requirements-dev.txt requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(INSTALL_PACKAGE)
	touch $@ $(VENV)/.run-deps

clean:
	rm -rf results .snakemake
