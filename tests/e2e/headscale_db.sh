#!/usr/bin/env bash
# headscale_db.sh - `h2replay db` against a real Headscale (label e2e).
#
#   tests/e2e/headscale_db.sh H2REPLAY VERSION sqlite|postgres [WORKDIR]
#
# Starts Headscale VERSION with scripts/headscale.sh, samples its database with `h2replay db
# watch` while users and pre-auth keys are created over REST (Bearer API key), then checks:
# verify finds the one acknowledgement we invented (lost) and the one user made behind the
# client's back (never acknowledged); snapshot/restore refuse while the server runs; after
# server-stop, restore brings the row counts back to the snapshot and Headscale serves them
# after server-start. Exit 77 (skip) when the Headscale binary is not installed
# (scripts/install-headscale.sh VERSION) or PostgreSQL is missing.
set -uo pipefail

H2R=${1:?usage: headscale_db.sh H2REPLAY VERSION sqlite|postgres [WORKDIR]}
VERSION=${2:?version}
DB=${3:?sqlite|postgres}
ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
WORK=${4:-$(mktemp -d /tmp/h2r-hsdb.XXXXXX)}
HS=$ROOT/scripts/headscale.sh
prog="headscale_db.sh[$VERSION/$DB]"

fails=0
ok() { echo "$prog: ok: $*"; }
bad() { echo "$prog: FAIL: $*" >&2; fails=$((fails + 1)); }
die() { echo "$prog: $*" >&2; cleanup; exit 1; }

if [[ ! -x $ROOT/.cache/bin/headscale-$VERSION/headscale ]]; then
    echo "$prog: SKIP: no $ROOT/.cache/bin/headscale-$VERSION/headscale (scripts/install-headscale.sh $VERSION)" >&2
    exit 77
fi
if [[ $DB == postgres ]] && ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "$prog: SKIP: PostgreSQL server binaries not installed" >&2
    exit 77
fi
command -v python3 >/dev/null || { echo "$prog: SKIP: python3 missing" >&2; exit 77; }
if ! "$H2R" db --help >/dev/null 2>&1; then
    echo "$prog: SKIP: $H2R has no 'db' command yet (cli/cmd_db.c not wired in)" >&2
    exit 77
fi

rm -rf "$WORK/hs"
mkdir -p "$WORK"
watch_pid=""
cleanup() {
    [[ -n $watch_pid ]] && kill "$watch_pid" 2>/dev/null && wait "$watch_pid" 2>/dev/null
    [[ -f $WORK/hs/env ]] && "$HS" stop --dir "$WORK/hs" --keep >/dev/null 2>&1
}
trap cleanup EXIT

