#!/usr/bin/env bash
# replay_shard_ts2021.sh - sharded TS2021 node-session replay against real Headscale (label e2e).
#
#   tests/e2e/replay_shard_ts2021.sh WORKDIR [TRACE]
#       (H2REPLAY, and RP_MKTRACE when no TRACE exists, from the environment; ctest sets them)
#
# TRACE as in replay_ts2021_trace.sh (traces/tailscale-sample.h2rt, else made with rp_mktrace:
# 12 nodes, 2 reconnects, 1 refused upgrade). With --clone 3 at 10x against Headscale
# (H2R_HS_VERSION, default v0.29.2, on SQLite):
#   - one process against a fresh server;
#   - three processes `--shard i/3` with one shared absolute --start-at against another fresh
#     server; merged by `h2replay analyze`, they give the single process's result count, the
#     same outcome counts (errors_by_class) and, per exchange id, the same path and class; no
#     exchange id is in two shards; no identity (trace_conn) is in two shards; the shard files
#     carry shard i/3, partition=identity and the start time; every identity is exactly one
#     node in `headscale nodes list`, with one hostname prefix for the whole job.
# Exit 77 (skip) when the release is not installed and CI is not "true".
set -uo pipefail

WORK=${1:?usage: replay_shard_ts2021.sh WORKDIR [TRACE]}
ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
TRACE=${2:-}
HS=$ROOT/scripts/headscale.sh
H2R=${H2REPLAY:-}
V=${H2R_HS_VERSION:-v0.29.2}
DB=${H2R_HS_DB:-sqlite}
prog=replay_shard_ts2021.sh
CLONE=3

fails=0
ok() { echo "$prog: ok: $*"; }
bad() { echo "$prog: FAIL: $*" >&2; fails=$((fails + 1)); }

[[ -n $H2R && -x $H2R ]] || { echo "$prog: SKIP: \$H2REPLAY not set (run through ctest)" >&2; exit 77; }
command -v python3 >/dev/null || { echo "$prog: SKIP: python3 missing" >&2; exit 77; }
if [[ ! -x $ROOT/.cache/bin/headscale-$V/headscale ]]; then
    [[ ${CI:-} == true ]] && { echo "$prog: FAIL: no Headscale $V and CI=true" >&2; exit 1; }
    echo "$prog: SKIP: no Headscale $V (scripts/install-headscale.sh $V)" >&2
    exit 77
fi

rm -rf "$WORK"
mkdir -p "$WORK"
[[ -z $TRACE && -f $ROOT/traces/tailscale-sample.h2rt ]] && TRACE=$ROOT/traces/tailscale-sample.h2rt
if [[ -z $TRACE ]]; then
    [[ -n ${RP_MKTRACE:-} && -x $RP_MKTRACE ]] ||
        { echo "$prog: SKIP: no trace and no \$RP_MKTRACE (run through ctest)" >&2; exit 77; }
    TRACE=$WORK/ts.h2rt
    "$RP_MKTRACE" -o "$TRACE" --ts-nodes 12 --ts-reconnect 2 --ts-refused 1 \
        --ts-stagger 300ms --ts-hold 6s 2>"$WORK/mktrace.log" ||
        { bad "rp_mktrace: $(cat "$WORK/mktrace.log")"; exit 1; }
fi
echo "$prog: trace $TRACE, Headscale $V/$DB, --clone $CLONE"

live_dirs=()
cleanup() {
    local d
    for d in "${live_dirs[@]}"; do
        [[ -n $d && -f $d/env ]] && "$HS" stop --dir "$d" --keep >/dev/null 2>&1
    done
}
trap cleanup EXIT
ulimit -n 4096 2>/dev/null || true

fresh() {
    local dir=$WORK/hs-$1 env_out
    env_out=$("$HS" start --version "$V" --db "$DB" --dir "$dir" --no-install 2>"$WORK/start-$1.log") || {
        bad "$1: launcher failed: $(tail -3 "$WORK/start-$1.log")"
        return 1
    }
    live_dirs+=("$dir")
    eval "$env_out"
    key=$("$HS" authkey --dir "$dir" --user nodes --reusable) || { bad "$1: authkey failed"; return 1; }
}

stop() {
    HEADSCALE_CLI_TIMEOUT=30s timeout 60 "$HS_BIN" -c "$HS_CONFIG" nodes list -o json \
        >"$WORK/nodes-$1.json" 2>"$WORK/cli-$1.log" || echo '[]' >"$WORK/nodes-$1.json"
    "$HS" stop --dir "$WORK/hs-$1" --keep >/dev/null 2>&1 || bad "$1: stop failed"
    live_dirs=("${live_dirs[@]/$WORK\/hs-$1/}")
}

args=(--speed 10 --clone $CLONE --timeout 30s --connect-timeout 10s -q)
t_start=$SECONDS

# one process
if fresh whole; then
    timeout -k 5 120 "$H2R" replay "$TRACE" --target "hs=ts2021+$HS_URL" --set "authkey=$key" \
        "${args[@]}" -o "$WORK/whole.h2rr" 2>"$WORK/whole.log" || bad "whole: $(tail -3 "$WORK/whole.log")"
    stop whole
fi

