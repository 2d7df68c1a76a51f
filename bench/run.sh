#!/usr/bin/env bash
# bench/run.sh: what `make bench` runs.  Installs what is missing (bench/setup.sh),
# then runs every benchmark and writes bench/RESULTS.md (bench/run.py; its flags pass
# through, e.g. `bash bench/run.sh --quick` or `--servers ours,orig,nginx --only http`).
# Full run: about 20 minutes on 2 cores; keep the machine otherwise idle.
# HTTPS: `python3 bench/tls_run.py` (after setup.sh) writes its own TLS section.
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bash "$BENCH/setup.sh"
"${PYTHON:-python3}" "$BENCH/run.py" "$@"
# The WebSocket echo benchmark writes its own section (kept by run.py).
quick=()
[[ " $* " == *" --quick "* ]] && quick=(--quick)
exec "${PYTHON:-python3}" "$BENCH/ws_bench.py" "${quick[@]}"
