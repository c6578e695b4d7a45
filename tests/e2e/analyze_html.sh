#!/usr/bin/env bash
# analyze_html.sh - the HTML report in a real browser (ctest label e2e).
#
# Generates a two-target run file with a failure point (gen_run), renders
# `h2replay analyze --format html` in Debian's headless chromium, and checks
# that the DOM holds every SVG plot with drawn paths, that the page needs
# nothing from the network (no script, no external src/href), and that
# chromium logged no console message. Leaves a screenshot for a human look.
#
# Usage: analyze_html.sh H2REPLAY GEN_RUN
# Exit: 0 pass, 1 fail, 77 skip (no chromium and it cannot be installed).
# H2R_E2E_KEEP=DIR keeps the report, DOM, log and screenshot in DIR.
set -euo pipefail

H2R=${1:?usage: analyze_html.sh H2REPLAY GEN_RUN}
GEN=${2:?usage: analyze_html.sh H2REPLAY GEN_RUN}

fail() {
    echo "analyze_html: FAIL: $*" >&2
    exit 1
}

find_chromium() {
    command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null || true
}

CHROMIUM=$(find_chromium)
if [[ -z $CHROMIUM && $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "analyze_html: chromium missing; trying apt-get install -y chromium" >&2
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get -o DPkg::Lock::Timeout=120 \
        install -y -q --no-install-recommends chromium >/dev/null 2>&1 || true
    CHROMIUM=$(find_chromium)
fi
if [[ -z $CHROMIUM ]]; then
    echo "analyze_html: SKIP: chromium is not installed (scripts/setup.sh installs it)" >&2
    exit 77
fi

WORK=$(mktemp -d /tmp/analyze_html.XXXXXX)
PROFILE=$(mktemp -d /tmp/analyze_html_profile.XXXXXX)
cleanup() {
    if [[ -n ${H2R_E2E_KEEP:-} ]]; then
        mkdir -p "$H2R_E2E_KEEP"
        cp "$WORK"/* "$H2R_E2E_KEEP"/ 2>/dev/null || true
        echo "analyze_html: artifacts in $H2R_E2E_KEEP" >&2
    fi
    rm -rf "$WORK" "$PROFILE"
}
trap cleanup EXIT

# 60 s at 200/s, two targets; the second fails 40 % of the time from 30 s to 45 s.
"$GEN" -o "$WORK/run.h2r" -n 12000 --rate 200 --sections 2 --slowdown 1.4 \
    --fail-at 30 --recover-at 45 --fail-rate 0.4 ||
    fail "gen_run failed"
rc=0
# the gates fail on purpose (exit 1): the report must show failing gates too
"$H2R" analyze "$WORK/run.h2r" --format html -o "$WORK/report.html" -q \
    --gate 'p99 < +20%' --gate 'errors == 0' 2>"$WORK/analyze.log" || rc=$?
[[ $rc -eq 1 ]] || fail "h2replay analyze exited $rc (expected 1: gates fail)"
[[ -s $WORK/report.html ]] || fail "no report written"

# Self-contained: no script, nothing fetched.
if grep -Eiq '<script|<link|<img|@import|url\(' "$WORK/report.html"; then
    fail "the report references external resources or scripts"
fi
if grep -Eiq '(src|href)="(https?:)?//' "$WORK/report.html"; then
    fail "the report has an external src/href"
fi

CHROME_FLAGS=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
    --disable-background-networking --disable-component-update --disable-sync
    "--user-data-dir=$PROFILE" --enable-logging=stderr --v=0)
URL="file://$WORK/report.html"

timeout 120 "$CHROMIUM" "${CHROME_FLAGS[@]}" --dump-dom "$URL" \
    >"$WORK/dom.html" 2>"$WORK/chromium-dom.log" || fail "chromium --dump-dom failed"
timeout 120 "$CHROMIUM" "${CHROME_FLAGS[@]}" --screenshot="$WORK/shot.png" \
    --window-size=1200,1600 "$URL" >/dev/null 2>"$WORK/chromium-shot.log" ||
    fail "chromium --screenshot failed"

# Every plot rendered into the DOM, each with at least one drawn path.
for id in plot-p99 plot-errors plot-load plot-inflight cdf-0; do
    grep -q "<svg id=\"$id\"" "$WORK/dom.html" || fail "plot $id missing from the DOM"
done
svgs=$(grep -o '<svg ' "$WORK/dom.html" | wc -l)
paths=$(grep -o '<path ' "$WORK/dom.html" | wc -l)
[[ $svgs -ge 5 ]] || fail "only $svgs SVG elements in the DOM"
[[ $paths -ge 10 ]] || fail "only $paths SVG paths in the DOM"
grep -q 'class="onset"' "$WORK/dom.html" || fail "the failure onset is not marked"
grep -q '</html>' "$WORK/dom.html" || fail "the DOM dump is incomplete"

# No console output at all (errors, warnings, logs), no failed loads.
if grep -E 'CONSOLE|Uncaught|Failed to load resource|net::ERR_' \
    "$WORK/chromium-dom.log" "$WORK/chromium-shot.log"; then
    fail "chromium logged console messages or failed loads"
fi
[[ -s $WORK/shot.png ]] || fail "no screenshot"
size=$(stat -c %s "$WORK/shot.png")
[[ $size -gt 20000 ]] || fail "the screenshot is suspiciously small ($size bytes)"

echo "analyze_html: PASS ($svgs svg, $paths paths, screenshot $size bytes)"