# three processes, one shared absolute start (as on separate machines)
if fresh shards; then
    start_at=$(($(date +%s) + 3))
    pids=()
    for i in 0 1 2; do
        timeout -k 5 120 "$H2R" replay "$TRACE" --target "hs=ts2021+$HS_URL" --set "authkey=$key" \
            "${args[@]}" --shard "$i/3" --start-at "$start_at" -o "$WORK/run-$i.h2rr" \
            2>"$WORK/run-$i.log" &
        pids+=($!)
    done
    for i in 0 1 2; do
        wait "${pids[$i]}" || bad "shard $i/3: exit $?: $(tail -3 "$WORK/run-$i.log")"
    done
    stop shards
fi

for f in whole run-0 run-1 run-2; do
    "$H2R" show "$WORK/$f.h2rr" --format jsonl --records all >"$WORK/$f.jsonl" 2>>"$WORK/show.log" ||
        bad "show $f.h2rr"
done
"$H2R" analyze -q "$WORK"/run-{0,1,2}.h2rr --format json -o "$WORK/merged.json" 2>"$WORK/analyze.log" ||
    bad "analyze (merge): $(tail -3 "$WORK/analyze.log")"
"$H2R" analyze -q "$WORK/whole.h2rr" --format json -o "$WORK/whole.json" 2>>"$WORK/analyze.log" ||
    bad "analyze (whole): $(tail -3 "$WORK/analyze.log")"

if out=$(python3 - "$WORK" <<'EOF'
import collections, json, sys
w = sys.argv[1]
bad = []
def check(cond, what):
    if not cond:
        bad.append(what)

def load(name):
    meta, secs, res = None, [], {}
    for line in open(f"{w}/{name}.jsonl"):
        rec = json.loads(line)
        kind = rec.get("type")
        if kind == "meta":
            meta = rec
        elif kind == "section":
            secs.append(rec)
        elif kind == "result":
            check(rec["exchange"] not in res, f"{name}: exchange {rec['exchange']} twice")
            res[rec["exchange"]] = rec
    return meta, secs, res

_, _, whole = load("whole")
union, owner, starts = {}, {}, []
for i in range(3):
    meta, secs, res = load(f"run-{i}")
    check(meta["shard_index"] == i and meta["shard_count"] == 3,
          f"run-{i}: meta shard {meta['shard_index']}/{meta['shard_count']}")
    check("shards=3 partition=identity:" in meta["settings"], f"run-{i}: settings {meta['settings']}")
    check(len(secs) == 1 and secs[0]["t0_wall_ns"] == meta["start_at_ns"],
          f"run-{i}: section t0 is not --start-at")
    starts.append(meta["start_at_ns"] or 0)
    check(0 < len(res) < len(whole), f"run-{i}: {len(res)} results")
    both = set(res) & set(union)
    check(not both, f"run-{i}: exchanges also in another shard: {sorted(both)[:5]}")
    for r in res.values():
        o = owner.setdefault(r["conn"], i)
        check(o == i, f"identity {r['conn']} in shards {o} and {i}")
    union.update(res)
check(len(set(starts)) == 1, f"shard origins differ: {starts}")
check(set(union) == set(whole), f"exchange ids differ: {sorted(set(union) ^ set(whole))[:5]}")
key = lambda r: (r["path"], r["class"])
diff = [x for x in union if x in whole and key(union[x]) != key(whole[x])]
check(not diff, f"{len(diff)} exchanges with another outcome, e.g. {diff[:3]}")
merged = json.load(open(f"{w}/merged.json"))["runs"]
single = json.load(open(f"{w}/whole.json"))["runs"]
check(len(merged) == 1, f"merged: {len(merged)} runs")
m, s = merged[0], single[0]
check(m["shard_count"] == 3 and m["shards_seen"] == 3 and m["shards_missing"] == [],
      f"merged: shards {m['shards_seen']}/{m['shard_count']} missing {m['shards_missing']}")
for k in ("count", "ok", "errors", "errors_by_class"):
    check(m[k] == s[k], f"merged {k} {m[k]} != whole {s[k]}")
ids = {r["conn"] for r in whole.values() if r["path"] == "/machine/register"}
for run in ("whole", "shards"):
    nodes = json.load(open(f"{w}/nodes-{run}.json")) or []
    names = collections.Counter(n["name"] for n in nodes)
    prefixes = {n["name"].rpartition("-")[0] for n in nodes}
    got = sorted(int(n["name"].rpartition("-")[2]) for n in nodes)
    check(got == sorted(ids) and len(prefixes) == 1,
          f"{run}: {len(nodes)} nodes, prefixes {sorted(prefixes)}, want the {len(ids)} identities once")
cls = collections.Counter(r["class"] for r in whole.values())
print(f"{len(whole)} results ({dict(cls)}), merged count {m['count']}, {len(ids)} identities, "
      f"shards {[sum(1 for r in load(f'run-{i}')[2].values()) for i in range(3)]} results")
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
EOF
); then ok "$out"; else bad "$out"; fi

# refused: a shard index out of range
rc=0
"$H2R" replay "$TRACE" --target "hs=ts2021+http://127.0.0.1:9" --set authkey=k --shard 3/3 \
    -o "$WORK/x.h2rr" 2>"$WORK/x.log" || rc=$?
[[ $rc == 2 ]] && grep -q "0-based" "$WORK/x.log" && ok "--shard 3/3 refused (exit 2)" ||
    bad "--shard 3/3: exit $rc: $(cat "$WORK/x.log")"

ok "$((SECONDS - t_start)) s"
if [[ $fails -gt 0 ]]; then
    echo "$prog: $fails failure(s); files in $WORK" >&2
    exit 1
fi
echo "$prog: all passed"
