#!/usr/bin/env bash
# make_tls_captures.sh - real HTTP/2-over-TLS captures with their NSS key logs.
#
# Starts nghttpd with throwaway self-signed certificates (a P-256 one, and an
# RSA 2048 one for the ECDHE-RSA suites) on free loopback ports, records each
# scenario with its own tcpdump and writes, next to NAME.pcap, the key log
# NAME.keys the clients wrote (curl and Python through SSLKEYLOGFILE /
# keylog_filename, openssl s_client through -keylogfile):
#
#   tls13-aes128gcm.pcap      curl --http2, TLS 1.3 TLS_AES_128_GCM_SHA256: GET, POST JSON
#                             (echoed), a 250 KiB response, on one connection
#   tls13-aes256gcm.pcap      the same with TLS_AES_256_GCM_SHA384 (64 KiB response)
#   tls13-chacha20.pcap       the same with TLS_CHACHA20_POLY1305_SHA256 (64 KiB)
#   tls12-aes128gcm.pcap      TLS 1.2 ECDHE-RSA-AES128-GCM-SHA256, RSA certificate (64 KiB)
#   tls12-aes256gcm.pcap      TLS 1.2 ECDHE-RSA-AES256-GCM-SHA384 (250 KiB)
#   tls12-chacha20.pcap       TLS 1.2 ECDHE-RSA-CHACHA20-POLY1305 (64 KiB)
#   tls-resumed.pcap          three TLS 1.3 connections (the 2nd and 3rd resume with a PSK)
#                             and two TLS 1.2 ones (the 2nd resumes), from
#                             tls_h2_client.py, which asserts the resumption
#   tls13-keyupdate.pcap      openssl s_client -alpn h2 carrying raw HTTP/2 frames; the
#                             interactive "K" command sends a KeyUpdate asking the
#                             server for one too; a request after it
#
# nghttpd offers only P-256 for the key exchange, so every TLS 1.3 client
# first gets a HelloRetryRequest: that is covered on the way.
#
# Usage: make_tls_captures.sh [--update-committed] OUTDIR
#   --update-committed  also copy the pcaps and key logs to tests/data/tls/
#                       (each pcap must be < 1 MB)
#
# Needs root (tcpdump on lo), nghttpd, curl, openssl, tcpdump, python3.
# Exits 77 when it cannot run here, 1 on a failure, 0 on success.
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
    echo "make_tls_captures.sh: SKIP: needs root for tcpdump on lo" >&2
    exit 77
fi
if ! h2r_have_tools nghttpd curl openssl tcpdump; then
    echo "make_tls_captures.sh: SKIP: needs nghttpd curl openssl tcpdump" >&2
    exit 77
fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/h2r-tls-captures.XXXXXX")
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

# Throwaway certificates, valid for a day; never committed.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=localhost -keyout "$WORK/ec.key" -out "$WORK/ec.crt" >/dev/null 2>&1 ||
    h2r_die "openssl req (P-256) failed"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -keyout "$WORK/rsa.key" -out "$WORK/rsa.crt" >/dev/null 2>&1 ||
    h2r_die "openssl req (RSA) failed"

start_tls_nghttpd() {
    local port=$1 key=$2 crt=$3 log=$4
    h2r_bg "$log" nghttpd -a 127.0.0.1 -d "$DOC" --echo-upload "$port" "$key" "$crt"
    h2r_wait_port "$port" 10 || {
        cat "$log" >&2 || true
        h2r_die "nghttpd (TLS) did not listen on 127.0.0.1:$port within 10s"
    }
}
PE=$(h2r_free_port)
start_tls_nghttpd "$PE" "$WORK/ec.key" "$WORK/ec.crt" "$WORK/nghttpd-ec.log"
PR=$(h2r_free_port)
start_tls_nghttpd "$PR" "$WORK/rsa.key" "$WORK/rsa.crt" "$WORK/nghttpd-rsa.log"
h2r_log "servers: nghttpd P-256 cert on $PE, RSA cert on $PR"
E=https://127.0.0.1:$PE
R=https://127.0.0.1:$PR
T=30

# scenario NAME FILTER: capture NAME.pcap; clients write NAME.keys (KEYS).
scenario() {
    CUR=$1
    KEYS=$OUT/$CUR.keys
    rm -f "$KEYS"
    h2r_log "scenario $CUR"
    echo "=== $CUR" >>"$H2R_CLIENT_LOG"
    h2r_tcpdump_start "$OUT/$CUR.pcap" "$2" "$WORK/tcpdump-$CUR.log"
}
end_scenario() {
    local n
    n=$(h2r_tcpdump_stop "$WORK/tcpdump-$CUR.log")
    [[ -s $KEYS ]] || h2r_die "$CUR: the clients wrote no key log ($KEYS)"
    h2r_log "  $CUR.pcap: $n packets, $(stat -c %s "$OUT/$CUR.pcap") bytes; $(grep -c . "$KEYS") key log lines"
}

