# The two commands a newcomer types: `make demo` and `make test`. Both set up first.
VENV := .venv
PY := $(VENV)/bin/python
OUT ?= runs/quickstart-demo
# Test workers (pytest-xdist): one per core and one more, which works while the others wait
# (on timeouts, sleeping sandboxed programs, processes at a barrier: with one per core the
# cores were idle ~20% of the suite); a test file stays on one worker (its module fixtures,
# e.g. a smoke study, are built once); the slowest files are handed out first
# (tests/conftest.py's HEAVIEST_FIRST). TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN) + 1 )))
STAMP := $(VENV)/.setup-stamp

.PHONY: setup demo study smoke test lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

demo: setup
	$(PY) -m lab run recipes/quickstart.yaml --profile demo --out $(OUT)

study: setup
	$(PY) -m lab run recipes/quickstart.yaml --out runs/quickstart

smoke: setup
	$(PY) -m lab run recipes/quickstart.yaml --out runs/smoke --smoke

test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf runs $(VENV)
