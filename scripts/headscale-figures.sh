#!/usr/bin/env bash
# headscale-figures.sh - SQLite vs PostgreSQL on Headscale releases: the committed gRPC
# registration trace replayed at several speeds with --db, analysed per release and speed.
#
#   scripts/headscale-figures.sh [--versions "v0.29.2 v0.23.0"] [--speeds "10 100"]
#                                [--dbs "sqlite postgres"] [--build DIR] OUTDIR
#
# For each release and database: start Headscale (scripts/headscale.sh), stop it, snapshot the
# fresh database (schema + API key), start it; then for each speed: replay the release's trace
# (traces/headscale-grpc-VERSION.h2rt, else traces/headscale-grpc.h2rt) with --db into
# OUTDIR/VERSION-DB-xSPEED.h2rr, stop, restore the snapshot, start (every replay sees the same
# empty database). Then, per release and speed, `h2replay analyze` of the databases' runs
# (JSON and table into OUTDIR), and a Markdown summary of p50/p99/errors per endpoint on stdout.
# Runs of different releases or speeds are not compared with each other (different traces or
# settings); the summary puts them side by side.
#
# Needs the releases in .cache/bin (scripts/install-headscale.sh) and a built h2replay.
# Bounded: every step has a timeout; every server started here is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
HS=$ROOT/scripts/headscale.sh
versions="v0.29.2 v0.23.0" speeds="10 100" dbs="sqlite postgres" BUILD="" OUT=""
while [[ $# -gt 0 ]]; do
    case $1 in
    --versions) versions=$2; shift 2 ;;
    --speeds) speeds=$2; shift 2 ;;
    --dbs) dbs=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    -*) echo "headscale-figures.sh: unknown flag $1" >&2; exit 2 ;;
    *) OUT=$1; shift ;;
    esac
done
[[ -n $OUT ]] || { echo "headscale-figures.sh: OUTDIR is required" >&2; exit 2; }
[[ -n $BUILD ]] || BUILD=$ROOT/build
H2R=$BUILD/cli/h2replay
[[ -x $H2R ]] || { echo "headscale-figures.sh: no $H2R (--build DIR)" >&2; exit 1; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
log() { echo "[$(date +%T)] $*" >&2; }

hs_dir=""
cleanup() {
    [[ -z $hs_dir ]] || "$HS" stop --dir "$hs_dir" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for v in $versions; do
    trace=$ROOT/traces/headscale-grpc-$v.h2rt
    [[ -f $trace ]] || trace=$ROOT/traces/headscale-grpc.h2rt
    for db in $dbs; do
        env_out=$(timeout 300 "$HS" start --version "$v" --db "$db" --no-install) ||
            { log "$v $db: did not start; skipped"; continue; }
        eval "$env_out"
        hs_dir=$HS_DIR
        timeout 60 "$HS" server-stop --dir "$HS_DIR" >/dev/null
        timeout 120 "$H2R" db snapshot --db "$HS_DB" --overwrite >/dev/null
        eval "$(timeout 120 "$HS" server-start --dir "$HS_DIR")"
        for s in $speeds; do
            run=$OUT/$v-$db-x$s.h2rr
            log "$v $db x$s: $(uptime | sed 's/.*load/load/')"
            # shellcheck disable=SC2016 # the key is masked in the run file's command line
            timeout 300 "$H2R" replay "$trace" --target "$db=http://$HS_GRPC" --db "$db=$HS_DB" \
                --db-interval 250ms --set "authorization_1=$HS_API_KEY" --speed "$s" \
                --label "headscale $v $db" -q -o "$run"
            # failed key requests that were sent before their user's CreateUser completed
            "$H2R" show "$run" --format jsonl | python3 -c '
import json, sys
rs = {r["exchange"]: r for r in map(json.loads, sys.stdin)}
print(sum(1 for r in rs.values() if r["class"] != "ok" and r["path"].endswith("/CreatePreAuthKey")
          and r["exchange"] - 1 in rs and r["t_sent_ns"] < rs[r["exchange"] - 1]["t_done_ns"]))' \
                >"${run%.h2rr}.overtook"
            timeout 60 "$HS" server-stop --dir "$HS_DIR" >/dev/null
            timeout 120 "$H2R" db restore --db "$HS_DB" 2>/dev/null
            eval "$(timeout 120 "$HS" server-start --dir "$HS_DIR")"
        done
        "$HS" stop --dir "$HS_DIR" >/dev/null 2>&1
        hs_dir=""
    done
    for s in $speeds; do
        runs=()
        for db in $dbs; do
            [[ -f $OUT/$v-$db-x$s.h2rr ]] && runs+=("$OUT/$v-$db-x$s.h2rr")
        done
        [[ ${#runs[@]} -gt 0 ]] || continue
        "$H2R" analyze "${runs[@]}" --format json -o "$OUT/$v-x$s.json" -q
        "$H2R" analyze "${runs[@]}" --format table -o "$OUT/$v-x$s.txt" -q
    done
done

# Markdown summary: one row per release, speed, database and endpoint.
python3 - "$OUT" $versions -- $speeds <<'EOF'
import json, os, sys
out = sys.argv[1]
i = sys.argv.index("--")
versions, speeds = sys.argv[2:i], sys.argv[i + 1:]
ms = lambda ns: "-" if ns is None else ("%.0f ms" % (ns / 1e6) if ns >= 1e7 else "%.1f ms" % (ns / 1e6))
print("| release | speed | database | endpoint | count | p50 | p99 | errors |")
print("|---|---:|---|---|---:|---:|---:|---|")
dbrows = []
for v in versions:
    for s in speeds:
        p = os.path.join(out, "%s-x%s.json" % (v, s))
        if not os.path.exists(p):
            continue
        for r in json.load(open(p))["runs"]:
            for g in r["groups"]:
                errs = ", ".join("%d %s" % (n, c) for c, n in g["errors_by_class"].items() if n) or "0"
                lat = g["latency_from_intended"]
                print("| %s | %sx | %s | %s | %d | %s | %s | %s |" % (
                    v, s, r["name"], g["key"].split("/")[-1], g["count"], ms(lat["p50_ns"]),
                    ms(lat["p99_ns"]), errs))
            lat = r["latency_from_intended"]
            db = r.get("db") or {}
            pg = db.get("pg") or {}
            wal = (db.get("sqlite") or {}).get("wal_bytes") or {}
            ov = os.path.join(out, "%s-%s-x%s.overtook" % (v, r["name"], s))
            ov = open(ov).read().strip() if os.path.exists(ov) else "?"
            dbrows.append("| %s | %sx | %s | %d | %s | %s | %d (%s overtook) | %s | %s | %s |" % (
                v, s, r["name"], r["count"], ms(lat["p50_ns"]), ms(lat["p99_ns"]), r["errors"], ov,
                ("%d kB" % (wal["growth"] / 1000)) if wal else "-",
                pg.get("lock_waits_max", "-"), pg.get("rollbacks", "-")))
print()
print("| release | speed | database | exchanges | p50 | p99 | errors (of which a key request overtook its user) | WAL growth | lock waits (max) | rollbacks |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
print("\n".join(dbrows))
EOF
exit 0
