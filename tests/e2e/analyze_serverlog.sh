#!/usr/bin/env bash
# analyze_serverlog.sh - `h2replay analyze --server-log` against real Headscale logs (label e2e).
#
#   tests/e2e/analyze_serverlog.sh H2REPLAY [WORKDIR]
#
# 1. Headscale v0.29.2 on SQLite (its log is zerolog JSON). Three replays of synthetic TS2021
#    node sessions, 2 s apart, each its own run file and target name:
#      good    6 nodes with the right pre-auth key: no server error while it runs;
#      badkey  6 nodes with a wrong pre-auth key: every register is refused, and v0.29.2 logs
#              nothing above info for it (the error goes into the RegisterResponse only);
#      old     6 nodes announcing capability version 90 (< 113, v0.29.2's minimum): every
#              upgrade fails, and Headscale logs one "unsupported client version" error each.
#    `analyze old.h2rr --server-log old=$HS_LOG --format json`: 6 server errors inside the run,
#    none before it (good and badkey logged none), each in a window next to a client failure
#    and each client failure next to one (whole-second stamps: +-1 window), the first within
#    2 s of the client's first failure, one class with all 6; the same log against `good`
#    counts those 6 "after" the run and none in it; against `badkey`, client errors but no
#    server error. The table, Markdown and HTML (no script) reports carry the section, and the
#    gate server_errors<=0 fails (exit 1).
# 2. Headscale v0.23.0 (zerolog console text whatever log.format says): 5 nodes with a wrong
#    pre-auth key; each is logged as "Failed authentication via AuthKey" (ERR, with and without
#    error="AuthKey not found"): the console format parses, 10 errors in the run, the class
#    with the error counts 5, the first error within 2 s of the first failure.
# Exit 77 (skip) when a release is not in .cache/bin (scripts/install-headscale.sh), unless
# CI=true. Takes about 20 s.
set -uo pipefail

H2R=${1:?usage: analyze_serverlog.sh H2REPLAY [WORKDIR]}
ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
WORK=${2:-$(mktemp -d /tmp/h2r-slog-e2e.XXXXXX)}
HS=$ROOT/scripts/headscale.sh
prog=analyze_serverlog.sh
# shellcheck source=tests/e2e/hs_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/hs_lib.sh"
cleanup() {
    for d in "$WORK/hs29" "$WORK/hs23"; do
        [[ -f $d/env ]] && "$HS" stop --dir "$d" --keep >/dev/null 2>&1
    done
}
for v in v0.29.2 v0.23.0; do
    [[ -x $ROOT/.cache/bin/headscale-$v/headscale ]] ||
        skip "no .cache/bin/headscale-$v/headscale (scripts/install-headscale.sh $v)"
done
command -v python3 >/dev/null || skip "python3 missing"
mkdir -p "$WORK"
rm -rf "$WORK/hs29" "$WORK/hs23"
trap cleanup EXIT

replay() { # replay NAME RUN NODES ARRIVAL KEY [extra...]
    local name=$1 run=$2 nodes=$3 arrival=$4 key=$5
    shift 5
    timeout -k 5 60 "$H2R" replay --nodes "$nodes" --arrival "$arrival" --hold 1s \
        --target "$name=ts2021+$HS_URL" --set "authkey=$key" -o "$run" "$@" \
        >"$run.log" 2>&1 || die "replay $name failed: $(tail -3 "$run.log")"
}

# check JSON WHAT...: python assertions on the report of one run with a server log
check() {
    local json=$1
    shift
    python3 - "$json" "$@" <<'EOF'
import json, sys
rep = json.load(open(sys.argv[1]))
run = rep["runs"][-1]
sl = run["server_log"]
fails = []
def want(cond, msg):
    if not cond:
        fails.append(msg)
for what in sys.argv[2:]:
    key, _, arg = what.partition("=")
    if key == "format":
        want(sl["format"] == arg, "format %s, not %s" % (sl["format"], arg))
    elif key == "errors":
        want(sl["errors"] == int(arg), "%d server errors in the run, not %s" % (sl["errors"], arg))
    elif key == "before":
        want(sl["before"]["errors"] == int(arg), "%d errors before, not %s" % (sl["before"]["errors"], arg))
    elif key == "after":
        want(sl["after"]["errors"] == int(arg), "%d errors after, not %s" % (sl["after"]["errors"], arg))
    elif key == "client_errors":
        want(run["errors"] > 0, "no client error")
    elif key == "class":
        name, _, n = arg.rpartition(":")
        got = [c for c in sl["classes"] if name in c["class"]]
        want(got and got[0]["count"] == int(n),
             "class ~%r: %s" % (name, [(c["class"], c["count"]) for c in sl["classes"]]))
    elif key == "near":  # first server error within 2 s of the client's first failure
        d = sl["first_error_vs_first_failure_ns"]
        want(d is not None and abs(d) <= 2e9, "first error vs first failure: %s ns" % d)
    elif key == "aligned":  # server-error windows and client-failure windows match within 1
        e, c = sl["windows"]["errors"], sl["windows"]["client_failed"]
        near = lambda v, i: any(v[j] for j in range(max(0, i - 1), min(len(v), i + 2)))
        lone_e = [i for i in range(len(e)) if e[i] and not near(c, i)]
        lone_c = [i for i in range(len(c)) if c[i] and not near(e, i)]
        want(not lone_e and not lone_c, "windows: errors %s, client failed %s" % (e, c))
print("  %s: %d errors in the run (before %d, after %d), first error %s ns vs first failure, "
      "format %s, %d lines, %d skipped; top: %s" % (
    run["name"], sl["errors"], sl["before"]["errors"], sl["after"]["errors"],
    sl["first_error_vs_first_failure_ns"], sl["format"], sl["lines"], sl["skipped"],
    "; ".join("%s x%d" % (c["class"], c["count"]) for c in sl["classes"][:3])))
for f in fails:
    print("  " + f, file=sys.stderr)
sys.exit(1 if fails else 0)
EOF
}

