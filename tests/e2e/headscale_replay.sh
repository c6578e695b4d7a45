#!/usr/bin/env bash
# headscale_replay.sh - the committed gRPC registration trace replayed against a real Headscale
# (label e2e).
#
#   tests/e2e/headscale_replay.sh H2REPLAY VERSION sqlite|postgres [WORKDIR]
#
# Starts Headscale VERSION with scripts/headscale.sh and checks, against the release's trace
# (traces/headscale-grpc-VERSION.h2rt when it exists, else traces/headscale-grpc.h2rt):
#   1. snapshot -> replay -> restore -> replay at 1x: two targets named first/second on the
#      same server, --between stopping Headscale, restoring the snapshot and starting it again,
#      --db paired per target: every exchange gets the recorded gRPC status (grpc-status 0,
#      class ok) in both sections, the db samples start with a baseline before the load, and
#      both sections end with the same row counts (10 users, 10 pre-auth keys);
#   2. after another restore, 10x: every exchange gets the recorded status, except a
#      CreatePreAuthKey that was sent before its user's CreateUser completed (each captured
#      call is its own connection, so the replay keeps no order between them; under load the
#      server falls behind and the key request overtakes): such ones are counted and printed,
#      and the pre-auth key rows must equal 10 minus them;
#   3. verify finds a user row deleted behind the server's back (with sqlite3/psql while
#      Headscale is stopped, then restarted);
#   4. restore refuses a non-local DSN (postgresql://user@10.1.2.3/db) before any connection:
#      no connect() to that address under strace (when strace is installed).
# Exit 77 (skip) when the release is not in .cache/bin (scripts/install-headscale.sh VERSION)
# or PostgreSQL server binaries are missing -- unless CI=true, where that is a failure.
set -uo pipefail

H2R=${1:?usage: headscale_replay.sh H2REPLAY VERSION sqlite|postgres [WORKDIR]}
VERSION=${2:?version}
DB=${3:?sqlite|postgres}
ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
WORK=${4:-$(mktemp -d /tmp/h2r-hsrp.XXXXXX)}
HS=$ROOT/scripts/headscale.sh
prog="headscale_replay.sh[$VERSION/$DB]"
USERS=10

# shellcheck source=tests/e2e/hs_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/hs_lib.sh"
cleanup() {
    [[ -f $WORK/hs/env ]] && "$HS" stop --dir "$WORK/hs" --keep >/dev/null 2>&1
}

hs_require "$VERSION" "$DB"
help=$("$H2R" replay --help 2>/dev/null || true) # not piped into grep -q: SIGPIPE + pipefail
grep -q -- '--db ' <<<"$help" || die "$H2R replay has no --db"

TRACE=$ROOT/traces/headscale-grpc-$VERSION.h2rt
[[ -f $TRACE ]] || TRACE=$ROOT/traces/headscale-grpc.h2rt
[[ -f $TRACE ]] || die "no committed trace in $ROOT/traces"

rm -rf "$WORK/hs"
mkdir -p "$WORK"
trap cleanup EXIT

env_out=$("$HS" start --version "$VERSION" --db "$DB" --dir "$WORK/hs" --no-install) || die "launcher failed"
eval "$env_out"
ok "started in ${HS_START_MS} ms: gRPC h2c at $HS_GRPC, $HS_DB; trace $(basename "$TRACE")"
URL=http://$HS_GRPC

# The fresh state (schema + the launcher's API key), to come back to.
"$HS" server-stop --dir "$HS_DIR" >/dev/null || die "server-stop"
"$H2R" db snapshot --db "$HS_DB" --overwrite >/dev/null 2>"$WORK/snap.txt" || die "snapshot: $(cat "$WORK/snap.txt")"
hs_start() { # restarts Headscale on the same files; dies when it does not come up
    local out
    out=$("$HS" server-start --dir "$HS_DIR") || die "server-start ${1:-}"
    eval "$out"
}
hs_start

