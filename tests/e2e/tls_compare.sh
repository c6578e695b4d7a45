#!/usr/bin/env bash
# tls_compare.sh - h2replay versus tshark on TLS captures, both decrypting with
# the capture's key log (NAME.pcap + NAME.keys).
#
# Usage: tls_compare.sh H2REPLAY WORKDIR PCAP...
# Exit 0 all match, 1 a mismatch or a tool failure, 77 when this h2replay
# cannot take --keylog yet (the capture driver does not pass it on).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"
# shellcheck source-path=SCRIPTDIR source=tls_lib.sh
source "$HERE/tls_lib.sh"

[[ $# -ge 3 ]] || {
    echo "usage: $0 H2REPLAY WORKDIR PCAP..." >&2
    exit 2
}
H2R=$1
WORK=$2
shift 2
mkdir -p "$WORK"

if ! h2r_tls_supported "$H2R" "$1" "${1%.pcap}.keys"; then
    echo "tls_compare: SKIP: $H2R does not support --keylog yet (capture driver)" >&2
    exit 77
fi
failed=0
for pcap in "$@"; do
    keys=${pcap%.pcap}.keys
    [[ -f $keys ]] || h2r_die "no key log $keys for $pcap"
    echo "--- $(basename "$pcap")"
    if ! timeout -k 10 300 "$H2R_PY" "$HERE/compare_tshark.py" "$pcap" "$H2R" --keylog "$keys" \
        --workdir "$WORK"; then
        failed=$((failed + 1))
    fi
done
[[ $failed -eq 0 ]] || h2r_die "$failed TLS capture(s) differ from tshark"
