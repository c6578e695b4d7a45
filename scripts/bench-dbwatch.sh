#!/usr/bin/env bash
# bench-dbwatch.sh - what `replay --db` costs the replay: throughput of `replay --speed max`
# against nghttpd on loopback with and without a database watcher, same trace, same speed.
#
#   scripts/bench-dbwatch.sh [--build DIR] [-n N] [-c C] [-m M] [--rounds R] [--pg]
#     defaults: -n 100000 -c 10 -m 10 --rounds 3
#
# Modes, run in turn R times (interleaved, so drift of a shared machine hits all alike):
#   none         no --db
#   sqlite-1s    --db sqlite:FILE (a Headscale-shaped SQLite file in WAL mode, 1000 users)
#   sqlite-10ms  the same at --db-interval 10ms (the shortest)
#   pg-1s, pg-10ms  with --pg: a throwaway PostgreSQL cluster (scripts/pg-cluster.sh) holding
#                the same rows
# Prints per mode the median requests/s and the CPU seconds of the replay process (section
# ends), and the ratio to "none". Needs nghttpd, sqlite3 (or python3), a build with h2replay
# and rp_mktrace. Loopback only; bounded; stops what it started, by pid.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../tests/e2e/lib.sh
source "$ROOT/tests/e2e/lib.sh"

N=100000 C=10 M=10 ROUNDS=3 PG=0 BUILD=""
while [[ $# -gt 0 ]]; do
    case $1 in
    --build) BUILD=$2; shift ;;
    -n) N=$2; shift ;;
    -c) C=$2; shift ;;
    -m) M=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --pg) PG=1 ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "bench-dbwatch.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
if [[ -z $BUILD ]]; then
    for d in "$ROOT/build" "$ROOT/build-replay"; do
        [[ -x $d/cli/h2replay && -x $d/replay/rp_mktrace ]] && BUILD=$d && break
    done
fi
H2REPLAY=$BUILD/cli/h2replay
MKTRACE=$BUILD/replay/rp_mktrace
for b in "$H2REPLAY" "$MKTRACE"; do
    [[ -x $b ]] || h2r_die "missing $b (build targets h2replay rp_mktrace; --build DIR)"
done
h2r_have_tools nghttpd || h2r_die "needs nghttpd (scripts/setup.sh)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/h2r-bench-dbwatch.XXXXXX")
cleanup() {
    [[ $PG -eq 1 && -f $WORK/pg/env ]] && "$ROOT/scripts/pg-cluster.sh" stop --dir "$WORK" >/dev/null 2>&1
    h2r_cleanup
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/doc"
printf 'hello h2c\n' >"$WORK/doc/small.txt"

# A Headscale-shaped database with some rows (what the watcher counts).
schema="CREATE TABLE users(id integer PRIMARY KEY, name text, deleted_at timestamp);
CREATE TABLE nodes(id integer PRIMARY KEY, node_key text, deleted_at timestamp);
CREATE TABLE pre_auth_keys(id integer PRIMARY KEY, key text, user_id integer);
CREATE TABLE api_keys(id integer PRIMARY KEY, prefix text);"
rows="INSERT INTO users(name) SELECT 'u' || x FROM generate_series(1, 1000) AS x;"
sqlite_rows="WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < 1000)
INSERT INTO users(name) SELECT 'u' || x FROM s;"
python3 - "$WORK/hs.sqlite" "$schema" "$sqlite_rows" <<'EOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("PRAGMA journal_mode=WAL")
c.executescript(sys.argv[2] + sys.argv[3])
c.commit()
EOF
modes=(none sqlite-1s sqlite-10ms)
if [[ $PG -eq 1 ]]; then
    pg_env=$("$ROOT/scripts/pg-cluster.sh" start --dir "$WORK" --db headscale) || h2r_die "PostgreSQL did not start"
    eval "$pg_env"
    PSQL=$PG_BIN/psql
    [[ -x $PSQL ]] || PSQL=$(command -v psql)
    "$PSQL" -X -q "$PG_DSN_BASE/headscale" -c "${schema//integer PRIMARY KEY/serial PRIMARY KEY} $rows" >/dev/null || h2r_die "psql schema"
    modes+=(pg-1s pg-10ms)
fi

PORT=$(h2r_free_port)
h2r_bg "$WORK/nghttpd.log" nghttpd --no-tls -a 127.0.0.1 -d "$WORK/doc" "$PORT"
h2r_wait_port "$PORT" 10 || h2r_die "nghttpd did not start"
"$MKTRACE" -o "$WORK/max.trace" --conns "$C" --per-conn $((N / C)) --concurrent "$M" \
    --interval 1ms --service 100us --paths /small.txt 2>/dev/null

declare -A rates cpus
for ((round = 1; round <= ROUNDS; round++)); do
    for mode in "${modes[@]}"; do
        args=()
        case $mode in
        sqlite-1s) args=(--db "sqlite:$WORK/hs.sqlite") ;;
        sqlite-10ms) args=(--db "sqlite:$WORK/hs.sqlite" --db-interval 10ms) ;;
        pg-1s) args=(--db "$PG_DSN_BASE/headscale") ;;
        pg-10ms) args=(--db "$PG_DSN_BASE/headscale" --db-interval 10ms) ;;
        esac
        timeout -k 5 $((60 + N / 2000)) "$H2REPLAY" replay -q "$WORK/max.trace" \
            --target "http://127.0.0.1:$PORT" --speed max "${args[@]}" -o "$WORK/$mode.run"
        read -r rate cpu samples < <("$H2REPLAY" show "$WORK/$mode.run" --format jsonl --records all |
            python3 -c '
import json, sys
res = n = 0; end = {}; t_last = 0
for l in sys.stdin:
    r = json.loads(l)
    if r.get("type") == "section_end": end = r
    elif r.get("type") == "db_sample": n += 1
    elif "class" in r:
        res += r["class"] == "ok"; t_last = max(t_last, r["t_done_ns"])
dur = max(end.get("t_end_ns", 0), t_last) / 1e9
print("%.0f %.2f %d" % (res / dur, (end.get("cpu_user_ns", 0) + end.get("cpu_sys_ns", 0)) / 1e9, n))')
        rates[$mode]+="$rate "
        cpus[$mode]+="$cpu "
        h2r_log "round $round $mode: $rate ok/s, replay cpu ${cpu}s, $samples db samples"
    done
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
base=$(median "${rates[none]}")
echo
echo "replay --speed max, $N requests on $C connections x $M streams, nghttpd, median of $ROUNDS:"
printf '  %-12s %10s %8s %10s\n' mode "ok/s" "vs none" "cpu s"
for mode in "${modes[@]}"; do
    r=$(median "${rates[$mode]}")
    printf '  %-12s %10s %8s %10s\n' "$mode" "$r" "$(awk -v a="$r" -v b="$base" 'BEGIN { printf "%.3f", a / b }')" \
        "$(median "${cpus[$mode]}")"
done
