#!/usr/bin/env bash
# replay_ts2021_trace.sh - replay captured TS2021 sessions against real Headscale (label e2e).
#
#   tests/e2e/replay_ts2021_trace.sh WORKDIR [TRACE [SESSIONS IDENTITIES SKIPPED]]
#       (H2REPLAY, and RP_MKTRACE when no TRACE exists, from the environment; ctest sets them)
#
# TRACE defaults to traces/tailscale-sample.h2rt (12 tailscaled, 14 sessions: two reconnects)
# when it exists, else a trace made here with rp_mktrace: 12 nodes, nodes 2 and 8 reconnect,
# one refused upgrade of an unknown node (15 sessions, 13 identities, 1 skipped; 10 s long). SESSIONS,
# IDENTITIES and SKIPPED are what the trace holds (given: checked exactly; else taken from the
# replay's own note and checked for consistency).
#
# For v0.29.2 on SQLite and PostgreSQL and v0.23.0 on SQLite (H2R_HS_COMBOS="V/DB ..."; with the
# sample each takes 45-50 s on a quiet 2-core box and 60-100 s on a busy one, where the --clone 10
# run alone is ~30 s of Headscale registering 120 nodes at ~6/s; v0.23.0/postgres passes too,
# 47 s), each run on a fresh server (scripts/headscale.sh) with a reusable pre-auth key:
#   - the trace at 10x: every session with a completed handshake registers and gets a netmap
#     (its map stream ok; or closed_by_server after its netmap while another session of the same
#     node was open - a reconnect that overlaps because 10x and load compress the 1 s gap, which
#     Headscale resolves by ending a stream - checked per stream, not tolerated in bulk),
#     each never-handshaken one is one `skipped` result naming why; every identity is exactly
#     one node in `headscale nodes list` and in the nodes table (a reconnect presents the same
#     machine and node key: Headscale's known-node path, no second node);
#   - the trace at 1x (or, for a trace longer than 20 s, at the speed that makes it 20 s: 2.77x
#     for the 55 s sample): the same outcome set ((path, class) -> count) as at 10x;
#   - --clone 10 (--clone-jitter 90s) at 10x: sessions x 10, identities x 10, each exactly one
#     node. A register the server closes (EOF) passes only against an equal count of Go's
#     "timeout waiting for SETTINGS frames" in Headscale's log (its serve loop starved by bcrypt
#     on this busy 2-core box; seen once in 4 runs on v0.29.2), and its node is then absent.
# Exit 77 (skip) only when no Headscale binary is installed and CI is not "true".
set -uo pipefail

WORK=${1:?usage: replay_ts2021_trace.sh WORKDIR [TRACE [SESSIONS IDENTITIES SKIPPED]]}
ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
TRACE=${2:-}
WANT_SESSIONS=${3:-}
WANT_IDS=${4:-}
WANT_SKIPPED=${5:-}
HS=$ROOT/scripts/headscale.sh
H2R=${H2REPLAY:-}
prog=replay_ts2021_trace.sh
CLONE=10
# the copies' starts spread over 90 s of trace time, 9 s at 10x: 120 registrations at once make
# Headscale (bcrypt, ~28/s on a quiet 2-core box, ~6/s on this busy one) miss Go's 2 s wait for
# the client's HTTP/2 SETTINGS ("timeout waiting for SETTINGS frames" in its log, a register
# closed_by_server "EOF" here); the check accepts at most as many such registers as the log has
JITTER=90s

fails=0
ok() { echo "$prog: ok: $*"; }
bad() { echo "$prog: FAIL: $*" >&2; fails=$((fails + 1)); }

[[ -n $H2R && -x $H2R ]] || { echo "$prog: SKIP: \$H2REPLAY not set (run through ctest)" >&2; exit 77; }
for t in python3 sqlite3; do
    command -v $t >/dev/null && continue
    [[ ${CI:-} == true ]] && { echo "$prog: FAIL: $t missing and CI=true" >&2; exit 1; }
    echo "$prog: SKIP: $t missing" >&2
    exit 77
done
have_pg() {
    { command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } &&
        command -v psql >/dev/null
}
combos=()
for c in ${H2R_HS_COMBOS:-v0.29.2/sqlite v0.29.2/postgres v0.23.0/sqlite}; do
    v=${c%/*} db=${c#*/}
    if [[ ! -x $ROOT/.cache/bin/headscale-$v/headscale ]]; then
        [[ ${CI:-} == true ]] && bad "no Headscale $v (scripts/install-headscale.sh $v) and CI=true"
        echo "$prog: note: no Headscale $v, $c skipped" >&2
        continue
    fi
    if [[ $db == postgres ]] && ! have_pg; then
        [[ ${CI:-} == true ]] && bad "PostgreSQL (server binaries, psql) missing and CI=true"
        echo "$prog: note: PostgreSQL missing, $c skipped" >&2
        continue
    fi
    combos+=("$c")
