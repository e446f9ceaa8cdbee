# Biopsia: `make run` starts the app on the demo case, `make test` runs every test.
# Both set up everything first on a fresh Debian machine: missing Debian libraries, .venv, pinned packages.

PYTHON  ?= $(shell command -v python3.11 || command -v python3)
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# The window on a real display: every library Qt's xcb platform plugin links (ldd of PyQt5's
# plugins/platforms/libqxcb.so and libQt5XcbQpa.so.5 on a fresh Debian 12), or the window does not start.
XCB_DEBS := libx11-6 libx11-xcb1 libxcb1 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render0 \
            libxcb-render-util0 libxcb-shape0 libxcb-shm0 libxcb-sync1 libxcb-util1 libxcb-xfixes0 libxcb-xinerama0 \
            libxcb-xkb1 libxkbcommon0 libxkbcommon-x11-0 libdbus-1-3
# Qt offscreen/X11 needs glib, GL, fontconfig, Xext and a font; MXNet needs OpenMP and quadmath.
DEBS    := libglib2.0-0 libgl1 libfontconfig1 libxext6 fonts-dejavu-core libgomp1 libquadmath0 $(XCB_DEBS)
# make test also starts the real window on an X server of its own (tests/gui/test_xvfb_window.py).
TEST_DEBS := xvfb xauth
NPROC   := $(shell nproc 2>/dev/null || echo 2)
export OMP_NUM_THREADS ?= $(NPROC)
FUZZ_TESTS := $(sort $(wildcard tests/test_fuzz_*.py tests/*/test_fuzz_*.py tests/*/*/test_fuzz_*.py))

FASHION := /usr/share/datasets/fashion-mnist

DEMO_WORK := .demo-model-work
DEMO_SEEDS := 23 27 41 44

# make fuzz: every seeded fuzzer (tests/**/test_fuzz_*.py) for about FUZZ_MINUTES in all, from seed FUZZ_SEED.
FUZZ_MINUTES ?= 10
FUZZ_SEED ?= 0

.PHONY: run test fuzz setup gpu debs bench fashion-mnist demo-model clean help
# GPU=1 (make run GPU=1, make test GPU=1) sets up the GPU build of MXNet first (make gpu).
GPU ?=
GPU_STAMP := $(VENV)/.installed-gpu
SETUP := $(if $(GPU),gpu,setup)

help:
	@echo "make run    set up, then open Biopsia on the demo case (offscreen screenshot without a display)"
	@echo "make test   set up, then run the whole test suite offscreen (and one test on an Xvfb display)"
	@echo "make fuzz   set up, then run every seeded fuzzer for about $(FUZZ_MINUTES) minutes in all"
	@echo "            (FUZZ_MINUTES=30 for longer, FUZZ_SEED=N to start from other cases)"
	@echo "make bench  run the benchmarks in bench/ (prints JSON)"
	@echo "make fashion-mnist  check MXNet training on Debian's Fashion-MNIST (installs dataset-fashion-mnist)"
	@echo "make demo-model  retrain resources/demo-model on synthetic slides (a demo, not for diagnosis)"
	@echo "make gpu   set up, then swap MXNet for its CUDA 11 build and the CUDA libraries (requirements-gpu.txt);"
	@echo "           make run GPU=1 / make test GPU=1 use it; biopsia gpu-check says what it finds"

run: $(SETUP)
	$(VPY) main.py demo

test: $(SETUP)
	@$(MAKE) --no-print-directory debs DEBS="$(TEST_DEBS)"
	QT_QPA_PLATFORM=offscreen $(VPY) -m pytest

# The budget is shared out among the fuzz tests pytest finds (each runs seeds until its share is spent),
# keeping a tenth for starting up and the slowest last case.
fuzz: setup
	@n=$$(QT_QPA_PLATFORM=offscreen $(VPY) -m pytest --collect-only -q -o addopts= $(FUZZ_TESTS) 2>/dev/null | grep -c '::'); \
	[ "$$n" -gt 0 ] || { echo "error: no fuzz tests found ($(FUZZ_TESTS))"; exit 1; }; \
	share=$$(( $(FUZZ_MINUTES) * 60 * 9 / 10 / n )); \
	echo "make fuzz: $$n fuzz tests, $$share s each, from seed $(FUZZ_SEED)"; \
	BIOPSIA_FUZZ_SECONDS=$$share BIOPSIA_FUZZ_SEED=$(FUZZ_SEED) QT_QPA_PLATFORM=offscreen \
	  $(VPY) -m pytest -p no:cacheprovider $(FUZZ_TESTS)

