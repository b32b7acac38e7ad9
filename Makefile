# blockon's developer commands. `make help` lists them.
# Everything runs inside a local virtualenv (.venv) that these targets create and fill,
# so a fresh machine with python3, pip and cargo needs nothing else.

PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python
PYTEST_ARGS ?=
# Targets `make cross-check` (part of `make lint`) type-checks the crate for, their standard
# library built in the sid chroot, so a Windows- or macOS-only compile error cannot land unseen.
# Windows twice: the release workflow's wheel is built with MSVC, `make wheels`'s with mingw-w64.
CROSS_TARGETS ?= x86_64-pc-windows-msvc x86_64-pc-windows-gnu x86_64-apple-darwin aarch64-apple-darwin
# The libpython that `cargo test` binaries load at run time (they are not extension modules).
PYLIBDIR := $(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('LIBDIR') or '')")

.DEFAULT_GOAL := help
.PHONY: help venv build demo test test-rust test-python lint cross-check wheels wheel-test wheel-test-aarch64 sdist-test fmt bench bench-matrix matrix soak clean

help: ## list the commands
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv $(VENV) || { $(PYTHON) -m pip install --user virtualenv && $(PYTHON) -m virtualenv $(VENV); }
	$(VPY) -m pip install -q -U pip
	$(VPY) -m pip install -q "maturin>=1.7,<2"
	touch $@

venv: $(VENV)/.ready ## create the virtualenv with the build tool

build: venv ## build the Rust engine (release) and install blockon into .venv, with test extras
	$(VENV)/bin/maturin develop --release --quiet -E test,lint,demo

demo: build ## build, install, and run examples/quickstart.py
	$(VPY) examples/quickstart.py

test: build test-rust test-python ## build, install, and run every Rust and Python test

test-rust: ## Rust unit tests of the engine's pure-Rust parts
	LD_LIBRARY_PATH=$(PYLIBDIR) PYO3_PYTHON=$$(command -v $(PYTHON)) cargo test --quiet --lib

test-python: ## the pytest suite twice (warnings are errors, hang guards on): fast path, then portable path
	@status=0; \
	$(VPY) -m pytest $(PYTEST_ARGS) || status=1; \
	echo "== the same suite on the portable path (BLOCKON_GENERIC_PATH=1, docs/how-it-works.md)"; \
	BLOCKON_GENERIC_PATH=1 $(VPY) -m pytest $(PYTEST_ARGS) || status=1; \
	exit $$status

lint: build ## ruff, mypy (python/blockon and tests), stubtest, cargo fmt --check, clippy, cross-check
	$(VENV)/bin/ruff check python tests benches examples
	$(VENV)/bin/ruff format --check python tests benches examples
	$(VENV)/bin/mypy
	$(VPY) -m mypy.stubtest blockon._blockon --allowlist .stubtest-allowlist
	cargo fmt --check
	PYO3_PYTHON=$$(command -v $(PYTHON)) cargo clippy --quiet --all-targets -- -D warnings
	$(MAKE) --no-print-directory cross-check

cross-check: ## cargo check for Windows and macOS (x86_64, arm64), std built in a sid chroot (root; about 8 min the first time)
	scripts/cross.sh check $(CROSS_TARGETS)

wheels: venv ## release wheels and the sdist in dist/ (Linux here, others cross-built), auditwheel
	scripts/wheels.sh $(VPY)

wheel-test: ## the suite against dist/'s Linux x86_64 wheel, installed in a fresh virtualenv
	@wheel=$$(ls dist/blockon-*manylinux*x86_64.whl 2>/dev/null | head -n 1); \
	[ -n "$$wheel" ] || { echo "no Linux x86_64 wheel in dist/: make wheels first" >&2; exit 1; }; \
	$(PYTHON) scripts/wheel_test.py "$$wheel" $(PYTEST_ARGS)

wheel-test-aarch64: ## dist/'s Linux aarch64 wheel on Debian's aarch64 CPython 3.11 under qemu (root), core tests
	scripts/emulated.sh $(PYTEST_ARGS)

sdist-test: ## pip install of dist/'s sdist (builds the engine with cargo), and part of the suite
	@sdist=$$(ls dist/blockon-*.tar.gz 2>/dev/null | head -n 1); \
	[ -n "$$sdist" ] || { echo "no sdist in dist/: make wheels first" >&2; exit 1; }; \
	$(PYTHON) scripts/wheel_test.py "$$sdist" tests/test_run.py tests/test_engine_paths.py

fmt: venv ## format Rust and Python sources
	cargo fmt
	$(VENV)/bin/ruff format python tests benches examples
	$(VENV)/bin/ruff check --fix python tests benches examples

bench: venv ## run the benchmarks side by side (BENCH_ARGS=--write updates docs/benchmarks.md)
	$(VENV)/bin/maturin develop --release --quiet -E test,lint,demo,bench
	$(VPY) benches/run_all.py $(BENCH_ARGS)

bench-matrix: venv ## `make bench` on 3.11 and 3.14 (MATRIX="3.11 3.15" for others): docs/benchmarks.md's per-version table
	scripts/matrix.sh --bench $(MATRIX)

matrix: venv ## the test suite on CPython 3.11-3.15 and free-threaded builds (MATRIX="3.13 3.14t" for some)
	scripts/matrix.sh $(MATRIX)

soak: build ## the public API mixed across threads for SOAK_MINUTES minutes (10); fails if threads, fds, tasks or RSS grow
	$(VPY) scripts/soak.py $(SOAK_MINUTES)

clean: ## remove build products and the virtualenv
	cargo clean
	rm -rf $(VENV) dist
