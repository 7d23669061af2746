# khnet: `make run` and `make test` do all the set-up on a fresh machine (a .venv in this folder).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.khnet-installed

.PHONY: install run test lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the project's metadata changes. xautodl is the benchmark authors' reference code; the
# tests load khnet's networks into it, so it is installed without its (unneeded, pinned) dependencies.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps "xautodl==1.0.0"
	touch $(STAMP)

install: $(STAMP)

# The main job on the embedded default, offline: train a proxy supernet on the shipped CIFAR-10 sample for
# one epoch, evaluate 20 of its subnets against the benchmark, then search the zoo's default supernet
# (cifar10-jpeg-c8, installed with khnet) for the best subnets under a budget that binds: 4 MFLOPs for the
# deployed network (its subnets cost 2.1-12.7), and 50 MFLOPs for the benchmark-size network (7.8-220.1).
# Both answers come from the entry's shipped whole-space table in seconds, with the benchmark's accuracy beside.
RUN_DIR := runs/make-run
run: install
	rm -rf $(RUN_DIR)
	KHNET_OFFLINE=1 HF_HUB_OFFLINE=1 $(BIN)/khnet train --dataset sample --epochs 1 --proxy --seed 0 -o $(RUN_DIR)
	KHNET_OFFLINE=1 HF_HUB_OFFLINE=1 $(BIN)/khnet eval $(RUN_DIR) --sample 20 --split valid --plots $(RUN_DIR)/plots
	KHNET_OFFLINE=1 HF_HUB_OFFLINE=1 KHNET_RESULTS=$(RUN_DIR)/zoo-results $(BIN)/khnet search --max-flops 4M --top 5
	KHNET_OFFLINE=1 HF_HUB_OFFLINE=1 KHNET_RESULTS=$(RUN_DIR)/zoo-results $(BIN)/khnet search --budget-net benchmark \
		--max-flops 50M --top 5

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	KHNET_OFFLINE=1 HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
