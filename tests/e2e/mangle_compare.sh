#!/usr/bin/env bash
# mangle_compare.sh - h2replay on captures with reordered and duplicated TCP
# segments (pcap_mangle) must still agree with tshark, which reassembles out
# of order (tcp.reassemble_out_of_order) and drops duplicates.
#
# Usage: mangle_compare.sh H2REPLAY PCAP_MANGLE DATA_DIR WORKDIR
# Uses DATA_DIR/large.pcap (1 MiB + 250 KiB responses in 64 KiB segments:
# flights of back-to-back segments to reorder) and DATA_DIR/h2load.pcap
# (many small connections: duplicates everywhere).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

[[ $# -eq 4 ]] || {
    echo "usage: $0 H2REPLAY PCAP_MANGLE DATA_DIR WORKDIR" >&2
    exit 2
}
H2R=$1
MANGLE=$2
DATA=$3
WORK=$4
rm -rf "$WORK"
mkdir -p "$WORK"

passed=0
failed=0
# name input seed swap% dup-every
cases=(
    "large-swap large 1 50 0"
    "large-dup large 2 0 3"
    "large-both large 7 50 4"
    "large-both2 large 42 100 2"
    "h2load-dup h2load 3 0 2"
)
for c in "${cases[@]}"; do
    read -r name input seed swap dup <<<"$c"
    out=$WORK/$name.pcap
    echo "--- $name: pcap_mangle -s $seed -w $swap -n $dup $input.pcap"
    timeout -k 5 60 "$MANGLE" -s "$seed" -w "$swap" -n "$dup" "$DATA/$input.pcap" "$out" \
        2>"$WORK/$name.log" || {
        cat "$WORK/$name.log" >&2
        h2r_die "pcap_mangle failed on $input.pcap"
    }
    cat "$WORK/$name.log"
    # A mangle that changed nothing would test nothing.
    if [[ $swap -gt 0 ]] && grep -q ' 0 pairs swapped' "$WORK/$name.log"; then
        h2r_die "$name: no segments were swapped; pick another seed or input"
    fi
    if [[ $dup -gt 0 ]] && grep -q ' 0 duplicated' "$WORK/$name.log"; then
        h2r_die "$name: no segments were duplicated"
    fi
    if timeout -k 10 300 "$H2R_PY" "$HERE/compare_tshark.py" "$out" "$H2R" --workdir "$WORK"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
done
# Same seed, same bytes: failures must be reproducible.
"$MANGLE" -s 7 -w 50 -n 4 "$DATA/large.pcap" "$WORK/again.pcap" 2>/dev/null
if cmp -s "$WORK/again.pcap" "$WORK/large-both.pcap"; then
    passed=$((passed + 1))
    echo "--- deterministic: same seed, identical output"
else
    failed=$((failed + 1))
    echo "--- FAIL: pcap_mangle -s 7 gave different bytes on a second run"
fi
echo "mangled: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
