# The two Quickstart commands: `make study` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORES  ?= all

.PHONY: setup study test clean

$(BIN)/ilscaling: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: the local CPU wheel, not the registry's multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/ilscaling

study: setup
	$(BIN)/snakemake --cores $(CORES)

test: setup
	$(BIN)/pytest -q

clean:
	rm -rf results logs benchmarks/out .snakemake
