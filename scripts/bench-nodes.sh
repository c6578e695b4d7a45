#!/usr/bin/env bash
# bench-nodes.sh - the replay client's TS2021 node sessions at sizes a real
# Headscale cannot register quickly (~25/s: bcrypt), against ts_stub, a minimal
# TS2021 control server (tests/tools/ts_stub.c) on loopback.
#
#   1. sizes (default 1000 5000 10000): N nodes all at once (--arrival 0, the
#      maximum arrival rate), each holding its map stream for --hold. Measured:
#      handshakes/s and registrations/s (run file: t_open_ns, register t_done_ns),
#      time until every node is registered and has its netmap, peak RSS and the RSS
#      while all N are held (sampled from /proc), RSS per held session (slope
#      between sizes), client CPU (user+sys, the run's replay_cost) per session,
#      the client's CPU share during the burst and while holding (sampled
#      /proc/PID/stat), errors by class (h2replay analyze --format json), and
#      the stub's own CPU.
#   2. reference (default on): REF_N nodes arriving over REF_ARRIVAL with the stub
#      answering every registration after --register-delay (a slow server: the
#      server is the bottleneck, not the client); the client's CPU share then.
#
# Usage: scripts/bench-nodes.sh [--quick] [--build DIR] [--out DIR] [--sizes "N..."]
#            [--hold DUR] [--peers K] [--keepalive DUR] [-t THREADS]
#            [--ref-n N] [--ref-arrival DUR] [--ref-hold DUR] [--ref-delay DUR] [--no-ref]
#   defaults: --sizes "1000 5000 10000" --hold 60s --peers 100 --keepalive 15s -t 1
#             --ref-n 10000 --ref-arrival 100s --ref-hold 130s --ref-delay 2s
#   --quick:  --sizes "200 1000" --hold 15s --ref-n 1000 --ref-arrival 10s --ref-hold 20s
# Results: a table on stdout, per-run files (run.h2rr, logs, /proc samples) and
# results.jsonl under --out (default: a temp dir, removed unless --out is given).
# Needs a build with h2replay and ts_stub. Root raises the open-file limit for the
# largest size (client and stub each need N + 1024). Every wait is bounded and
# every process started here is stopped by pid on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../tests/e2e/lib.sh
source "$ROOT/tests/e2e/lib.sh"

SIZES="1000 5000 10000" HOLD=60s PEERS=100 KEEPALIVE=15s THREADS=1
REF=1 REF_N=10000 REF_ARRIVAL=100s REF_HOLD=130s REF_DELAY=2s
BUILD="" OUT=""
while [[ $# -gt 0 ]]; do
    case $1 in
    --quick) SIZES="200 1000" HOLD=15s REF_N=1000 REF_ARRIVAL=10s REF_HOLD=20s ;;
    --build) BUILD=$2; shift ;;
    --out) OUT=$2; shift ;;
    --sizes) SIZES=$2; shift ;;
    --hold) HOLD=$2; shift ;;
    --peers) PEERS=$2; shift ;;
    --keepalive) KEEPALIVE=$2; shift ;;
    -t) THREADS=$2; shift ;;
    --ref-n) REF_N=$2; shift ;;
    --ref-arrival) REF_ARRIVAL=$2; shift ;;
    --ref-hold) REF_HOLD=$2; shift ;;
    --ref-delay) REF_DELAY=$2; shift ;;
    --no-ref) REF=0 ;;
    -h | --help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "bench-nodes.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
if [[ -z $BUILD ]]; then
    for d in "$ROOT/build-bench" "$ROOT/build-replay" "$ROOT/build"; do
        [[ -x $d/cli/h2replay && -x $d/replay/ts_stub ]] && BUILD=$d && break
    done
fi
H2REPLAY=${BUILD:-.}/cli/h2replay
STUB=${BUILD:-.}/replay/ts_stub
for b in "$H2REPLAY" "$STUB"; do
    [[ -x $b ]] || h2r_die "missing $b (build targets h2replay ts_stub; --build DIR)"
done

# seconds of a duration "90s", "2m", "500ms", "15"
secs() {
    awk -v d="$1" 'BEGIN {
        if (d ~ /ms$/) { sub(/ms$/, "", d); print d / 1000; exit }
        if (d ~ /s$/) { sub(/s$/, "", d); print d + 0; exit }
        if (d ~ /m$/) { sub(/m$/, "", d); print d * 60; exit }
        if (d ~ /h$/) { sub(/h$/, "", d); print d * 3600; exit }
        print d + 0 }'
}

