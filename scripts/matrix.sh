#!/usr/bin/env bash
# matrix.sh - the SQLite-vs-PostgreSQL matrix in one command: Headscale releases x databases x
# node counts, one fresh Headscale per cell, the seed's registration flow, one combined report.
#
#   scripts/matrix.sh [--versions "v0.23.0 v0.29.2"] [--dbs "sqlite postgres"]
#                     [--nodes "600 2000 5000 10000"] [--budget DUR] [--rate R] [--settle DUR]
#                     [--timeout DUR] [--out DIR] [--build DIR] [--quick] [--synthetic]
#                     [--report-only]
#
# Lists may be space- or comma-separated. Defaults: both pinned releases, both databases,
# 600 2000 5000 10000 nodes, --budget 15m per cell, --rate 10 (nodes arriving per second),
# --settle 60s, --timeout 60s, --out out/matrix. --quick: v0.29.2 x sqlite,postgres x 20 nodes,
# rate 10, settle 8s, budget 120s (the smoke matrix of tests/e2e/matrix_quick.sh).
# --synthetic: synthetic sessions even when the captured ones could be replayed.
# --report-only rebuilds OUT/report.{md,html} from the cells already in OUT (--build is then
# not needed).
#
# Each cell (OUT/cells/VERSION-DB-N/):
#   1. scripts/headscale.sh start --version V --db D (fresh database, loopback only);
#   2. the seed's admin flow through the gRPC admin API: the committed trace of a real gRPC
#      client creating users and reusable pre-auth keys (traces/headscale-grpc-V.h2rt, else
#      traces/headscale-grpc.h2rt) replayed at 10x with --db -> admin.h2rr. Its responses are
#      not stored, so the key the nodes use comes from the launcher's authkey command
#      (reusable, user "nodes");
#   3. N node sessions over TS2021 (register + map stream) with --db, --timeout and the budget:
#      - when traces/tailscale-sample.h2rt exists and `h2replay replay --help` mentions
#        replaying captured sessions: that trace with --clone K, K = ceil(N / 12) (12 real
#        nodes, 14 sessions: 14*K sessions), copies spread over the arrival time;
#      - otherwise synthetic sessions: --nodes N --arrival ceil(N/rate)s --hold (arrival +
#        settle), so every node is still connected `settle` after the last one arrived.
#      Run under /usr/bin/time -v (client CPU, peak RSS) with a 1 s /proc sampler (client fds
#      and RSS, Headscale and PostgreSQL CPU, machine load). At the budget the replay gets
#      SIGINT (a valid run file: unsent sessions skipped, open ones cancelled), SIGKILL 30 s later;
#   4. h2replay db verify --run: the nodes whose registration was acknowledged (the run's ack
#      records) against the database;
#   5. stop (logs kept: hs/headscale.log, hs/pg/*.log), then h2replay analyze --format
#      json|md|html per cell (with --server-log when analyze supports it).
# Finally scripts/matrix_report.py writes OUT/report.md and OUT/report.html.
#
# Environment: H2REPLAY (binary; default BUILD/cli/h2replay, BUILD = build).
# Everything started here is stopped on exit (trap); every wait is bounded.
# Exit status: 0 the matrix ran and the report was written (cells may have failed: the report
# says why); 1 nothing could run or the report failed; 2 usage.
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
HS=$ROOT/scripts/headscale.sh
prog=matrix.sh

versions="v0.23.0 v0.29.2" dbs="sqlite postgres" nodes="600 2000 5000 10000"
budget=15m rate=10 settle=60s timeout=60s OUT="" BUILD="" quick=0 report_only=0 lists_given=0
synthetic=0
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
usage_exit() { echo "$prog: $*" >&2; exit 2; }
die() { echo "$prog: $*" >&2; exit 1; }
while [[ $# -gt 0 ]]; do
    case $1 in
    --versions) versions=${2:?--versions needs a value}; lists_given=1; shift 2 ;;
    --dbs) dbs=${2:?--dbs needs a value}; lists_given=1; shift 2 ;;
    --nodes) nodes=${2:?--nodes needs a value}; lists_given=1; shift 2 ;;
    --budget) budget=${2:?--budget needs a value}; shift 2 ;;
    --rate) rate=${2:?--rate needs a value}; shift 2 ;;
    --settle) settle=${2:?--settle needs a value}; shift 2 ;;
    --timeout) timeout=${2:?--timeout needs a value}; shift 2 ;;
    --out) OUT=${2:?--out needs a value}; shift 2 ;;
    --build) BUILD=${2:?--build needs a value}; shift 2 ;;
    --quick) quick=1; shift ;;
    --synthetic) synthetic=1; shift ;;
    --report-only) report_only=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_exit "unknown argument '$1' (see --help)" ;;
    esac