# check_run RUN SECTIONS STRICT -> prints "users keys reordered" per section (rows from the
# section's last db sample). Fails unless every section has all its results, a baseline db
# sample and later ones, and every result is ok with grpc-status 0 -- except, when STRICT is 0,
# a CreatePreAuthKey sent before the CreateUser of its user (the exchange before it) had
# completed: each grpcurl call was its own connection, so the replay keeps no order between
# them, and a saturated server (bcrypt per call, foreign load) lets the key request overtake
# the user's creation. Those are counted as "reordered" and printed.
check_run() {
    "$H2R" show "$1" --format jsonl --records all >"$1.jsonl" || return 1
    python3 - "$1.jsonl" "$2" "$USERS" "$3" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
want_sections, users, strict = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
res = [r for r in recs if "exchange" in r and "class" in r]
dbs = [r for r in recs if r.get("type") == "db_sample"]
by_id = {(r["section"], r["exchange"]): r for r in res}
def reordered(r):
    prev = by_id.get((r["section"], r["exchange"] - 1))
    return (not strict and r["path"].endswith("/CreatePreAuthKey") and prev is not None
            and prev["path"].endswith("/CreateUser") and prev["class"] == "ok"
            and r["t_sent_ns"] < prev["t_done_ns"])
notok = [r for r in res if r["class"] != "ok" or r["grpc_status"] != 0 or r["trace_grpc_status"] != 0]
bad = [r for r in notok if not reordered(r)]
for r in notok[:12]:
    print("  %s: section %d #%d %s class=%s grpc_status=%s sent %.0f ms, its user done %.0f ms" % (
        "reordered" if reordered(r) else "NOT OK", r["section"], r["exchange"], r["path"].split("/")[-1],
        r["class"], r["grpc_status"], r["t_sent_ns"] / 1e6,
        by_id.get((r["section"], r["exchange"] - 1), {}).get("t_done_ns", 0) / 1e6), file=sys.stderr)
per = {}
for r in res:
    per[r["section"]] = per.get(r["section"], 0) + 1
ok = not bad and len(per) == want_sections and all(n == 2 * users + 3 for n in per.values())
out = []
for s in sorted(per):
    d = [x for x in dbs if x["section"] == s]
    if len(d) < 2:
        print("  section %d: %d db samples" % (s, len(d)), file=sys.stderr)
        ok = False
        continue
    first, last = d[0]["values"], d[-1]["values"]
    if d[0]["t_ns"] >= 0 or first.get("rows.users") != 0:
        print("  section %d: first db sample not a baseline: %s" % (s, d[0]), file=sys.stderr)
        ok = False
    nre = sum(1 for r in notok if r["section"] == s)
    out.append("%s %s %d" % (last.get("rows.users"), last.get("rows.pre_auth_keys"), nre))
print(" ".join(out))
print("  %d results, %d not ok (%d unexplained), sections %s, %d db samples" % (
    len(res), len(notok), len(bad), per, len(dbs)), file=sys.stderr)
sys.exit(0 if ok else 1)
EOF
}

# 1. snapshot -> replay -> restore -> replay, at 1x: two targets on the same server, --between
# stopping it, restoring the snapshot and starting it again, a --db for each.
between="'$HS' server-stop --dir '$HS_DIR' >/dev/null && '$H2R' db restore --db '$HS_DB' 2>/dev/null"
between+=" && '$HS' server-start --dir '$HS_DIR' >/dev/null"
"$H2R" replay "$TRACE" --target "first=$URL" --db "first=$HS_DB" --target "second=$URL" \
    --db "second=$HS_DB" --db-interval 500ms --between "$between" \
    --set "authorization_1=$HS_API_KEY" --speed 1 -q -o "$WORK/x1.h2rr" ||
    die "replay at 1x (two targets, --between restore) failed"
counts1=$(check_run "$WORK/x1.h2rr" 2 1) &&
    ok "1x, twice with a restore between: every exchange grpc-status 0; users keys after each: $counts1" ||
    bad "1x: not every exchange got its recorded status (users keys: $counts1)"
want="$USERS $USERS 0"
[[ $counts1 == "$want $want" ]] && ok "restore -> replay gives the same row counts ($want)" ||
    bad "row counts: want $want twice, got $counts1"

