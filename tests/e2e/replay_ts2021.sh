#!/usr/bin/env bash
# replay_ts2021.sh - TS2021 node sessions against real Headscale (label e2e).
#
#   tests/e2e/replay_ts2021.sh WORKDIR     (H2REPLAY from the environment; ctest sets it)
#
# For Headscale v0.29.2 and v0.23.0, each on SQLite and on PostgreSQL (scripts/headscale.sh):
#   - 100 synthetic nodes register with a reusable pre-auth key (scripts/headscale.sh authkey)
#     and hold their map streams: 200 results, all ok; every node's netmap ends with the 99
#     other nodes as peers; the database has the 100 nodes and `headscale nodes list` names
#     exactly the 100 hostnames of this run. One exception, checked rather than tolerated:
#     v0.29.2 drops a change for a node whose stream goroutine does not take it within 50 ms
#     (hscontrol/mapper/node_conn.go, "timeout sending to channel"), which happens when this
#     2-core box is busy, and closes that stream about 10 s later; a node short of peers,
#     or whose stream the server ended (closed_by_server), passes only when Headscale's log
#     shows such a dropped change for exactly that node ("failed to apply change", node.id);
#   - a wrong (well-formed) pre-auth key: register is auth_key_refused (v0.29.2 answers 200
#     with Error "invalid auth key: ...", v0.23.0 answers 401), the map step skipped;
#   - a capability version below the floor: v0.29.2 closes right after the 101
#     (handshake_rejected); v0.23.0 accepts the handshake and answers register with HTTP 400
#     (register_error "HTTP 400: Internal error") - each release's real behaviour;
#   - a wrong control key (--set controlkey=, pinned): handshake_rejected on both.
# Exit 77 (skip) only when no Headscale binary is installed and CI is not "true"; PostgreSQL
# combinations are skipped (CI: failed) when the server binaries are missing.
set -uo pipefail

WORK=${1:?usage: replay_ts2021.sh WORKDIR}
ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
HS=$ROOT/scripts/headscale.sh
H2R=${H2REPLAY:-}
prog=replay_ts2021.sh
NODES=100

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
versions=()
for v in v0.29.2 v0.23.0; do
    if [[ -x $ROOT/.cache/bin/headscale-$v/headscale ]]; then
        versions+=("$v")
    elif [[ ${CI:-} == true ]]; then
        bad "no Headscale $v (scripts/install-headscale.sh $v) and CI=true"
    fi
