#!/usr/bin/env bash
# bad_input.sh - h2replay on inputs it must survive: it may refuse them with a
# clear message (exit 1..123, something on stderr) or accept them and count
# what it skipped (exit 0, and then its trace must read back), but it must
# never crash (signal / exit >= 128, sanitizer report) nor hang (timeout).
#
#   capture -r: missing file, empty file, pcap cut mid-packet, pcap cut inside
#               the first record header, random bytes, a valid pcap header
#               followed by random records, non-HTTP/2 TCP flows (must give
#               0 exchanges), the sample as pcapng (same exchanges as pcap)
#   show:       missing trace, empty trace, random bytes, a pcap instead of a
#               trace, trace cut in half, trace with bytes flipped mid-file
#
# Usage: bad_input.sh H2REPLAY DATA_DIR WORKDIR
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

[[ $# -eq 3 ]] || {
    echo "usage: $0 H2REPLAY DATA_DIR WORKDIR" >&2
    exit 2
}
H2R=$1
DATA=$2
W=$3
rm -rf "$W"
mkdir -p "$W"
LIMIT=60 # seconds any single run may take

passed=0
failed=0
pass() {
    passed=$((passed + 1))
    echo "ok   $*"
}
fail() {
    failed=$((failed + 1))
    echo "FAIL $*"
}

# run NAME CMD...: runs with a time limit; sets RC, ERR (stderr file) and
# returns 1 (after recording a failure) on a crash or hang.
run() {
    local name=$1
    shift
    ERR=$W/$name.err
    RC=0
    timeout -k 5 "$LIMIT" "$@" >"$W/$name.out" 2>"$ERR" || RC=$?
    if [[ $RC -eq 124 || $RC -eq 137 ]]; then
        fail "$name: hang (no exit within ${LIMIT}s): $*"
        return 1
    fi
    if [[ $RC -ge 125 ]]; then
        fail "$name: crash (exit $RC): $*"
        tail -n 20 "$ERR" | sed 's/^/     /'
        return 1
    fi
    if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:|Segmentation fault' "$ERR"; then
        fail "$name: sanitizer report: $*"
        tail -n 20 "$ERR" | sed 's/^/     /'
        return 1
    fi
    return 0
}

# expect_clean NAME CMD...: exit 0, or non-zero with a message on stderr.
expect_clean() {
    local name=$1
    run "$@" || return 0
    if [[ $RC -ne 0 && ! -s $ERR ]]; then
        fail "$name: exit $RC without any message on stderr"
        return 0
    fi
    if [[ $RC -eq 0 ]]; then
        pass "$name: accepted (exit 0)"
    else
        pass "$name: refused (exit $RC): $(head -c 160 "$ERR" | tr '\n' ' ')"
    fi
}

# expect_ok NAME CMD...: must exit 0.
expect_ok() {
    local name=$1
    run "$@" || return 0
    if [[ $RC -ne 0 ]]; then
        fail "$name: exit $RC: $(head -c 300 "$ERR" | tr '\n' ' ')"
    else
        pass "$name"
    fi
}

# capture_case NAME INPUT: capture must be clean; a trace it leaves must be
# readable (show exits 0 after a successful capture, cleanly otherwise).
capture_case() {
    local name=$1 input=$2 trace=$W/$1.h2rt cap_rc
    expect_clean "capture-$name" "$H2R" capture -r "$input" -o "$trace"
    cap_rc=$RC
    if [[ -s $trace ]]; then
        if [[ $cap_rc -eq 0 ]]; then
            expect_ok "capture-$name-show" "$H2R" show "$trace" --format jsonl
        else
            expect_clean "capture-$name-show" "$H2R" show "$trace" --format jsonl
        fi
    elif [[ $cap_rc -eq 0 ]]; then
        fail "capture-$name: exit 0 but no trace at $trace"
    fi
}

# exchanges FILE.jsonl: number of exchange lines.
exchanges() {
    "$H2R_PY" -c '
import json, sys
n = 0
for line in open(sys.argv[1]):
    line = line.strip()
    if line and json.loads(line).get("type", "exchange") == "exchange":
        n += 1
print(n)' "$1"
}

# Deterministic junk.
"$H2R_PY" - "$W" <<'EOF'
import hashlib, struct, sys
w = sys.argv[1]
def junk(n, seed):
    out, h = bytearray(), seed.encode()
    while len(out) < n:
        h = hashlib.sha256(h).digest()
        out += h
    return bytes(out[:n])
open(w + "/random.bin", "wb").write(junk(65536, "random"))
# pcap global header (microsecond magic, v2.4, snaplen 262144, Ethernet), then junk records
hdr = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
open(w + "/junk-records.pcap", "wb").write(hdr + junk(65536, "records"))
EOF
: >"$W/empty.pcap"
size=$(stat -c %s "$DATA/large.pcap")
head -c $((size / 2 + 1)) "$DATA/large.pcap" >"$W/cut-mid-packet.pcap"
head -c 30 "$DATA/large.pcap" >"$W/cut-in-record-header.pcap"

echo "--- capture on bad pcaps"
expect_clean capture-missing "$H2R" capture -r "$W/does-not-exist.pcap" -o "$W/missing.h2rt"
if [[ $RC -eq 0 ]]; then
    fail "capture-missing: exit 0 for a file that does not exist"
fi
capture_case empty "$W/empty.pcap"
capture_case cut-mid-packet "$W/cut-mid-packet.pcap"
capture_case cut-in-record-header "$W/cut-in-record-header.pcap"
capture_case random "$W/random.bin"
capture_case junk-records "$W/junk-records.pcap"

echo "--- non-HTTP/2 TCP flows: accepted, 0 exchanges"
for f in non-h2-tcp non-h2-http11; do
    expect_ok "capture-$f" "$H2R" capture -r "$DATA/$f.pcap" -o "$W/$f.h2rt"
    [[ $RC -eq 0 ]] || continue
    expect_ok "show-$f" "$H2R" show "$W/$f.h2rt" --format jsonl
    [[ $RC -eq 0 ]] || continue
    n=$(exchanges "$W/show-$f.out")
    if [[ $n -eq 0 ]]; then pass "$f: 0 exchanges"; else fail "$f: $n exchanges from a flow without HTTP/2"; fi
done

echo "--- pcapng input gives the same exchanges as pcap"
if command -v editcap >/dev/null 2>&1; then
    editcap -F pcapng "$DATA/sample.pcap" "$W/sample.pcapng"
    expect_ok capture-sample-pcap "$H2R" capture -r "$DATA/sample.pcap" -o "$W/sample.h2rt"
    expect_ok capture-sample-pcapng "$H2R" capture -r "$W/sample.pcapng" -o "$W/sample-ng.h2rt"
    expect_ok show-sample "$H2R" show "$W/sample.h2rt" --format jsonl
    expect_ok show-sample-ng "$H2R" show "$W/sample-ng.h2rt" --format jsonl
    a=$(exchanges "$W/show-sample.out" 2>/dev/null || echo x)
    b=$(exchanges "$W/show-sample-ng.out" 2>/dev/null || echo y)
    if [[ $a == "$b" && $a != 0 ]]; then pass "pcapng: $a exchanges, same as pcap"; else fail "pcapng: $b exchanges, pcap: $a"; fi
else
    echo "skip pcapng: editcap missing"
fi

echo "--- show on bad traces"
GOOD=$W/sample.h2rt
if [[ ! -s $GOOD ]]; then
    expect_ok capture-good "$H2R" capture -r "$DATA/sample.pcap" -o "$GOOD"
fi
if [[ -s $GOOD ]]; then
    tsize=$(stat -c %s "$GOOD")
    head -c $((tsize / 2)) "$GOOD" >"$W/half.h2rt"
    # flip 16 bytes in the middle of the file
    "$H2R_PY" - "$GOOD" "$W/flipped.h2rt" <<'EOF'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
mid = len(b) // 2
for i in range(mid, min(mid + 16, len(b))):
    b[i] ^= 0xFF
open(sys.argv[2], "wb").write(b)
EOF
    # and a trace whose zstd frame header (just past the start) is damaged
    "$H2R_PY" - "$GOOD" "$W/flipped-early.h2rt" <<'EOF'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
for i in range(min(8, len(b)), min(40, len(b))):
    b[i] ^= 0x5A
open(sys.argv[2], "wb").write(b)
EOF
else
    fail "no good trace to corrupt (capture of sample.pcap failed)"
fi
: >"$W/empty.h2rt"
cp "$W/random.bin" "$W/random.h2rt"
expect_clean show-missing "$H2R" show "$W/does-not-exist.h2rt"
if [[ $RC -eq 0 ]]; then
    fail "show-missing: exit 0 for a trace that does not exist"
fi
for t in empty random half flipped flipped-early; do
    [[ -e $W/$t.h2rt ]] || continue
    expect_clean "show-$t-table" "$H2R" show "$W/$t.h2rt"
    expect_clean "show-$t-jsonl" "$H2R" show "$W/$t.h2rt" --format jsonl --records all
done
expect_clean show-a-pcap "$H2R" show "$DATA/sample.pcap"

echo "bad_input: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