# curl_tls ARGS... : one curl run (one connection, requests in order) writing KEYS.
curl_tls() {
    SSLKEYLOGFILE=$KEYS h2r_run "$T" curl -sS -k --http2 --max-time "$T" "$@"
}

# The same requests for every suite: a GET, a POST echoed back, a large response.
requests() {
    local base=$1 big=$2
    shift 2
    curl_tls "$@" -o /dev/null "$base/small.txt" \
        --next -sS -k --http2 "$@" -H 'content-type: application/json' \
        --data-binary "@$DOC/post.json" -o /dev/null "$base/echo" \
        --next -sS -k --http2 "$@" -o /dev/null "$base/$big"
}

# suite:name:response (one TLS 1.3 and one TLS 1.2 capture carry the 250 KiB response)
for s in TLS_AES_128_GCM_SHA256:aes128gcm:250k.bin TLS_AES_256_GCM_SHA384:aes256gcm:64k.bin \
    TLS_CHACHA20_POLY1305_SHA256:chacha20:64k.bin; do
    IFS=: read -r suite name big <<<"$s"
    scenario "tls13-$name" "tcp port $PE"
    requests "$E" "$big" --tlsv1.3 --tls13-ciphers "$suite"
    end_scenario
done

for s in ECDHE-RSA-AES128-GCM-SHA256:aes128gcm:64k.bin \
    ECDHE-RSA-AES256-GCM-SHA384:aes256gcm:250k.bin ECDHE-RSA-CHACHA20-POLY1305:chacha20:64k.bin; do
    IFS=: read -r suite name big <<<"$s"
    scenario "tls12-$name" "tcp port $PR"
    requests "$R" "$big" --tlsv1.2 --tls-max 1.2 --ciphers "$suite"
    end_scenario
done

# --- resumption: TLS 1.3 PSK and TLS 1.2 session id / ticket ---------------
scenario tls-resumed "tcp port $PE"
h2r_run "$T" "$H2R_PY" "$HERE/tls_h2_client.py" --port "$PE" --keylog "$KEYS" --conns 3 \
    /small.txt /data.json
h2r_run "$T" "$H2R_PY" "$HERE/tls_h2_client.py" --port "$PE" --keylog "$KEYS" --tls12 \
    --conns 2 /16k.bin
end_scenario

# --- KeyUpdate both ways: openssl s_client with raw HTTP/2 on stdin ---------
# s_client treats a stdin read starting with "K" as "send a KeyUpdate and ask the peer
# for one" (TLS 1.3 only); every other read is sent as is, so the frames go in separate
# writes, with pauses, and stdin stays open until the answers are in.
H2R_E2E_DIR=$HERE "$H2R_PY" - "$WORK" <<'EOF'
import os, sys
sys.path.insert(0, os.environ["H2R_E2E_DIR"])
from tls_h2_client import frame, literal
def headers(sid, path):
    block = b"".join(literal(k, v) for k, v in ((":method", "GET"), (":scheme", "https"),
                                                (":authority", "localhost"), (":path", path)))
    return frame(1, 0x5, sid, block)
w = sys.argv[1]
with open(os.path.join(w, "ku1.bin"), "wb") as f:
    f.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0) + headers(1, "/small.txt"))
with open(os.path.join(w, "ku2.bin"), "wb") as f:
    f.write(frame(4, 1, 0) + headers(3, "/16k.bin") + headers(5, "/data.json"))
with open(os.path.join(w, "ku3.bin"), "wb") as f:
    f.write(frame(7, 0, 0, (5).to_bytes(4, "big") + (0).to_bytes(4, "big")))
EOF
scenario tls13-keyupdate "tcp port $PE"
# shellcheck disable=SC2016
h2r_run "$T" bash -c '(cat "$1/ku1.bin"; sleep 0.7; printf "K\n"; sleep 0.7; cat "$1/ku2.bin";
    sleep 1; cat "$1/ku3.bin"; sleep 0.5) |
    openssl s_client -connect "127.0.0.1:$2" -alpn h2 -tls1_3 -keylogfile "$3" >"$1/ku.out" 2>"$1/ku.err"
    grep -q KEYUPDATE "$1/ku.err"' _ "$WORK" "$PE" "$KEYS"
end_scenario

h2r_log "captures in $OUT:"
ls -l "$OUT"/*.pcap >&2

if [[ $update_committed -eq 1 ]]; then
    mkdir -p "$ROOT/tests/data/tls"
    for f in "$OUT"/*.pcap; do
        size=$(stat -c %s "$f")
        [[ $size -lt 1000000 ]] || h2r_die "$(basename "$f") is $size bytes (>= 1 MB); not committing"
        cp "$f" "${f%.pcap}.keys" "$ROOT/tests/data/tls/"
    done
    h2r_log "updated tests/data/tls/*.pcap and *.keys"
fi
