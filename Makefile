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

test: setup data browser
	$(BIN)/python -m pytest -q

bench: setup data
	$(BIN)/python -m benchmarks

# Full-scale analyses (about 2 h on 2 CPU cores, models cached in runs/analyses/models),
# then the report. data_efficiency first: the others reuse its models.
ANALYSES := data_efficiency input_dependence mixing_patterns equivalences \
	robustness_comparison interpretability_comparison cost_accuracy
analyses: setup data
	for a in $(ANALYSES); do $(BIN)/python -m analyses.$$a || exit 1; done
	$(BIN)/python -m analyses.report

# Redraw every figure and the claims report from the committed results (no training).
report: setup
	$(BIN)/python -m analyses.report

clean:
	rm -rf $(VENV) runs .pytest_cache
