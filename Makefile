# Two entry points: `make demo` (the main job on the embedded MNIST sample) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# torch/torchvision are pinned here, not in pyproject, so that pip takes them from the machine's local wheel cache.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint bench clean-venv

$(VENV)/.torch-installed:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet $(TORCH_PINS)
	touch $@

$(VENV)/.installed: $(VENV)/.torch-installed pyproject.toml Makefile
	$(PIP) install --quiet -e ".[test,export,bench]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/frugalvision train --overwrite

test: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests tools
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(VENV)/bin/frugalvision bench adder

clean-venv:
	rm -rf $(VENV)
