PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= demo_run
DEMO_SEED ?= 0
DEMO_N ?= 60

.PHONY: venv demo test test-slow lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/sihnet demo --out $(DEMO_OUT) --seed $(DEMO_SEED) --n $(DEMO_N)

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

CPU_CLASS = echo "CPU: $$(lscpu | sed -n 's/^Model name: *//p'), $$(nproc) cores, $$(lscpu | grep -q avx512_bf16 && echo 'AVX-512 with native bf16' || (lscpu | grep -q avx2 && echo 'AVX2, bf16 not native' || echo 'no AVX2'))"

test: lint
	@$(CPU_CLASS)
	@start=$$(date +%s); $(BIN)/pytest -q -m "not slow and not gpu" --durations=15; status=$$?; \
	  echo "pytest took $$(( $$(date +%s) - start )) s"; $(CPU_CLASS); exit $$status

test-slow: venv
	@$(CPU_CLASS)
	@start=$$(date +%s); $(BIN)/pytest -q -m "slow and not gpu"; status=$$?; \
	  echo "pytest -m slow took $$(( $$(date +%s) - start )) s"; exit $$status

bench: venv
	$(BIN)/python benchmarks/run_benchmarks.py --out benchmarks/results
	$(BIN)/python benchmarks/convert_benchmark.py --out benchmarks/results
	$(BIN)/python -W ignore::UserWarning benchmarks/occlusion_benchmark.py --out benchmarks/results

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache
