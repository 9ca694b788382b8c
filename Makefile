# make setup: create or reuse .venv and build cxrfast into it (idempotent).
# make test:  the whole test suite, fuzzing included.   make demo: the main job on generated data.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# A machine without an NVIDIA GPU gets the CPU build of torch (on disk here), never the CUDA one,
# and the torchvision release made for it (timm needs torchvision's Python layer only; its
# CUDA-linked operators don't load beside CPU torch, see cxrfast/models/timm_import.py).
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
TORCH_GPU := "torch>=2.13,!=2.13.0+cpu"
TORCH_CPU := torch==2.13.0 torchvision==0.28.0
TORCH := $(if $(HAS_GPU),$(TORCH_GPU),$(TORCH_CPU))

.PHONY: setup build test demo bench docs fuzz gpu-check clean

setup: $(VENV)/.deps build

$(VENV)/.deps: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install $(TORCH)
	$(PIP) install "scikit-build-core>=0.10" "pybind11>=2.12" ninja cmake
	$(PIP) install --no-build-isolation -e ".[test,jpeg-gpl,dali,tensorboard,docs]"
	touch $@

# Incremental: CMake and ninja rebuild only what changed under build/.
build: $(VENV)/.deps
	$(PIP) install --no-build-isolation --no-deps -e . -q

# Fuzzing first, so that pytest's summary is the last line; libFuzzer's chatter goes to a log.
test: setup fuzz
	$(PY) -m pytest tests -q

fuzz: setup
	@mkdir -p build
	@$(PY) tests/fuzz/fuzz_dicom_parser.py -max_total_time=60 -rss_limit_mb=4096 > build/fuzz.log 2>&1 \
		|| { tail -n 60 build/fuzz.log; echo "fuzzing found a failure: see build/fuzz.log and build/fuzz-artifacts/"; exit 1; }
	@grep -E "^Done [0-9]+ runs" build/fuzz.log | sed 's/^/fuzz_dicom_parser: /'

bench: setup
	$(PY) -m pytest benchmarks -q --benchmark-enable --benchmark-columns=median,iqr,rounds

# The manual, from docs/ and the docstrings, into build/site: offline, every warning an error.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir build/site

# The main job on generated data: phantoms (DICOM) -> cache -> SparK pretraining -> linear probe.
demo: setup
	$(PY) -m cxrfast.cli demo build/demo

# On a machine with an NVIDIA GPU: build with CUDA, run the tests marked gpu and the GPU benchmarks
# (benchmarks/gpu_check.py), report in build/gpu-check.md; fails at once where there is no GPU.
gpu-check:
	@nvidia-smi -L >/dev/null 2>&1 || { echo "make gpu-check needs an NVIDIA GPU: nvidia-smi finds none here." \
		"It builds cxrfast with CUDA and runs the GPU tests and benchmarks; run it on a GPU machine." >&2; exit 1; }
	CXRFAST_CUDA=ON $(MAKE) --no-print-directory setup
	$(PY) benchmarks/gpu_check.py

clean:
	rm -rf build $(VENV)
