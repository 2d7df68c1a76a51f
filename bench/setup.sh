#!/usr/bin/env bash
# bench/setup.sh: install what the benchmarks need.  Idempotent, and fast when
# everything is there (a few dpkg queries and version checks; our package is
# rebuilt incrementally every time, since it is the thing being measured).
#
#   1. Debian packages that are missing: nginx, wrk, and what builds our package
#      (gcc, pkg-config, libssl-dev, python3-venv/-dev for Debian's python3);
#      one `apt-get update` before the first install.
#   2. bench/.venv-orig:  the ORIGINAL cymongoose from PyPI ($ORIG_VERSION).
#      It is never installed into any other venv.
#   3. bench/.venv-peers: uvicorn + httptools + uvloop, aiohttp (pinned).
#   4. bench/.venv-ours:  our package, `pip install <repo root>` (meson-python),
#      built in build/bench-wheel so a rerun recompiles only what changed.
#      A failed build is reported, not fatal: run.py then skips "ours" and
#      says so in RESULTS.md (unless --servers names it explicitly).
#
# Environment: PYTHON (interpreter for the venvs; default Debian's /usr/bin/python3
# when it exists, else python3 from PATH: the same interpreter for every server, and
# not whatever venv or pyenv happens to be first on PATH),
# BENCH_NO_APT=1 (never call apt-get; fail if something is missing).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
if [[ -z ${PYTHON:-} ]]; then
  PYTHON=python3
  [[ -x /usr/bin/python3 ]] && PYTHON=/usr/bin/python3
fi

ORIG_VERSION=0.2.5
PEER_PKGS=(uvicorn==0.54.0 httptools==0.9.0 uvloop==0.23.0 aiohttp==3.14.5 gunicorn==27.0.1)
# Build tools for our package: the pins of requirements-dev.txt, so the bench
# build matches the developers' and CI's.
BUILD_PKGS=($(grep -E '^(meson-python|meson|ninja)==' "$ROOT/requirements-dev.txt"))

say() { printf 'bench/setup: %s\n' "$*"; }
die() { printf 'bench/setup: error: %s\n' "$*" >&2; exit 1; }
pip_q() { "$1/bin/python" -m pip install -q --disable-pip-version-check "${@:2}"; }

# --- 1. Debian packages -------------------------------------------------------
want=(nginx wrk util-linux gcc libc6-dev pkg-config libssl-dev)
if [[ $(readlink -f "$(command -v "$PYTHON" || echo /usr/bin/python3)") == /usr/bin/python3* ]]; then
  want+=(python3 python3-venv python3-dev)
fi
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }
missing=()
for p in "${want[@]}"; do installed "$p" || missing+=("$p"); done
if ((${#missing[@]})); then
  [[ ${BENCH_NO_APT:-0} == 1 ]] && die "missing Debian packages: ${missing[*]} (BENCH_NO_APT=1)"
  sudo=()
  [[ $(id -u) == 0 ]] || sudo=(sudo)
  apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300)
  say "installing Debian packages: ${missing[*]}"
  "${apt[@]}" update
  "${apt[@]}" install -y --no-install-recommends "${missing[@]}"
  # Debian starts the nginx service on port 80 when it can; the benchmark runs
  # its own nginx, so stop the one the install just started.
  if [[ " ${missing[*]} " == *" nginx "* ]] && [[ -s /run/nginx.pid ]]; then
    say "stopping the nginx service that the package install started"
    "${sudo[@]}" nginx -s quit || true
  fi
fi
for tool in nginx wrk taskset; do command -v "$tool" >/dev/null || die "$tool not found"; done

# --- 2./3. venvs for the peers --------------------------------------------------
# The interpreter a python (or a venv's python) runs on, resolved.
base_python() { "$1" -c 'import os, sys; print(os.path.realpath(sys._base_executable))' 2>/dev/null; }
base_python "$PYTHON" >/dev/null || die "PYTHON=$PYTHON does not run"
make_venv() {
  # Made once; remade when it no longer runs or was made from another interpreter.
  if [[ $(base_python "$1/bin/python") != "$(base_python "$PYTHON")" ]]; then
    say "creating $(basename "$1") with $("$PYTHON" --version 2>&1) ($(base_python "$PYTHON"))"
    "$PYTHON" -m venv --clear "$1"
  fi
}
# has_versions VENV NAME==VER...: true when every distribution has that version.
has_versions() {
  "$1/bin/python" - "${@:2}" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
sys.exit(any(version(n) != v for n, v in (a.split("==") for a in sys.argv[1:])))
EOF
}

ORIG="$BENCH/.venv-orig"
make_venv "$ORIG"
if ! has_versions "$ORIG" "cymongoose==$ORIG_VERSION"; then
  say "installing the original cymongoose==$ORIG_VERSION into .venv-orig"
  pip_q "$ORIG" "cymongoose==$ORIG_VERSION"
fi

PEERS="$BENCH/.venv-peers"
make_venv "$PEERS"
if ! has_versions "$PEERS" "${PEER_PKGS[@]}"; then
  say "installing ${PEER_PKGS[*]} into .venv-peers"
  pip_q "$PEERS" "${PEER_PKGS[@]}"
fi

# --- 4. our package ---------------------------------------------------------------
OURS="$BENCH/.venv-ours"
make_venv "$OURS"
if ! has_versions "$OURS" "${BUILD_PKGS[@]}"; then
  say "installing build tools ${BUILD_PKGS[*]} into .venv-ours"
  pip_q "$OURS" "${BUILD_PKGS[@]}"
fi
# Our ASGI server runs on uvloop when it is installed, as uvicorn does (bench/adapters.py).
OURS_PKGS=(uvloop==0.23.0)
if ! has_versions "$OURS" "${OURS_PKGS[@]}"; then
  say "installing ${OURS_PKGS[*]} into .venv-ours"
  pip_q "$OURS" "${OURS_PKGS[@]}"
fi
say "building and installing our package from $ROOT into .venv-ours"
rm -f "$BENCH/.venv-ours/.build-failed"
# meson and meson-python find ninja on PATH: the venv's copy.
if ! PATH="$OURS/bin:$PATH" pip_q "$OURS" --no-build-isolation --no-deps --force-reinstall \
  --config-settings=build-dir="$ROOT/build/bench-wheel" "$ROOT" >"$OURS/build.log" 2>&1; then
  tail -n 20 "$OURS/build.log" >&2
  echo "pip install of $ROOT failed; see $OURS/build.log" >"$OURS/.build-failed"
  say "WARNING: our package did not build (log: bench/.venv-ours/build.log); run.py will skip it"
fi

say "ok: nginx $(nginx -v 2>&1 | sed 's/.*\///'), wrk $(dpkg-query -W -f='${Version}' wrk)," \
  "original cymongoose $ORIG_VERSION, peers ${PEER_PKGS[*]}"
