#!/usr/bin/env bash
# replay_tls.sh WORKDIR - replay over TLS + ALPN h2 against nghttpd with a throwaway
# self-signed certificate: verification on by default (class tls, OpenSSL's reason
# as detail), --cacert and --insecure succeed, a name mismatch fails, a cleartext
# client on the TLS port gets a closed connection. Exit 0 pass, 1 fail, 77 skip.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=replay_lib.sh
source "$HERE/replay_lib.sh"
rp_init replay_tls "${1:?usage: replay_tls.sh WORKDIR}"
rp_need nghttpd openssl
W=$RP_WORK

h2r_make_docroot "$W/doc"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost" \
    -keyout "$W/key.pem" -out "$W/cert.pem" 2>>"$W/replay.log"
PORT=$(h2r_free_port)
h2r_bg "$W/nghttpd.log" nghttpd -a 127.0.0.1 -d "$W/doc" "$PORT" "$W/key.pem" "$W/cert.pem"
h2r_wait_port "$PORT" 10 || h2r_die "nghttpd (TLS) did not listen on $PORT"
"$RP_MKTRACE" -o "$W/t.trace" --conns 4 --per-conn 10 --concurrent 2 --interval 20ms \
    --service 2ms --paths /small.txt,/1k.bin 2>>"$W/replay.log"

rc=$(rp_replay "$W/t.trace" --target "https://localhost:$PORT" -o "$W/verify.run")
rp_expect_exit 0 "$rc" "verification failure is data"
rp_check "self-signed, system CAs" "$W/verify.run" --results 40 --class tls=40 \
    --detail "tls=certificate verify failed"

rc=$(rp_replay "$W/t.trace" --target "https://localhost:$PORT" --cacert "$W/cert.pem" \
    -o "$W/cacert.run")
rp_expect_exit 0 "$rc" "--cacert"
rp_check "--cacert" "$W/cacert.run" --results 40 --all-ok

for speed in 1 max; do
    rc=$(rp_replay "$W/t.trace" --target "https://localhost:$PORT" --insecure -t 2 \
        --speed "$speed" -o "$W/insecure-$speed.run")
    rp_expect_exit 0 "$rc" "--insecure at $speed"
    rp_check "--insecure, 2 threads, speed $speed" "$W/insecure-$speed.run" --results 40 --all-ok
done

rc=$(rp_replay "$W/t.trace" --target "https://127.0.0.1:$PORT" --cacert "$W/cert.pem" \
    -o "$W/mismatch.run")
rp_check "IP not in the certificate" "$W/mismatch.run" --class tls=40 --detail "tls=mismatch"

rc=$(rp_replay "$W/t.trace" --target "http://127.0.0.1:$PORT" -o "$W/plain.run")
rp_expect_exit 0 "$rc" "h2c to a TLS port"
rp_check "h2c client on the TLS port" "$W/plain.run" --results 40 --only conn_closed,protocol,io

rc=$(rp_replay "$W/t.trace" --target "https://localhost:$PORT" --cacert "$W/nonexistent.pem" \
    -o "$W/badca.run")
rp_expect_exit 1 "$rc" "unreadable --cacert is a local failure"
rp_finish
