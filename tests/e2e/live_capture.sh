#!/usr/bin/env bash
# live_capture.sh - `h2replay capture -i lo` while real clients talk to nghttpd;
# the trace must list exactly the exchanges the clients made.
#
# Usage: live_capture.sh H2REPLAY WORKDIR
# Stops the capture with --duration 10s when `capture --help` offers it, else
# (or with H2R_LIVE_STOP=sigint) with SIGINT once the clients are done.
# Exit 77 (ctest SKIP) when not root or nghttpd/nghttp/curl are missing -
# except under CI=true. Every wait is bounded.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

[[ $# -eq 2 ]] || {
    echo "usage: $0 H2REPLAY WORKDIR" >&2
    exit 2
}
H2R=$1
WORK=$2

skip() {
    if [[ ${CI:-} == true ]]; then
        echo "live_capture: cannot run here ($*), but CI must run it" >&2
        exit 1
    fi
    echo "live_capture: SKIP: $*" >&2
    exit 77
}
[[ $(id -u) -eq 0 ]] || skip "needs root to capture on lo"
h2r_have_tools nghttpd nghttp curl || skip "needs nghttpd, nghttp, curl (scripts/setup.sh)"

rm -rf "$WORK"
mkdir -p "$WORK"
trap h2r_cleanup EXIT
trap 'exit 130' INT TERM

h2r_make_docroot "$WORK/doc"
PORT=$(h2r_free_port)
h2r_start_nghttpd "$WORK/doc" "$PORT" "$WORK/nghttpd.log" --echo-upload
URL=http://127.0.0.1:$PORT
TRACE=$WORK/live.h2rt

# The stop flag: --duration when this build has it, else SIGINT after traffic.
help=$(timeout 10 "$H2R" capture --help 2>&1 || true)
dur_args=()
if [[ ${H2R_LIVE_STOP:-} != sigint ]] && grep -q -- '--duration' <<<"$help"; then
    dur_args=(--duration 10s)
fi
h2r_log "h2replay capture -i lo -f 'tcp port $PORT' ${dur_args[*]}"
h2r_bg "$WORK/capture.log" "$H2R" capture -i lo -f "tcp port $PORT" -o "$TRACE" "${dur_args[@]}"
CAP_PID=$H2R_LAST_PID

# Ready = the process (or a descendant) holds a packet socket, i.e. pcap is
# activated. Bounded: 10 s.
holds_packet_socket() {
    local pid ino inodes fds=""
    inodes=$(awk 'NR > 1 { print $NF }' /proc/net/packet 2>/dev/null || true)
    local pids=("$1") kids level
    for ((level = 0; level < 3; level++)); do # children and grandchildren too
        kids=$(pgrep -P "$(
            IFS=,
            echo "${pids[*]}"
        )" 2>/dev/null || true)
        # shellcheck disable=SC2206
        pids+=($kids)
    done
    for pid in $(printf '%s\n' "${pids[@]}" | sort -u); do
        fds+=$(ls -l "/proc/$pid/fd" 2>/dev/null || true)
    done
    for ino in $inodes; do
        [[ $fds == *"socket:[$ino]"* ]] && return 0
    done
    return 1
}
ready=0
for ((i = 0; i < 100; i++)); do
    kill -0 "$CAP_PID" 2>/dev/null || break
    if holds_packet_socket "$CAP_PID"; then
        ready=1
        break
    fi
    sleep 0.1
done
if ! kill -0 "$CAP_PID" 2>/dev/null; then
    cat "$WORK/capture.log" >&2
    h2r_die "h2replay capture exited before any traffic"
fi
[[ $ready -eq 1 ]] || h2r_log "no packet socket seen after 10s; going on"
sleep 0.5 # the BPF filter is installed right after activation

# shellcheck disable=SC2034 # read by h2r_run (lib.sh)
H2R_CLIENT_LOG=$WORK/clients.log
h2r_run 30 nghttp -n -m 3 "$URL/small.txt" "$URL/1k.bin"
h2r_run 30 curl -sS -o /dev/null --max-time 30 --http2-prior-knowledge \
    -H 'content-type: application/json' -H 'authorization: Bearer secret' \
    --data-binary "@$WORK/doc/post.json" "$URL/api/login"
h2r_run 30 curl -sS -o /dev/null --max-time 30 --http2-prior-knowledge "$URL/missing"

if [[ ${#dur_args[@]} -eq 0 ]]; then
    sleep 1
    kill -INT "$CAP_PID" 2>/dev/null || true
fi
# Bounded wait for the capture to end by itself (10 s duration + slack).
for ((i = 0; i < 300; i++)); do
    kill -0 "$CAP_PID" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$CAP_PID" 2>/dev/null; then
    cat "$WORK/capture.log" >&2
    h2r_die "h2replay capture still running 30s after the clients finished (hang?)"
fi
rc=0
wait "$CAP_PID" || rc=$?
cat "$WORK/capture.log"
[[ $rc -eq 0 ]] || h2r_die "h2replay capture exited $rc"
[[ -s $TRACE ]] || h2r_die "no trace written at $TRACE"

timeout -k 5 60 "$H2R" show "$TRACE" || h2r_die "h2replay show (table) failed"
timeout -k 5 60 "$H2R" show "$TRACE" --format jsonl >"$WORK/show.jsonl" ||
    h2r_die "h2replay show --format jsonl failed"

"$H2R_PY" - "$WORK/show.jsonl" <<'EOF'
import collections, json, sys
want = collections.Counter(
    [("GET", "/small.txt", 200, 0, 10)] * 3 + [("GET", "/1k.bin", 200, 0, 1024)] * 3
    + [("POST", "/api/login", 200, 60, 60), ("GET", "/missing", 404, 0, None)])
got = collections.Counter()
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    r = json.loads(line)
    if r.get("type", "exchange") != "exchange":
        continue
    resp = r.get("resp_bytes") if r.get("status") != 404 else None
    got[(r.get("method"), r.get("path"), r.get("status"), r.get("req_bytes"), resp)] += 1
if got != want:
    print("live_capture: exchanges differ from what the clients sent")
    for k in sorted(set(want) | set(got), key=str):
        if want[k] != got[k]:
            print("  %-55s want %d got %d" % (k, want[k], got[k]))
    sys.exit(1)
print("live_capture: %d exchanges as sent" % sum(got.values()))
EOF
