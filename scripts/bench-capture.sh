#!/usr/bin/env bash
# bench-capture.sh - capture throughput benchmark (not a test).
#
# 1. Records a pcap of at least SIZE_MB of h2c traffic: h2load runs (bounded
#    batches) against nghttpd on loopback, a mix of small, 1 KiB and 16 KiB
#    responses, tcpdump -s 0. An existing pcap of that size is reused.
# 2. Times `h2replay capture -r big.pcap -o big.h2rt` (wall, MB/s,
#    exchanges/s, peak RSS when /usr/bin/time exists).
# 3. Times `tshark -2 -r big.pcap -d tcp.port==PORT,http -Y http2 > /dev/null`
#    (the -d is needed: tshark 4.0 does not find h2c on a random port by
#    itself). When a calibration run on a prefix predicts more than
#    TSHARK_MAX_S for the whole file, tshark is timed on a PREFIX_MB prefix
#    (editcap -r, whole packets) instead, and the table says so.
# 4. Prints a Markdown table, also written to WORK_DIR/bench.md.
#
# Usage: scripts/bench-capture.sh
# Environment: MTU (unset: plain lo; e.g. 1500: see below), SIZE_MB (1024), WORK_DIR (out/bench), TSHARK_MAX_S (600),
#   PREFIX_MB (200), H2R (build/cli/h2replay; built when missing), JOBS (2).
# Note: loopback hands tcpdump GSO-sized segments (up to 64 KiB), so the pcap
# has far fewer packets per MB than an Ethernet capture would (lowering lo's
# MTU does not change that); the table reports packets so rates can be scaled.
# Needs root (tcpdump on lo), nghttpd, h2load, tcpdump, tshark, editcap.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=../tests/e2e/lib.sh
source "$ROOT/tests/e2e/lib.sh"

SIZE_MB=${SIZE_MB:-1024}
WORK_DIR=${WORK_DIR:-out/bench}
TSHARK_MAX_S=${TSHARK_MAX_S:-600}
PREFIX_MB=${PREFIX_MB:-200}
JOBS=${JOBS:-2}
H2R=${H2R:-build/cli/h2replay}
# MTU=1500: record (and measure) inside a throwaway network namespace whose
# loopback has that MTU and no segmentation offloads, so the pcap has
# Ethernet-sized packets like a production capture (plain lo hands tcpdump
# 64 KiB GSO segments, which flatters per-packet tools).
if [[ -n ${MTU:-} && -z ${H2R_IN_NETNS:-} ]]; then
    command -v ethtool >/dev/null || apt-get install -y -qq ethtool >/dev/null
    ns=h2r-bench-$$
    ip netns add "$ns" || { echo "bench-capture.sh: cannot create netns $ns" >&2; exit 1; }
    trap 'ip netns del "$ns" 2>/dev/null' EXIT
    ip netns exec "$ns" ip link set lo up mtu "$MTU"
    ip netns exec "$ns" ethtool -K lo tso off gso off gro off >/dev/null
    rc=0
    H2R_IN_NETNS=1 ip netns exec "$ns" bash "${BASH_SOURCE[0]}" "$@" || rc=$?
    exit "$rc"
fi
MAX_BATCHES=${MAX_BATCHES:-200}     # h2load runs, at most
GEN_LIMIT_S=${GEN_LIMIT_S:-1800}    # time to record the pcap, at most

[[ $SIZE_MB =~ ^[0-9]+$ && $SIZE_MB -ge 1 ]] || h2r_die "SIZE_MB must be a positive integer"
[[ $(id -u) -eq 0 ]] || h2r_die "needs root (tcpdump on lo)"
h2r_have_tools nghttpd h2load tcpdump tshark editcap capinfos ||
    h2r_die "needs nghttpd h2load tcpdump tshark editcap capinfos (scripts/setup.sh)"

mkdir -p "$WORK_DIR"
WORK_DIR=$(cd "$WORK_DIR" && pwd)
PCAP=$WORK_DIR/big-${SIZE_MB}MB.pcap
PORT_FILE=$PCAP.port
TRACE=$WORK_DIR/big.h2rt
TMPD=$(mktemp -d "${TMPDIR:-/tmp}/h2r-bench.XXXXXX")
cleanup() {
    h2r_cleanup
    rm -rf "$TMPD"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need=$((SIZE_MB * 3 + 512))
avail=$(df -Pm "$WORK_DIR" | awk 'NR == 2 { print $4 }')
[[ $avail -ge $need ]] || h2r_die "need ~${need} MB free in $WORK_DIR, have ${avail} MB"

if [[ ! -x $H2R ]]; then
    h2r_log "building h2replay"
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$TMPD/cmake.log" 2>&1 || {
        cat "$TMPD/cmake.log" >&2
        h2r_die "cmake configure failed"
    }
    cmake --build build -j"$JOBS" --target h2replay >"$TMPD/build.log" 2>&1 || {
        tail -n 40 "$TMPD/build.log" >&2
        h2r_die "build failed"
    }
