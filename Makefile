# lmukws: `make serve` and `make test` set everything up on a fresh machine, then serve or test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lmukws-setup

.PHONY: setup serve test test-fast lint format bench clean data-recordings

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt scripts/install-system-packages.sh
	bash scripts/install-system-packages.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c requirements/constraints.txt -e '.[dev]'
	touch $(STAMP)

serve: setup
	$(VENV)/bin/lmukws serve

# PYTHONFAULTHANDLER: a native crash, even in the interpreter's teardown after the summary,
# prints every thread's Python stack instead of a bare "Segmentation fault".
test: setup
	$(VENV)/bin/ruff check .
	PYTHONFAULTHANDLER=1 $(VENV)/bin/pytest

test-fast: setup
	PYTHONFAULTHANDLER=1 $(VENV)/bin/pytest -m "not slow"

lint: setup
	$(VENV)/bin/ruff check .

format: setup
	$(VENV)/bin/ruff format .

bench: setup
	$(VENV)/bin/lmukws bench --quick

# Real recordings from Debian packages (about 1 GB of packages: not part of setup or test).
data-recordings: setup
	bash scripts/install-speech-data.sh
	$(VENV)/bin/lmukws data recordings --out data/recordings

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
