# `make demo` and `make test` each install into .venv first (once; redone when the
# requirements change).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check
STAMP := $(VENV)/.kadapter-installed

.PHONY: install demo test clean

install: $(STAMP)

$(STAMP): setup.py requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	# torch first, from the exact CPU release, so that nothing below swaps it for a CUDA build
	$(PIP) install torch==2.13.0 numpy cython
	$(PIP) install -r requirements.txt
	$(PY) -c "import fairseq" 2>/dev/null || $(PIP) install --no-deps --no-build-isolation fairseq-fixed==0.12.3.1
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $@

demo: install
	$(PY) examples/demo.py

test: install
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
