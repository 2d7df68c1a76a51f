#!/usr/bin/env bash
# scripts/valgrind-ctests.sh [TEST...]: run the C loopback tests under
# valgrind's memcheck; any leak (definite or indirect) or memory error fails.
#
#   default tests  sock http mgr wakeup timer tls sntp resolve ws (the ones that drive the real
#                  loop over loopback sockets); names as in tests/c/meson.build
#   VALGRIND_BUILD build directory (default build/valgrind): a debug build of
#                  the C tests WITHOUT sanitizers (valgrind and ASan exclude
#                  each other)
#
# Valgrind is installed from Debian when missing.  The C test harness needs
# nothing else; each test's stdout/stderr and valgrind's log are shown when it
# fails, and its log is kept in $VALGRIND_BUILD/valgrind-<test>.log.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BUILD=${VALGRIND_BUILD:-build/valgrind}
VENV=$(realpath -m "${VENV:-.venv}")
say() { printf 'valgrind-ctests: %s\n' "$*"; }
die() { printf 'valgrind-ctests: error: %s\n' "$*" >&2; exit 1; }

if ! command -v valgrind >/dev/null; then
  say "installing valgrind (Debian)"
  sudo=()
  [[ $(id -u) == 0 ]] || sudo=(sudo)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 \
    install -y --no-install-recommends valgrind
fi

# meson and ninja come from the dev venv (scripts/bootstrap.sh makes it).
[[ -x $VENV/bin/meson ]] || die "$VENV/bin/meson not found: run scripts/bootstrap.sh first"
export PATH="$VENV/bin:$PATH"
opts=(-Dtests=true -Dpython=false -Dbuildtype=debug -Db_sanitize=none)
if [[ -f $BUILD/meson-private/coredata.dat ]]; then
  meson setup --reconfigure "$BUILD" "${opts[@]}" >/dev/null
else
  meson setup "$BUILD" "${opts[@]}" >/dev/null
fi
meson compile -C "$BUILD" >/dev/null || meson compile -C "$BUILD" # 2nd: show the errors

# fd_leaks LOG: entries of valgrind's "FILE DESCRIPTORS" list at exit that
# are not "<inherited from parent>".
fd_leaks() {
  awk '/== Open /{ if (open) n++; open = 1; next }
       open && /inherited from parent/ { open = 0 }
       END { if (open) n++; print n + 0 }' "$1"
}

tests=("$@")
[[ ${#tests[@]} -gt 0 ]] || tests=(sock http mgr wakeup timer tls sntp resolve ws)

failed=()
for t in "${tests[@]}"; do
  exe=$BUILD/tests/c/test_${t#test_}
  [[ -x $exe ]] || die "$exe not built (known tests: tests/c/meson.build)"
  log=$BUILD/valgrind-${t#test_}.log
  start=$SECONDS
  rc=0
  # --errors-for-leak-kinds: only definite and indirect leaks fail; "still
  # reachable" is what the C library keeps for the process's life.
  valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect \
    --errors-for-leak-kinds=definite,indirect --track-origins=yes --track-fds=yes \
    --error-exitcode=99 --log-file="$log" "$exe" >"$log.out" 2>&1 || rc=$?
  summary=$(grep -E 'ERROR SUMMARY|definitely lost:|indirectly lost:|All heap blocks' "$log" |
    sed 's/^==[0-9]*== *//' | paste -sd';' || true)
  # Descriptors still open at exit that the test did not inherit (sockets,
  # epoll, eventfds of a manager that was not freed): --track-fds lists them
  # but does not count them as errors, so count them here.
  fds=$(fd_leaks "$log")
  if ((rc == 0 && fds > 0)); then rc=98; fi
  summary+="; fds leaked at exit: $fds"
  if ((rc != 0)); then
    failed+=("$t")
    say "FAILED $t (exit $rc, $((SECONDS - start))s): $summary"
    cat "$log.out" "$log" >&2
  else
    say "ok $t ($((SECONDS - start))s): $summary"
  fi
done

say "$((${#tests[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
if ((${#failed[@]})); then
  die "${#failed[@]} of ${#tests[@]} failed under valgrind: ${failed[*]}"
fi
