#!/usr/bin/env bash
# matrix_quick.sh - scripts/matrix.sh --quick end to end (label e2e, 40 s synthetic, ~2 min with
# the captured sessions).
#
#   tests/e2e/matrix_quick.sh H2REPLAY [WORKDIR]
#
# Runs the smoke matrix (Headscale v0.29.2 x SQLite, PostgreSQL x 20 nodes: synthetic TS2021
# sessions, or 2 clones of the 14 captured sessions of traces/tailscale-sample.h2rt when the
# replay supports them; 120 s budget per cell) into WORKDIR and checks that it exits 0 and that
# report.md and report.html hold both cells, every expected column, a finished status, every
# session registered, database evidence of the right engine (WAL growth for SQLite, lock waits for
# PostgreSQL), client resources, and the exact replay command of each cell.
# Exit 77 (skip) when Headscale v0.29.2 is not installed (scripts/install-headscale.sh) or the
# PostgreSQL server binaries are missing -- unless CI=true, where that is a failure.
set -uo pipefail

H2R=${1:?usage: matrix_quick.sh H2REPLAY [WORKDIR]}
ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
WORK=${2:-$(mktemp -d /tmp/h2r-matrix.XXXXXX)}
prog=matrix_quick.sh
fails=0
ok() { echo "$prog: ok: $*"; }
bad() { echo "$prog: FAIL: $*" >&2; fails=$((fails + 1)); }
skip() {
    [[ ${CI:-} == true ]] && { echo "$prog: FAIL: $* (CI=true)" >&2; exit 1; }
    echo "$prog: SKIP: $*" >&2
    exit 77
}

[[ -x $H2R ]] || skip "no h2replay at $H2R"
[[ -x $ROOT/.cache/bin/headscale-v0.29.2/headscale ]] || skip "Headscale v0.29.2 not installed"
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 ||
    skip "PostgreSQL server binaries missing"
command -v python3 >/dev/null || skip "python3 missing"

rm -rf "$WORK/matrix"
mkdir -p "$WORK"
t0=$SECONDS
rc=0
H2REPLAY=$H2R timeout -k 10 270 "$ROOT/scripts/matrix.sh" --quick --out "$WORK/matrix" >"$WORK/matrix.log" 2>&1 || rc=$?
if [[ $rc -eq 0 ]]; then
    ok "scripts/matrix.sh --quick exited 0 in $((SECONDS - t0)) s"
else
    bad "scripts/matrix.sh --quick exited $rc: $(tail -5 "$WORK/matrix.log")"
fi
md=$WORK/matrix/report.md
html=$WORK/matrix/report.html
[[ -s $md ]] || { bad "no $md"; echo "$prog: $fails failed"; exit 1; }
if [[ -s $html ]]; then ok "report.html written"; else bad "no report.html"; fi

if out=$(python3 - "$md" "$html" <<'EOF'
import sys
md, html = open(sys.argv[1]).read(), open(sys.argv[2]).read()
errs = []
cols = ["cell", "status", "sessions", "registered", "register p50 / p99 / max",
        "first netmap p50 / p99 / max", "all peers seen", "nodes with N−1 peers", "wall",
        "errors by class", "onset", "acknowledged but lost", "database evidence",
        "server log (warn/error)", "client CPU", "client peak RSS", "client peak fds",
        "max send lateness", "Headscale CPU", "Headscale peak RSS", "PostgreSQL CPU",
        "other load (CPU s)",
        "load avg start → end", "bottleneck"]
heads = set()
for line in md.splitlines():
    if line.startswith("| cell |"):
        heads.update(c.strip() for c in line.strip("|").split("|"))
errs += ["missing column %r" % c for c in cols if c not in heads]
for db, ev in (("sqlite", "WAL growth"), ("postgres", "lock waits max")):
    cell = "v0.29.2 %s 20" % db
    rows = [[c.strip() for c in l.strip("|").split("|")] for l in md.splitlines()
            if l.startswith("| %s |" % cell)]
    if len(rows) != 3:
        errs.append("%s: %d table rows, want 3" % (cell, len(rows)))
        continue
    r1, r2, r3 = rows
    if r1[1] != "done":
        errs.append("%s: status %r" % (cell, r1[1]))
    # synthetic: 20 sessions; captured sessions: 14 x ceil(20 / 12) = 28
    if r1[3] != r1[2].split()[0] or int(r1[3]) < 20:
        errs.append("%s: registered %r of %r sessions" % (cell, r1[3], r1[2]))
    if r1[4] == "-" or r1[5] == "-":
        errs.append("%s: no latency figures (%r, %r)" % (cell, r1[4], r1[5]))
    if ev not in r2[4]:
        errs.append("%s: database evidence %r lacks %r" % (cell, r2[4], ev))
    if r2[3] != "0":
        errs.append("%s: acknowledged but lost %r, want 0" % (cell, r2[3]))
    if r3[1] == "-" or r3[2] == "-" or r3[5] == "-":
        errs.append("%s: client/server resources missing: %r" % (cell, r3))
    if "v0.29.2-%s-20: `" % db not in md or " replay " not in md:
        errs.append("%s: no replay command" % cell)
    if cell not in html:
        errs.append("%s: not in report.html" % cell)
print("\n".join(errs) if errs else "ok")
sys.exit(1 if errs else 0)
EOF
)
then
    ok "report.md: both cells, every column, every session registered, evidence per engine"
else
    bad "report.md: $out"
fi

if [[ $fails -ne 0 ]]; then
    sed 's/^/    /' "$md" >&2
    echo "$prog: $fails failed (work in $WORK)" >&2
    exit 1
fi
echo "$prog: all passed"
exit 0
