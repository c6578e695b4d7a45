#!/usr/bin/env bash
# fresh_capture.sh - record every scenario now (make_captures.sh), check the
# tshark oracle on them, then compare h2replay with tshark on each pcap.
#
# Usage: fresh_capture.sh H2REPLAY WORKDIR
# Exit 77 (ctest SKIP) when this machine cannot capture (not root, peers
# missing) - except under CI=true, where a skip would hide a broken setup.
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
timeout -k 10 300 bash "$HERE/make_captures.sh" "$WORK/pcaps" || rc=$?
if [[ $rc -eq 77 ]]; then
    if [[ ${CI:-} == true ]]; then
        echo "fresh_capture: make_captures.sh cannot run here, but CI must run it" >&2
        exit 1
    fi
    exit 77
fi
[[ $rc -eq 0 ]] || h2r_die "make_captures.sh failed (exit $rc)"

failed=0
passed=0
timeout -k 10 300 "$H2R_PY" "$HERE/oracle_selftest.py" "$WORK/pcaps" || {
    echo "fresh_capture: the tshark oracle disagrees with what the scenarios sent" >&2
    failed=$((failed + 1))
}
for pcap in "$WORK"/pcaps/*.pcap; do
    name=$(basename "$pcap" .pcap)
    extra=()
    [[ $name == non-h2* ]] && extra=(--allow-empty)
    echo "--- $name"
    if timeout -k 10 300 "$H2R_PY" "$HERE/compare_tshark.py" "$pcap" "$H2R" \
        --workdir "$WORK/traces" "${extra[@]}"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
done
echo "fresh_capture: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
