# embsolve: build, test, run and benchmark. Every target installs what it needs first.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# Link the serial HDF5 (every rank reads its own hyperslab; rank 0 writes) and OpenMPI.
export HDF5_DIR ?= /usr/lib/x86_64-linux-gnu/hdf5/serial
export MPI_PKG_CONFIG ?= ompi-c
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1
export RAY_AUTH_MODE := disabled

PREFIX ?= /usr/local
BIN := target/release/embsolve
VENV := .venv
PY := $(VENV)/bin/python
VERSION := $(shell grep -m1 '^version' Cargo.toml | cut -d'"' -f2)

.PHONY: all deps build test test-unit test-mpi test-py run bench ray-env install lint clean test-gpu

all: build

deps:
	@scripts/deps.sh

build: deps
	cargo build --release --locked --workspace --bins --examples
	@test -x $(BIN)

$(VENV)/.ok: ray/pyproject.toml scripts/venv.sh
	scripts/venv.sh $(VENV)
	@touch $@

ray-env: $(VENV)/.ok

# NVRTC (from the PyPI wheel, see scripts/nvrtc_lib.sh) lets the CUDA kernels' compile test run
# on machines without CUDA; without it that test reports a skip.
test-unit: deps
	LD_LIBRARY_PATH="$$(scripts/nvrtc_lib.sh || true)$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}" \
		cargo test --release --locked --workspace

test-py: build ray-env
	EMBSOLVE_BIN=$(abspath $(BIN)) $(PY) -m pytest -q tests
	EMBSOLVE_BIN=$(abspath $(BIN)) $(PY) -m pytest -q ray/tests

test: build lint test-unit test-py

lint:
	cargo fmt --all -- --check
	cargo clippy --release --workspace --all-targets -- -D warnings

run: build ray-env
	scripts/main_job.sh

bench: build ray-env
	scripts/bench_all.sh

install: build
	scripts/install.sh "$(PREFIX)" "$(VERSION)"

test-gpu: build
	scripts/test_gpu.sh

clean:
	cargo clean
	rm -rf $(VENV)
