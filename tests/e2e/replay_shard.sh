#!/usr/bin/env bash
# replay_shard.sh WORKDIR - one trace replayed by three shard processes against one real
# nghttpd (h2c), merged by `h2replay analyze`, equals one process replaying the whole trace.
#
# The committed capture trace tests/data/h2load.h2rt (`h2replay capture -r
# tests/data/h2load.pcap`: 8 connections, 200 exchanges) is replayed once whole, then by
# `--shard i/3 --start-at +2s` for i = 0, 1, 2 started together. Checks: every exchange is
# replayed by exactly one shard; the union of the shards' outcomes (status and class per
# trace exchange id) is the single process's; the merged `analyze --format json` run has
# the same count, ok and errors by class, 3 of 3 shards and none missing; the shards share
# one origin (meta start_at_ns = section t0). analyze refuses (exit 2) a shard of another
# trace and a shard given twice, and warns about a missing one; replay refuses a 1-based
# index, a start time in the past and --start-at with two targets.
# Exit 0 pass, 1 fail, 77 skip (no nghttpd).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=replay_lib.sh
source "$HERE/replay_lib.sh"
rp_init replay_shard "${1:?usage: replay_shard.sh WORKDIR}"
rp_need nghttpd
W=$RP_WORK
TRACE=$HERE/../data/h2load.h2rt
[[ -f $TRACE ]] || h2r_die "missing $TRACE"

h2r_make_docroot "$W/doc"
PORT=$(h2r_free_port)
h2r_start_nghttpd "$W/doc" "$PORT" "$W/nghttpd.log"
URL=http://127.0.0.1:$PORT

fail() {
    echo "FAIL: $*" >&2
    RP_FAILS=$((RP_FAILS + 1))
}

# one process, the whole trace
rc=$(rp_replay "$TRACE" --target "srv=$URL" -o "$W/whole.h2rr")
rp_expect_exit 0 "$rc" "whole trace"

# three shard processes, one shared origin 2 s ahead of their start
pids=()
for i in 0 1 2; do
    timeout -k 5 50 "$H2REPLAY" replay -q "$TRACE" --target "srv=$URL" --shard "$i/3" \
        --start-at +2s -o "$W/run-$i.h2rr" >"$W/shard-$i.log" 2>&1 &
    pids+=("$!")
    H2R_PIDS+=("$!")
done
for i in 0 1 2; do
    rc=0
    wait "${pids[$i]}" || rc=$?
    rp_expect_exit 0 "$rc" "shard $i/3"
    [[ $rc -eq 0 ]] || cat "$W/shard-$i.log" >&2
done

# merged analysis vs the whole run
rc=0
"$H2REPLAY" analyze -q "$W/run-2.h2rr" "$W/run-0.h2rr" "$W/run-1.h2rr" --format json \
    -o "$W/merged.json" 2>"$W/analyze.log" || rc=$?
rp_expect_exit 0 "$rc" "analyze the three shards"
rc=0
"$H2REPLAY" analyze -q "$W/whole.h2rr" --format json -o "$W/whole.json" 2>>"$W/analyze.log" ||
    rc=$?
rp_expect_exit 0 "$rc" "analyze the whole run"

for f in whole run-0 run-1 run-2; do
    "$H2REPLAY" show "$W/$f.h2rr" --format jsonl --records all >"$W/$f.jsonl" ||
        fail "show $f.h2rr"
done

if ! h2r_python - "$W" <<'EOF' >&2; then
import json
import sys

w = sys.argv[1]
bad = []


def check(cond, what):
    if not cond:
        bad.append(what)


def load(name):
    meta, sections, results = None, [], {}
    with open(f"{w}/{name}.jsonl") as f:
        for line in f:
            rec = json.loads(line)
            kind = rec.get("type")
            if kind == "meta":
                meta = rec
            elif kind == "section":
                sections.append(rec)
            elif kind == "result":
                ex = rec["exchange"]
                check(ex not in results, f"{name}: exchange {ex} twice")
                results[ex] = (rec["status"], rec["class"])
    return meta, sections, results


