# lrnn front door. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install.stamp
# torch is pinned so that every machine gets the same release: pip takes the local CPU wheel where one is
# offered (CI), and PyPI's default Linux build (CUDA) elsewhere. Override e.g. TORCH="torch==2.13.0 --index-url ...".
TORCH ?= torch==2.13.0
NAME ?=
RUN ?=
ARGS ?=
GPUS ?=
THREADS ?=
BENCH_THREADS ?= 1
WANDB ?= auto
PROFILE ?= converged
OUT ?= paper
JOBS ?=
RESUME ?=
# make exits 2 whenever a recipe fails: say first which status lrnn itself exited with (README: exit statuses)
STATUS = || { rc=$$?; echo "make: lrnn exited with status $$rc (0 done, 1 failed, 2 bad argument, 3 diverged, 130/143 interrupted); make's own exit status is 2" >&2; exit $$rc; }
PROMPT ?=
FILE ?=
NODES ?=

.PHONY: help install test lint format experiment experiments evaluate generate score bench bench-gpu recall-grid paper paper-render paper-plan paper-throughput report clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv with torch, lightning, datasets, wandb and the dev tools

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev,paper]'
	@touch $@

test: $(STAMP)  ## run the test suite (reads corpora via LRNN_DATA_MIRROR where set)
	$(PY) -m pytest -q

lint: $(STAMP)  ## ruff check + format check
	$(VENV)/bin/ruff check lrnn tests benchmarks scripts
	$(VENV)/bin/ruff format --check lrnn tests benchmarks scripts

format: $(STAMP)  ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix lrnn tests benchmarks scripts
	$(VENV)/bin/ruff format lrnn tests benchmarks scripts

experiment: $(STAMP)  ## run one experiment: NAME=tied_ptb [GPUS=N] [NODES=M] [THREADS=N] [WANDB=off|offline|online] [ARGS="--trainer.max_epochs 1"] [RESUME=runs/tied_ptb/version_0]
	@$(PY) -m lrnn.launch "$(NAME)" --gpus "$(GPUS)" --nodes "$(NODES)" --threads "$(THREADS)" --wandb "$(WANDB)" --resume "$(RESUME)" -- $(ARGS) $(STATUS)

experiments: $(STAMP)  ## list the available experiment names
	@$(PY) -m lrnn.launch --list

evaluate: $(STAMP)  ## length generalization, per-position loss, state reset of a run: RUN=runs/<name>/version_<k> [ARGS="--out DIR"]
	@$(PY) -m lrnn evaluate "$(RUN)" $(ARGS) $(STATUS)

generate: $(STAMP)  ## sample text from a run: RUN=runs/<name>/version_<k> [PROMPT="the market"] [ARGS="--max_tokens 50 --seed 0"]
	$(PY) -m lrnn generate "$(RUN)" --prompt "$(PROMPT)" $(ARGS)

score: $(STAMP)  ## per-token loss and perplexity of a text file: RUN=runs/<name>/version_<k> FILE=text.txt [ARGS=--json]
	$(PY) -m lrnn score "$(RUN)" "$(FILE)" $(ARGS)

bench: $(STAMP)  ## benchmarks (~15 min, BENCH_THREADS=1): training vs plain loops, cores vs naive/nn.LSTM, TBPTT memory
	$(PY) benchmarks/bench_lightning.py --threads $(BENCH_THREADS) --rounds 5
	$(PY) benchmarks/bench_page_faults.py --threads $(BENCH_THREADS)
	$(PY) benchmarks/bench_cores.py --threads $(BENCH_THREADS) --shapes small,small-1layer,medium,medium-1layer --repeats 7
	@echo "# the same target pairs with the MALLOC_* variables set (glibc keeps freed memory mapped):"
	MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647 $(PY) benchmarks/bench_cores.py \
		--threads $(BENCH_THREADS) --cores nn.LSTM,naive,UntiedLSTM,share5 --shapes small,medium --repeats 7
	$(PY) benchmarks/bench_cpu_paths.py --threads $(BENCH_THREADS)
	$(PY) benchmarks/bench_tbptt_memory.py --threads $(BENCH_THREADS)

bench-gpu: $(STAMP)  ## the GPU checks in one go (ROUNDS=1: ~4 min on an H100, ROUNDS=3 repeats the training runs; needs CUDA torch, a GPU, PTB): benchmarks/gpu_check.sh
	PY=$(PY) ROUNDS=$(or $(ROUNDS),3) bash benchmarks/gpu_check.sh

recall-grid: $(STAMP)  ## delayed-recall accuracy, lag D x truncation k, tied LSTM (README table; ~10 min) [ARGS=...]
	$(PY) scripts/recall_grid.py $(ARGS)

paper: $(STAMP)  ## the claims: plan, run the grid (cached, resumable) + README, figures, CSVs in OUT [PROFILE=converged|smoke|full] [JOBS=N lanes]
	$(PY) -m lrnn.paper run --profile "$(PROFILE)" --out "$(OUT)" --wandb "$(WANDB)" $(if $(JOBS),--jobs $(JOBS) --threads 1) $(ARGS)

paper-render: $(STAMP)  ## paper/ from the finished runs only (no training: minutes) [PROFILE] [OUT]
	$(PY) -m lrnn.paper render --profile "$(PROFILE)" --out "$(OUT)" $(ARGS)

paper-plan: $(STAMP)  ## the paper's runs: done / left / waiting for tuning, estimated core-hours [PROFILE]
	$(PY) -m lrnn.paper list --profile "$(PROFILE)" $(ARGS)

paper-throughput: $(STAMP)  ## C10's tokens/s of tied and untied, one job at a time (stop everything else first) [PROFILE]
	$(PY) -m lrnn.paper throughput --profile "$(PROFILE)" $(ARGS)

report: $(STAMP)  ## W&B Report of the paper runs (online: saved, URL printed; offline: how to publish) [PROFILE] [OUT]
	$(PY) -m lrnn.paper report --profile "$(PROFILE)" --out "$(OUT)"

clean:  ## remove caches and build files (keeps runs/ and .venv)
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
