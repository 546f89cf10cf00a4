# Every target sets itself up in .venv; an install is reused while pyproject.toml is unchanged.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: test demo install bench clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# -q comes from pyproject.toml's addopts; a second -q would hide the "N passed" summary.
test: $(STAMP)
	$(VENV)/bin/python -m pytest -x tests

demo: $(STAMP)
	$(VENV)/bin/clipadapt demo --out runs/demo

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
