# Two entry points that work on a fresh machine: `make demo` (the main job) and `make test`.
# torch is installed first, pinned to the CPU build, so nothing pulls a multi-GB CUDA wheel.
VENV ?= .venv
PY := $(VENV)/bin/python
STW := $(VENV)/bin/stw

.PHONY: install demo lint test test-fast ui clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml examples/stw-example-plugin/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	# The example plugin, so the suite tests the entry-point path a user's package takes.
	$(PY) -m pip install --quiet -e examples/stw-example-plugin --no-deps
	touch $@

demo: install
	# A hard 4-minute budget: running trials are cut and scored at the deadline, so the demo stays under 5 minutes.
	$(STW) sweep --trials 6 --timeout 240

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Two test processes (pytest-xdist), each test file in one of them: tests run torch on one thread, so one process
# left a core idle (16.5 min -> 10 min for the suite on 2 cores).
TEST_PROCS ?= 2

test: install
	$(PY) -m pytest -q -n $(TEST_PROCS) --dist loadfile

test-fast: install
	$(PY) -m pytest -q -n $(TEST_PROCS) --dist loadfile -m "not slow"

ui: install
	$(STW) ui

clean:
	rm -rf $(VENV) mlruns/mlflow.db mlruns/artifacts mlruns/optuna.db
