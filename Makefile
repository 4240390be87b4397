# Two commands do all set-up on a fresh machine:
#   make run   - create .venv, install, get Fashion-MNIST, run the main job on the shipped zoo
#   make test  - the same set-up, then the test suite (what CI runs)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA := /usr/share/datasets/fashion-mnist

.PHONY: run zoo test setup data browser bench analyses report clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

data:
	@if [ -d "$(DATA)" ] || [ -n "$$PROBE_DATA" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "Fashion-MNIST not found: run 'sudo apt-get install dataset-fashion-mnist', or set PROBE_DATA" \
		     "to a folder with the four IDX files, or pass --download to the CLIs" >&2; \
	fi

browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "chromium not found: the app's browser test will be skipped ('sudo apt-get install chromium')" >&2; \
	fi

run: setup data
	$(BIN)/python -m probe.robustness --model mixer

zoo: setup data
	$(BIN)/python -m probe.zoo

# one pytest-xdist worker per core (at most 4), a test file per worker at a time (module-scoped
# quick runs stay in one process); tests/conftest.py divides the torch threads among the workers
test: setup data browser
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile

bench: setup data
	$(BIN)/python -m benchmarks

# Full-scale analyses on the committed converged models (make cells-full / cells-data-efficiency
# first: an analysis never trains them), in pieces that each fit well under 90 minutes on
# 2 CPU cores and can run in the background (e.g. nohup make analyses-robustness > runs/a.log &);
# `make analyses` runs every piece, then the report.
.PHONY: analyses-data analyses-mixing analyses-robustness analyses-interpretability
analyses-data: setup data
	$(BIN)/python -m analyses.data_efficiency
	$(BIN)/python -m analyses.cost_accuracy
	$(BIN)/python -m analyses.edge_cost
	$(BIN)/python -m analyses.precision_check
	$(BIN)/python -m analyses.fewer_layers
	$(BIN)/python -m analyses.same_model
	$(BIN)/python -m analyses.pure_mlp
	$(BIN)/python -m analyses.transfer
	$(BIN)/python -m analyses.resolution_transfer

analyses-mixing: setup data
	$(BIN)/python -m analyses.mixing_patterns
	$(BIN)/python -m analyses.input_dependence
	$(BIN)/python -m analyses.synthesizer_ladder
	$(BIN)/python -m analyses.equivalences
	$(BIN)/python -m analyses.external_attention
	$(BIN)/python -m analyses.long_range

analyses-robustness: setup data
	$(BIN)/python -m analyses.robustness_comparison
	$(BIN)/python -m analyses.calibration
	$(BIN)/python -m analyses.equivariance

analyses-interpretability: setup data
	$(BIN)/python -m analyses.interpretability_comparison

analyses: analyses-data analyses-mixing analyses-robustness analyses-interpretability
	$(BIN)/python -m analyses.report

# Training cells (analyses/cells, one recipe for every family: analyses/recipe.json), in three
# pieces that each resume where they stopped: the learning-rate sweep first (its choice,
# analyses/models/lr_sweep.json, keys the other two), then full-data models (committed under
# analyses/models/) and the data-efficiency sizes. They run in the foreground; to run one in the
# background and log it, e.g.:
#   mkdir -p runs && nohup make cells-full > runs/cells_full.log 2>&1 &
# `python -m analyses.cells status --plan full` shows where a plan stands; stop one with
# `kill <pid>` (or Ctrl-C) and rerun the same target to continue.
CELL_WORKERS ?= 2
CELL_THREADS ?= 1
.PHONY: cells-sweep cells-full cells-data-efficiency cells-precision cells-synthetic cells-finegrid
cells-sweep: setup data
	$(BIN)/python -m analyses.cells run --plan sweep --workers $(CELL_WORKERS) --threads $(CELL_THREADS)

cells-full: setup data
	$(BIN)/python -m analyses.cells run --plan full --workers $(CELL_WORKERS) --threads $(CELL_THREADS)

# The Synthesizer ladder's rungs (b)-(f) (probe/models/synth_ladder.py; rung (a) is the Mixer of
# cells-full), full data, 3 seeds, at Mixer's swept learning rate (analyses.synthesizer_ladder)
LADDER_RUNGS := token_linear token_softmax synth_random synth_dense dot_attention
.PHONY: cells-ladder
cells-ladder: setup data
	$(BIN)/python -m analyses.cells run --plan full --family $(LADDER_RUNGS) --workers $(CELL_WORKERS) --threads $(CELL_THREADS)

cells-data-efficiency: setup data
	$(BIN)/python -m analyses.cells run --plan data-efficiency --workers $(CELL_WORKERS) --threads $(CELL_THREADS)

# the CNN at 10k images trained in bf16 (the recipe) and in fp32, 3 seeds (analyses.precision_check)
cells-precision: setup data
	$(BIN)/python -m analyses.cells run --plan precision-check --workers $(CELL_WORKERS) --threads $(CELL_THREADS)

# every family on the synthetic dataset (class evidence in a known square), 10k images, 3 seeds,
# at the Fashion-MNIST sweep's learning rates: the localisation of analyses.interpretability_comparison
cells-synthetic: setup data
	$(BIN)/python -m analyses.cells run --plan synthetic --workers $(CELL_WORKERS) --threads $(CELL_THREADS)

# Mixer, ResMLP, gMLP, ViT and FNet with patch 2 (14x14 tokens; analyses.common.FINEGRID) at 10k
# images, 3 seeds, at their family's swept learning rate: locality and reach in analyses.mixing_patterns
cells-finegrid: setup data
	$(BIN)/python -m analyses.cells run --plan finegrid --workers $(CELL_WORKERS) --threads $(CELL_THREADS)

# The families of issue 17 outside the protocol six: their own learning-rate sweep first (ffn, mlp,
# extattn: analyses.same_model, pure_mlp, external_attention), then the full-data cells of ffn and
# extattn, and synth (Synthesizer-Random) at Mixer's swept rate
EXTRA_SWEEP := ffn mlp extattn
EXTRA_FULL := ffn extattn synth
.PHONY: cells-extra-sweep cells-extra-full
cells-extra-sweep: setup data
	$(BIN)/python -m analyses.cells run --plan sweep --family $(EXTRA_SWEEP) --workers $(CELL_WORKERS) --threads $(CELL_THREADS)
cells-extra-full: setup data
	$(BIN)/python -m analyses.cells run --plan full --family $(EXTRA_FULL) --workers $(CELL_WORKERS) --threads $(CELL_THREADS)

# Any other plan of analyses/recipe.json (a group plan: an entry of "plans" with its own
# "families", e.g. finegrid-7x7): make cells-<plan>, or make cells PLAN=<plan>
cells-%: setup data
	$(BIN)/python -m analyses.cells run --plan $* --workers $(CELL_WORKERS) --threads $(CELL_THREADS)

.PHONY: cells
cells: setup data
	@test -n "$(PLAN)" || { echo "usage: make cells PLAN=<plan> (python -m analyses.cells status --help lists the plans)" >&2; exit 2; }
	$(BIN)/python -m analyses.cells run --plan $(PLAN) --workers $(CELL_WORKERS) --threads $(CELL_THREADS)

# Every training cell the analyses need, in priority order, in the background (resumes whatever
# is unfinished; safe to start again after an interruption): log in runs/cells_all.log.
.PHONY: cells-background
cells-background: setup data
	mkdir -p runs
	nohup sh -c 'OMP_WAIT_POLICY=PASSIVE $(MAKE) cells-sweep cells-full cells-ladder cells-precision cells-data-efficiency cells-finegrid-7x7 cells-finegrid cells-synthetic cells-extra-sweep cells-extra-full cells-fewer-layers cells-same-model cells-pure-mlp cells-long-range cells-pretrain-0to4 cells-finetune-5to9 cells-scratch-5to9 cells-resolution-36' \
		> runs/cells_all.log 2>&1 &
	@echo "training in the background: tail -f runs/cells_all.log; python -m analyses.cells status --plan full"

# Redraw every figure and the claims report from the committed results (no training).
report: setup
	$(BIN)/python -m analyses.report

clean:
	rm -rf $(VENV) runs .pytest_cache
