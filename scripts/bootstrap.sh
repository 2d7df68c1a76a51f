#!/usr/bin/env bash
# scripts/bootstrap.sh: install what cymongoose needs to build, test and lint.
#
#   scripts/bootstrap.sh [PROFILE...]     profiles: base (always), lint, fuzz, docs
#
# Idempotent and fast when everything is present (a few dpkg queries and one
# stamp comparison).  On a fresh Debian 12 machine it installs, in this order:
#   1. Debian packages that are missing (checked with dpkg-query; one
#      `apt-get update` before the first install; sudo only when not root);
#   2. the venv $VENV (default .venv) made by `$PYTHON -m venv`;
#   3. requirements-dev.txt into the venv, again only when that file changed
#      (profile docs: requirements-docs.txt too, the same way).
# Environment: VENV (venv path, relative to the repo root or absolute),
# PYTHON (interpreter for the venv, default python3), BOOTSTRAP_NO_APT=1
# (never call apt-get; only report what is missing).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
REQ=requirements-dev.txt

# Debian packages per profile.  Add a package to the profile that needs it;
# the make target that needs it passes the profile.
APT_BASE=(gcc libc6-dev make pkg-config libssl-dev zlib1g-dev curl openssl chrony mosquitto mosquitto-clients) # openssl: TLS test certificates
APT_LINT=(clang-format)
APT_FUZZ=(clang libclang-rt-14-dev) # libFuzzer is only a Recommends of clang

say() { printf 'bootstrap: %s\n' "$*"; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }

want=("${APT_BASE[@]}")
for profile in "$@"; do
  case $profile in
    base) ;;
    lint) want+=("${APT_LINT[@]}") ;;
    fuzz) want+=("${APT_FUZZ[@]}") ;;
    docs) ;; # pip only: requirements-docs.txt, below
    *) die "unknown profile '$profile' (known: base lint fuzz docs)" ;;
  esac
done

# Python: the interpreter must exist, make venvs (ensurepip) and have its C
# headers (the extension compiles against them).  Debian splits these into
# python3, python3-venv and python3-dev; another Python (pyenv, a
# distribution of its own) must bring them itself.
py_ok() { command -v "$PYTHON" >/dev/null 2>&1; }
py_has_venv() { "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; }
py_has_headers() {
  "$PYTHON" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' >/dev/null 2>&1
}
py_is_debian() { [[ $(readlink -f "$(command -v "$PYTHON")") == /usr/bin/python3* ]]; }

if ! py_ok; then
  [[ $PYTHON == python3 ]] || die "PYTHON=$PYTHON not found"
  want+=(python3 python3-venv python3-dev)
elif py_is_debian; then
  py_has_venv || want+=(python3-venv)
  py_has_headers || want+=(python3-dev)
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${want[@]}"; do installed "$p" || missing+=("$p"); done
else
  say "no dpkg here (not Debian): make sure these are installed: ${want[*]}"
fi

if ((${#missing[@]})); then
  if [[ ${BOOTSTRAP_NO_APT:-0} == 1 ]]; then
    die "missing Debian packages: ${missing[*]} (BOOTSTRAP_NO_APT=1)"
  fi
  sudo=()
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: install ${missing[*]}"
    sudo=(sudo)
  fi
  apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300)
  say "installing Debian packages: ${missing[*]}"
  "${apt[@]}" update
  "${apt[@]}" install -y --no-install-recommends "${missing[@]}"
fi

py_ok || die "$PYTHON not found"
py_has_venv || die "$PYTHON cannot make venvs (ensurepip missing)"
py_has_headers || die "$PYTHON has no C headers (Python.h)"

# The venv: made once; remade only if its interpreter no longer runs (e.g.
# the Python it was made from was removed).
if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  say "creating venv $VENV with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv --clear "$VENV"
fi

# Pip packages: reinstall only when requirements-dev.txt (requirements-docs.txt
# for profile docs) or the venv's Python changed since the last install.
pip_requirements() { # pip_requirements FILE STAMP
  local want_stamp
  want_stamp="$(sha256sum "$1" | cut -d' ' -f1) $("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])')"
  if [[ ! -f $2 || $(<"$2") != "$want_stamp" ]]; then
    say "installing $1 into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$1"
    printf '%s\n' "$want_stamp" >"$2"
  fi
}
pip_requirements "$REQ" "$VENV/.bootstrap-stamp"
for profile in "$@"; do
  if [[ $profile == docs ]]; then
    pip_requirements requirements-docs.txt "$VENV/.bootstrap-docs-stamp"
  fi
done

say "ok (venv $VENV, $("$VENV/bin/python" --version 2>&1)${*:+, profiles: $*})"
