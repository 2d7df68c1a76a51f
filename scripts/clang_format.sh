#!/usr/bin/env bash
# scripts/clang_format.sh check|fix DIR...: clang-format the C files (*.c, *.h)
# under the given directories with the repo's .clang-format.
#   check: clang-format --dry-run -Werror; prints each file that would change,
#          with its number of violations and the start of its diff; exit 1 if any.
#   fix:   clang-format -i.
# Uses clang-format-14 (Debian 12's, what CI has) when present.  Prints a note
# and succeeds if no clang-format is installed (scripts/bootstrap.sh lint
# installs it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mode=${1:?usage: clang_format.sh check|fix DIR...}
shift
cf=$(command -v clang-format-14 || command -v clang-format || true)
if [[ -z $cf ]]; then
  echo "clang-format: not installed, skipped"
  exit 0
fi
# The files git would commit (tracked, or new and not ignored), and in either
# case none under a dot-directory (.venv*, ...); outside a git checkout, find.
list_files() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files --cached --others --exclude-standard -- "$@" | grep -E '\.[ch]$' | grep -v -E '(^|/)\.' || true
  else
    find "$@" -name '.*' -prune -o -type f \( -name '*.c' -o -name '*.h' \) -print 2>/dev/null
  fi
}
mapfile -t files < <(list_files "$@" | sort -u)
version=$("$cf" --version | grep -o 'version [0-9.]*')
case $mode in
  fix)
    ((${#files[@]} == 0)) || "$cf" -i "${files[@]}"
    echo "clang-format -i: ${#files[@]} files ($version)"
    ;;
  check)
    bad=()
    for f in "${files[@]}"; do
      [[ -f $f ]] || continue
      n=$("$cf" --dry-run -Werror "$f" 2>&1 | grep -c 'clang-format-violations' || true)
      if ((n > 0)); then
        bad+=("$f")
        printf '  %-40s %4d violations\n' "$f" "$n"
      fi
    done
    if ((${#bad[@]})); then
      echo "clang-format: ${#bad[@]} of ${#files[@]} files need formatting ($version); first diff:"
      "$cf" "${bad[0]}" | diff -u "${bad[0]}" - | head -40 || true
      echo "clang-format: run 'make format' to fix them"
      exit 1
    fi
    echo "clang-format: ${#files[@]} files ok ($version)"
    ;;
  *)
    echo "usage: clang_format.sh check|fix DIR..." >&2
    exit 2
    ;;
esac
