# Biopsia: `make run` starts the app on the demo case, `make test` runs every test.
# Both set up everything first on a fresh Debian machine: missing Debian libraries, .venv, pinned packages.

PYTHON  ?= $(shell command -v python3.11 || command -v python3)
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# Qt offscreen/X11 needs glib, GL, fontconfig, Xext and a font; MXNet needs OpenMP and quadmath.
DEBS    := libglib2.0-0 libgl1 libfontconfig1 libxext6 fonts-dejavu-core libgomp1 libquadmath0
NPROC   := $(shell nproc 2>/dev/null || echo 2)
export OMP_NUM_THREADS ?= $(NPROC)

FASHION := /usr/share/datasets/fashion-mnist

DEMO_WORK := .demo-model-work
DEMO_SEEDS := 23 27 41 44

.PHONY: run test setup debs bench fashion-mnist demo-model clean help

help:
	@echo "make run    set up, then open Biopsia on the demo case (offscreen screenshot without a display)"
	@echo "make test   set up, then run the whole test suite offscreen"
	@echo "make bench  run the benchmarks in bench/ (prints JSON)"
	@echo "make fashion-mnist  check MXNet training on Debian's Fashion-MNIST (installs dataset-fashion-mnist)"
	@echo "make demo-model  retrain resources/demo-model on synthetic slides (a demo, not for diagnosis)"

run: setup
	$(VPY) main.py demo

test: setup
	QT_QPA_PLATFORM=offscreen $(VPY) -m pytest

bench: setup
	QT_QPA_PLATFORM=offscreen $(VPY) bench/viewer.py
	$(VPY) bench/synth.py
	$(VPY) bench/tissue.py
	$(VPY) bench/dataset.py
	$(VPY) bench/train_pipeline.py

# The study checked MXNet on MNIST and CIFAR-10 first; this is the same check on Fashion-MNIST.
fashion-mnist: setup
	@$(MAKE) --no-print-directory debs DEBS=dataset-fashion-mnist
	$(VPY) main.py validate-framework fashion-mnist $(FASHION) --epochs 8 --device cpu

setup: debs $(STAMP)

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
# and the tests'), 128 px tiles at 1 µm/px. Deterministic on the same machine; about 10 minutes on 2 cores.
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
	rm -rf $(DEMO_WORK)

clean:
	rm -rf $(VENV) .pytest_cache
