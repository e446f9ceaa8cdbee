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

.PHONY: run test setup debs bench fashion-mnist clean help

help:
	@echo "make run    set up, then open Biopsia on the demo case (offscreen screenshot without a display)"
	@echo "make test   set up, then run the whole test suite offscreen"
	@echo "make bench  run the benchmarks in bench/ (prints JSON)"
	@echo "make fashion-mnist  check MXNet training on Debian's Fashion-MNIST (installs dataset-fashion-mnist)"

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

clean:
	rm -rf $(VENV) .pytest_cache
