#!/usr/bin/env bash
# make_captures.sh - real HTTP/2 cleartext captures from real programs.
#
# Starts nghttpd (h2c prior knowledge) and nghttpx (which also speaks the
# HTTP/1.1 `Upgrade: h2c` dance, which nghttpd does not) on free loopback
# ports, records each scenario with its own tcpdump, and drives nghttp, curl
# and h2load against them. One pcap per scenario in OUTDIR:
#
#   nghttp.pcap        nghttp: many streams per connection (-m), POST body (-d),
#                      Expect: 100-continue
#   curl-prior.pcap    curl --http2-prior-knowledge: GET, POST JSON with a
#                      bearer token, a 404
#   curl-upgrade.pcap  curl --http2 against http:// (Upgrade: h2c, GET and
#                      POST) and nghttp -u (upgrade with OPTIONS *)
#   h2load.pcap        h2load -n 200 -c 8 -m 10: many connections and streams
#   large.pcap         1 MiB and 250 KiB responses multiplexed, 64 KiB upload
#   padded.pcap        PADDED frames both ways (nghttp -b, nghttpd -b) and
#                      response trailers with grpc-status
#   sample.pcap        a small mix (prior knowledge + upgrade): the demo input
#   non-h2-http11.pcap plain HTTP/1.1 without upgrade (no HTTP/2 at all)
#   non-h2-tcp.pcap    a non-HTTP TCP flow (line echo)
#
# Usage: make_captures.sh [--update-committed] OUTDIR
#   --update-committed  also copy the pcaps into tests/data/ (each must be
#                       < 2 MB) and sample.pcap to traces/sample-h2c.pcap
#
# Needs root (tcpdump on lo), nghttpd, nghttpx, nghttp, h2load, curl,
# tcpdump, python3. Exits 77 when it cannot run here (not root, tool
# missing), 1 on a failure, 0 on success. Every wait is bounded.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

update_committed=0
if [[ ${1:-} == --update-committed ]]; then
    update_committed=1
    shift