KEEP=1
if [[ -z $OUT ]]; then
    OUT=$(mktemp -d "${TMPDIR:-/tmp}/h2r-bench-nodes.XXXXXX")
    KEEP=0
fi
mkdir -p "$OUT"
trap 'h2r_cleanup; [[ $KEEP = 1 ]] || rm -rf "$OUT"' EXIT
trap 'exit 130' INT TERM

# The open-file limit: every held session is one socket in each process.
max_n=$REF_N
for n in $SIZES; do ((n > max_n)) && max_n=$n; done
want_fds=$((max_n + 1024))
if [[ $(ulimit -n) -lt $want_fds ]]; then
    ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
if [[ $(ulimit -n) -lt $want_fds ]]; then
    h2r_log "warning: open-file limit $(ulimit -n) < $want_fds: the largest runs will hit it" \
        "(run as root, or raise the hard limit)"
fi
CLK_TCK=$(getconf CLK_TCK)

# sample PID FILE: every 0.5 s until PID exits: wall time, utime, stime (ticks),
# VmRSS, VmHWM (KiB). Bounded by the process's own life (and the caller's timeout).
sample() {
    local pid=$1 out=$2 stat rest k v _ rss hwm
    local -a f
    while [[ -r /proc/$pid/stat ]]; do
        read -r stat <"/proc/$pid/stat" 2>/dev/null || break
        rest=${stat##*) }
        read -r -a f <<<"$rest"
        rss=0 hwm=0
        while read -r k v _; do
            case $k in
            VmRSS:) rss=$v ;;
            VmHWM:) hwm=$v ;;
            esac
        done <"/proc/$pid/status" 2>/dev/null || break
        echo "$EPOCHREALTIME ${f[11]} ${f[12]} $rss $hwm"
        sleep 0.5
    done >"$out"
}

