#!/usr/bin/env bash
# bench-replay.sh - benchmarks of the replay engine against nghttpd on loopback.
#
#   1. throughput: `replay --speed max` vs h2load with the same connections, concurrent
#      streams and threads (ratio of request rates). The replay trace is a capture of
#      that very h2load run when --capture is given (root + tcpdump), else a synthetic
#      trace of the same shape (groups of M streams per connection, each group sent
#      when the previous one completed: stricter than h2load's continuous refill).
#   2. schedule accuracy: a synthetic trace at RATE req/s for DURATION seconds replayed
#      at speed 1; send lateness (t_sent - t_intended) p50 / p99 / max, exact, from the
#      run file, with 1 loop thread and with T threads.
#   3. memory: IDLE connections held open together; peak RSS of the replay process and
#      the cost per connection above a one-connection baseline.
#
# Usage: scripts/bench-replay.sh [--quick] [--capture] [--build DIR] [-n N] [-c C] [-m M]
#                                [-t T] [--rate R] [--duration S] [--idle N]
#   defaults: -n 1000000 -c 100 -m 10 -t 2 --rate 20000 --duration 30 --idle 10000
#   --quick:  -n 20000 -c 10 -m 10 -t 1 --rate 20000 --duration 2 --idle 1000
# Needs nghttpd, h2load and a build with h2replay, rp_mktrace and rp_runcat (the
# replay stage's test tools). Loopback only; every wait is bounded; every process
# started here is stopped by pid on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../tests/e2e/lib.sh
source "$ROOT/tests/e2e/lib.sh"

N=1000000 C=100 M=10 T=2 RATE=20000 DURATION=30 IDLE=10000 CAPTURE=0 BUILD=""
while [[ $# -gt 0 ]]; do
    case $1 in
    --quick) N=20000 C=10 M=10 T=1 RATE=20000 DURATION=2 IDLE=1000 ;;
    --capture) CAPTURE=1 ;;
    --build) BUILD=$2; shift ;;
    -n) N=$2; shift ;;
    -c) C=$2; shift ;;
    -m) M=$2; shift ;;
    -t) T=$2; shift ;;
    --rate) RATE=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --idle) IDLE=$2; shift ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "bench-replay.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
if [[ -z $BUILD ]]; then
    for d in "$ROOT/build-replay" "$ROOT/build"; do
        [[ -x $d/cli/h2replay && -x $d/replay/rp_mktrace ]] && BUILD=$d && break
    done
fi
H2REPLAY=$BUILD/cli/h2replay
MKTRACE=$BUILD/replay/rp_mktrace
RUNCAT=$BUILD/replay/rp_runcat
for b in "$H2REPLAY" "$MKTRACE" "$RUNCAT"; do
    [[ -x $b ]] || h2r_die "missing $b (build targets h2replay rp_mktrace rp_runcat; --build DIR)"
done
h2r_have_tools nghttpd h2load || h2r_die "needs nghttpd and h2load (scripts/setup.sh)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/h2r-bench-replay.XXXXXX")
trap 'h2r_cleanup; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/doc"
printf 'hello h2c\n' >"$WORK/doc/small.txt"

# Raise the descriptor limit for the idle-connection test (both ends live here).
want_fds=$((IDLE * 2 + 1024))
ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ $(ulimit -n) -lt $want_fds ]]; then
    IDLE=$((($(ulimit -n) - 1024) / 2))
    h2r_log "open-file limit $(ulimit -n): idle connections reduced to $IDLE"
fi

# summary KEY FIELD: a field of rp_runcat --summary output
field() {
    sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"
}
us() {
    awk -v v="$1" 'BEGIN { printf "%.1fus", v / 1000 }'
}

PORT=$(h2r_free_port)
h2r_bg "$WORK/nghttpd.log" nghttpd --no-tls -a 127.0.0.1 -n "$T" -d "$WORK/doc" "$PORT"
NGHTTPD_PID=$H2R_LAST_PID
h2r_wait_port "$PORT" 10 || h2r_die "nghttpd did not start"
URL=http://127.0.0.1:$PORT/small.txt
limit=$((60 + N / 5000))

# ---- 1. throughput ----
h2r_log "1. throughput: h2load -n $N -c $C -m $M -t $T"
h2load_out=$(timeout -k 5 "$limit" h2load -n "$N" -c "$C" -m "$M" -t "$T" "$URL" 2>&1) ||
    h2r_die "h2load failed: $h2load_out"
