#!/usr/bin/env bash
# scripts/soak.sh [--quick] [SOAK_ARGS...]: the bounded soak of an HTTP
# server (tests/soak/soak.py): 1,000,000 keep-alive requests, 100,000
# connect/close cycles and 10,000 wakeups of 64 KiB..1 MiB; fails if the
# server's RSS grew by 5 % or more after warm-up, if a file descriptor was
# left over, or if any answer or wakeup was wrong.  --quick runs 1/20 of it
# (CI).  Then the TLS soak (tests/soak/soak_tls.py): 10,000 HTTPS
# handshakes (resumed ones, clients leaving mid-handshake, plaintext to the
# TLS port among them), same RSS and descriptor checks; --quick runs 1/10.
# Loopback only.
#
#   VENV   venv whose cymongoose is soaked (default .venv: `make install`
#          or the editable dev install)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=$(realpath -m "${VENV:-.venv}")
PY=$VENV/bin/python

[[ -x $PY ]] || { echo "soak: $PY not found: run scripts/bootstrap.sh first" >&2; exit 1; }
# Import it once here: an editable install rebuilds on import, and that must
# not count against the server's first seconds.
where=$(cd /tmp && "$PY" -c 'import cymongoose._mongoose as m; print(m.__file__)')
echo "soak: cymongoose from $where"
start=$SECONDS
rc=0
"$PY" tests/soak/soak.py "$@" || rc=$?
tls_args=()
for a in "$@"; do [[ $a == --quick ]] && tls_args+=(--quick); done
"$PY" tests/soak/soak_tls.py "${tls_args[@]}" || rc=$?
echo "soak: exit $rc after $((SECONDS - start))s"
exit "$rc"
