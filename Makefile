# Two commands set everything up and are safe to repeat:
#   make demo   every method's tiny config end to end, report in runs/demo/
#   make test   the test suite
# Both create .venv with the pinned dependencies (requirements.lock) on first use,
# and rebuild it only when the lock or pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml Makefile | cksum | cut -d' ' -f1)

.PHONY: demo test venv lock device-bench

venv: $(STAMP)

# CLIP's BPE vocabulary (bpe_simple_vocab_16e6.txt.gz) ships in open_clip_torch, of which only that file is
# used: --no-deps keeps its torchvision/timm requirements (and another torch build) out of the environment.
$(STAMP): requirements.lock pyproject.toml Makefile
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -r requirements.lock
	$(VENV)/bin/python -m pip install -q --no-deps open_clip_torch==3.3.0
	$(VENV)/bin/python -m pip install -q --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/jaxlab demo --workdir runs/demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile tests

# The device script, from a fresh checkout on a GPU (or DEVICE=tpu) machine: installs the accelerator extra
# into .venv, then runs every paper-size bench beside PyTorch and the bf16 check into runs/device/bench.md.
DEVICE ?= gpu
device-bench: $(STAMP)
	$(VENV)/bin/python -m pip install -q --no-build-isolation -e '.[$(DEVICE)]'
	$(VENV)/bin/jaxlab bench all --out runs/device

# Re-resolve the pins from pyproject.toml's ranges (needs network; commit the result).
lock:
	rm -rf /tmp/jaxlab-lock && $(PYTHON) -m venv /tmp/jaxlab-lock
	/tmp/jaxlab-lock/bin/pip install -q --upgrade pip
	/tmp/jaxlab-lock/bin/pip install -q -e '.[data,test]'
	/tmp/jaxlab-lock/bin/pip freeze --exclude-editable | sed 's/+cpu//' > requirements.lock
