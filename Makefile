# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0   # the CPU build; other versions pull GBs of CUDA wheels

.PHONY: install dev demo test lint bench ui clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch goes in first so the project's `torch>=...` range is already met by the CPU build.
$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/hpo run examples/sweeps/quickstart.yaml
	@echo
	@echo "Results are in ./.hpo/ (MLflow SQLite store, artifacts, Ray storage). Look at them with:"
	@echo "  $(BIN)/hpo best quickstart                 # top trials"
	@echo "  $(BIN)/hpo diagnose quickstart             # why trials over- or underfit"
	@echo "  $(BIN)/hpo dashboard                       # Streamlit dashboard on http://127.0.0.1:8501"
	@echo "  $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/.hpo/mlflow.db --host 127.0.0.1 --port 5000"

test: dev
	$(BIN)/python -m pytest -q

lint: dev
	$(BIN)/ruff check hpo tracker trainers dashboard tests bench
	$(BIN)/mypy hpo tracker trainers dashboard --ignore-missing-imports

bench: install
	$(BIN)/python bench/overhead.py

clean:
	rm -rf .hpo .pytest_cache
