#!/usr/bin/env bash
# demo.sh - THE main job: install, build, then turn the bundled capture of
# real h2c traffic (traces/sample-h2c.pcap) into a trace and show it.
#
# Usage: scripts/demo.sh            (OUT_DIR=out by default; JOBS=2)
# Leaves OUT_DIR/sample-h2c.h2rt and prints where it is.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
JOBS=${JOBS:-2}
BUILD=${H2R_BUILD_DIR:-build}
OUT=${OUT_DIR:-out}
PCAP=traces/sample-h2c.pcap
H2R=$BUILD/cli/h2replay

step() {
    echo
    echo "==> $*"
}

step "installing packages (scripts/setup.sh)"
bash scripts/setup.sh

mkdir -p "$OUT"
step "building h2replay in $BUILD/"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$OUT/configure.log" 2>&1 || {
    cat "$OUT/configure.log" >&2
    echo "demo.sh: cmake configure failed" >&2
    exit 1
}
cmake --build "$BUILD" -j"$JOBS" --target h2replay
[[ -x $H2R ]] || {
    echo "demo.sh: $H2R was not built" >&2
    exit 1
}

TRACE=$OUT/sample-h2c.h2rt
step "capturing $PCAP -> $TRACE"
timeout 300 "$H2R" capture -r "$PCAP" -o "$TRACE"

step "h2replay show $TRACE"
timeout 120 "$H2R" show "$TRACE"

echo
echo "trace: $(cd "$(dirname "$TRACE")" && pwd)/$(basename "$TRACE") ($(stat -c %s "$TRACE") bytes, from $PCAP)"
echo "more:  $H2R show $TRACE --format jsonl --records all"
