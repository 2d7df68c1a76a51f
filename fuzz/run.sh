#!/usr/bin/env bash
# fuzz/run.sh SECONDS [TARGET...]: build the libFuzzer targets (build/fuzz,
# clang) if needed, then run each TARGET (default: all) for SECONDS, one after
# the other.  Exits non-zero if any target crashed, failed an invariant, or
# could not run.  See fuzz/README.md.
#
#   TARGET       "http_parse" or "fuzz_http_parse"
#   FUZZ_BUILD   build directory (default build/fuzz)
#   FUZZ_ARGS    extra libFuzzer flags, e.g. "-max_len=65536"
#
# Each target starts from a scratch copy of fuzz/corpus/<name>/, so what it
# learns never bloats the committed corpus; crash inputs and the full log go
# to fuzz/out/<name>/ (git-ignored).  Inputs kept in fuzz/regressions/<name>/
# are replayed first: a fixed bug stays fixed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
  sed -n '2,5s/^# \{0,1\}//p' "$0" >&2
  exit 2
}
[[ $# -ge 1 && $1 =~ ^[0-9]+$ && $1 -gt 0 ]] || usage
secs=$1
shift
build=${FUZZ_BUILD:-build/fuzz}

# libFuzzer comes with clang's runtime; Debian 12 splits it off into
# libclang-rt-14-dev, which a --no-install-recommends install leaves out
# (meson's check then says so).
if ! command -v clang >/dev/null; then
  echo "fuzz: clang not found (Debian: apt-get install -y clang libclang-rt-14-dev)" >&2
  exit 2
fi
if [[ ! -f $build/build.ninja ]]; then
  CC=clang meson setup "$build" -Dfuzz=true -Dpython=false -Dtests=false \
    -Dbuildtype=debug -Db_lundef=false
fi
meson compile -C "$build" >/dev/null || meson compile -C "$build" # 2nd: show the errors

if [[ $# -eq 0 ]]; then
  # Every fuzz_<name> that meson built: no second list to keep in sync.
  mapfile -t targets < <(find "$build/fuzz" -maxdepth 1 -type f -name 'fuzz_*' -perm -u+x \
    -printf '%f\n' | sed 's/^fuzz_//' | sort)
else
  targets=("${@#fuzz_}")
fi
[[ ${#targets[@]} -gt 0 ]] || { echo "fuzz: no targets built in $build/fuzz" >&2; exit 2; }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# The dictionary of a target: fuzz/<name>.dict, else http.dict for http_*.
dict_for() {
  if [[ -f fuzz/$1.dict ]]; then echo "fuzz/$1.dict"
  elif [[ $1 == http_* ]]; then echo "fuzz/http.dict"
  fi
}

# One value from libFuzzer's final stats: final_stat NAME LOG.
final_stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }

failed=0
summary=()
for t in "${targets[@]}"; do
  exe=$build/fuzz/fuzz_$t
  out=fuzz/out/$t
  log=$out/fuzz.log
  if [[ ! -x $exe ]]; then
    echo "fuzz: no target $t ($exe)" >&2
    summary+=("MISSING $t")
    failed=1
    continue
  fi
  mkdir -p "$out" "$scratch/$t"
  [[ -d fuzz/corpus/$t ]] && cp -r "fuzz/corpus/$t/." "$scratch/$t/"
  args=(-max_total_time="$secs" -print_final_stats=1 -timeout=10 -artifact_prefix="$out/")
  dict=$(dict_for "$t")
  [[ -n $dict ]] && args+=(-dict="$dict")
  # shellcheck disable=SC2206  # FUZZ_ARGS is a list of flags on purpose
  [[ -n ${FUZZ_ARGS:-} ]] && args+=(${FUZZ_ARGS})

  rc=0
  if compgen -G "fuzz/regressions/$t/*" >/dev/null; then
    echo "== fuzz $t: replaying fuzz/regressions/$t"
    "$exe" "fuzz/regressions/$t"/* >"$out/regressions.log" 2>&1 || rc=$?
    if ((rc != 0)); then
      tail -40 "$out/regressions.log" >&2
      summary+=("FAILED  $t: a regression input fails again ($out/regressions.log)")
      failed=1
      continue
    fi
  fi

  echo "== fuzz $t: ${secs}s${dict:+, $dict}"
  start=$EPOCHREALTIME
  "$exe" "${args[@]}" "$scratch/$t" >"$log" 2>&1 || rc=$?
  elapsed=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  execs=$(final_stat number_of_executed_units "$log")
  rate=$(final_stat average_exec_per_sec "$log")
  line=$(printf '%-14s %10s execs in %5ss (%s exec/s), corpus %s -> %s files' "$t" "${execs:-?}" \
    "$elapsed" "${rate:-?}" "$(find "fuzz/corpus/$t" -type f 2>/dev/null | wc -l)" \
    "$(find "$scratch/$t" -type f | wc -l)")
  if ((rc != 0)); then
    # The report (sanitizer or invariant) and the saved input.
    grep -E -A30 '^==[0-9]+==ERROR|invariant failed|runtime error|^SUMMARY|Test unit written' "$log" \
      | head -60 >&2 || tail -40 "$log" >&2
    summary+=("FAILED  $line (exit $rc; log $log)")
    failed=1
  else
    summary+=("ok      $line")
  fi
  echo "${summary[-1]}"
done

echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
