# Makefile: the entry points for building, testing and running cymongoose.
#
#   make test     C tests under ASan+UBSan, then pytest against the installed package
#   make serve    build, install and run the demo server (examples/http_server.py)
#   make lint     ruff + clang-format check          make format   apply clang-format
#   make ctest / make pytest / make install / make clean / make distclean
#   make asan-pytest  pytest (HTTP, wakeup, timer, abuse) against an ASan+UBSan build
#   make soak / make soak-quick   bounded soak at full scale / at 1/20 (CI)
#   make valgrind     C loopback tests under valgrind: no leak, no error, no fd left
#   make fuzz         every libFuzzer target for FUZZ_SECONDS each (default 600)
#   make bench        the benchmarks against the peers; writes bench/RESULTS.md
#   make docs         the documentation site into build/docs (mkdocs build --strict)
#   make docs-serve   the site on http://127.0.0.1:8001 (DOCS_ADDR), rebuilt on edits
#
# Every target first runs scripts/bootstrap.sh, which installs whatever is
# missing (Debian packages, the venv, requirements-dev.txt) and is fast when
# nothing is.  On a machine without make, ./scripts/dev TARGET does the same.
#
# Variables (make VAR=value or environment):
#   VENV     venv used by every target (default .venv).  `make install` puts a
#            regular, non-editable install there, replacing an editable one:
#            keep a development venv apart with e.g. VENV=build/venv-ci.
#   PYTHON   interpreter the venv is made from (default python3)
#   WERROR   warnings are errors in the extension build (default true)
#   PYTEST_ARGS  extra pytest arguments, e.g. PYTEST_ARGS='-x -k wakeup'
#   PORT     port of `make serve` (default 8000)
#   DOCS_ADDR  address of `make docs-serve` (default 127.0.0.1:8001)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.NOTPARALLEL:

VENV ?= .venv
PYTHON ?= python3
WERROR ?= true
PYTEST_ARGS ?=
BUILD := build
CTEST_DIR := $(BUILD)/ctest
WHEEL_DIR := $(BUILD)/wheel

# The venv's bin first: meson and meson-python find ninja (a pip package
# here) on PATH, and a fresh machine has no other.
export PATH := $(abspath $(VENV))/bin:$(PATH)
PY := $(VENV)/bin/python
MESON := $(VENV)/bin/meson
RUFF := $(VENV)/bin/ruff
BOOTSTRAP := VENV='$(VENV)' PYTHON='$(PYTHON)' scripts/bootstrap.sh

# The C tests: debug build, sanitizers on, warnings are errors.
CTEST_OPTS := -Dtests=true -Dpython=false -Db_sanitize=address,undefined -Dbuildtype=debug -Dwerror=true
SAN_ENV := ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# What lint checks.  Directories that do not exist (yet) are skipped.
PY_DIRS := $(wildcard src tests/py tests/soak examples bench scripts)
C_DIRS := $(wildcard core ext tests/c fuzz examples bench)

.PHONY: help bootstrap install ctest pytest test lint format serve clean distclean \
  asan-pytest soak soak-quick valgrind fuzz bench docs docs-serve

FUZZ_SECONDS ?= 600
BENCH_ARGS ?=
DOCS_ADDR ?= 127.0.0.1:8001
# mkdocs 1.6 prints a notice about its successor on every run; the build is what we read.
export NO_MKDOCS_2_WARNING := 1

help:
	@sed -n 's/^#   make /  make /p' Makefile; echo "  (./scripts/dev TARGET: the same, installing make first if needed)"

bootstrap:
	@$(BOOTSTRAP)

# A regular (non-editable) install from a persistent build dir, so a second
# `make install` recompiles only what changed.
install: bootstrap
	@echo "== install: pip install . into $(VENV)"
	$(PY) -m pip install --disable-pip-version-check --no-build-isolation --no-deps --force-reinstall \
	  --config-settings=build-dir='$(CURDIR)/$(WHEEL_DIR)' \
	  --config-settings=setup-args=-Dwerror=$(WERROR) .

