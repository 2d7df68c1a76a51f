#!/usr/bin/env bash
# scripts/asan-pytest.sh [PYTEST_ARGS...]: build the extension with
# AddressSanitizer + UndefinedBehaviorSanitizer into its own venv, then run
# pytest against it with the sanitizer runtime preloaded.  Any sanitizer
# report fails the run (non-zero exit), and so does any failing test.
#
#   default tests  tests/py/test_http_server.py test_wakeup*.py test_timer.py
#                  test_http_badinput.py test_http_static.py test_http_client.py
#                  test_http_limits.py test_tls.py test_http_strict.py test_sntp.py
#                  test_resolve.py test_ws_rfc.py test_ws_api.py test_ws_late.py
#                  test_ws_peers.py test_ws_client_rfc.py test_mqtt_client.py
#                  test_mqtt_listen.py test_mqtt_broker.py test_mqtt_interop.py
#                  test_mqtt_broker_ws.py test_wss.py test_mqtts.py
#                  test_abuse.py test_http_conn_close.py
#                  test_ws_error_state.py test_aio.py test_wsgi.py test_asgi.py
#                  test_asgi_ws.py  (PYTEST_ARGS replace the list)
#   ASAN_VENV      venv of the sanitized build (default build/venv-asan)
#   ASAN_BUILD     meson build dir (default build/asan-ext; kept, so a second
#                  run recompiles only what changed)
#   PYTHON         interpreter the venv is made from (default python3)
#
# Why each setting:
#   LD_PRELOAD=libasan.so  the interpreter itself is not instrumented, so the
#                  ASan runtime must be loaded before anything else (it
#                  intercepts malloc); libubsan comes in as a dependency of
#                  the extension, which gcc links against it.
#   PYTHONMALLOC=malloc  Python objects come from malloc, not pymalloc's
#                  arenas, so ASan also sees a use-after-free of a PyObject.
#   detect_leaks=0  CPython does not free everything at exit (interned
#                  strings, static types, module state of extension
#                  modules...), so LeakSanitizer would report thousands of
#                  leaks that are not ours.  Leaks of the C core are checked
#                  by valgrind (scripts/valgrind-ctests.sh) and LSan (make
#                  ctest); growth of the whole process by scripts/soak.sh.
#   abort_on_error=1 / halt_on_error=1  the first report kills the process
#                  (SIGABRT), so pytest cannot swallow it and the run fails.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

VENV=$(realpath -m "${ASAN_VENV:-build/venv-asan}")
BUILD=$(realpath -m "${ASAN_BUILD:-build/asan-ext}")
PYTHON=${PYTHON:-python3}
REQ=requirements-dev.txt

say() { printf 'asan-pytest: %s\n' "$*"; }
die() { printf 'asan-pytest: error: %s\n' "$*" >&2; exit 1; }

command -v gcc >/dev/null || die "gcc not found (scripts/bootstrap.sh installs it)"
LIBASAN=$(gcc -print-file-name=libasan.so)
[[ -f $LIBASAN ]] || die "libasan.so not found (gcc -print-file-name=libasan.so gave '$LIBASAN')"

# 1. The venv, with the build backend and the test tools (pinned in $REQ).
if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  say "creating venv $VENV"
  "$PYTHON" -m venv --clear "$VENV"
fi
stamp="$VENV/.asan-req-stamp"
want_stamp=$(sha256sum "$REQ" | cut -d' ' -f1)
if [[ ! -f $stamp || $(<"$stamp") != "$want_stamp" ]]; then
  say "installing $REQ into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"
  printf '%s\n' "$want_stamp" >"$stamp"
fi

# 2. The sanitized extension: a regular install from a persistent build dir.
#    meson and ninja must be found on PATH by meson-python.
say "building the extension with -Db_sanitize=address,undefined ($BUILD)"
start=$SECONDS
PATH="$VENV/bin:$PATH" "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
  --no-build-isolation --no-deps --force-reinstall \
  -Csetup-args=-Db_sanitize=address,undefined -Csetup-args=-Dbuildtype=debug \
  -Cbuild-dir="$BUILD" .
