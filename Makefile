# The Physics-of-LMs Lab. Two commands do everything: `make book` and `make test`.
# Each target creates .venv from the pinned requirements.txt on first use (and again when it changes).

PY      ?= python3
VENV    := .venv
PYTHON  := $(VENV)/bin/python
PROFILE ?= quick
STAMP   := $(VENV)/.installed
ASSETS  := site/node_modules/.installed
export PYTHONHASHSEED := 0

.PHONY: all book site test lab bench notebooks lint clean env assets

all: book

$(STAMP): requirements.txt pyproject.toml
	$(PY) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 needed, found " + sys.version'
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet -r requirements.txt
	$(PYTHON) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(ASSETS): site/package.json site/package-lock.json
	cd site && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

env: $(STAMP)
assets: $(ASSETS)

## book: execute every chapter with papermill (PROFILE=quick|full|...) and build the website
book: $(STAMP) $(ASSETS)
	$(PYTHON) -m labkit book --execute --profile $(PROFILE)

## site: build the website from the outputs committed in the notebooks (no execution)
site: $(STAMP) $(ASSETS)
	$(PYTHON) -m labkit book

## test: every test: labkit unit tests, nbval over notebooks, papermill smoke runs, site build, browser;
## fails too when a notebook runs over its time budget (table at the end; tests/conftest.py)
test: $(STAMP) $(ASSETS)
	$(PYTHON) -m ruff check labkit tests benchmarks notebooks
	$(PYTHON) -m pytest tests notebooks --nbval-lax --sanitize-with tests/nbval_sanitize.cfg

## notebooks: refresh the committed outputs (default parameters) in place
notebooks: $(STAMP)
	for nb in notebooks/*.ipynb; do $(PYTHON) -m labkit run $$nb --in-place -q || exit 1; done

## lab: JupyterLab on the notebooks
lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

## bench: speed benchmarks (ratios against reference runs, printed side by side)
bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PYTHON) $$b || exit 1; done

lint: $(STAMP)
	$(PYTHON) -m ruff check labkit tests benchmarks notebooks

clean:
	rm -rf _build _site_assets .pytest_cache .ruff_cache