# ---------------------------------------------------------------- v0.29.2, JSON
t_start=$(date +%s)
env_out=$("$HS" start --version v0.29.2 --db sqlite --dir "$WORK/hs29" --no-install) ||
    die "v0.29.2 did not start"
eval "$env_out"
[[ $HS_LOG_FORMAT == json ]] || bad "v0.29.2 log format is $HS_LOG_FORMAT, expected json"
key=$("$HS" authkey --dir "$HS_DIR" --user nodes --reusable) || die "authkey failed"
# 2 s apart: the server stamps whole seconds, so events closer than that to a run's edge
# count inside it (docs/analyze.md, "Server logs")
replay good "$WORK/good.h2rr" 6 2s "$key"
sleep 2
replay badkey "$WORK/badkey.h2rr" 6 2s "hskey-auth-h2rWrongKey01-0123456789abcdef0123456789abcdef0123456789abcdef"
sleep 2
replay old "$WORK/old.h2rr" 6 3s "$key" --capver 90
cp "$HS_LOG" "$WORK/hs29.log"
"$HS" stop --dir "$HS_DIR" --keep >/dev/null 2>&1
LOG29=$WORK/hs29.log
ok "v0.29.2: 3 replays, $(wc -l <"$LOG29") log lines"

"$H2R" analyze "$WORK/old.h2rr" --server-log "old=$LOG29" --format json -o "$WORK/old.json" \
    2>"$WORK/old.err" || bad "analyze old: $(cat "$WORK/old.err")"
if check "$WORK/old.json" format=json errors=6 before=0 after=0 near aligned \
    "class=unsupported client version:6"; then
    ok "v0.29.2: unsupported-client errors on the client's timeline"
else
    bad "v0.29.2: old run"
fi
"$H2R" analyze "$WORK/good.h2rr" --server-log "good=$LOG29" --format json -o "$WORK/good.json" \
    2>/dev/null || bad "analyze good"
check "$WORK/good.json" errors=0 before=0 after=6 && ok "v0.29.2: the later errors count after 'good'" ||
    bad "v0.29.2: good run"
"$H2R" analyze "$WORK/badkey.h2rr" --server-log "badkey=$LOG29" --format json \
    -o "$WORK/badkey.json" 2>/dev/null || bad "analyze badkey"
check "$WORK/badkey.json" client_errors errors=0 &&
    ok "v0.29.2: a refused pre-auth key fails the client and logs no server error" ||
    bad "v0.29.2: badkey run"
for fmt in table md html; do
    "$H2R" analyze "$WORK/old.h2rr" --server-log "old=$LOG29" --format $fmt -o "$WORK/old.$fmt" \
        -q || bad "analyze --format $fmt"
done
grep -q "server errors" "$WORK/old.table" || bad "table has no server errors line"
grep -q "### Server log" "$WORK/old.md" || bad "md has no Server log section"
grep -q "<h2>Server log</h2>" "$WORK/old.html" || bad "html has no Server log section"
grep -qi "<script" "$WORK/old.html" && bad "html has a script"
ok "table, md, html carry the server log"
if "$H2R" analyze --help | grep -q server_errors; then
    "$H2R" analyze "$WORK/old.h2rr" --server-log "old=$LOG29" --gate 'server_errors<=0' -q \
        >/dev/null 2>&1
    rc=$?
    [[ $rc == 1 ]] && ok "gate server_errors<=0 fails (exit 1)" || bad "gate exit $rc, not 1"
fi
"$H2R" analyze "$WORK/old.h2rr" --server-log "nope=$LOG29" -q >/dev/null 2>"$WORK/nope.err"
rc=$?
[[ $rc == 2 ]] && grep -q "'old'" "$WORK/nope.err" && ok "unknown TARGET: exit 2, targets listed" ||
    bad "unknown TARGET: exit $rc: $(cat "$WORK/nope.err")"

# ------------------------------------------------------------- v0.23.0, console
env_out=$("$HS" start --version v0.23.0 --db sqlite --dir "$WORK/hs23" --no-install) ||
    die "v0.23.0 did not start"
eval "$env_out"
[[ $HS_LOG_FORMAT == text ]] || bad "v0.23.0 log format is $HS_LOG_FORMAT, expected text"
replay badkey "$WORK/badkey23.h2rr" 5 2s "0123456789abcdef0123456789abcdef0123456789abcdef"
cp "$HS_LOG" "$WORK/hs23.log"
"$HS" stop --dir "$HS_DIR" --keep >/dev/null 2>&1
"$H2R" analyze "$WORK/badkey23.h2rr" --server-log "badkey=$WORK/hs23.log" --format json \
    -o "$WORK/badkey23.json" 2>"$WORK/badkey23.err" || bad "analyze v0.23.0: $(cat "$WORK/badkey23.err")"
if check "$WORK/badkey23.json" format=console errors=10 before=0 near aligned \
    "class=failed authentication via authkey: authkey not found:5"; then
    ok "v0.23.0: console log parsed, auth errors on the client's timeline"
else
    bad "v0.23.0: badkey run"
fi

echo "$prog: $((fails)) failures in $(($(date +%s) - t_start)) s"
[[ $fails == 0 ]]
