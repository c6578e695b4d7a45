#!/usr/bin/env bash
# ts_stub_smoke.sh WORKDIR - keeps tests/tools/ts_stub (the TS2021 control-server stub
# behind scripts/bench-nodes.sh) working against the replay client.
#
# 200 synthetic nodes (--arrival 2s --hold 4s) against ts_stub --peers 25 --keepalive 1s:
# every node registers, gets a netmap with exactly 25 peers and at least one keep-alive,
# analyze counts no error, the stub counts 200 handshakes, registrations and map streams
# and no error of its own. Then 5 nodes with a pinned wrong control key: every register
# result is handshake_rejected (the stub answers a handshake it cannot authenticate with
# HTTP 400, as Headscale). Bounded: ~10 s, every wait has a limit.
# Env: H2REPLAY, TS_STUB (set by ctest). Exit 0 pass, 1 fail, 77 skip.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"
W=${1:?usage: ts_stub_smoke.sh WORKDIR}
[[ -x ${H2REPLAY:-} && -x ${TS_STUB:-} ]] || { echo "skip: H2REPLAY and TS_STUB needed"; exit 77; }
rm -rf "$W"
mkdir -p "$W"
trap h2r_cleanup EXIT

N=200 PEERS=25
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

port=$(h2r_free_port)
h2r_bg "$W/stub.log" "$TS_STUB" --port "$port" --peers "$PEERS" --keepalive 1s --duration 60s
stub=$H2R_LAST_PID
h2r_wait_port "$port" 10 || fail "ts_stub did not listen ($W/stub.log)"

start=$SECONDS
timeout -k 5 20 "$H2REPLAY" replay --nodes "$N" --arrival 2s --hold 4s \
    --target "ts2021+http://127.0.0.1:$port" --set authkey=x -o "$W/run.h2rr" \
    >"$W/replay.log" 2>&1 || fail "replay exit $? ($(tail -n 3 "$W/replay.log"))"
took=$((SECONDS - start))
((took <= 20)) || fail "replay took ${took}s (limit 20 s)"
"$H2REPLAY" show "$W/run.h2rr" --format jsonl >"$W/show.jsonl"
"$H2REPLAY" analyze "$W/run.h2rr" --format json >"$W/analyze.json"

# the wrong control key: a fresh one the stub does not hold
badkey="mkey:$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
timeout -k 5 20 "$H2REPLAY" replay --nodes 5 --target "ts2021+http://127.0.0.1:$port" \
    --set authkey=x --set "controlkey=$badkey" -o "$W/badkey.h2rr" >"$W/badkey.log" 2>&1 ||
    fail "replay (wrong control key) exit $?"
"$H2REPLAY" show "$W/badkey.h2rr" --format jsonl >"$W/badkey.jsonl"
h2r_stop_pid "$stub" TERM 10

h2r_python - "$W" "$N" "$PEERS" <<'PY'
import json, sys
w, n, peers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
bad = []
rows = [json.loads(l) for l in open(w + "/show.jsonl") if l.startswith("{")]
reg = [r for r in rows if r["path"] == "/machine/register"]
mp = [r for r in rows if r["path"] == "/machine/map"]
if len(reg) != n or len(mp) != n:
    bad.append(f"{len(reg)} register and {len(mp)} map results, want {n} each")
if any(r["class"] != "ok" for r in rows):
    bad.append("classes " + str(sorted({r["class"] for r in rows})))
short = [r for r in mp if r.get("t_netmap_ns") is None or r.get("peers") != peers]
if short:
    bad.append(f"{len(short)} sessions without a netmap of {peers} peers, e.g. {short[0]}")
if any((r.get("keepalives") or 0) < 1 for r in mp):
    bad.append("a held stream saw no keep-alive")
a = json.load(open(w + "/analyze.json"))["runs"][0]
if a["count"] != 2 * n or a["errors"] != 0:
    bad.append(f"analyze: {a['count']} results, {a['errors']} errors {a['errors_by_class']}")
line = [l for l in open(w + "/stub.log") if l.startswith("ts_stub: wall_s=")]
if not line:
    bad.append("the stub printed no counters")
else:
    kv = dict(x.split("=", 1) for x in line[0].split() if "=" in x)
    # the 200 nodes, then 5 failed handshakes (answered 400: bad_request)
    want = {"handshakes": n, "registers": n, "map_streams": n, "map_updates": n, "netmaps": n,
            "handshake_failed": 5, "bad_request": 5, "head": 0, "body": 0, "out": 0, "h2": 0,
            "ts": 0}
    for k, v in want.items():
        if int(kv.get(k, -1)) != v:
            bad.append(f"stub {k}={kv.get(k)} want {v}")
br = [json.loads(l) for l in open(w + "/badkey.jsonl") if l.startswith("{")]
cls = sorted(r["class"] for r in br if r["path"] == "/machine/register")
if cls != ["handshake_rejected"] * 5:
    bad.append(f"wrong control key: register classes {cls}")
for b in bad:
    print("FAIL:", b)
if bad:
    sys.exit(1)
print(f"ok: {n} nodes, all with {peers} peers and keep-alives; wrong key rejected")
PY
echo "ts_stub_smoke: pass (${took}s)"