fi
[[ $# -eq 1 ]] || {
    echo "usage: $0 [--update-committed] OUTDIR" >&2
    exit 2
}
OUT=$1

if [[ $(id -u) -ne 0 ]]; then
    echo "make_captures.sh: SKIP: needs root for tcpdump on lo" >&2
    exit 77
fi
if ! h2r_have_tools nghttpd nghttpx nghttp h2load curl tcpdump; then
    echo "make_captures.sh: SKIP: needs nghttpd nghttpx nghttp h2load curl tcpdump" \
        "(scripts/setup.sh installs them)" >&2
    exit 77
fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/h2r-captures.XXXXXX")
cleanup() {
    h2r_cleanup
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

DOC=$WORK/doc
h2r_make_docroot "$DOC"
H2R_CLIENT_LOG=$WORK/clients.log
: >"$H2R_CLIENT_LOG"

# Four servers: A plain h2c, B with padding + trailers, C = nghttpx frontend
# (upgrade) in front of D (a backend we never capture).
PA=$(h2r_free_port)
h2r_start_nghttpd "$DOC" "$PA" "$WORK/nghttpd-a.log" --echo-upload
PB=$(h2r_free_port)
h2r_start_nghttpd "$DOC" "$PB" "$WORK/nghttpd-b.log" --echo-upload -b 32 \
    --trailer 'grpc-status: 0' --trailer 'x-trailer: yes'
PD=$(h2r_free_port)
h2r_start_nghttpd "$DOC" "$PD" "$WORK/nghttpd-d.log" --echo-upload
PC=$(h2r_free_port)
h2r_start_nghttpx "$PC" "$PD" "$WORK"
h2r_log "servers: nghttpd A=$PA B=$PB (padded) D=$PD; nghttpx C=$PC -> D"

A=http://127.0.0.1:$PA
B=http://127.0.0.1:$PB
C=http://127.0.0.1:$PC
T=30 # seconds any one client may take

# scenario NAME FILTER: starts a capture for NAME.pcap; end_scenario stops it.
scenario() {
    CUR=$1
    h2r_log "scenario $CUR"
    echo "=== $CUR" >>"$H2R_CLIENT_LOG"
    h2r_tcpdump_start "$OUT/$CUR.pcap" "$2" "$WORK/tcpdump-$CUR.log"
}
end_scenario() {
    local n
    n=$(h2r_tcpdump_stop "$WORK/tcpdump-$CUR.log")
    h2r_log "  $CUR.pcap: $n packets, $(stat -c %s "$OUT/$CUR.pcap") bytes"
}

curl_h2() {
    h2r_run "$T" curl -sS -o /dev/null --max-time "$T" "$@"
}

# --- nghttp: many streams on one connection, POST, 100-continue -----------
scenario nghttp "tcp port $PA"
h2r_run $T nghttp -n -m 4 "$A/small.txt" "$A/1k.bin" "$A/data.json"
h2r_run $T nghttp -n -H 'x-scenario: nghttp' "$A/16k.bin" "$A/missing.txt"
h2r_run $T nghttp -n -d "$DOC/post.json" "$A/data.json"
h2r_run $T nghttp -n -d "$DOC/1k.bin" --expect-continue "$A/echo"
end_scenario

# --- curl with prior knowledge --------------------------------------------
scenario curl-prior "tcp port $PA"
curl_h2 --http2-prior-knowledge "$A/small.txt"
curl_h2 --http2-prior-knowledge -H 'content-type: application/json' \
    -H 'authorization: Bearer secret' --data-binary "@$DOC/post.json" "$A/api/login"
curl_h2 --http2-prior-knowledge "$A/does-not-exist"
# (curl 7.88 fails reusing a prior-knowledge connection for a second URL:
# "Error in the HTTP2 framing layer"; nghttp covers many streams per connection)
curl_h2 --http2-prior-knowledge -I "$A/data.json"
end_scenario

# --- Upgrade: h2c ----------------------------------------------------------
scenario curl-upgrade "tcp port $PC"
curl_h2 --http2 "$C/small.txt"
curl_h2 --http2 -H 'content-type: application/json' --data-binary "@$DOC/post.json" "$C/data.json"
curl_h2 --http2 "$C/1k.bin" "$C/data.json" -o /dev/null
h2r_run $T nghttp -n -u "$C/small.txt" "$C/16k.bin"
end_scenario

# --- h2load: many connections, many streams --------------------------------
scenario h2load "tcp port $PA"
h2r_run 60 h2load -n 200 -c 8 -m 10 -t 1 "$A/small.txt" "$A/1k.bin" "$A/data.json" "$A/missing"
end_scenario

# --- large responses and uploads (flow control, many segments) -------------
scenario large "tcp port $PA"
h2r_run $T nghttp -n "$A/1m.bin" "$A/250k.bin"
h2r_run $T nghttp -n -d "$DOC/64k.bin" "$A/upload"
end_scenario

# --- padding both ways, response trailers ----------------------------------
scenario padded "tcp port $PB"
h2r_run $T nghttp -n -b 17 "$B/small.txt" "$B/16k.bin" "$B/data.json"
h2r_run $T nghttp -n -b 9 -d "$DOC/post.json" "$B/echo"
end_scenario

# --- the demo sample: prior knowledge and upgrade, small -------------------
scenario sample "tcp port $PA or tcp port $PC"
curl_h2 --http2-prior-knowledge "$A/small.txt"
curl_h2 --http2-prior-knowledge -H 'content-type: application/json' \
    -H 'authorization: Bearer secret' --data-binary "@$DOC/post.json" "$A/api/login"
curl_h2 --http2-prior-knowledge "$A/does-not-exist"
h2r_run $T nghttp -n -m 2 "$A/data.json" "$A/1k.bin"
curl_h2 --http2 "$C/small.txt"
end_scenario

# --- not HTTP/2: plain HTTP/1.1 (no upgrade) --------------------------------
scenario non-h2-http11 "tcp port $PC"
h2r_run $T curl -sS -o /dev/null --http1.1 "$C/small.txt"
h2r_run $T curl -sS -o /dev/null --http1.1 --data-binary "@$DOC/post.json" "$C/data.json"
end_scenario

# --- not HTTP at all: a line echo server ------------------------------------
PE=$(h2r_free_port)
h2r_bg "$WORK/echo.log" "$H2R_PY" -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(4); s.settimeout(30)
for _ in range(2):
    c, _a = s.accept(); c.settimeout(10)
    while True:
        d = c.recv(4096)
        if not d: break
        c.sendall(d.upper())
    c.close()
' "$PE"
ECHO_PID=$H2R_LAST_PID
h2r_wait_port "$PE" 10 || h2r_die "echo server did not listen on $PE"
# h2r_wait_port's probe used the first accept; two more client runs follow.
scenario non-h2-tcp "tcp port $PE"
h2r_run $T "$H2R_PY" -c '
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
for i in range(5):
    c.sendall(b"line %d: this is not HTTP at all\n" % i)
    c.recv(4096)
c.close()
' "$PE"
end_scenario
h2r_stop_pid "$ECHO_PID" TERM 5

h2r_log "captures in $OUT:"
ls -l "$OUT"/*.pcap >&2

if [[ $update_committed -eq 1 ]]; then
    mkdir -p "$ROOT/tests/data" "$ROOT/traces"
    for f in "$OUT"/*.pcap; do
        size=$(stat -c %s "$f")
        [[ $size -lt 2000000 ]] || h2r_die "$(basename "$f") is $size bytes (>= 2 MB); not committing"
        cp "$f" "$ROOT/tests/data/"
    done
    cp "$OUT/sample.pcap" "$ROOT/traces/sample-h2c.pcap"
    h2r_log "updated tests/data/*.pcap and traces/sample-h2c.pcap"
fi
