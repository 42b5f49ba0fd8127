# The two Quickstart commands: `make study` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORES  ?= all

.PHONY: setup study test test-slurm clean

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

# The Slurm tests (tests/test_slurm.py) against a running cluster, e.g. the local test cluster:
#   eval "$$(cluster/start-slurm.sh)"; make test-slurm; cluster/stop-slurm.sh
# (its environment is picked up from /tmp/ilscaling-slurm/env when SLURM_CONF is unset).
test-slurm: setup
	if [ -z "$$SLURM_CONF" ] && [ -f /tmp/ilscaling-slurm/env ]; then . /tmp/ilscaling-slurm/env; fi; \
	ILSCALING_SLURM_TESTS=$${ILSCALING_SLURM_TESTS:-1} $(BIN)/pytest -q -m slurm

clean:
	rm -rf results logs benchmarks/out .snakemake
