#!/usr/bin/env bash
# replay_capture.sh WORKDIR - the whole pipeline on fresh traffic: tcpdump on lo records
# nghttp and h2load against nghttpd, `h2replay capture` makes the trace, and the
# trace is replayed at 1x, 10x and max against the same server. Every exchange
# must come back with the status it had when captured.
# Needs root (tcpdump), nghttpd, nghttp, h2load. Exit 0 pass, 1 fail, 77 skip.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=replay_lib.sh
source "$HERE/replay_lib.sh"
rp_init replay_capture "${1:?usage: replay_capture.sh WORKDIR}"
if [[ $(id -u) -ne 0 ]]; then
    echo "replay_capture: SKIP: needs root for tcpdump on lo" >&2
    exit 77
fi
rp_need nghttpd nghttp h2load tcpdump
W=$RP_WORK

h2r_make_docroot "$W/doc"
PORT=$(h2r_free_port)
h2r_start_nghttpd "$W/doc" "$PORT" "$W/nghttpd.log" --echo-upload
URL=http://127.0.0.1:$PORT
h2r_tcpdump_start "$W/live.pcap" "tcp port $PORT" "$W/tcpdump.log"
H2R_CLIENT_LOG=$W/clients.log
h2r_run 20 nghttp -n -m 3 "$URL/small.txt" "$URL/1k.bin" "$URL/data.json" "$URL/missing"
h2r_run 20 nghttp -n -d "$W/doc/post.json" "$URL/echo"
h2r_run 20 h2load -n 200 -c 4 -m 8 "$URL/small.txt" "$URL/16k.bin" "$URL/data.json"
h2r_tcpdump_stop "$W/tcpdump.log" >/dev/null
timeout 30 "$H2REPLAY" capture -q --no-redact -r "$W/live.pcap" -o "$W/live.trace" \
    2>>"$W/replay.log" || h2r_die "h2replay capture failed on $W/live.pcap"
n=$(timeout 30 "$H2REPLAY" show "$W/live.trace" --format jsonl | wc -l)
[[ $n -ge 200 ]] || h2r_die "capture found $n exchanges, expected >= 200"

for speed in 1 10 max; do
    rc=$(rp_replay "$W/live.trace" --target "$URL" --speed "$speed" -o "$W/live-$speed.run")
    rp_expect_exit 0 "$rc" "captured trace at $speed"
    rp_check "fresh capture ($n exchanges) at speed $speed" "$W/live-$speed.run" \
        --sections 1 --results "$n" --all-ok
done
rp_finish