h2load_rps=$(sed -n 's/.*finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$h2load_out")
trace_kind=synthetic
if [[ $CAPTURE -eq 1 ]] && [[ $(id -u) -eq 0 ]] && h2r_have_tools tcpdump; then
    h2r_tcpdump_start "$WORK/h2load.pcap" "tcp port $PORT" "$WORK/tcpdump.log"
    timeout -k 5 "$limit" h2load -n "$N" -c "$C" -m "$M" -t "$T" "$URL" >/dev/null 2>&1 ||
        h2r_die "h2load (captured) failed"
    h2r_tcpdump_stop "$WORK/tcpdump.log" >/dev/null
    "$H2REPLAY" capture -q --no-redact -r "$WORK/h2load.pcap" -o "$WORK/max.trace"
    trace_kind="capture of h2load"
else
    "$MKTRACE" -o "$WORK/max.trace" --conns "$C" --per-conn $((N / C)) --concurrent "$M" \
        --interval 1ms --service 100us 2>/dev/null
fi
h2r_log "   replay --speed max -t $T ($trace_kind)"
timeout -k 5 "$limit" "$H2REPLAY" replay -q "$WORK/max.trace" --target "http://127.0.0.1:$PORT" \
    --speed max -t "$T" -o "$WORK/max.run"
s=$("$RUNCAT" --summary "$WORK/max.run")
replay_rps=$(field "$s" rate)
replay_ok=$(field "$s" ok)
replay_n=$(field "$s" results)
ratio=$(awk -v a="$replay_rps" -v b="$h2load_rps" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')

# ---- 2. schedule accuracy ----
A=50
interval_ns=$((A * 1000000000 / RATE))
stagger_ns=$((interval_ns / A))
per_conn=$((RATE * DURATION / A))
"$MKTRACE" -o "$WORK/rate.trace" --conns "$A" --per-conn "$per_conn" --interval "${interval_ns}ns" \
    --stagger "${stagger_ns}ns" --service 100us 2>/dev/null
acc=()
for threads in 1 "$T"; do
    h2r_log "2. schedule accuracy: $RATE req/s for ${DURATION}s, $A connections, -t $threads"
    timeout -k 5 $((DURATION * 3 + 60)) "$H2REPLAY" replay -q "$WORK/rate.trace" \
        --target "http://127.0.0.1:$PORT" -t "$threads" -o "$WORK/rate-$threads.run"
    s=$("$RUNCAT" --summary "$WORK/rate-$threads.run")
    late="p50 $(us "$(field "$s" late_p50_ns)") p99 $(us "$(field "$s" late_p99_ns)")"
    late="$late max $(us "$(field "$s" late_max_ns)")"
    acc+=("-t $threads: $(field "$s" results) requests ($(field "$s" ok) ok), send lateness $late")
    [[ $threads == "$T" ]] && break
done

# ---- 3. memory with idle connections ----
peak_rss() { # LIMIT_S CMD...: runs CMD (killed after LIMIT_S), prints its peak RSS in kB
    local limit=$1 i peak=0 r
    shift
    "$@" &
    local pid=$!
    for ((i = 0; i < limit * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        r=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        [[ -n $r && $r -gt $peak ]] && peak=$r
        sleep 0.1
    done
    h2r_stop_pid "$pid" TERM 5
    echo "$peak"
}
hold=$((DURATION < 3 ? 3 : DURATION))
open_s=2
"$MKTRACE" -o "$WORK/idle.trace" --conns "$IDLE" --per-conn 2 --interval "${hold}s" \
    --stagger "$((open_s * 1000000000 / IDLE))ns" --service 1ms 2>/dev/null
"$MKTRACE" -o "$WORK/one.trace" --conns 1 --per-conn 2 --interval "${hold}s" \
    --service 1ms 2>/dev/null
h2r_log "3. memory: $IDLE connections held ${hold}s"
base=$(peak_rss 60 "$H2REPLAY" replay -q "$WORK/one.trace" \
    --target "http://127.0.0.1:$PORT" -o "$WORK/one.run")
peak=$(peak_rss $((hold * 2 + 60)) "$H2REPLAY" replay -q "$WORK/idle.trace" \
    --target "http://127.0.0.1:$PORT" -o "$WORK/idle.run")
s=$("$RUNCAT" --summary "$WORK/idle.run")
open_max=$("$H2REPLAY" show "$WORK/idle.run" --format jsonl --records all |
    sed -n 's/.*"type":"sample".*"open_conns":\([0-9]*\).*/\1/p' | sort -n | tail -1)
per_conn_kb=$(awk -v p="$peak" -v b="$base" -v n="$IDLE" 'BEGIN { printf "%.1f", (p - b) / n }')

h2r_stop_pid "$NGHTTPD_PID" TERM 5
cat <<EOF

== replay benchmark ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)) ==
1. --speed max throughput ($trace_kind, $C connections x $M streams, $T thread(s))
   h2load:  $h2load_rps req/s ($N requests)
   replay:  $replay_rps req/s ($replay_ok/$replay_n ok)   ratio replay/h2load = $ratio
2. schedule accuracy at $RATE req/s for ${DURATION}s ($A connections)
EOF
for line in "${acc[@]}"; do echo "   $line"; done
cat <<EOF
3. memory: $IDLE connections open together (peak open in samples: ${open_max:-?})
   peak RSS $peak kB, one-connection baseline $base kB -> $per_conn_kb kB per connection
   ($(field "$s" ok)/$(field "$s" results) requests ok)
EOF