say "built in $((SECONDS - start))s"

# 3. Prove that pytest will import the sanitized copy, not src/ or the
#    editable dev install.
ext=$(cd /tmp && LD_PRELOAD=$LIBASAN ASAN_OPTIONS=detect_leaks=0 \
  "$VENV/bin/python" -c 'import cymongoose._mongoose as m; print(m.__file__)')
[[ $ext == "$VENV/"* ]] || die "cymongoose._mongoose comes from $ext, not from $VENV"
libs=$(ldd "$ext") # (not `ldd | grep -q`: with pipefail, grep's early exit fails the pipe)
[[ $libs == *libasan* ]] || die "$ext is not linked against libasan"
[[ $libs == *libubsan* ]] || die "$ext is not linked against libubsan"
say "extension: $ext (libasan, libubsan)"

# 4. pytest under the sanitizers.
if [[ $# -eq 0 ]]; then
  set -- tests/py/test_http_server.py tests/py/test_wakeup*.py tests/py/test_timer.py \
    tests/py/test_abuse.py tests/py/test_http_badinput.py tests/py/test_http_static.py \
    tests/py/test_http_client.py tests/py/test_http_limits.py tests/py/test_tls.py \
    tests/py/test_http_strict.py tests/py/test_sntp.py tests/py/test_resolve.py tests/py/test_ws_rfc.py \
    tests/py/test_ws_api.py tests/py/test_ws_late.py tests/py/test_ws_peers.py tests/py/test_ws_client_rfc.py \
    tests/py/test_mqtt_client.py tests/py/test_mqtt_listen.py tests/py/test_mqtt_broker.py \
    tests/py/test_mqtt_interop.py tests/py/test_mqtt_broker_ws.py tests/py/test_wss.py \
    tests/py/test_mqtts.py tests/py/test_http_conn_close.py \
    tests/py/test_ws_error_state.py tests/py/test_aio.py tests/py/test_wsgi.py tests/py/test_asgi.py \
    tests/py/test_asgi_ws.py
fi
say "pytest $*"
start=$SECONDS
rc=0
# The preload is for this interpreter only: it is dropped from os.environ
# before pytest starts, so that the programs the tests run (curl, ...) are
# not started with an ASan runtime they were not built for (curl then hangs).
# (`python -c` also puts the repo root first on sys.path: take it off, so
# nothing is imported from the source tree.)
boot='import os, sys; os.environ.pop("LD_PRELOAD", None); sys.path.remove(sys.path[0])
import pytest; sys.exit(pytest.main(sys.argv[1:]))'
# Where reports go: pytest's default capture takes fd 2 while a test runs,
# and a process that aborts takes the captured text with it.  So pytest
# captures at the Python level only (--capture=sys: C writes to fd 2 pass
# through), and ASan also writes its reports to files (UBSan's reports
# ignored log_path when tried with gcc 12: they reach stderr).  Any report
# file fails the run, even one written by a child process.
LOGS=$BUILD-reports
rm -rf "$LOGS"
mkdir -p "$LOGS"
env LD_PRELOAD="$LIBASAN" PYTHONMALLOC=malloc \
  ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:log_path=$LOGS/asan" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1" \
  "$VENV/bin/python" -c "$boot" -q -p no:cacheprovider --capture=sys --durations=8 "$@" || rc=$?
say "pytest exit $rc after $((SECONDS - start))s"
reports=$(find "$LOGS" -type f | sort)
if [[ -n $reports ]]; then
  for f in $reports; do
    printf '\n===== sanitizer report %s =====\n' "$f" >&2
    cat "$f" >&2
  done
  die "sanitizer report(s): $(echo "$reports" | wc -l) (pytest exit $rc)"
fi
case $rc in
  0) say "ok: no sanitizer report, all tests passed" ;;
  5) die "no tests were collected" ;;
  134) die "killed by SIGABRT (pytest exit 134)" ;;
  *) die "failed (exit $rc)" ;;
esac
