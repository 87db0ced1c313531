# calibkit — `make reproduce` (recompute the study and check it), `make figures` (reports from the committed records)
# and `make test`; each sets itself up when needed, idempotently.
PYTHON    ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
# CPU machines get the CPU build of torch that lies on this project's machines' disk; GPU users override,
# e.g. `make setup TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"`.
TORCH_SPEC ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch,torch==2.13.0)
# Optional local copy of the study's corpora (README, "Local data directory"); tests use ../shared/data if present.
DATA_DIR  ?= $(abspath $(wildcard ../shared/data))
STAMP     := $(BIN)/.calibkit-installed

.PHONY: setup lock assets model sandbox-tool browser-tool test lab figures study reproduce demo bench bench-gpu clean-venv

# Every package but torch is pinned by requirements.lock (a constraints file: `make lock` refreshes it).
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[test]'
	touch $@

# Re-resolve the lock with uv (pinned) for CPython 3.11 on x86-64 Linux. torch and the packages of its GPU builds
# (nvidia-*, cuda-*, triton) are left out: the torch build is the user's choice (TORCH_SPEC).
UV_SPEC ?= uv==0.13.9
lock:
	$(PYTHON) -m pip install -q $(UV_SPEC)
	$(PYTHON) -m uv pip compile pyproject.toml --extra test --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --no-emit-package torch --no-annotate --no-header \
	  -o requirements.lock   # the pins already there are kept where they still fit (uv's preferences)
	{ echo "# calibkit's locked environment (constraints for pip): \`make lock\` rewrites this file; do not edit."; \
	  echo "# torch and its GPU-build packages are not pinned here: see TORCH_SPEC in the Makefile."; \
	  grep -vE '^(#|nvidia-|cuda-|triton)' requirements.lock; } > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock

setup: $(STAMP)

assets: setup
	$(BIN)/calibkit assets fetch

model: assets
	$(BIN)/python -c "from calibkit.models import embedded_checkpoint; print(embedded_checkpoint())"

# Generated code (HumanEval/MBPP in the paper suite) only runs inside bubblewrap (calibkit/eval/sandbox.py);
# installed from Debian's packages where missing (as root), else a clear message.
sandbox-tool:
	@command -v bwrap >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; } \
	  || { echo "code evaluation needs bubblewrap: apt-get install bubblewrap" >&2; exit 1; }

# tests/test_lab.py opens a notebook in headless Chromium; Debian's package, installed where missing (as root).
browser-tool:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || { echo "the JupyterLab browser check needs chromium: apt-get install chromium" >&2; exit 1; }

# pytest + nbval: every notebook executed with its default parameters (the `smoke` profile).
test: model sandbox-tool browser-tool
	CALIBKIT_TEST_DATA_DIR=$(DATA_DIR) $(BIN)/python -m pytest -q tests
	$(BIN)/python -m pytest -q --nbval-lax -p no:cacheprovider notebooks

# JupyterLab on notebooks/ (README, "Reading the notebooks in JupyterLab"): the notebooks' `python3` kernel is this
# project's .venv (its kernelspec rewritten to .venv/bin/python). Serves on localhost only. LAB_DIR=. shows the whole
# repository (reports/ too); LAB_ARGS passes options, e.g. LAB_ARGS="--port 8890 --no-browser".
LAB_DIR  ?= notebooks
LAB_ARGS ?=
lab: model
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (calibkit)" >/dev/null
	JUPYTER_PREFER_ENV_PATH=1 $(BIN)/jupyter lab --notebook-dir=$(LAB_DIR) --ServerApp.ip=localhost \
	  $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# Pruning speed/quality against llm-compressor (bench/prune_bench.py), in its own environment: llm-compressor pins
# transformers/torch ranges of its own. BENCH_ARGS passes options, e.g. BENCH_ARGS="--repeats 1".
BENCH_VENV ?= .venv-bench
LLMC_SPEC  ?= llmcompressor==0.14.0.1
BENCH_ARGS ?=
$(BENCH_VENV)/bin/.installed: pyproject.toml
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q $(TORCH_SPEC) $(LLMC_SPEC)
	$(BENCH_VENV)/bin/python -m pip install -q -e .
	touch $@

bench: model $(BENCH_VENV)/bin/.installed
	$(BENCH_VENV)/bin/python bench/prune_bench.py --json reports/bench/prune_bench.json $(BENCH_ARGS)