fi

mb() { # bytes -> MB with one decimal
    awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'
}
ratio() { # a / b with given decimals
    awk -v a="$1" -v b="$2" -v d="${3:-1}" 'BEGIN { if (b > 0) printf "%.*f", d, a / b; else print "n/a" }'
}

# ---- 1. the pcap ------------------------------------------------------------
target=$((SIZE_MB * 1048576))
if [[ -f $PCAP && -f $PORT_FILE && $(stat -c %s "$PCAP") -ge $target ]]; then
    h2r_log "reusing $PCAP ($(mb "$(stat -c %s "$PCAP")") MB)"
    PORT=$(cat "$PORT_FILE")
    drops=$(cat "$PCAP.drops" 2>/dev/null || echo "?")
else
    rm -f "$PCAP" "$PORT_FILE"
    h2r_make_docroot "$TMPD/doc"
    PORT=$(h2r_free_port)
    h2r_start_nghttpd "$TMPD/doc" "$PORT" "$TMPD/nghttpd.log" -n 1
    URL=http://127.0.0.1:$PORT
    # No --immediate-mode here: kernel batching keeps tcpdump ahead of h2load.
    # -U so the file size we poll is what was captured, not what was flushed.
    h2r_bg "$TMPD/tcpdump.log" tcpdump -i lo -w "$PCAP" -U -s 0 -B 524288 -Z root -n "tcp port $PORT"
    TD_PID=$H2R_LAST_PID
    for ((i = 0; i < 100; i++)); do
        grep -q "listening on" "$TMPD/tcpdump.log" && break
        kill -0 "$TD_PID" 2>/dev/null || break
        sleep 0.1
    done
    grep -q "listening on" "$TMPD/tcpdump.log" || h2r_die "tcpdump did not start"
    h2r_log "recording >= $SIZE_MB MB of h2load traffic on port $PORT"
    start=$SECONDS
    for ((batch = 1; batch <= MAX_BATCHES; batch++)); do
        size=$(stat -c %s "$PCAP" 2>/dev/null || echo 0)
        [[ $size -lt $target ]] || break
        ((SECONDS - start < GEN_LIMIT_S)) || h2r_die "pcap still short of $SIZE_MB MB after ${GEN_LIMIT_S}s"
        # ~8 KiB per request on average: size each batch to what is left
        left=$(((target - size) / 8192 + 200))
        n=$((left < 20000 ? left : 20000))
        timeout -k 5 300 h2load -n "$n" -c 8 -m 16 -t 1 \
            "$URL/small.txt" "$URL/16k.bin" "$URL/1k.bin" "$URL/16k.bin" \
            >"$TMPD/h2load.log" 2>&1 || {
            tail -n 20 "$TMPD/h2load.log" >&2
            h2r_die "h2load failed (batch $batch)"
        }
        grep -q ' 0 failed' "$TMPD/h2load.log" || h2r_log "batch $batch: $(grep '^requests:' "$TMPD/h2load.log")"
    done
    sleep 1
    h2r_stop_pid "$TD_PID" INT 30
    drops=$(sed -n 's/^\([0-9][0-9]*\) packets\{0,1\} dropped by kernel.*/\1/p' "$TMPD/tcpdump.log")
    [[ -n $drops ]] || drops="?"
    echo "$drops" >"$PCAP.drops"
    echo "$PORT" >"$PORT_FILE"
    h2r_log "recorded $(mb "$(stat -c %s "$PCAP")") MB in $((SECONDS - start))s ($((batch - 1)) h2load runs, $drops packets dropped by kernel)"
fi
PCAP_BYTES=$(stat -c %s "$PCAP")
PCAP_PACKETS=$(capinfos -c -M "$PCAP" 2>/dev/null | awk -F: '/Number of packets/ { gsub(/ /, "", $2); print $2 }')
[[ $PCAP_PACKETS =~ ^[0-9]+$ ]] || h2r_die "capinfos could not count packets in $PCAP"

# timed OUT_VAR CMD...: runs CMD, stores wall seconds (3 decimals) in OUT_VAR
# and peak RSS (MB, when /usr/bin/time exists) in OUT_VAR_rss.
# Returns CMD's exit status.
timed() {
    local var=$1 t1 t2 rss="n/a" rc=0
    shift
    t1=$(date +%s.%N)
    if [[ -x /usr/bin/time ]]; then
        /usr/bin/time -f '%M' -o "$TMPD/time.out" "$@" || rc=$?
        rss=$(tail -n 1 "$TMPD/time.out" | awk '{ printf "%.0f", $1 / 1024 }')
    else
        "$@" || rc=$?
    fi
    t2=$(date +%s.%N)
    printf -v "$var" '%s' "$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.3f", b - a }')"
    printf -v "${var}_rss" '%s' "$rss"
    return "$rc"
}