env_out=$("$HS" start --version "$VERSION" --db "$DB" --dir "$WORK/hs" --no-install) || die "launcher failed"
eval "$env_out"
ok "started in ${HS_START_MS} ms (ready with API key in ${HS_READY_MS} ms): $HS_URL $HS_DB"
minor=${VERSION#v0.}
minor=${minor%%.*}

rest() { # METHOD PATH [JSON] -> body on stdout; fails on non-200
    local args=(-sS -m 15 -k -H "Authorization: Bearer $HS_API_KEY" -X "$1" -w '\n%{http_code}')
    [[ $# -ge 3 ]] && args+=(-H 'Content-Type: application/json' -d "$3")
    local out code
    out=$(curl "${args[@]}" "$HS_URL$2") || return 1
    code=${out##*$'\n'}
    [[ $code == 200 ]] || { echo "$1 $2 -> $code: ${out%$'\n'*}" >&2; return 1; }
    printf '%s\n' "${out%$'\n'*}"
}
jget() { python3 -c 'import json,sys; d=json.load(sys.stdin)
for k in sys.argv[1].split("."): d=d[k]
print(d)' "$1"; }

"$H2R" db watch --db "$HS_DB" --interval 200ms -o "$WORK/watch.jsonl" -q &
watch_pid=$!

# Users and pre-auth keys over REST; every 200 reply is an acknowledgement.
acks=$WORK/acks.jsonl
: >"$acks"
N=10
for i in $(seq 1 $N); do
    body=$(rest POST /api/v1/user "{\"name\":\"u$i\"}") || die "create user u$i"
    uid=$(jget user.id <<<"$body")
    echo "{\"kind\":\"user\",\"id\":$uid,\"name\":\"u$i\"}" >>"$acks"
    if ((minor >= 26)); then u="\"$uid\""; else u="\"u$i\""; fi
    body=$(rest POST /api/v1/preauthkey "{\"user\":$u,\"reusable\":false,\"expiration\":\"2035-01-01T00:00:00Z\"}") ||
        die "create pre-auth key for u$i"
    kid=$(jget preAuthKey.id <<<"$body")
    key=$(jget preAuthKey.key <<<"$body")
    echo "{\"kind\":\"pre_auth_key\",\"id\":$kid,\"key\":\"$key\"}" >>"$acks"
done
ok "created $N users and $N pre-auth keys over REST"
# One acknowledgement nobody stored, one user nobody acknowledged.
echo '{"kind":"user","name":"ghost-never-created"}' >>"$acks"
"$HS_BIN" -c "$HS_CONFIG" users create sneaky >/dev/null 2>&1 || die "CLI users create"
python3 -c 'import json,sys; print(json.dumps([json.loads(l) for l in open(sys.argv[1])]))' "$acks" >"$WORK/acks.json"

"$H2R" db verify --db "$HS_DB" --acks "$WORK/acks.json" --format json >"$WORK/verify1.json"
vrc=$?
lost=$(jget acknowledged_but_lost <"$WORK/verify1.json")
unacked=$(jget present_but_never_acknowledged <"$WORK/verify1.json")
[[ $vrc -eq 1 && $lost -eq 1 && $unacked -eq 1 ]] && ok "verify: lost=1 unacknowledged=1 (exit 1)" ||
    bad "verify: exit $vrc lost=$lost unacknowledged=$unacked (want 1/1/1)"

# While the server runs: PostgreSQL refuses a snapshot (sessions); both refuse a restore.
if [[ $DB == postgres ]]; then
    "$H2R" db snapshot --db "$HS_DB" >/dev/null 2>"$WORK/snap-refused.txt" &&
        bad "snapshot under a running server was not refused" ||
        ok "snapshot refused while running: $(head -c 120 "$WORK/snap-refused.txt")"
fi
"$HS" server-stop --dir "$HS_DIR" || die "server-stop"
t0=$(date +%s%N)
snap=$("$H2R" db snapshot --db "$HS_DB" --overwrite 2>"$WORK/snap.txt") || die "snapshot: $(cat "$WORK/snap.txt")"
snap_ms=$((($(date +%s%N) - t0) / 1000000))
ok "snapshot -> $snap in $snap_ms ms"
env_out=$("$HS" server-start --dir "$HS_DIR") || die "server-start"
eval "$env_out"
ok "restarted in ${HS_START_MS} ms"
users_snap=$(rest GET /api/v1/user | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["users"]))')

for i in 1 2 3; do rest POST /api/v1/user "{\"name\":\"late$i\"}" >/dev/null || die "late user"; done
"$H2R" db restore --db "$HS_DB" 2>"$WORK/restore-refused.txt" && bad "restore under a running server was not refused" ||
    ok "restore refused while running: $(head -c 120 "$WORK/restore-refused.txt")"

"$HS" server-stop --dir "$HS_DIR" || die "server-stop"
t0=$(date +%s%N)
"$H2R" db restore --db "$HS_DB" 2>"$WORK/restore.txt" || die "restore: $(cat "$WORK/restore.txt")"
restore_ms=$((($(date +%s%N) - t0) / 1000000))
env_out=$("$HS" server-start --dir "$HS_DIR") || die "server-start after restore"
eval "$env_out"
users_now=$(rest GET /api/v1/user | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["users"]))')
[[ $users_now -eq $users_snap && $users_snap -eq $((N + 1)) ]] &&
    ok "restore in $restore_ms ms: Headscale lists $users_now users again (snapshot had $users_snap)" ||
    bad "after restore Headscale lists $users_now users, snapshot had $users_snap (want $((N + 1)))"
"$H2R" db verify --db "$HS_DB" --acks "$WORK/acks.json" --format json >"$WORK/verify2.json"
[[ $(jget acknowledged_but_lost <"$WORK/verify2.json") -eq 1 ]] && ok "verify after restore unchanged" ||
    bad "verify after restore changed"
# The API key survived the restore (it was in the snapshot) and writes work.
rest POST /api/v1/user '{"name":"after-restore"}' >/dev/null && ok "writes work after restore" ||
    bad "cannot write after restore"

sleep 0.5
kill -INT "$watch_pid" 2>/dev/null
wait "$watch_pid"
wrc=$?
watch_pid=""
python3 - "$WORK/watch.jsonl" "$DB" <<'EOF' && ok "watch: $(wc -l <"$WORK/watch.jsonl") samples" || bad "watch output (exit $wrc)"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
good = [r for r in rows if "error" not in r]
assert len(rows) >= 5 and len(good) >= 3, (len(rows), len(good))
assert max(r["counts"]["users"] or 0 for r in good) >= 11
if sys.argv[2] == "sqlite":
    assert all(r["sqlite"]["page_size"] > 0 for r in good)
    assert max(r["sqlite"]["wal_bytes"] for r in good) > 0
else:
    assert max(r["pg"]["xact_commit"] for r in good) > 0
    assert max(r["pg"]["backends"] for r in good) >= 1
EOF

echo "$prog: timings: start_ms=$HS_START_MS snapshot_ms=$snap_ms restore_ms=$restore_ms"
cleanup
trap - EXIT
[[ $fails -eq 0 ]] && rm -rf "$WORK"
echo "$prog: $fails failure(s)"
[[ $fails -eq 0 ]]
