#!/usr/bin/env bash
# bench-analyze.sh - time `h2replay analyze` and its peak memory on synthetic run files.
#
# Generates a run file with N exchanges per target (tests/tools/gen_run.c, built as the
# `gen_run` target; 2 targets, failures from 60 % of the run on, like a real failure
# point), then runs `h2replay analyze` on it in each output format under
# /usr/bin/time -v and prints wall time, exchanges per second and peak RSS.
# Peak RSS must not grow with N (histograms and windows only): compare two sizes.
#
# Usage: scripts/bench-analyze.sh [-n EXCHANGES] [-b BUILD_DIR] [-k] [-w WORKDIR]
#   -n  exchanges per target (default 10000000; try 100000 first)
#   -b  build directory with h2replay and gen_run (default: build)
#   -k  keep the generated run file and reports
#   -w  work directory (default: a fresh mktemp -d)
set -euo pipefail

N=10000000
BUILD=build
KEEP=0
WORK=""
while getopts "n:b:kw:h" opt; do
    case $opt in
    n) N=$OPTARG ;;
    b) BUILD=$OPTARG ;;
    k) KEEP=1 ;;
    w) WORK=$OPTARG ;;
    h)
        sed -n '2,14p' "$0"
        exit 0
        ;;
    *) exit 2 ;;
    esac
done

die() {
    echo "bench-analyze: $*" >&2
    exit 1
}

H2R=$(find "$BUILD" -name h2replay -type f -perm -u+x | head -n 1)
GEN=$(find "$BUILD" -name gen_run -type f -perm -u+x | head -n 1)
[[ -n $H2R ]] || die "no h2replay under $BUILD (cmake --build $BUILD --target h2replay)"
[[ -n $GEN ]] || die "no gen_run under $BUILD (cmake --build $BUILD --target gen_run)"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (apt-get install time)"

if [[ -z $WORK ]]; then
    WORK=$(mktemp -d /tmp/bench-analyze.XXXXXX)
fi
mkdir -p "$WORK"
if [[ $KEEP -eq 0 ]]; then
    trap 'rm -rf "$WORK"' EXIT
fi

RUN=$WORK/bench.h2r
# 2000 exchanges/s: 10M exchanges span 5000 s of replay time (5000 windows of 1 s).
RATE=2000
FAIL_AT=$(awk -v n="$N" -v r="$RATE" 'BEGIN { printf "%.0f", 0.6 * n / r }')

echo "bench-analyze: generating $N exchanges x 2 targets -> $RUN"
t0=$(date +%s.%N)
"$GEN" -o "$RUN" -n "$N" --sections 2 --rate $RATE --slowdown 1.2 \
    --fail-at "$FAIL_AT" --fail-rate 0.3
t1=$(date +%s.%N)
printf 'bench-analyze: generated in %.1fs, %s bytes\n' "$(echo "$t1 - $t0" | bc)" \
    "$(stat -c %s "$RUN")"

measure() {
    local fmt=$1 out=$WORK/report.$1 log=$WORK/time.$1
    local rc=0
    /usr/bin/time -v "$H2R" analyze "$RUN" --format "$fmt" -o "$out" -q \
        --gate 'p99 < +50%' 2>"$log" || rc=$?
    # exit 1 = a gate failed, which is expected here; 2 is an error
    if [[ $rc -ge 2 ]]; then
        cat "$log" >&2
        die "analyze --format $fmt failed (exit $rc)"
    fi
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { print $2 }' "$log")
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$log")
    local secs
    secs=$(echo "$wall" | awk -F: '{ if (NF == 3) print $1 * 3600 + $2 * 60 + $3;
                                     else print $1 * 60 + $2 }')
    local rate
    rate=$(awk -v n="$N" -v s="$secs" 'BEGIN { if (s > 0) printf "%.0f", 2 * n / s;
                                                else print "inf" }')
    printf 'bench-analyze: %-5s %10s wall  %8s exchanges/s  peak RSS %6.1f MB  report %s bytes\n' \
        "$fmt" "$wall" "$rate" "$(echo "$rss / 1024" | bc -l)" "$(stat -c %s "$out")"
}

for fmt in table json md html; do
    measure "$fmt"
done
if [[ $KEEP -eq 1 ]]; then
    echo "bench-analyze: kept $WORK"
fi