done
if [[ ${#combos[@]} -eq 0 ]]; then
    [[ ${CI:-} == true ]] && exit 1
    echo "$prog: SKIP: no Headscale installed (scripts/install-headscale.sh)" >&2
    exit 77
fi

rm -rf "$WORK"
mkdir -p "$WORK"
if [[ -z $TRACE && -f $ROOT/traces/tailscale-sample.h2rt ]]; then
    TRACE=$ROOT/traces/tailscale-sample.h2rt
    WANT_SESSIONS=14 WANT_IDS=12 WANT_SKIPPED=0
fi
if [[ -z $TRACE ]]; then
    [[ -n ${RP_MKTRACE:-} && -x $RP_MKTRACE ]] ||
        { echo "$prog: SKIP: no trace and no \$RP_MKTRACE (run through ctest)" >&2; exit 77; }
    TRACE=$WORK/ts.h2rt
    "$RP_MKTRACE" -o "$TRACE" --ts-nodes 12 --ts-reconnect 2 --ts-refused 1 \
        --ts-stagger 300ms --ts-hold 6s 2>"$WORK/mktrace.log" ||
        { bad "rp_mktrace: $(cat "$WORK/mktrace.log")"; exit 1; }
    WANT_SESSIONS=15 WANT_IDS=13 WANT_SKIPPED=1
fi
echo "$prog: trace $TRACE"

live_dirs=()
cleanup() {
    local d
    for d in "${live_dirs[@]}"; do
        [[ -n $d && -f $d/env ]] && "$HS" stop --dir "$d" --keep >/dev/null 2>&1
    done
}
trap cleanup EXIT
ulimit -n 4096 2>/dev/null || true

# replay NAME ARGS...: h2replay replay TRACE (bounded), run file NAME.h2rr, results NAME.jsonl
replay() {
    local name=$1
    shift
    local rc=0
    timeout -k 5 240 "$H2R" replay "$TRACE" "$@" -o "$WORK/$name.h2rr" >"$WORK/$name.log" 2>&1 ||
        rc=$?
    if [[ $rc -ne 0 ]]; then
        bad "$name: replay exit status $rc: $(tail -3 "$WORK/$name.log")"
        return 1
    fi
    "$H2R" show "$WORK/$name.h2rr" --format jsonl >"$WORK/$name.jsonl" || {
        bad "$name: show failed"
        return 1
    }
}

# check NAME SESSIONS IDENTITIES SKIPPED NODES-JSON DB-ROWS: the run's results and Headscale's
# nodes of this run (by the run's hostname prefix). Prints a summary; exit 1 on a problem.
check() {
    python3 - "$WORK/$1.jsonl" "$2" "$3" "$4" "$5" "$6" "$HS_LOG" <<'EOF'
import collections, json, sys
rs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sessions, ids, skipped = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
nodes = json.load(open(sys.argv[5])) or []
rows = sys.argv[6]
# Go's HTTP/2 server waits 2 s for the client's first SETTINGS frame after the preface
# (x/net/http2 firstSettingsTimeout) and closes the connection otherwise; our client sends
# both in one write, so each such line is Headscale's serve loop starved by bcrypt work
settings_timeouts = sum(1 for l in open(sys.argv[7], errors="replace")
                        if "timeout waiting for SETTINGS frames" in l)
errs = []
reg = [r for r in rs if r["path"] == "/machine/register"]
mp = [r for r in rs if r["path"] == "/machine/map"]
sk = [r for r in rs if r["path"] == "/ts2021"]
starved = [r for r in reg if r["class"] == "closed_by_server" and r["detail"] == "EOF"]
if len(starved) > settings_timeouts:
    errs.append(f"{len(starved)} registers closed (EOF), Headscale logged {settings_timeouts} "
                "SETTINGS timeouts")
starved = starved[:settings_timeouts]
starved_maps = {r["exchange"] + 1 for r in starved}
live = sessions - skipped
if len(rs) != 2 * live + skipped:
    errs.append(f"{len(rs)} results, want {2 * live + skipped}")
# A session's start (its register result's t_intended) and end (its map result's t_end).
start = {r["exchange"] + 1: r["t_intended_ns"] for r in reg}
def overlapped(m):
    """Another session of the same identity was open while m's stream ran: compressed in
    time (a node's reconnect comes 1 s after its last session ended in the trace, 0.1 s at
    10x) and under load a session still waits for its first netmap when its node's next
    session starts; Headscale then ends the older stream (v0.23.0 also the newer one)."""
    a0, a1 = start.get(m["exchange"], 0), m["t_end_ns"] or 0
    return any(o is not m and o["conn"] == m["conn"] and start.get(o["exchange"], 0) < a1 and
               (o["t_end_ns"] or 0) > a0 for o in mp)
explained = [r for r in mp if r["class"] == "closed_by_server" and r["t_netmap_ns"] and
             overlapped(r)]
explained += starved + [r for r in mp if r["exchange"] in starved_maps and r["class"] == "skipped"]
for what, v in (("register", reg), ("map", mp)):
    notok = [r for r in v if (r["class"] != "ok" or r["status"] != 200) and r not in explained]
    if len(v) != live or notok:
        errs.append(f"{what}: {len(v)} results, {len(notok)} not ok"
                    + (f" (first: {notok[0]['class']} {notok[0]['detail']})" if notok else ""))
if any(not r["t_netmap_ns"] or r["netmaps"] < 1 for r in mp if r["exchange"] not in starved_maps):
    errs.append("a map stream without a netmap")
if len(sk) != skipped or any(r["class"] != "skipped" or "not replayed" not in (r["detail"] or "")
                             for r in sk):
    errs.append(f"{len(sk)} skipped captured sessions, want {skipped}")
# identities: distinct trace_conn over the replayed sessions; each one node in Headscale
per_id = collections.Counter(r["conn"] for r in reg)
registered = {r["conn"] for r in reg if r["class"] == "ok"}
prefixes = collections.Counter(n["name"].rpartition("-")[0] for n in nodes)
run_prefix = prefixes.most_common(1)[0][0] if prefixes else ""
mine = [n for n in nodes if n["name"].rpartition("-")[0] == run_prefix]
got = sorted(int(n["name"].rpartition("-")[2]) for n in mine)
if got != sorted(registered) or set(per_id) - registered - {r["conn"] for r in starved}:
    errs.append(f"headscale nodes list: {len(mine)} nodes of {run_prefix}, want exactly the "
                f"{len(per_id)} identities (extra {sorted(set(got) - set(per_id))[:5]}, "
                f"missing {sorted(set(per_id) - set(got))[:5]}, twice "
                f"{[k for k, c in collections.Counter(got).items() if c > 1][:5]})")
if rows != str(len(nodes)):
    errs.append(f"nodes table {rows} rows, nodes list {len(nodes)}")
reconnects = sum(c - 1 for c in per_id.values())
if errs:
    print("; ".join(errs)); sys.exit(1)
t = sorted(r["t_netmap_ns"] - r["t_sent_ns"] for r in mp if r["t_netmap_ns"])
note = (f" ({len(starved)} closed by Headscale before register: its log has as many 'timeout "
        f"waiting for SETTINGS frames')" if starved else "")
print(f"{len(reg) - len(starved)} sessions registered{note} ({reconnects} as reconnects of a known node), "
      f"{len(t)} netmaps"
      + (f" ({len(explained)} streams then closed by the server while the same node's next "
         f"session was open)" if explained else "") +
      f" (first netmap p50 {t[len(t) // 2] / 1e6:.0f} ms, max "
      f"{t[-1] / 1e6:.0f} ms), {len(sk)} skipped, {len(mine)} nodes = {len(per_id)} identities")
EOF
}

# outcomes NAME: "(path, class) x count" of a run, sorted
outcomes() {
    python3 -c 'import collections, json, sys
c = collections.Counter((r["path"], r["class"]) for r in map(json.loads, open(sys.argv[1])))
print(", ".join(f"{p} {k} x{n}" for (p, k), n in sorted(c.items())))' "$WORK/$1.jsonl"
}

# nodes_snapshot TAG: headscale nodes list (JSON) and the nodes table row count
nodes_snapshot() {
    HEADSCALE_CLI_TIMEOUT=30s timeout 60 "$HS_BIN" -c "$HS_CONFIG" nodes list -o json \
        >"$WORK/nodes-$1.json" 2>"$WORK/cli-$1.log" || echo '[]' >"$WORK/nodes-$1.json"
    if [[ $HS_DB_TYPE == sqlite ]]; then
        sqlite3 -readonly "${HS_DB#sqlite:}" "SELECT count(*) FROM nodes WHERE deleted_at IS NULL" 2>&1
    else
        psql "$HS_DB" -tAc "SELECT count(*) FROM nodes WHERE deleted_at IS NULL" 2>&1
    fi
}

# fresh VERSION DB NAME: a new Headscale; sets HS_* and key
fresh() {
    local dir=$WORK/hs-$3
    local env_out
    env_out=$("$HS" start --version "$1" --db "$2" --dir "$dir" --no-install 2>"$WORK/start-$3.log") || {
        bad "$3: launcher failed: $(tail -3 "$WORK/start-$3.log")"
        return 1
    }
    live_dirs+=("$dir")
    eval "$env_out"
    key=$("$HS" authkey --dir "$dir" --user nodes --reusable) || { bad "$3: authkey failed"; return 1; }
}

stop() {
    "$HS" stop --dir "$WORK/hs-$1" --keep >/dev/null 2>&1 || bad "$1: stop failed"
    live_dirs=("${live_dirs[@]/$WORK\/hs-$1/}")
}

for c in "${combos[@]}"; do
    v=${c%/*} db=${c#*/}
    {
        t_start=$SECONDS
        tag="$v/$db"
        common=(--timeout 30s --connect-timeout 10s --label "$tag")

        # 10x and 1x each against a fresh server: the 1x run must not find the 10x run's nodes
        fresh "$v" "$db" "$v-$db-10x" || continue
        name=x10-$v-$db
        if replay "$name" --speed 10 --target "hs=ts2021+$HS_URL" --set "authkey=$key" "${common[@]}"; then
            note=$(grep -m1 "TS2021 sessions" "$WORK/$name.log")
            read -r n_sess n_ids n_skip span < <(python3 -c '
import re, sys
m = re.search(r"(\d+) TS2021 sessions, (\d+) identities .* (\d+) without a handshake \(skipped\), over (\S+);", sys.argv[1])
d = m.group(4) if m else "0s"
units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
secs = sum(float(x) * units[u] for x, u in re.findall(r"([\d.]+)(ns|us|ms|h|m|s)", d))
print(*(m.groups()[:3] if m else (0, 0, 0)), secs)' "$note")
            if [[ -n $WANT_SESSIONS && "$n_sess $n_ids $n_skip" != "$WANT_SESSIONS $WANT_IDS $WANT_SKIPPED" ]]; then
                bad "$tag: the replay planned $n_sess sessions, $n_ids identities, $n_skip skipped; want $WANT_SESSIONS $WANT_IDS $WANT_SKIPPED"
            fi
            rows=$(nodes_snapshot "$name")
            out=$(check "$name" "$n_sess" "$n_ids" "$n_skip" "$WORK/nodes-$name.json" "$rows") &&
                ok "$tag: 10x: $out" || bad "$tag: 10x: $out"
            o10=$(outcomes "$name")
        fi
        stop "$v-$db-10x"

        fresh "$v" "$db" "$v-$db-1x" || continue
        speed=$(python3 -c 'import sys; s = float(sys.argv[1]); print(1 if s <= 20 else round(s / 20, 2))' "${span:-0}")
        name=x1-$v-$db
        if replay "$name" --speed "$speed" --target "hs=ts2021+$HS_URL" --set "authkey=$key" "${common[@]}"; then
            rows=$(nodes_snapshot "$name")
            out=$(check "$name" "$n_sess" "$n_ids" "$n_skip" "$WORK/nodes-$name.json" "$rows") &&
                ok "$tag: ${speed}x: $out" || bad "$tag: ${speed}x: $out"
            o1=$(outcomes "$name")
            [[ $o1 == "${o10:-}" ]] && ok "$tag: ${speed}x and 10x: the same outcomes ($o1)" ||
                bad "$tag: outcomes differ: ${speed}x: $o1; 10x: ${o10:-}"
        fi

        # --clone 10 on the same server (its nodes carry a new hostname prefix)
        name=clone-$v-$db
        if replay "$name" --speed 10 --clone $CLONE --clone-jitter "$JITTER" \
            --target "hs=ts2021+$HS_URL" --set "authkey=$key" "${common[@]}"; then
            rows=$(nodes_snapshot "$name")
            python3 - "$WORK/nodes-$name.json" "$WORK/x1-$v-$db.jsonl" <<'EOF' >"$WORK/nodes-$name-only.json"
import json, sys
# drop the 1x run's nodes (same server): keep the clone run's hostname prefix only
nodes = json.load(open(sys.argv[1])) or []
pre = {}
for n in nodes:
    pre.setdefault(n["name"].rpartition("-")[0], []).append(n)
print(json.dumps(max(pre.values(), key=len) if pre else []))
EOF
            crow=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$WORK/nodes-$name-only.json")
            out=$(check "$name" $((n_sess * CLONE)) $((n_ids * CLONE)) $((n_skip * CLONE)) \
                "$WORK/nodes-$name-only.json" "$crow") &&
                ok "$tag: --clone $CLONE: $out" || bad "$tag: --clone $CLONE: $out"
            total=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1])) or []))' "$WORK/nodes-$name.json")
            [[ $rows == "$total" ]] || bad "$tag: nodes table $rows rows, nodes list $total"
        fi
        stop "$v-$db-1x"
        ok "$tag: $((SECONDS - t_start)) s"
    }
done

if [[ $fails -gt 0 ]]; then
    echo "$prog: $fails failure(s); files in $WORK" >&2
    exit 1
fi
echo "$prog: all passed (${combos[*]})"
