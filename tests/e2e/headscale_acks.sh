#!/usr/bin/env bash
# headscale_acks.sh - what the server acknowledged, recorded by the replay itself (label e2e).
#
#   tests/e2e/headscale_acks.sh H2REPLAY VERSION sqlite|postgres [WORKDIR]
#
# Replays the committed gRPC trace (traces/headscale-grpc[-VERSION].h2rt: CreateUser and
# CreatePreAuthKey calls) with --db against Headscale VERSION, then checks:
#   1. the run file holds an ack for every CreateUser / CreatePreAuthKey answered grpc-status 0
#      (users by id and name read from the reply; keys by id and key) and one verify record
#      with 0 "acknowledged but lost"; `analyze --format json` shows it, and the replay client's
#      resources (loop threads, CPU, descriptors);
#   2. `db verify --run` agrees (exit 0, nothing lost);
#   3. a user and its pre-auth keys deleted behind the server's back show up as lost in
#      `db verify --run` (exit 1, the user named).
# Exit 77 (skip) when the release is not in .cache/bin or PostgreSQL is missing (unless
# CI=true).
set -uo pipefail

H2R=${1:?usage: headscale_acks.sh H2REPLAY VERSION sqlite|postgres [WORKDIR]}
VERSION=${2:?version}
DB=${3:?sqlite|postgres}
ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
WORK=${4:-$(mktemp -d /tmp/h2r-hsack.XXXXXX)}
HS=$ROOT/scripts/headscale.sh
prog="headscale_acks.sh[$VERSION/$DB]"

# shellcheck source=tests/e2e/hs_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/hs_lib.sh"
cleanup() {
    [[ -f $WORK/hs/env ]] && "$HS" stop --dir "$WORK/hs" --keep >/dev/null 2>&1
}

hs_require "$VERSION" "$DB"
TRACE=$ROOT/traces/headscale-grpc-$VERSION.h2rt
[[ -f $TRACE ]] || TRACE=$ROOT/traces/headscale-grpc.h2rt
[[ -f $TRACE ]] || die "no committed trace in $ROOT/traces"

rm -rf "$WORK/hs"
mkdir -p "$WORK"
trap cleanup EXIT
env_out=$("$HS" start --version "$VERSION" --db "$DB" --dir "$WORK/hs" --no-install) || die "launcher failed"
eval "$env_out"
ok "started: gRPC h2c at $HS_GRPC, $HS_DB; trace $(basename "$TRACE")"

# 1. replay with --db: acks and a verify record in the run file
RUN=$WORK/run.h2rr
"$H2R" replay "$TRACE" --target "$DB=http://$HS_GRPC" --db "$DB=$HS_DB" \
    --set "authorization_1=$HS_API_KEY" --speed 10 -q -o "$RUN" 2>"$WORK/replay.txt" ||
    die "replay failed: $(tail -3 "$WORK/replay.txt")"
"$H2R" analyze "$RUN" --format json -o "$WORK/analyze.json" 2>"$WORK/analyze.txt" ||
    die "analyze failed: $(cat "$WORK/analyze.txt")"
"$H2R" analyze "$RUN" >"$WORK/analyze.txt" 2>&1
python3 - "$WORK/analyze.json" <<'EOF' && ok "run file: $(grep -m1 'acknowledged ' "$WORK/analyze.txt" | sed 's/^ *//'); verify 0 lost" || bad "acks/verify in the run file (analyze.json)"
import json, sys
d = json.load(open(sys.argv[1]))
runs = d["runs"]
assert len(runs) == 1, len(runs)
r = runs[0]
db, client = r["db"], r["client"]
v = db["verify"]
assert v is not None and v["records"] == 1 and v["errors"] == 0, v
assert v["acknowledged_but_lost"] == 0, v
u = v["kinds"]["users"]
assert u["acknowledged"] >= 1 and u["lost"] == 0 and u["acknowledged"] <= u["present"], u
k = v["kinds"]["pre_auth_keys"]
assert k["lost"] == 0 and k["acknowledged"] == k["present"], k
assert db["acks"] == u["acknowledged"] + k["acknowledged"], (db["acks"], u, k)
assert client["loop_threads"] >= 1 and client["cpu_ns"] > 0 and client["peak_fds"] > 0, client
EOF

# 2. db verify --run agrees
"$H2R" db verify --db "$HS_DB" --run "$RUN" --format json >"$WORK/verify0.json"
vrc=$?
python3 - "$WORK/verify0.json" "$vrc" <<'EOF' && ok "db verify --run: nothing lost (exit 0)" || bad "db verify --run before the deletion"
import json, sys
d = json.load(open(sys.argv[1]))
assert int(sys.argv[2]) == 0 and d["acknowledged_but_lost"] == 0, (sys.argv[2], d)
assert d["kinds"]["users"]["acknowledged"] >= 1, d
EOF

# 3. a user (and its keys: foreign keys) deleted behind the server's back
victim=user-05 # the trace's users are user-01 .. user-10
sql="DELETE FROM pre_auth_keys WHERE user_id IN (SELECT id FROM users WHERE name = '$victim');"
sql+=" DELETE FROM users WHERE name = '$victim';"
if [[ $DB == sqlite ]]; then
    python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=10); c.executescript(sys.argv[2]); c.commit()' \
        "${HS_DB#sqlite:}" "$sql" || die "sqlite delete"
else
    psql_bin=$(command -v psql || ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | tail -1)
    "$psql_bin" -X -q -v ON_ERROR_STOP=1 "$HS_DB" -c "$sql" || die "psql delete"
fi
"$H2R" db verify --db "$HS_DB" --run "$RUN" --section "$DB" --format json >"$WORK/verify1.json"
vrc=$?
"$H2R" db verify --db "$HS_DB" --run "$RUN" >"$WORK/verify1.txt" 2>&1
python3 - "$WORK/verify1.json" "$vrc" "$victim" <<'EOF' && ok "db verify --run after deleting $victim: $(grep 'acknowledged but lost' "$WORK/verify1.txt") (exit 1)" || bad "db verify --run did not report the deleted user"
import json, sys
d = json.load(open(sys.argv[1]))
u = d["kinds"]["users"]
assert int(sys.argv[2]) == 1, sys.argv[2]
assert u["lost"] == 1, u
assert [e.get("name") for e in u["lost_entities"]] == [sys.argv[3]], u["lost_entities"]
EOF

cleanup
trap - EXIT
[[ $fails -eq 0 ]] && rm -rf "$WORK"
echo "$prog: $fails failure(s)"
[[ $fails -eq 0 ]]