done
if [[ ${#versions[@]} -eq 0 ]]; then
    [[ ${CI:-} == true ]] && exit 1
    echo "$prog: SKIP: no Headscale installed (scripts/install-headscale.sh)" >&2
    exit 77
fi
dbs=(sqlite)
if { command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } &&
    command -v psql >/dev/null; then
    dbs+=(postgres)
elif [[ ${CI:-} == true ]]; then
    bad "PostgreSQL (server binaries, psql) missing and CI=true"
else
    echo "$prog: note: PostgreSQL missing, SQLite only" >&2
fi

rm -rf "$WORK"
mkdir -p "$WORK"
live_dirs=()
cleanup() {
    local d
    for d in "${live_dirs[@]}"; do
        [[ -f $d/env ]] && "$HS" stop --dir "$d" --keep >/dev/null 2>&1
    done
}
trap cleanup EXIT
ulimit -n 4096 2>/dev/null || true

# replay NAME ARGS...: h2replay replay (bounded), run file $WORK/NAME.h2rr, jsonl NAME.jsonl
replay() {
    local name=$1
    shift
    local rc=0
    timeout -k 5 90 "$H2R" replay -q "$@" -o "$WORK/$name.h2rr" >"$WORK/$name.log" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
        bad "$name: replay exit status $rc: $(tail -3 "$WORK/$name.log")"
        return 1
    fi
    "$H2R" show "$WORK/$name.h2rr" --format jsonl >"$WORK/$name.jsonl" || {
        bad "$name: show failed"
        return 1
    }
}

# expect NAME PATH CLASS [DETAIL-SUBSTRING]: every result for PATH has CLASS (and DETAIL)
expect() {
    python3 - "$WORK/$1.jsonl" "$2" "$3" "${4:-}" <<'EOF'
import json, sys
path, cls, sub = sys.argv[2], sys.argv[3], sys.argv[4]
rs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rs = [r for r in rs if r["path"] == path]
bad = [r for r in rs if r["class"] != cls or (sub and sub not in (r["detail"] or ""))]
if not rs or bad:
    r = bad[0] if bad else {}
    print(f"{len(bad)} of {len(rs)} {path} results not {cls}/{sub!r}: {r.get('class')} {r.get('detail')}")
    sys.exit(1)
print(f"{len(rs)} x {path}: {cls} ({rs[0]['detail']})")
EOF
}

for v in "${versions[@]}"; do
    for db in "${dbs[@]}"; do
        tag="$v/$db"
        dir=$WORK/hs-$v-$db
        env_out=$("$HS" start --version "$v" --db "$db" --dir "$dir" --no-install 2>"$WORK/start-$v-$db.log") || {
            bad "$tag: launcher failed: $(tail -3 "$WORK/start-$v-$db.log")"
            continue
        }
        live_dirs+=("$dir")
        eval "$env_out"
        target="hs=ts2021+$HS_URL"
        key=$("$HS" authkey --dir "$dir" --user nodes --reusable) || { bad "$tag: authkey failed"; continue; }
        ok "$tag: Headscale up in ${HS_READY_MS} ms, pre-auth key ${key:0:16}..."

        # 100 nodes: arrivals over 8 s, each held 14 s (the last netmap comes ~3 s after the
        # last arrival on this VM)
        name=nodes-$v-$db
        if replay "$name" --nodes $NODES --arrival 8s --hold 14s --timeout 10s --target "$target" \
            --set "authkey=$key" --label "$tag"; then
            HEADSCALE_CLI_TIMEOUT=30s timeout 60 "$HS_BIN" -c "$HS_CONFIG" nodes list -o json \
                >"$WORK/nodes-$v-$db.json" 2>"$WORK/cli-$v-$db.log"
            if out=$(python3 - "$WORK/$name.jsonl" $NODES "$WORK/nodes-$v-$db.json" "$HS_LOG" <<'EOF'
import json, sys
n = int(sys.argv[2])
# Headscale node ids (by hostname) and the nodes it logged a dropped change for (0.29 JSON log)
ids = {x["name"]: int(x["id"]) for x in (json.load(open(sys.argv[3])) or [])}
dropped = set()
for line in open(sys.argv[4], errors="replace"):
    if line.startswith("{") and "failed to apply change" in line:
        try:
            dropped.add(int(json.loads(line).get("node.id")))
        except (ValueError, TypeError):
            pass
prefix = next(iter(ids)).rsplit("-", 1)[0] if ids else ""
rs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
reg = [r for r in rs if r["path"] == "/machine/register"]
mp = [r for r in rs if r["path"] == "/machine/map"]
errs = []
if len(rs) != 2 * n: errs.append(f"{len(rs)} results, want {2 * n}")
def hs_dropped(r):
    return ids.get(f"{prefix}-{r['conn']}") in dropped
for what, v in (("register", reg), ("map", mp)):
    notok = [r for r in v if (r["class"] != "ok" or r["status"] != 200) and
             not (what == "map" and r["class"] == "closed_by_server" and hs_dropped(r))]
    if len(v) != n or notok:
        errs.append(f"{what}: {len(v)} results, {len(notok)} not ok"
                    + (f" (first: {notok[0]['class']} {notok[0]['detail']})" if notok else ""))
peers = sorted(r["peers"] for r in mp)
short = [r for r in mp if r["peers"] != n - 1 or r["class"] != "ok"]
unexplained = [r for r in short if not hs_dropped(r)]
if unexplained:
    errs.append(f"{len(unexplained)} nodes end with fewer than {n - 1} peers without a dropped "
                f"change in Headscale's log (peers {peers[0]}..{peers[-1]})")
if any(not r["t_netmap_ns"] or r["netmaps"] < 1 for r in mp):
    errs.append("a map result without a netmap")
if errs:
    print("; ".join(errs)); sys.exit(1)
t = sorted(r["t_netmap_ns"] - r["t_sent_ns"] for r in mp)
closed = sum(1 for r in short if r["class"] == "closed_by_server")
note = (f"; {len(short)} nodes short of peers or closed by the server ({closed}), each with a "
        f"change Headscale logged as dropped (peers {peers[0]}..{peers[-1]})" if short else "")
print(f"{n} registered, {n} netmaps, {n - len(short)} nodes see all {n - 1} peers{note}; "
      f"first netmap p50 {t[n // 2] / 1e6:.0f} ms, max {t[-1] / 1e6:.0f} ms")
EOF
            ); then ok "$tag: $out"; else bad "$tag: $out"; fi
            # the database and the CLI agree
            if [[ $HS_DB_TYPE == sqlite ]]; then
                rows=$(sqlite3 -readonly "${HS_DB#sqlite:}" "SELECT count(*) FROM nodes WHERE deleted_at IS NULL" 2>&1)
            else
                rows=$(psql "$HS_DB" -tAc "SELECT count(*) FROM nodes WHERE deleted_at IS NULL" 2>&1)
            fi
            [[ $rows == "$NODES" ]] && ok "$tag: $rows nodes in $HS_DB_TYPE" || bad "$tag: nodes in the database: $rows, want $NODES"
            listed=$(python3 -c 'import json, sys
d = json.load(sys.stdin) or []
names = sorted(x["name"] for x in d)
n = int(sys.argv[1])
prefix = names[0].rsplit("-", 1)[0] if names else ""
want = sorted(f"{prefix}-{i}" for i in range(n))
print(f"{len(names)} nodes, prefix {prefix}, " + ("all hostnames of the run" if names == want else "MISMATCH"))' $NODES <"$WORK/nodes-$v-$db.json")
            [[ $listed == "$NODES nodes, prefix h2r-"*"all hostnames of the run" ]] &&
                ok "$tag: headscale nodes list: $listed" || bad "$tag: headscale nodes list: $listed"
        fi

        # a wrong pre-auth key, well-formed: the last 5 characters changed
        wrong=${key%?????}
        wrong=$wrong$([[ ${key: -5} == 00000 ]] && echo 11111 || echo 00000)
        name=badkey-$v-$db
        if replay "$name" --nodes 2 --target "$target" --set "authkey=$wrong"; then
            if [[ $v == v0.23.0 ]]; then want="HTTP 401"; else want="invalid auth key"; fi
            out=$(expect "$name" /machine/register auth_key_refused "$want") && ok "$tag: wrong key: $out" || bad "$tag: wrong key: $out"
            out=$(expect "$name" /machine/map skipped "register failed") || bad "$tag: wrong key, map: $out"
        fi

        # a capability version below the release's floor
        name=capver-$v-$db
        if [[ $v == v0.23.0 ]]; then low=60; else low=112; fi
        if replay "$name" --nodes 2 --capver $low --target "$target" --set "authkey=$key"; then
            if [[ $v == v0.23.0 ]]; then
                out=$(expect "$name" /machine/register register_error "HTTP 400")
            else
                out=$(expect "$name" /machine/register handshake_rejected "closed after 101")
            fi && ok "$tag: capver $low: $out" || bad "$tag: capver $low: $out"
        fi

        # a wrong control key (pinned): msg1 does not decrypt, the server closes after the 101
        name=ctlkey-$v-$db
        if replay "$name" --nodes 2 --target "$target" --set "authkey=$key" \
            --set "controlkey=mkey:$(printf '%064d' 7)"; then
            out=$(expect "$name" /machine/register handshake_rejected "closed after 101") &&
                ok "$tag: wrong control key: $out" || bad "$tag: wrong control key: $out"
        fi

        "$HS" stop --dir "$dir" --keep >/dev/null 2>&1 || bad "$tag: stop failed"
        live_dirs=("${live_dirs[@]/$dir/}")
    done
done

if [[ $fails -gt 0 ]]; then
    echo "$prog: $fails failure(s); files in $WORK" >&2
    exit 1
fi
echo "$prog: all passed (${versions[*]} x ${dbs[*]})"
