# shellcheck shell=bash
# hs_lib.sh - the reporting and skip rules shared by the end-to-end scripts that run
# a real Headscale (sourced, not run). The caller sets `prog` before sourcing and may
# define `cleanup` (die calls it). Callers run with `set -euo pipefail`.
#
#   ok MSG / bad MSG / note MSG   one result line; bad counts into $fails
#   die MSG                       cleanup (when defined), exit 1
#   skip WHY                      exit 77 (ctest SKIP), but exit 1 under CI=true: a
#                                 machine CI runs on must have everything
#   hs_require VERSION [DB]       skips unless Headscale VERSION is installed
#                                 (scripts/install-headscale.sh) and, for DB postgres,
#                                 the PostgreSQL server binaries and python3 are there

fails=0
ok() { echo "$prog: ok: $*"; }
bad() {
    echo "$prog: FAIL: $*" >&2
    fails=$((fails + 1))
}
note() { echo "$prog: note: $*"; }
die() {
    echo "$prog: $*" >&2
    if declare -F cleanup >/dev/null; then cleanup; fi
    exit 1
}
skip() {
    if [[ ${CI:-} == true ]]; then
        echo "$prog: cannot run here ($*), but CI must run it" >&2
        exit 1
    fi
    echo "$prog: SKIP: $*" >&2
    exit 77
}
hs_require() {
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    [[ -x $root/.cache/bin/headscale-$1/headscale ]] ||
        skip "no $root/.cache/bin/headscale-$1/headscale (scripts/install-headscale.sh $1)"
    if [[ ${2:-} == postgres ]] && ! command -v initdb >/dev/null &&
        ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        skip "PostgreSQL server binaries not installed"
    fi
    command -v python3 >/dev/null || skip "python3 missing"
}
