# simrl developer tasks. Everything runs inside .venv (made by `make install`).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORLD ?= runs/worlds/default-0

.PHONY: install llama-wheel quickstart world test bench lint clean

# llama-cpp-python is compiled here with fixed ggml CPU flags instead of `-march=native`: x86-64-v3 (AVX2,
# FMA, F16C) where the CPU has it, else the x86-64 baseline; never AVX-512 or AMX (ggml's AMX matrix multiply
# crashes when built by GCC 12: llama.cpp PR #26954). The wheel is kept in a folder named by version and
# flags, so a wheel built with other flags (pip's own cache keys only the source) is never reused.
# The version must match pyproject.toml's `llamacpp` extra.
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CPU := $(shell grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo && grep -qw f16c /proc/cpuinfo && echo v3 || echo v1)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
	$(if $(filter v3,$(LLAMA_CPU)),-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON,-DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF)
LLAMA_WHEELS ?= $(HOME)/.cache/simrl/llama-cpp-python/$(LLAMA_CPP_VERSION)-$(shell echo '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12)

install: $(VENV)/.installed

# torch first, so that no later requirement picks another torch (where pip's configuration offers no CPU
# build of torch==2.13.0, install it from the CPU index before `make install`: README); then the
# llama-cpp-python wheel built with the flags above (replacing any other build of it, e.g. a native one).
$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(MAKE) llama-wheel PY=$(BIN)/python
	$(BIN)/pip install -q --no-deps --force-reinstall $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	$(BIN)/pip install -q --no-deps bfcl-eval==2026.3.23
	$(BIN)/pip install -q -e '.[dev,llamacpp,transformers,bfcl,verl,trl]'
	$(BIN)/python -c "import llama_cpp; print('llama.cpp:', llama_cpp.llama_print_system_info().decode())"
	touch $@

# Build the llama-cpp-python wheel into $(LLAMA_WHEELS) unless it is there (about 8 minutes on 2 cores).
llama-wheel:
	@if ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1; then \
		echo "llama-cpp-python: reusing $(LLAMA_WHEELS)"; \
	else \
		echo "llama-cpp-python $(LLAMA_CPP_VERSION): building with $(LLAMA_CMAKE_ARGS)"; \
		rm -rf $(LLAMA_WHEELS).part && \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python \
			-w $(LLAMA_WHEELS).part llama-cpp-python==$(LLAMA_CPP_VERSION) && \
		mkdir -p $(LLAMA_WHEELS) && mv $(LLAMA_WHEELS).part/*.whl $(LLAMA_WHEELS)/ && rm -rf $(LLAMA_WHEELS).part; \
	fi

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
	$(BIN)/python benchmarks/bench_wm_local.py
	$(BIN)/python benchmarks/bench_records.py
	$(BIN)/python benchmarks/bench_train.py

lint: install
	$(BIN)/ruff check simrl cli tests benchmarks

clean:
	rm -rf runs .pytest_cache
