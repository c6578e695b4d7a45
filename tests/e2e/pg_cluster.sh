#!/usr/bin/env bash
# pg_cluster.sh - throwaway PostgreSQL cluster for tests (wraps scripts/pg-cluster.sh).
#
#   tests/e2e/pg_cluster.sh start --dir DIR        start; prints PG_* lines and PG_DSN
#   tests/e2e/pg_cluster.sh stop --dir DIR         stop and remove DIR
#   tests/e2e/pg_cluster.sh run [--dir DIR] -- CMD [ARGS...]
#                                                  start, run CMD with PG_DSN (and PG_*) in its
#                                                  environment, stop, remove DIR; exit with CMD's
#                                                  status
#
# The cluster listens on 127.0.0.1 (free port) with its socket inside DIR, has a database
# "h2r_test", and PG_DSN=postgresql://postgres@127.0.0.1:PORT/h2r_test. Never installs packages:
# exits 77 (ctest SKIP_RETURN_CODE) when the PostgreSQL server binaries are missing.
set -uo pipefail

HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
PGC=$HERE/../../scripts/pg-cluster.sh
prog=pg_cluster.sh

cmd=${1:-}
shift || true
dir=""
while [[ $# -gt 0 ]]; do
    case $1 in
    --dir) dir=${2:?--dir needs a value}; shift 2 ;;
    --) shift; break ;;
    *) echo "$prog: unknown argument '$1'" >&2; exit 2 ;;
    esac
done

start() {
    local out rc
    # A cluster left by a killed earlier run: stop it and start clean.
    if [[ -f $dir/pg/env ]]; then
        "$PGC" stop --dir "$dir" >/dev/null 2>&1
        rm -rf "$dir"
    fi
    mkdir -p "$dir"
    out=$("$PGC" start --dir "$dir" --db h2r_test --no-install --timeout 60)
    rc=$?
    if [[ $rc -eq 3 ]]; then
        echo "$prog: SKIP: PostgreSQL server binaries not installed (apt-get install postgresql)" >&2
        return 77
    fi
    [[ $rc -eq 0 ]] || return 1
    printf '%s\n' "$out"
    eval "$out"
    echo "PG_DSN=$PG_DSN_BASE/h2r_test"
}

stop() {
    "$PGC" stop --dir "$dir" >/dev/null 2>&1
    rm -rf "$dir"
}

case $cmd in
start)
    [[ -n $dir ]] || { echo "$prog: start needs --dir DIR" >&2; exit 2; }
    start
    ;;
stop)
    [[ -n $dir ]] || { echo "$prog: stop needs --dir DIR" >&2; exit 2; }
    stop
    ;;
run)
    [[ $# -gt 0 ]] || { echo "$prog: run needs -- CMD" >&2; exit 2; }
    [[ -n $dir ]] || dir=$(mktemp -d /tmp/h2r-pgtest.XXXXXX)
    env_lines=$(start)
    rc=$?
    if [[ $rc -ne 0 ]]; then
        stop
        exit $rc
    fi
    trap stop EXIT
    while IFS= read -r line; do
        [[ $line == *=* ]] && export "${line?}"
    done <<<"$env_lines"
    "$@"
    exit $?
    ;;
*)
    echo "usage: $prog start|stop --dir DIR | run [--dir DIR] -- CMD..." >&2
    exit 2
    ;;
esac