# GPU side by side (bench/prune_gpu.py) in the same environment as `make bench`: an 8B-shaped model with random bf16
# weights, calibkit vs llm-compressor vs the IST-DASLab SparseGPT class (IST_SPARSEGPT=path/to/sparsegpt.py, optional),
# GPU_LAYERS decoder layers side by side, then all 32 with calibkit alone. On a CPU: GPU_ARGS="--scale 32 --device cpu".
GPU_LAYERS    ?= 4
IST_SPARSEGPT ?=
GPU_ARGS      ?=
bench-gpu: $(BENCH_VENV)/bin/.installed
	$(BENCH_VENV)/bin/python bench/prune_gpu.py --layers $(GPU_LAYERS) $(if $(IST_SPARSEGPT),--ist-sparsegpt $(IST_SPARSEGPT)) \
	  --profile --json reports/bench/prune_gpu.json $(GPU_ARGS)
	$(BENCH_VENV)/bin/python bench/prune_gpu.py --layers 32 --tools calibkit --precisions auto --json reports/bench/prune_gpu_32.json $(GPU_ARGS)

# The study. Its run records live in results/<PROFILE>/ (results/embedded/ is committed); reports/ (PROFILE=embedded)
# or reports/<PROFILE>/ are generated from them by notebooks 01-07 (papermill).
#   make figures    reports from the records only (compute=False: nothing is pruned, evaluated or profiled)
#   make study      compute the missing runs of results/<PROFILE>/ (resumable), then make figures
#   make reproduce  recompute every run into a fresh store ($(FRESH), resumable), then compare it with the committed
#                   records of the same run keys: "reproduced K/N runs: max |Δ retention| ..."
#   ONLY=g1,g2      restricts study/reproduce (its comparison too) to some experiment groups (e.g. ONLY=nm: two
#                   runs, ~4 min; ONLY=main,magnitude,leave_one_out,ratios,selfgen,sparsity,nm: the capability
#                   study's 126 runs, ~3.7 h)
PROFILE   ?= embedded
NOTEBOOKS ?= 01_profiles 02_prune 03_eval 04_correlations 05_igsp 06_samples 07_oasis
GROUPS    ?=
GROUPS_ARG = $(if $(GROUPS),-y "groups: [$(GROUPS)]")
ONLY      ?=
ONLY_ARG   = $(if $(ONLY),--only $(ONLY))
REPORTS   := $(if $(filter embedded,$(PROFILE)),reports,reports/$(PROFILE))
STORE     ?= results/$(PROFILE)
FRESH     ?= results/$(PROFILE)-reproduce
COMPUTE   ?= False
figures: model
	rm -rf $(REPORTS)/index.json $(REPORTS)/tables $(REPORTS)/figures $(REPORTS)/notebooks  # all generated
	mkdir -p $(REPORTS)/notebooks
	@for nb in $(NOTEBOOKS); do \
	  echo "== $$nb ($(PROFILE), compute=$(COMPUTE))"; \
	  $(BIN)/papermill -p profile $(PROFILE) -p compute $(COMPUTE) $(GROUPS_ARG) --cwd notebooks \
	    notebooks/$$nb.ipynb $(REPORTS)/notebooks/$$nb.ipynb --no-progress-bar || exit 1; \
	done
	@echo "reports index: $(REPORTS)/README.md"

study: model
	$(BIN)/calibkit sweep $(PROFILE) --store $(STORE) $(ONLY_ARG)
	$(MAKE) figures PROFILE=$(PROFILE)

reproduce: model
	$(BIN)/calibkit sweep $(PROFILE) --store $(FRESH) $(ONLY_ARG)
	@if [ -d $(STORE)/runs ]; then $(BIN)/calibkit compare $(STORE) $(FRESH) $(if $(ONLY),--profile $(PROFILE) $(ONLY_ARG)); \
	 else echo "no committed records in $(STORE): nothing to compare; the recomputed study is in $(FRESH)"; fi

demo: model
	mkdir -p reports/demo
	$(BIN)/calibkit sources > reports/demo/sources.txt
	$(BIN)/calibkit build --mix balanced --n 128 --seqlen 256 --seed 0 --out reports/demo/mix_balanced.jsonl --overwrite
	$(BIN)/calibkit inspect reports/demo/mix_balanced.jsonl --show 2 > reports/demo/mix_balanced.txt
	@cat reports/demo/mix_balanced.txt | head -20

clean-venv:
	rm -rf $(VENV)
