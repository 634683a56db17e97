# xr — the README's commands. `make demo` and `make test` work on a fresh machine:
# they create the virtualenv and install xr into it first.

# A failing command fails its rule even inside a pipe, and a rule that fails leaves no file target
# that looks finished (make deletes it): a rerun redoes it. GNU make 3.82 or later (.SHELLFLAGS).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO ?= build/demo
# torch and torchvision are pinned to the releases on the machine's disk (.ci/constraints.txt).
PIP_INSTALL := $(BIN)/pip install -qq --constraint .ci/constraints.txt

.PHONY: install test demo bench lint clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml .ci/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --editable '.[dicom,test]'
	touch $@

test: install
	$(BIN)/python -m pytest -q -n 2 --durations=15 tests

# The whole pipeline on synthetic data: a fresh checkout needs nothing else.
demo: install
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(BIN)/xr-synth $(DEMO)/chest -n 600 --size 128 --seed 1
	$(BIN)/xr-index $(DEMO)/chest --patient-regex 'person(\d+)_' --summary \
	  | $(BIN)/xr-split --val 0.15 --test 0.2 > $(DEMO)/chest.jsonl
	$(BIN)/xr-split --check $(DEMO)/chest.jsonl
	$(BIN)/xr-preprocess $(DEMO)/chest.jsonl -o $(DEMO)/chest.h5 --size 96 > $(DEMO)/chest-h5.jsonl
	$(BIN)/xr-train $(DEMO)/chest-h5.jsonl --model vgg5 --epochs 5 --augment --early-stop val_auc \
	  --run-dir $(DEMO)/run > $(DEMO)/best.txt
	$(BIN)/xr-predict -m $$(cat $(DEMO)/best.txt) $(DEMO)/chest-h5.jsonl > $(DEMO)/scored.jsonl
	$(BIN)/xr-eval $(DEMO)/scored.jsonl --threshold youden --bootstrap 200 --plots $(DEMO)/plots \
	  --run $(DEMO)/run --json $(DEMO)/run/eval.json
	$(BIN)/xr-synth $(DEMO)/CheXpert-v1.0-small --layout chexpert -n 600 --size 128 --seed 2
	$(BIN)/xr-index $(DEMO)/CheXpert-v1.0-small --uncertain ones --propagate --frontal-only \
	  | $(BIN)/xr-split --val 0.1 --test 0.1 --resplit --out-dir $(DEMO)/chexpert
	$(BIN)/xr-preprocess $(DEMO)/chexpert/train.jsonl -o $(DEMO)/chexpert/train.h5 --size 96 \
	  --channels enhanced > $(DEMO)/chexpert/train-h5.jsonl
	$(BIN)/xr-featmap -m $$(cat $(DEMO)/best.txt) $(DEMO)/scored.jsonl -n 4 --out-dir $(DEMO)/look
	@echo "demo: a trained model ($$(cat $(DEMO)/best.txt)), its report and plots, and $(DEMO)/look/index.html"

bench: install
	$(BIN)/python bench/bench_index.py
	$(BIN)/python bench/bench_split.py
	$(BIN)/python bench/bench_preprocess.py
	$(BIN)/python bench/bench_loader.py
	$(BIN)/python bench/bench_train.py
	$(BIN)/python bench/bench_predict.py
	$(BIN)/python bench/bench_gpu.py

lint: install
	$(PIP_INSTALL) ruff
	$(BIN)/ruff check --line-length 110 libxr tools tests bench examples

clean:
	rm -rf build $(VENV) *.egg-info