bench: setup
	QT_QPA_PLATFORM=offscreen $(VPY) bench/viewer.py
	QT_QPA_PLATFORM=offscreen $(VPY) bench/heatmap_paint.py
	$(VPY) bench/synth.py
	$(VPY) bench/tissue.py
	$(VPY) bench/dataset.py
	$(VPY) bench/train_pipeline.py
	$(VPY) bench/autosave.py
	$(VPY) bench/autosave_kill.py
	$(VPY) bench/annotations.py
	$(VPY) bench/slide_hostile.py

# The study checked MXNet on MNIST and CIFAR-10 first; this is the same check on Fashion-MNIST.
fashion-mnist: setup
	@$(MAKE) --no-print-directory debs DEBS=dataset-fashion-mnist
	$(VPY) main.py validate-framework fashion-mnist $(FASHION) --epochs 8 --device cpu

setup: debs $(STAMP)

# mxnet and mxnet-cu117 both install into mxnet/: never both. The CUDA libraries come as nvidia-*-cu11 wheels,
# which Biopsia loads before MXNet (core.inference.gpu_check.preload_cuda_libraries, at start-up).
gpu: setup $(GPU_STAMP)
	$(VPY) main.py gpu-check

# mxnet-cu117 cannot even be imported without the NVIDIA driver's libcuda.so.1: where there is none, MXNet stays
# (or goes back to) the CPU build and only the CUDA libraries and onnxruntime-gpu are installed.
$(GPU_STAMP): requirements-gpu.txt $(STAMP)
	$(VPY) -m pip uninstall --quiet -y onnxruntime onnxruntime-gpu
	@if $(VPY) -c "import ctypes; ctypes.CDLL('libcuda.so.1')" 2>/dev/null; then \
	  $(VPY) -m pip uninstall --quiet -y mxnet mxnet-cu117 && \
	  $(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-gpu.txt; \
	else \
	  echo "make gpu: no NVIDIA driver here (libcuda.so.1 does not load): MXNet stays the CPU build;"; \
	  echo "          installing the CUDA libraries and onnxruntime-gpu only"; \
	  $(VPY) -m pip uninstall --quiet -y mxnet-cu117 2>/dev/null; \
	  grep -v '^mxnet-cu117' requirements-gpu.txt > $(VENV)/requirements-gpu-no-driver.txt && \
	  $(VPY) -m pip install --quiet --disable-pip-version-check $$(grep '^mxnet==' requirements.txt) \
	    -r $(VENV)/requirements-gpu-no-driver.txt; \
	fi
	@touch $(GPU_STAMP)

# Install only the Debian packages that are missing (as root, or through sudo).
debs:
	@command -v dpkg-query >/dev/null || exit 0; missing=""; \
	for p in $(DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	$(PYTHON) -c "import ensurepip" 2>/dev/null || missing="$$missing python3-venv"; \
	[ -z "$$missing" ] && exit 0; \
	echo "Installing missing Debian packages:$$missing"; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO=sudo; else \
	  echo "error: missing Debian packages:$$missing (install them as root)"; exit 1; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

# The bundled demo model: Biopsia's own trainer on synthetic biopsies (seeds other than the demo case's
# and the tests'), 128 px tiles at 1 µm/px, with its model.onnx (checked against MXNet). Deterministic on the
# same machine; about 10 minutes on 2 cores.
demo-model: setup
	rm -rf $(DEMO_WORK) && mkdir -p $(DEMO_WORK)
	for seed in $(DEMO_SEEDS); do \
	  $(VPY) main.py synth $(DEMO_WORK)/synth-$$seed.tiff --seed $$seed --width 12288 --height 9216 || exit 1; \
	done
	$(VPY) main.py dataset $(DEMO_WORK)/synth-*.tiff --out $(DEMO_WORK)/dataset --split random --ratio 0.8
	$(VPY) main.py train $(DEMO_WORK)/dataset --out $(DEMO_WORK)/model --epochs 14 --batch 32 --lr 2e-3 \
	  --device cpu --seed 0 --patience 14
	rm -rf resources/demo-model && cp -r $(DEMO_WORK)/model/best resources/demo-model
	cp resources/demo-model-README.md resources/demo-model/README.md
	$(VPY) main.py export-onnx resources/demo-model
	rm -f resources/.demo-model.lock
	rm -rf $(DEMO_WORK)

clean:
	rm -rf $(VENV) .pytest_cache