# run_one NAME N ARRIVAL HOLD REGISTER_DELAY: one stub, one replay, figures into
# $OUT/results.jsonl.
run_one() {
    local name=$1 n=$2 arrival=$3 hold=$4 delay=$5
    local dir=$OUT/$name port stub_pid rp_pid t0 limit rc=0 load0 load1
    mkdir -p "$dir"
    port=$(h2r_free_port)
    limit=$(awk -v a="$(secs "$arrival")" -v h="$(secs "$hold")" \
        'BEGIN { printf "%d", a + h + 180 }')
    h2r_bg "$dir/stub.log" "$STUB" --port "$port" --peers "$PEERS" --keepalive "$KEEPALIVE" \
        --register-delay "$delay" --max-conns $((max_n + 100)) --duration "${limit}s"
    stub_pid=$H2R_LAST_PID
    h2r_wait_port "$port" 10 || h2r_die "ts_stub did not listen on $port ($dir/stub.log)"
    read -r load0 _ </proc/loadavg
    # an absolute t0 two seconds ahead (after GET /key): the samples align with it
    t0=$(($(date +%s) + 2))
    h2r_log "$name: $n nodes, arrival $arrival, hold $hold, register delay $delay," \
        "stub :$port, load $load0"
    timeout -k 5 "$limit" "$H2REPLAY" replay --nodes "$n" --arrival "$arrival" \
        --hold "$hold" --connect-timeout 60s --timeout 60s -t "$THREADS" \
        --target "ts2021+http://127.0.0.1:$port" --set authkey=x --start-at "$t0" \
        -o "$dir/run.h2rr" >"$dir/replay.log" 2>&1 &
    rp_pid=$!
    H2R_PIDS+=("$rp_pid")
    # sample h2replay itself, timeout's child (bounded wait for it to appear)
    local child="" i
    for ((i = 0; i < 50; i++)); do
        read -r child _ <"/proc/$rp_pid/task/$rp_pid/children" 2>/dev/null || true
        [[ -n $child ]] && break
        sleep 0.1
    done
    [[ -n $child ]] && sample "$child" "$dir/samples.txt"
    wait "$rp_pid" || rc=$?
    read -r load1 _ </proc/loadavg
    h2r_stop_pid "$stub_pid" TERM 10
    tail -n 3 "$dir/replay.log" >&2 || true
    grep 'ts_stub: wall_s' "$dir/stub.log" >&2 || true
    if [[ $rc -ne 0 ]]; then
        h2r_log "$name: h2replay exited $rc (see $dir/replay.log)"
    fi
    "$H2REPLAY" show "$dir/run.h2rr" --format jsonl >"$dir/show.jsonl" 2>/dev/null || true
    "$H2REPLAY" analyze "$dir/run.h2rr" --format json >"$dir/analyze.json" 2>/dev/null || true
    h2r_python - "$dir" "$name" "$n" "$(secs "$arrival")" "$(secs "$hold")" \
        "$(secs "$delay")" "$t0" "$CLK_TCK" "$rc" "$load0" "$load1" "$PEERS" \
        >>"$OUT/results.jsonl" <<'EOF'
import json, statistics, sys
d, name, n, arrival, hold, delay, t0, tck, rc, load0, load1, peers = sys.argv[1:]
n, arrival, hold, delay, t0, tck, peers = int(n), float(arrival), float(hold), float(delay), float(t0), int(tck), int(peers)
res = {"name": name, "n": n, "arrival_s": arrival, "hold_s": hold, "register_delay_s": delay,
       "exit": int(rc), "load_start": float(load0), "load_end": float(load1), "peers": peers}
rows = []
try:
    with open(d + "/show.jsonl") as f:
        rows = [json.loads(l) for l in f if l.startswith("{")]
except OSError:
    pass
reg = [r for r in rows if r.get("path") == "/machine/register"]
mp = [r for r in rows if r.get("path") == "/machine/map"]
opens = sorted(r["t_open_ns"] for r in reg if r.get("t_open_ns") is not None)
reg_ok = [r for r in reg if r.get("class") == "ok"]
netmaps = [r for r in mp if r.get("t_netmap_ns") is not None]
S = 1e9
res["opened"] = len(opens)
res["registered"] = len(reg_ok)
res["with_netmap"] = len(netmaps)
res["full_peers"] = sum(1 for r in mp if r.get("peers") == peers)
res["held_to_end"] = sum(1 for r in mp if r.get("class") == "ok" and r.get("t_netmap_ns") is not None)
res["keepalives"] = sum(r.get("keepalives") or 0 for r in mp)
# sessions holding their stream at the same time: overlap of [first netmap, end]
ev = []
for r in netmaps:
    ev += [(r["t_netmap_ns"], 1), ((r.get("t_end_ns") or r.get("t_done_ns") or 0), -1)]
ev.sort()
cur = res["held_at_once"] = 0
for _, step in ev:
    cur += step
    res["held_at_once"] = max(res["held_at_once"], cur)
if opens:
    # from t0 (all nodes are due at t0 with --arrival 0); the span from the first to the
    # last open is also kept, but it hides the time before the first handshake completes
    res["t_first_open_s"] = opens[0] / S
    res["t_all_open_s"] = opens[-1] / S
    span = (opens[-1] - opens[0]) / S
    res["handshakes_per_s_span"] = len(opens) / span if span > 0 else None
    if arrival == 0 and opens[-1] > 0:
        res["handshakes_per_s"] = len(opens) / (opens[-1] / S)
if reg_ok:
    t_reg = max(r["t_done_ns"] for r in reg_ok) / S
    res["t_all_registered_s"] = t_reg
    if arrival == 0 and t_reg > 0:
        res["registers_per_s"] = len(reg_ok) / t_reg
if netmaps:
    res["t_all_netmap_s"] = max(r["t_netmap_ns"] for r in netmaps) / S
    if arrival == 0 and res["t_all_netmap_s"] > 0:
        res["netmaps_per_s"] = len(netmaps) / res["t_all_netmap_s"]
try:
    a = json.load(open(d + "/analyze.json"))["runs"][0]
    res["errors_by_class"] = a.get("errors_by_class", {})
    rc_ = a.get("replay_cost") or {}
    cpu = (rc_.get("cpu_user_ns", 0) + rc_.get("cpu_sys_ns", 0)) / S
    res["cpu_s"] = cpu
    res["cpu_ms_per_session"] = cpu * 1000 / n
    res["max_rss_mb"] = rc_.get("max_rss_kb", 0) / 1024
    res["duration_s"] = a.get("duration_ns", 0) / S
except (OSError, ValueError, IndexError, KeyError):
    pass
# /proc samples: t, utime, stime, rss, hwm
samp = []
try:
    for l in open(d + "/samples.txt"):
        p = l.split()
        if len(p) == 5:
            samp.append((float(p[0]) - t0, (int(p[1]) + int(p[2])) / tck, int(p[3]), int(p[4])))
except OSError:
    pass
def window(a, b):
    w = [s for s in samp if a <= s[0] <= b]
    if len(w) < 2 or w[-1][0] - w[0][0] < 2:
        return None
    return w
if samp:
    res["peak_rss_mb"] = max(s[3] for s in samp) / 1024
    # the burst: from t0 until every node has its netmap (or registered, for the reference)
    t_busy = res.get("t_all_netmap_s") or res.get("t_all_registered_s")
    if t_busy:
        w = window(0, t_busy + 0.5)
        if w:
            res["burst_cpu_share"] = (w[-1][1] - w[0][1]) / (w[-1][0] - w[0][0])
        # the hold: every node holds from its netmap until start + hold; the first to
        # leave is node 0 at t0 + hold
        w = window(t_busy + 1, hold - 1)
        if w:
            res["hold_window_s"] = [round(w[0][0], 1), round(w[-1][0], 1)]
            res["hold_cpu_share"] = (w[-1][1] - w[0][1]) / (w[-1][0] - w[0][0])
            res["hold_rss_mb"] = statistics.median(s[2] for s in w) / 1024
    if arrival > 0:
        w = window(0, arrival)
        if w:
            res["arrival_cpu_share"] = (w[-1][1] - w[0][1]) / (w[-1][0] - w[0][0])
    w = window(-1, 1e9)
    if w:
        res["run_cpu_share"] = (w[-1][1] - w[0][1]) / (w[-1][0] - w[0][0])
try:
    for l in open(d + "/stub.log"):
        if l.startswith("ts_stub: wall_s="):
            kv = dict(x.split("=", 1) for x in l.split() if "=" in x)
            res["stub_cpu_s"] = float(kv["cpu_user_s"]) + float(kv["cpu_sys_s"])
            res["stub_vmhwm_mb"] = int(kv["vmhwm_kb"]) / 1024
            res["stub_conns_peak"] = int(kv["conns_peak"])
            res["stub_errors"] = {k: int(kv[k]) for k in ("head", "bad_request", "body", "out", "h2", "ts") if k in kv}
except OSError:
    pass
print(json.dumps(res))
EOF
}