# 2. 10x after another restore: the recorded status everywhere, or a reordered key request.
"$HS" server-stop --dir "$HS_DIR" >/dev/null || die "server-stop"
"$H2R" db restore --db "$HS_DB" 2>"$WORK/restore.txt" || die "restore: $(cat "$WORK/restore.txt")"
hs_start
"$H2R" replay "$TRACE" --target "$DB=$URL" --db "$DB=$HS_DB" --db-interval 200ms \
    --set "authorization_1=$HS_API_KEY" --speed 10 -q -o "$WORK/x10.h2rr" ||
    die "replay at 10x failed"
counts10=$(check_run "$WORK/x10.h2rr" 1 0)
rc10=$?
read -r u10 k10 re10 <<<"$counts10"
[[ $rc10 -eq 0 && $u10 == "$USERS" && $k10 == $((USERS - re10)) ]] &&
    ok "10x: every exchange grpc-status 0 except $re10 key request(s) that overtook their user; users $u10, keys $k10" ||
    bad "10x: results or rows wrong (users keys reordered: $counts10)"

# 3. A user row deleted behind the server's back, found by verify.
acks=$WORK/acks.json
python3 - "$USERS" >"$acks" <<'EOF'
import json, sys
print(json.dumps([{"kind": "user", "name": "user-%02d" % i} for i in range(1, int(sys.argv[1]) + 1)]))
EOF
"$H2R" db verify --db "$HS_DB" --acks "$acks" --kinds users --format json >"$WORK/verify0.json"
[[ $? -eq 0 ]] && ok "verify before the deletion: nothing lost" || bad "verify before the deletion failed"
"$HS" server-stop --dir "$HS_DIR" >/dev/null || die "server-stop"
# Its pre-auth keys go too: Headscale 0.29 checks foreign keys when it opens the database and
# refuses to start on a key whose user is gone ("foreign key constraints violated").
sql="DELETE FROM pre_auth_keys WHERE user_id IN (SELECT id FROM users WHERE name = 'user-05');"
sql+=" DELETE FROM users WHERE name = 'user-05';"
if [[ $DB == sqlite ]]; then
    if command -v sqlite3 >/dev/null; then
        sqlite3 "${HS_DB#sqlite:}" "$sql" || die "sqlite3 delete"
    else
        python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2])' \
            "${HS_DB#sqlite:}" "$sql" || die "python sqlite3 delete"
    fi
else
    psql_bin=$(command -v psql || echo "$PG_BIN/psql")
    "$psql_bin" -X -q -v ON_ERROR_STOP=1 "$HS_DB" -c "$sql" || die "psql delete"
fi
hs_start "after the deletion"
"$H2R" db verify --db "$HS_DB" --acks "$acks" --kinds users --format json >"$WORK/verify1.json"
vrc=$?
python3 - "$WORK/verify1.json" "$vrc" <<'EOF' && ok "verify reports user-05 lost (exit 1)" || bad "verify did not report the deleted row"
import json, sys
d = json.load(open(sys.argv[1]))
u = d["kinds"]["users"]
assert int(sys.argv[2]) == 1, sys.argv[2]
assert d["acknowledged_but_lost"] == 1 and u["lost"] == 1, d
assert [e.get("name") for e in u["lost_entities"]] == ["user-05"], u["lost_entities"]
EOF

# 4. restore refuses a remote DSN before connecting.
remote=postgresql://user@10.1.2.3/db
if command -v strace >/dev/null; then
    strace -f -qq -e trace=connect -o "$WORK/strace.txt" \
        "$H2R" db restore --db "$remote" 2>"$WORK/remote.txt"
    rrc=$?
    conns=$(grep -c '10\.1\.2\.3' "$WORK/strace.txt")
else
    "$H2R" db restore --db "$remote" 2>"$WORK/remote.txt"
    rrc=$?
    conns="(not traced: no strace)"
fi
[[ $rrc -eq 1 ]] && grep -q 'before connecting' "$WORK/remote.txt" && [[ $conns == 0 || $conns == "(not traced"* ]] &&
    ok "restore --db $remote refused, connect() calls to it: $conns: $(head -c 100 "$WORK/remote.txt")" ||
    bad "restore --db $remote: exit $rrc, connects $conns: $(cat "$WORK/remote.txt")"

cleanup
trap - EXIT
[[ $fails -eq 0 ]] && rm -rf "$WORK"
echo "$prog: $fails failure(s)"
[[ $fails -eq 0 ]]