_, _, whole = load("whole")
check(len(whole) == 200, f"whole run: {len(whole)} results, want 200")
check(all(c == "ok" for _, c in whole.values()), "whole run: not every exchange ok")
union, starts = {}, []
for i in range(3):
    meta, secs, res = load(f"run-{i}")
    check(meta["shard_index"] == i and meta["shard_count"] == 3,
          f"run-{i}: meta shard {meta['shard_index']}/{meta['shard_count']}")
    check("shards=3 partition=conn:" in meta["settings"], f"run-{i}: settings {meta['settings']}")
    check(meta["start_at_ns"] is not None, f"run-{i}: no start_at_ns")
    check(len(secs) == 1 and secs[0]["t0_wall_ns"] == meta["start_at_ns"],
          f"run-{i}: section t0 is not --start-at")
    check(secs[0].get("clock_offset_ns") is not None, f"run-{i}: no clock_offset_ns")
    starts.append(meta["start_at_ns"] or 0)
    check(0 < len(res) < 200, f"run-{i}: {len(res)} results")
    both = set(res) & set(union)
    check(not both, f"run-{i}: exchanges also in another shard: {sorted(both)[:5]}")
    union.update(res)
check(max(starts) - min(starts) < 1_000_000_000, f"shard origins spread: {starts}")
check(union == whole, "the shards' outcomes differ from the whole run's: "
      f"{sorted(set(union.items()) ^ set(whole.items()))[:5]}")

merged = json.load(open(f"{w}/merged.json"))["runs"]
single = json.load(open(f"{w}/whole.json"))["runs"]
check(len(merged) == 1, f"merged: {len(merged)} runs")
m, s = merged[0], single[0]
check(m["shard_count"] == 3 and m["shards_seen"] == 3 and m["shards_missing"] == [],
      f"merged: shards {m['shards_seen']}/{m['shard_count']} missing {m['shards_missing']}")
for k in ("count", "ok", "errors", "errors_by_class"):
    check(m[k] == s[k], f"merged {k} {m[k]} != whole {s[k]}")
check(m["count"] == 200, f"merged count {m['count']}")
check(m["latency_from_intended"]["count"] == s["latency_from_intended"]["count"],
      "merged latency sample count differs")
for b in bad:
    print("FAIL:", b)
print(f"shards: {len(whole)} exchanges, {len(bad)} problem(s)")
sys.exit(1 if bad else 0)
EOF
    fail "shard outcomes"
fi

# analyze: a shard of another trace is refused, a duplicate too, a missing one is reported
timeout 30 "$H2REPLAY" capture -q --no-redact -r "$HERE/../data/nghttp.pcap" -o "$W/other.h2rt" \
    2>>"$W/replay.log" || fail "capture nghttp.pcap"
rc=$(rp_replay "$W/other.h2rt" --target "srv=$URL" --shard 1/3 -o "$W/other-1.h2rr")
rp_expect_exit 0 "$rc" "shard of another trace"
rc=0
"$H2REPLAY" analyze "$W/run-0.h2rr" "$W/other-1.h2rr" "$W/run-2.h2rr" -o "$W/o.txt" \
    2>"$W/refuse.log" || rc=$?
rp_expect_exit 2 "$rc" "analyze a shard of another trace"
grep -q "different traces" "$W/refuse.log" || fail "no 'different traces' in: $(cat "$W/refuse.log")"
rc=0
"$H2REPLAY" analyze "$W/run-0.h2rr" "$W/run-1.h2rr" "$W/run-1.h2rr" -o "$W/o.txt" \
    2>"$W/dup.log" || rc=$?
rp_expect_exit 2 "$rc" "analyze a shard given twice"
grep -q "given twice" "$W/dup.log" || fail "no 'given twice' in: $(cat "$W/dup.log")"
rc=0
"$H2REPLAY" analyze "$W/run-0.h2rr" "$W/run-2.h2rr" -o "$W/o.txt" 2>"$W/missing.log" || rc=$?
rp_expect_exit 0 "$rc" "analyze with a shard missing"
grep -q "missing shard index 1" "$W/missing.log" ||
    fail "no 'missing shard index 1' in: $(cat "$W/missing.log")"

# replay refuses what cannot be right
rc=$(rp_replay "$TRACE" --target "$URL" --shard 3/3 -o "$W/x.h2rr")
rp_expect_exit 2 "$rc" "--shard 3/3 (indexes are 0-based)"
grep -q "0-based" "$W/replay.log" || fail "no hint about 0-based shard indexes"
rc=$(rp_replay "$TRACE" --target "$URL" --start-at 2001-09-09T01:46:40Z -o "$W/x.h2rr")
rp_expect_exit 2 "$rc" "--start-at in the past"
rc=$(rp_replay "$TRACE" --target "a=$URL" --target "b=$URL" --shard 0/2 --start-at +1s \
    -o "$W/x.h2rr")
rp_expect_exit 2 "$rc" "--start-at with two targets"
rp_finish