done
if [[ $quick -eq 1 ]]; then
    versions=v0.29.2 dbs="sqlite postgres" nodes=20 budget=120s settle=8s timeout=30s
fi
versions=${versions//,/ } dbs=${dbs//,/ } nodes=${nodes//,/ }

# DUR (500ms, 90s, 15m, 1h, plain seconds) -> whole seconds (rounded up)
dur_s() {
    local v=$1 n u
    [[ $v =~ ^([0-9]+)(ms|s|m|min|h)?$ ]] || usage_exit "'$v' is not a duration (e.g. 90s, 15m)"
    n=${BASH_REMATCH[1]} u=${BASH_REMATCH[2]:-s}
    case $u in ms) echo $(((n + 999) / 1000)) ;; s) echo "$n" ;; m | min) echo $((n * 60)) ;;
    h) echo $((n * 3600)) ;; esac
}
budget_s=$(dur_s "$budget") settle_s=$(dur_s "$settle") timeout_s=$(dur_s "$timeout")
((budget_s > 0)) || usage_exit "--budget must be positive"
[[ $rate =~ ^[0-9]+$ && $rate -gt 0 ]] || usage_exit "--rate: '$rate' is not a positive integer"
for v in $versions; do [[ $v =~ ^v0\.[0-9]+\.[0-9]+$ ]] || usage_exit "--versions: '$v' is not v0.X.Y"; done
for d in $dbs; do [[ $d == sqlite || $d == postgres ]] || usage_exit "--dbs: '$d' is not sqlite or postgres"; done
for n in $nodes; do [[ $n =~ ^[0-9]+$ && $n -ge 2 ]] || usage_exit "--nodes: '$n' is not a count >= 2"; done

[[ -n $OUT ]] || OUT=$ROOT/out/matrix
mkdir -p "$OUT/cells"
OUT=$(cd "$OUT" && pwd)
[[ -n $BUILD ]] || BUILD=$ROOT/build
H2R=${H2REPLAY:-$BUILD/cli/h2replay}
command -v python3 >/dev/null || die "python3 is required"
log() { echo "[$(date +%T)] $*" >&2; }

report() {
    python3 "$ROOT/scripts/matrix_report.py" --out "$OUT" --versions "$versions" --dbs "$dbs" \
        --nodes "$nodes" || die "report generation failed"
    log "report: $OUT/report.md, $OUT/report.html"
}
if [[ $report_only -eq 1 ]]; then
    # the cells found in OUT; with --versions/--dbs/--nodes, also the missing ones as not run
    [[ $lists_given -eq 1 ]] || versions="" dbs="" nodes=""
    report
    exit 0
fi

[[ -x $H2R ]] || die "no h2replay at $H2R (build it, or --build DIR / H2REPLAY=PATH)"

# What this h2replay can do (features other work adds are used when present).
replay_help=$("$H2R" replay --help 2>&1 || true)
analyze_help=$("$H2R" analyze --help 2>&1 || true)
SAMPLE_TRACE=$ROOT/traces/tailscale-sample.h2rt
use_trace=0
if [[ $synthetic -eq 0 && -f $SAMPLE_TRACE ]] && grep -qiE 'captured [a-z0-9 ]*sessions|session records|ts_session' <<<"$replay_help"; then
    use_trace=1
