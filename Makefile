# simrl developer tasks. Everything runs inside .venv (made by `make install`).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORLD ?= runs/worlds/default-0

.PHONY: install quickstart world test bench lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q --no-deps bfcl-eval==2026.3.23
	$(BIN)/pip install -q -e '.[dev,llamacpp,transformers,bfcl,verl,trl]'
	touch $@

# The main job on embedded defaults: the three-arm ablation of recipes/quickstart.yaml (real vs
# uncontrolled vs controlled Sim-RL, 7 seeds) on CPU, written to runs/quickstart/report.md.
quickstart: install
	$(BIN)/simrl ablate recipes/quickstart.yaml --out runs/quickstart

# Generate the default fictional world and inspect it.
world: install
	$(BIN)/simrl world generate worlds/default.yaml --seed 0 --out $(WORLD) --force
	$(BIN)/simrl world inspect $(WORLD)

test: install
	$(BIN)/pytest

bench: install
	$(BIN)/python benchmarks/bench_world.py --sizes 1000 10000 100000
	$(BIN)/python benchmarks/bench_search.py --world runs/bench/world-100000
	$(BIN)/python benchmarks/bench_wm.py
	$(BIN)/python benchmarks/bench_records.py

lint: install
	$(BIN)/ruff check simrl cli tests benchmarks

clean:
	rm -rf runs .pytest_cache