ctest: bootstrap
	@echo "== ctest: C tests under ASan+UBSan ($(CTEST_DIR))"
	@if [ -f $(CTEST_DIR)/meson-private/coredata.dat ]; then \
	  $(MESON) setup --reconfigure $(CTEST_DIR) $(CTEST_OPTS); \
	else \
	  $(MESON) setup $(CTEST_DIR) $(CTEST_OPTS); \
	fi
	$(SAN_ENV) $(MESON) test -C $(CTEST_DIR) --print-errorlogs
	@n=$$($(MESON) test -C $(CTEST_DIR) --list 2>/dev/null | grep -c .) || true; \
	if [ "$${n:-0}" -eq 0 ]; then echo "ctest: no C tests are defined" >&2; exit 1; fi

# pytest runs against the installed package: the repo root holds no
# `cymongoose` directory (it is under src/), so `import cymongoose` finds the
# venv's copy; the check below proves it before any test runs.  Exit code 5
# (no tests collected) is a failure, reported as such.
pytest: install
	@echo "== pytest: tests/py against the installed package"
	@$(PY) -c 'import os, sys, sysconfig, cymongoose, cymongoose._mongoose; \
	f = os.path.realpath(cymongoose.__file__); lib = os.path.realpath(sysconfig.get_paths()["platlib"]); \
	print("cymongoose from", f); sys.exit(0 if f.startswith(lib + os.sep) else "not the installed package")'
	@rc=0; $(PY) -m pytest tests/py -q $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests were collected (exit 5): failing" >&2; fi; \
	exit $$rc

test: ctest pytest
	@echo "== test: all passed"

lint:
	@$(BOOTSTRAP) lint
	@echo "== lint: ruff check $(PY_DIRS)"
	$(RUFF) check $(PY_DIRS)
	$(PY) scripts/check_snippets.py
	@echo "== lint: clang-format --dry-run -Werror ($(C_DIRS))"
	@scripts/clang_format.sh check $(C_DIRS)

format:
	@$(BOOTSTRAP) lint
	@scripts/clang_format.sh fix $(C_DIRS)

asan-pytest: bootstrap
	PYTHON='$(PYTHON)' scripts/asan-pytest.sh

soak: install
	VENV='$(VENV)' scripts/soak.sh

soak-quick: install
	VENV='$(VENV)' scripts/soak.sh --quick

valgrind: bootstrap
	VENV='$(VENV)' scripts/valgrind-ctests.sh

fuzz:
	@$(BOOTSTRAP) fuzz
	fuzz/run.sh $(FUZZ_SECONDS)

bench: bootstrap
	bash bench/run.sh $(BENCH_ARGS)

# The site reads the installed package (the API reference's docstrings, the constants),
# so it is installed first.  Its examples are run by pytest (tests/py/test_docs_examples.py).
docs: install
	@$(BOOTSTRAP) docs
	@echo "== docs: mkdocs build --strict into build/docs"
	$(VENV)/bin/mkdocs build --strict --clean

docs-serve: install
	@$(BOOTSTRAP) docs
	$(VENV)/bin/mkdocs serve --strict --dev-addr $(DOCS_ADDR)

serve: install
	@echo "== serve: examples/http_server.py (Ctrl-C stops it)"
	$(PY) examples/http_server.py

clean:
	rm -rf $(CTEST_DIR) $(WHEEL_DIR) .pytest_cache .ruff_cache
	find . \( -name '.?*' -o -path './$(BUILD)' -o -path './$(VENV)' \) -prune -o \
	  -name __pycache__ -type d -prune -exec rm -rf {} +

# Also the venv and every build dir (an editable install's build/editable too).
distclean: clean
	rm -rf $(BUILD) $(VENV)