fi
server_log_flag=0
grep -q -- '--server-log' <<<"$analyze_help" && server_log_flag=1
TIME_BIN=""
[[ -x /usr/bin/time ]] && TIME_BIN=/usr/bin/time
# the bounded loops and the replay's fds: raise the soft limit for 10,000 sessions
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---- cleanup: every Headscale, replay and sampler started here
cur_hs_dir="" cur_replay_pid="" cur_sampler_pid=""
cleanup() {
    set +e # a process that is already gone must not stop the cleanup
    if [[ -n $cur_sampler_pid ]]; then kill "$cur_sampler_pid" 2>/dev/null; fi
    if [[ -n $cur_replay_pid ]] && kill -0 "$cur_replay_pid" 2>/dev/null; then
        kill -INT "$cur_replay_pid" 2>/dev/null
        for _ in $(seq 1 50); do
            kill -0 "$cur_replay_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$cur_replay_pid" 2>/dev/null
    fi
    if [[ -n $cur_hs_dir && -f $cur_hs_dir/env ]]; then
        "$HS" stop --dir "$cur_hs_dir" --keep >/dev/null 2>&1
    fi
    return 0
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# cell metadata: KEY=VALUE lines in CELL/cell.env (read by matrix_report.py)
meta() { printf '%s=%s\n' "$1" "$2" >>"$cell/cell.env"; }
cpu_ticks() { # PID -> utime+stime (+ children reaped) in clock ticks, 0 when gone
    awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
pg_ticks() { # postmaster pid -> its ticks + every live child's utime+stime
    local pm=$1 t c
    [[ -n $pm ]] || { echo 0; return; }
    t=$(cpu_ticks "$pm")
    local kids=()
    read -r -a kids <"/proc/$pm/task/$pm/children" 2>/dev/null || true
    for c in "${kids[@]}"; do
        t=$((t + $(awk '{ print $14 + $15 }' "/proc/$c/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# sampler REPLAY_PID HS_PID PG_PID FILE LIMIT_S: one line a second while the replay runs
sampler() {
    local rp=$1 hp=$2 pp=$3 f=$4 limit=$5 i=0 fds
    echo -e "t_s\treplay_fds\treplay_rss_kb\ths_ticks\ths_rss_kb\tpg_ticks\tload1" >"$f"
    while ((i <= limit)) && kill -0 "$rp" 2>/dev/null; do
        fds=$(find "/proc/$rp/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        echo -e "$i\t$fds\t$(rss_kb "$rp")\t$(cpu_ticks "$hp")\t$(rss_kb "$hp")\t$(pg_ticks "$pp")\t$(cut -d' ' -f1 /proc/loadavg)" >>"$f"
        sleep 1
        i=$((i + 1))
    done
}

run_cell() { # VERSION DB N
    local v=$1 db=$2 n=$3 name=$1-$2-$3
    cell=$OUT/cells/$name
    if [[ -d $cell ]]; then
        [[ -f $cell/.h2r-matrix-cell ]] || die "$cell exists and is not a matrix cell; not touching it"
        if [[ -f $cell/hs/env ]]; then "$HS" stop --dir "$cell/hs" >/dev/null 2>&1 || true; fi
        rm -rf "$cell"
    fi
    mkdir -p "$cell"
    touch "$cell/.h2r-matrix-cell"
    : >"$cell/cell.env"
    meta version "$v"; meta db "$db"; meta nodes "$n"; meta budget_s "$budget_s"
    meta started "$(date -u +%FT%TZ)"; meta load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
    local t_cell=$SECONDS
    if [[ ! -x $ROOT/.cache/bin/headscale-$v/headscale ]]; then
        meta status not_run
        meta reason "Headscale $v is not installed (scripts/install-headscale.sh $v)"
        log "$name: not run: Headscale $v not installed"
        return 0
    fi
    log "$name: starting Headscale ($(uptime | sed 's/.*load/load/'))"
    local env_out
    if ! env_out=$(timeout 300 "$HS" start --version "$v" --db "$db" --dir "$cell/hs" --no-install \
        2>"$cell/start.log"); then
        meta status not_run
        meta reason "Headscale $v on $db did not start: $(tail -1 "$cell/start.log" | tr -d '\n')"
        log "$name: not run: Headscale did not start (see $cell/start.log)"
        if [[ -f $cell/hs/env ]]; then "$HS" stop --dir "$cell/hs" --keep >/dev/null 2>&1 || true; fi
        return 0
    fi
    cur_hs_dir=$cell/hs
    local HS_URL HS_GRPC HS_API_KEY HS_DB HS_PID HS_LOG HS_LOG_FORMAT HS_READY_MS PG_DATA=""
    eval "$env_out"
    meta hs_ready_ms "$HS_READY_MS"; meta hs_log_format "$HS_LOG_FORMAT"

    # ---- admin flow: users + reusable pre-auth keys over gRPC (the committed trace, 10x)
    local trace=$ROOT/traces/headscale-grpc-$v.h2rt
    [[ -f $trace ]] || trace=$ROOT/traces/headscale-grpc.h2rt
    meta admin_trace "${trace#"$ROOT"/}"
    if timeout 120 "$H2R" replay "$trace" --target "admin=http://$HS_GRPC" --db "admin=$HS_DB" \
        --set "authorization_1=$HS_API_KEY" --speed 10 --label "$name admin" -q \
        -o "$cell/admin.h2rr" >"$cell/admin.log" 2>&1; then
        meta admin ok
    else
        meta admin failed
        log "$name: admin trace replay failed (see $cell/admin.log); going on with the launcher's key"
    fi
    local key
    if ! key=$(timeout 120 "$HS" authkey --dir "$cell/hs" --user nodes --reusable 2>"$cell/authkey.log"); then
        meta status failed
        meta reason "could not create a reusable pre-auth key: $(tail -1 "$cell/authkey.log" | tr -d '\n')"
        "$HS" stop --dir "$cell/hs" --keep >/dev/null 2>&1 || true
        cur_hs_dir=""
        return 0
    fi

    # ---- node sessions
    local arrival_s=$(((n + rate - 1) / rate)) hold_s sessions args
    hold_s=$((arrival_s + settle_s))
    if [[ $use_trace -eq 1 ]]; then
        local k=$(((n + 11) / 12))
        sessions=$((14 * k))
        args=("$SAMPLE_TRACE" --clone "$k" --clone-jitter "${arrival_s}s")
        meta mode "trace"
        meta clone "$k"
        meta planned_s "$((arrival_s + settle_s))"
    else
        sessions=$n
        args=(--nodes "$n" --arrival "${arrival_s}s" --hold "${hold_s}s")
        meta mode "synthetic"
        meta planned_s "$((arrival_s + hold_s))"
    fi
    meta sessions "$sessions"; meta arrival_s "$arrival_s"; meta hold_s "$hold_s"
    meta settle_s "$settle_s"; meta timeout_s "$timeout_s"
    local cmd=("$H2R" replay "${args[@]}" --target "hs=ts2021+$HS_URL" --set "authkey=$key"
        --db "hs=$HS_DB" --timeout "${timeout_s}s" --connect-timeout 30s
        --label "headscale $v $db $n nodes" -q -o "$cell/nodes.h2rr")
    # the command as documented (key masked)
    meta command "$(printf '%q ' "${cmd[@]}" | sed "s/authkey=[^ ]*/authkey=KEY/")"
    local pg_pm=""
    if [[ -n $PG_DATA && -f $PG_DATA/postmaster.pid ]]; then pg_pm=$(head -1 "$PG_DATA/postmaster.pid"); fi
    local hs0 pg0 m0 t0 hs1 pg1 m1
    hs0=$(cpu_ticks "$HS_PID") pg0=$(pg_ticks "$pg_pm") m0=$(machine_busy) t0=$(date +%s%N)
    log "$name: $sessions sessions ($(grep '^mode=' "$cell/cell.env" | cut -d= -f2)), arrival ${arrival_s}s, hold ${hold_s}s, budget ${budget_s}s"
    if [[ -n $TIME_BIN ]]; then
        "$TIME_BIN" -v -o "$cell/time.txt" "${cmd[@]}" >"$cell/nodes.log" 2>&1 &
    else
        "${cmd[@]}" >"$cell/nodes.log" 2>&1 &
    fi
    local wrapper=$! rp=""
    for _ in $(seq 1 50); do # the replay itself (child of /usr/bin/time)
        if [[ -n $TIME_BIN ]]; then
            rp=$(awk '{ print $1 }' "/proc/$wrapper/task/$wrapper/children" 2>/dev/null || true)
        else
            rp=$wrapper
        fi
        [[ -n $rp ]] && break
        sleep 0.1
    done
    [[ -n $rp ]] || rp=$wrapper
    cur_replay_pid=$rp
    sampler "$rp" "$HS_PID" "$pg_pm" "$cell/proc.tsv" $((budget_s + 60)) &
    cur_sampler_pid=$!
    # wait for the replay, at most the budget; then SIGINT, then SIGKILL 30 s later
    local waited=0 cut=0
    while kill -0 "$wrapper" 2>/dev/null; do
        if ((waited >= budget_s)); then
            cut=1
            log "$name: budget ${budget_s}s reached; SIGINT to the replay"
            kill -INT "$rp" 2>/dev/null || true
            for _ in $(seq 1 300); do
                kill -0 "$wrapper" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$wrapper" 2>/dev/null; then
                kill -KILL "$rp" 2>/dev/null || true
                meta killed 1
            fi
            break
        fi
        sleep 1
        waited=$((waited + 1))
    done
    local rc=0
    wait "$wrapper" || rc=$?
    t1=$(date +%s%N) hs1=$(cpu_ticks "$HS_PID") pg1=$(pg_ticks "$pg_pm") m1=$(machine_busy)
    kill "$cur_sampler_pid" 2>/dev/null || true # it may have ended with the replay
    wait "$cur_sampler_pid" 2>/dev/null || true
    cur_sampler_pid="" cur_replay_pid=""
    local hz
    hz=$(getconf CLK_TCK)
    meta replay_rc "$rc"; meta cut "$cut"; meta replay_wall_ms $(((t1 - t0) / 1000000))
    meta hs_cpu_s "$(awk -v a="$hs0" -v b="$hs1" -v h="$hz" 'BEGIN { printf "%.2f", (b - a) / h }')"
    meta pg_cpu_s "$(awk -v a="$pg0" -v b="$pg1" -v h="$hz" 'BEGIN { printf "%.2f", (b - a) / h }')"
    meta machine_cpu_s "$(awk -v a="$m0" -v b="$m1" -v h="$hz" 'BEGIN { printf "%.2f", (b - a) / h }')"
    meta hs_rss_kb "$(rss_kb "$HS_PID")"
    meta load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
    if [[ ! -s $cell/nodes.h2rr ]]; then
        meta status failed
        meta reason "the replay wrote no run file (exit $rc): $(tail -1 "$cell/nodes.log" | tr -d '\n')"
    else
        if [[ $cut -eq 1 ]]; then
            meta status cut
            meta reason "stopped by the ${budget_s}s budget (SIGINT)"
        else
            meta status "done"
        fi
        # ---- acknowledged registrations -> verify against the database (server still up):
        # the run file holds an ack record per accepted registration (replay --db also wrote
        # its own verify record at the section's end; this one runs after the last write)
        timeout 300 "$H2R" show "$cell/nodes.h2rr" --format jsonl --records all >"$cell/nodes.jsonl" 2>/dev/null || true
        timeout 300 "$H2R" db verify --db "$HS_DB" --run "$cell/nodes.h2rr" --kinds nodes --format json \
            >"$cell/verify.json" 2>"$cell/verify.log" || true
    fi
    "$HS" stop --dir "$cell/hs" --keep >/dev/null 2>&1 || true
    cur_hs_dir=""

    # ---- per-cell analysis
    local slog=()
    if [[ $server_log_flag -eq 1 && -f $HS_LOG ]]; then slog=(--server-log "$HS_LOG"); fi
    if [[ -s $cell/nodes.h2rr ]]; then
        for f in json md html; do
            timeout 600 "$H2R" analyze "$cell/nodes.h2rr" "${slog[@]}" --format "$f" -o "$cell/analyze.$f" -q \
                2>>"$cell/analyze.log" || true
        done
    fi
    if [[ -s $cell/admin.h2rr ]]; then
        timeout 120 "$H2R" analyze "$cell/admin.h2rr" --format json -o "$cell/admin.json" -q \
            2>>"$cell/analyze.log" || true
    fi
    meta cell_wall_s $((SECONDS - t_cell))
    log "$name: $(grep '^status=' "$cell/cell.env" | cut -d= -f2) in $((SECONDS - t_cell)) s"
}

T0=$SECONDS
{
    echo "started=$(date -u +%FT%TZ)"
    echo "host=$(hostname)"
    echo "cpus=$(nproc)"
    echo "mem=$(free -g | awk '/^Mem/ { print $2 }') GiB"
    echo "kernel=$(uname -r)"
    echo "h2replay=$H2R"
    echo "sessions_mode=$([[ $use_trace -eq 1 ]] && echo "trace (traces/tailscale-sample.h2rt --clone)" || echo "synthetic (--nodes)")"
    echo "server_log=$server_log_flag"
    echo "uptime=$(uptime)"
    echo "args=--versions '$versions' --dbs '$dbs' --nodes '$nodes' --budget $budget --rate $rate --settle $settle --timeout $timeout"
} >"$OUT/matrix.env"
for v in $versions; do
    for n in $nodes; do
        for db in $dbs; do
            run_cell "$v" "$db" "$n"
        done
    done
done
echo "wall_s=$((SECONDS - T0))" >>"$OUT/matrix.env"
echo "uptime_end=$(uptime)" >>"$OUT/matrix.env"
{ echo "--- $(date -u +%FT%TZ)"; cat "$OUT/matrix.env"; } >>"$OUT/runs.log"
report