# ---- 2. h2replay ------------------------------------------------------------
h2r_log "h2replay capture -r $(basename "$PCAP")"
rm -f "$TRACE"
timed T_H2R timeout -k 10 3600 "$H2R" capture -r "$PCAP" -o "$TRACE" 2>"$TMPD/h2r.err" || {
    tail -n 20 "$TMPD/h2r.err" >&2
    h2r_die "h2replay capture failed"
}
TRACE_BYTES=$(stat -c %s "$TRACE")
EXCH=$(timeout -k 10 1800 "$H2R" show "$TRACE" --format jsonl | grep -c '"method"' || true)

# ---- 3. tshark --------------------------------------------------------------
TS_ARGS=(-n -2 -d "tcp.port==$PORT,http" -Y http2)
cal_bytes=$((50 * 1048576))
tshark_input=$PCAP
tshark_note="whole file"
if [[ $PCAP_BYTES -gt $cal_bytes ]]; then
    cal_pk=$((PCAP_PACKETS * cal_bytes / PCAP_BYTES))
    editcap -r "$PCAP" "$TMPD/cal.pcap" "1-$cal_pk" >/dev/null
    h2r_log "tshark calibration on $(mb "$(stat -c %s "$TMPD/cal.pcap")") MB"
    timed T_CAL timeout -k 10 "$TSHARK_MAX_S" tshark -r "$TMPD/cal.pcap" "${TS_ARGS[@]}" >/dev/null 2>&1 ||
        h2r_die "tshark calibration run failed or took more than ${TSHARK_MAX_S}s"
    est=$(awk -v t="$T_CAL" -v a="$PCAP_BYTES" -v b="$(stat -c %s "$TMPD/cal.pcap")" 'BEGIN { printf "%.0f", t * a / b }')
    rm -f "$TMPD/cal.pcap"
    if [[ $est -gt $TSHARK_MAX_S ]]; then
        pre_bytes=$((PREFIX_MB * 1048576))
        pre_pk=$((PCAP_PACKETS * pre_bytes / PCAP_BYTES))
        editcap -r "$PCAP" "$TMPD/prefix.pcap" "1-$pre_pk" >/dev/null
        tshark_input=$TMPD/prefix.pcap
        tshark_note="first $(mb "$(stat -c %s "$tshark_input")") MB only (whole file estimated at ~${est}s > ${TSHARK_MAX_S}s)"
    fi
fi
TS_BYTES=$(stat -c %s "$tshark_input")
TS_PACKETS=$PCAP_PACKETS
if [[ $tshark_input != "$PCAP" ]]; then
    TS_PACKETS=$pre_pk
fi
h2r_log "tshark -2 on $(mb "$TS_BYTES") MB ($tshark_note)"
timed T_TS timeout -k 10 3600 tshark -r "$tshark_input" "${TS_ARGS[@]}" >/dev/null 2>"$TMPD/tshark.err" || {
    grep -v 'Running as user' "$TMPD/tshark.err" | tail -n 20 >&2
    h2r_die "tshark failed"
}

# ---- 4. report --------------------------------------------------------------
# shellcheck disable=SC2154 # T_H2R_rss / T_TS_rss are set by timed()
{
    echo "### h2replay capture benchmark"
    echo
    echo "pcap: $(basename "$PCAP"), $(mb "$PCAP_BYTES") MB, $PCAP_PACKETS packets, h2c prior knowledge" \
        "(h2load against nghttpd on loopback; $drops packets dropped by kernel while recording);" \
        "$(nproc) cores, $(date -u +%Y-%m-%d)"
    echo
    echo "| tool | input | wall (s) | MB/s | packets/s | exchanges | exchanges/s | peak RSS (MB) |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    echo "| \`h2replay capture -r\` | $(mb "$PCAP_BYTES") MB | $T_H2R | $(ratio "$(mb "$PCAP_BYTES")" "$T_H2R") |" \
        "$(ratio "$PCAP_PACKETS" "$T_H2R" 0) | $EXCH | $(ratio "$EXCH" "$T_H2R" 0) | $T_H2R_rss |"
    echo "| \`tshark -2 -Y http2\` | $(mb "$TS_BYTES") MB ($tshark_note) | $T_TS | $(ratio "$(mb "$TS_BYTES")" "$T_TS") |" \
        "$(ratio "$TS_PACKETS" "$T_TS" 0) | - | - | $T_TS_rss |"
    echo
    echo "trace: $(mb "$TRACE_BYTES") MB = $(ratio "$TRACE_BYTES" "$PCAP_BYTES" 3) x the pcap size" \
        "($(ratio "$TRACE_BYTES" "$EXCH" 0) bytes per exchange)."
    echo "tshark options: \`${TS_ARGS[*]}\` (output to /dev/null)."
} | tee "$WORK_DIR/bench.md"
