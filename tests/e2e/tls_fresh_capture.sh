#!/usr/bin/env bash
# tls_fresh_capture.sh - record the TLS scenarios now (make_tls_captures.sh) and
# compare h2replay with tshark on each, both decrypting with the fresh key logs.
#
# Usage: tls_fresh_capture.sh H2REPLAY WORKDIR
# Exit 77 (ctest SKIP) when this machine cannot capture or h2replay cannot take
# --keylog yet - except under CI=true for the former, where a skip would hide a
# broken setup.
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
rm -rf "$WORK"
mkdir -p "$WORK"

rc=0
timeout -k 10 300 bash "$HERE/make_tls_captures.sh" "$WORK/pcaps" || rc=$?
if [[ $rc -eq 77 ]]; then
    if [[ ${CI:-} == true ]]; then
        echo "tls_fresh_capture: make_tls_captures.sh cannot run here, but CI must run it" >&2
        exit 1
    fi
    exit 77
fi
[[ $rc -eq 0 ]] || h2r_die "make_tls_captures.sh failed (exit $rc)"
exec bash "$HERE/tls_compare.sh" "$H2R" "$WORK/traces" "$WORK"/pcaps/*.pcap
