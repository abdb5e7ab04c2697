# The README's two commands: `make demo` (the main job) and `make test` (every quality gate).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo docs test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependencies or the compiled part (the monitor's fused kernels) change.
$(STAMP): pyproject.toml constraints.txt setup.py src/initlab/monitor/_fused.c | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	# constraints.txt holds torch at the pinned CPU wheel while extras (transformers, lightning) resolve their dependencies
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,keras,jax,tensorboard,ray,mnist1d,transformers,lightning,verify]"
	# mup 1.0.0, the reference tests/test_mup.py compares initlab's µP with. Without its declared dependencies:
	# it asks for torchvision (which fails to import beside the torch wheel) and pandas/seaborn for plots only.
	$(BIN)/python -m pip install --quiet --no-deps mup==1.0.0
	touch $(STAMP)

# The main job: a curated sweep on the embedded digits data, eight measured claims, and the HTML report.
demo: $(STAMP)
	$(BIN)/initlab demo --out initlab-demo

# Every README picture, from one full demo run (docs/pictures.py stamps each with what made it).
docs: $(STAMP)
	$(BIN)/python docs/pictures.py

# Debian's Chromium, for the test that opens the report in a real headless browser.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium

lint: $(STAMP)
	$(BIN)/ruff check src tests bench docs setup.py
	$(BIN)/ruff format --check src tests bench docs setup.py

typecheck: $(STAMP)
	$(BIN)/mypy src

pytest: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -n 2 -q

test: lint typecheck pytest

bench: $(STAMP)
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf initlab-demo $(VENV) .mypy_cache .ruff_cache .hypothesis