h2r_log "build $BUILD, open-file limit $(ulimit -n), peers $PEERS, keepalive $KEEPALIVE," \
    "threads $THREADS, results in $OUT"
for n in $SIZES; do
    run_one "burst-$n" "$n" 0 "$HOLD" 0
done
if [[ $REF = 1 ]]; then
    run_one "slow-server-$REF_N" "$REF_N" "$REF_ARRIVAL" "$REF_HOLD" "$REF_DELAY"
fi

h2r_python - "$OUT/results.jsonl" <<'EOF'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def f(v, fmt="{:.1f}"):
    return "–" if v is None else fmt.format(v)
print("| run | N | held at once (to the end, netmap, full peers) | all open / registered / netmap (s) | handshakes/s | registers/s | peak RSS (MB) | RSS held (MB) | client CPU ms/session | client CPU share: burst / hold | stub CPU (s) | errors | load start→end |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
for r in rs:
    err = ", ".join(f"{k} {v}" for k, v in sorted((r.get("errors_by_class") or {}).items())) or "none"
    burst = r.get("arrival_cpu_share") if r["arrival_s"] > 0 else r.get("burst_cpu_share")
    print(f"| {r['name']} | {r['n']} | {r.get('held_at_once', 0)} ({r.get('held_to_end', 0)}, {r.get('with_netmap', 0)}, {r.get('full_peers', 0)}) "
          f"| {f(r.get('t_all_open_s'))} / {f(r.get('t_all_registered_s'))} / {f(r.get('t_all_netmap_s'))} | {f(r.get('handshakes_per_s'), '{:.0f}')} | {f(r.get('registers_per_s'), '{:.0f}')} "
          f"| {f(r.get('peak_rss_mb'))} | {f(r.get('hold_rss_mb'))} | {f(r.get('cpu_ms_per_session'), '{:.2f}')} "
          f"| {f(burst, '{:.2f}')} / {f(r.get('hold_cpu_share'), '{:.3f}')} | {f(r.get('stub_cpu_s'), '{:.1f}')} | {err} "
          f"| {r['load_start']:.1f}→{r['load_end']:.1f} |")
burst = sorted((r for r in rs if r["arrival_s"] == 0 and r.get("hold_rss_mb")), key=lambda r: r["n"])
for a, b in zip(burst, burst[1:]):
    slope = (b["hold_rss_mb"] - a["hold_rss_mb"]) * 1024 / (b["n"] - a["n"])
    print(f"RSS per held session, {a['n']} -> {b['n']}: {slope:.1f} KiB")
EOF
