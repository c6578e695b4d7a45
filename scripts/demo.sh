#!/usr/bin/env bash
# demo.sh - THE main job, end to end on one machine:
#
#   1. packages (scripts/setup.sh: build tools, libraries, PostgreSQL, ...)
#   2. Headscale v0.29.2 (scripts/install-headscale.sh; built with Go once, then cached)
#   3. h2replay, built in build/
#   4. capture: the bundled pcap of real h2c traffic (traces/sample-h2c.pcap) -> a trace
#   5. Headscale v0.29.2 on SQLite and on PostgreSQL (scripts/headscale.sh; PostgreSQL joins
#      only when it can be installed and started, otherwise the demo says so and goes on)
#   6. replay the committed trace of a real gRPC client registering 10 users with pre-auth keys
#      (traces/headscale-grpc.h2rt, grpcurl over h2c) against both at 10x in ONE replay (one
#      section per server, each with its own API key: --set TARGET:NAME=VALUE), watching each
#      database (--db) and checking what each server acknowledged against it
#   7. replay the nodes of the "captured on production" sample (traces/tailscale-sample.h2rt:
#      12 real tailscaled, 14 TS2021 sessions incl. 2 reconnects) against each server at 10x,
#      each session registering with a pre-auth key and holding its map stream
#   8. analyze (each server's own log on the timeline, --server-log): the tables printed
#      here, HTML reports in OUT_DIR/report.html (nodes) and OUT_DIR/report-admin.html
#
# Everything is stopped on exit (trap). Bounded: < 10 minutes on a warm machine, < 20 cold
# (the first Headscale build takes ~5 minutes on 2 cores).
#
# Usage: scripts/demo.sh       environment: OUT_DIR (out), JOBS (2), H2R_BUILD_DIR (build),
#                              DEMO_HS_VERSION (v0.29.2), DEMO_SPEED (10), DEMO_DBS ("sqlite postgres")
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
JOBS=${JOBS:-2}
BUILD=${H2R_BUILD_DIR:-build}
OUT=${OUT_DIR:-out}
PCAP=traces/sample-h2c.pcap
H2R=$BUILD/cli/h2replay
HS_VERSION_DEMO=${DEMO_HS_VERSION:-v0.29.2}
SPEED=${DEMO_SPEED:-10}
read -r -a DBS <<<"${DEMO_DBS:-sqlite postgres}"
T0=$SECONDS

step() {
    echo
    echo "==> [$((SECONDS - T0))s] $*"
}
die() {
    echo "demo.sh: $*" >&2
    exit 1
}

# Headscale instances started here, stopped on any exit.
hs_dirs=()
cleanup() {
    local d
    for d in "${hs_dirs[@]}"; do
        scripts/headscale.sh stop --dir "$d" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "installing packages (scripts/setup.sh)"
bash scripts/setup.sh

mkdir -p "$OUT"
step "building h2replay in $BUILD/"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$OUT/configure.log" 2>&1 || {
    cat "$OUT/configure.log" >&2
    die "cmake configure failed"
}
cmake --build "$BUILD" -j"$JOBS" --target h2replay
[[ -x $H2R ]] || die "$H2R was not built"

TRACE=$OUT/sample-h2c.h2rt
step "capturing $PCAP -> $TRACE"
timeout 300 "$H2R" capture -r "$PCAP" -o "$TRACE"

step "h2replay show $TRACE"
timeout 120 "$H2R" show "$TRACE"

step "installing Headscale $HS_VERSION_DEMO (scripts/install-headscale.sh; cached after the first build)"
H2R_GO_INSTALL_TIMEOUT=${H2R_GO_INSTALL_TIMEOUT:-900} scripts/install-headscale.sh "$HS_VERSION_DEMO" ||
    die "Headscale $HS_VERSION_DEMO could not be built (needs Go >= 1.26.4 and the Go module proxy)"

# The committed trace of the release: field types moved between releases
# (CreatePreAuthKey.user is a name on 0.23, an id on 0.29), so each has its own recording.
HS_TRACE=traces/headscale-grpc-$HS_VERSION_DEMO.h2rt
[[ -f $HS_TRACE ]] || HS_TRACE=traces/headscale-grpc.h2rt

envget() { sed -n "s/^$1=//p" <<<"$2" | head -1; }
targets=()
shown=()
started=()
declare -A hs_url hs_dsn hs_log hs_dir
for db in "${DBS[@]}"; do
    step "starting Headscale $HS_VERSION_DEMO on $db (scripts/headscale.sh)"
    if ! env_out=$(timeout 300 scripts/headscale.sh start --version "$HS_VERSION_DEMO" --db "$db" --no-install \
        2>"$OUT/headscale-$db.err"); then
        tail -5 "$OUT/headscale-$db.err" | sed 's/^/    /' >&2
        if [[ $db == postgres ]]; then
            echo "demo.sh: PostgreSQL could not be started here; going on with the other databases" >&2
            continue
        fi
        die "Headscale on $db did not start (see $OUT/headscale-$db.err)"
    fi
    hs_dirs+=("$(envget HS_DIR "$env_out")")
    grpc=$(envget HS_GRPC "$env_out")
    dsn=$(envget HS_DB "$env_out")
    key=$(envget HS_API_KEY "$env_out")
    echo "Headscale $HS_VERSION_DEMO on $db: gRPC (h2c) $grpc, database $dsn, ready in $(envget HS_READY_MS "$env_out") ms"
    # one section per server; each has its own API key: a per-target --set (docs/rewrite-rules.md)
    targets+=(--target "$db=http://$grpc" --db "$db=$dsn" --set "$db:authorization_1=$key")
    shown+=("--target $db=http://$grpc --db $db=$dsn --set $db:authorization_1=***")
    started+=("$db")
    hs_url[$db]=$(envget HS_URL "$env_out")
    hs_dsn[$db]=$dsn
    hs_log[$db]=$(envget HS_LOG "$env_out")
    hs_dir[$db]=$(envget HS_DIR "$env_out")
done
[[ ${#started[@]} -gt 0 ]] || die "no Headscale could be started"

# One replay, one run file, one section per server (in turn: the servers never share the load);
# --db samples each database and checks at the section's end what the server acknowledged.
run=$OUT/headscale.h2rr
runs=("$run")
step "replaying $HS_TRACE against ${started[*]} at ${SPEED}x, sampling their databases (--db)"
echo "$H2R replay $HS_TRACE ${shown[*]} --speed $SPEED -o $run"
timeout 600 "$H2R" replay "$HS_TRACE" "${targets[@]}" --speed "$SPEED" \
    --label "headscale $HS_VERSION_DEMO" -o "$run" || die "replay against ${started[*]} failed"

# The nodes: each captured TS2021 session re-created at its (scaled) time with one synthetic
# identity per captured machine, registering with a reusable pre-auth key of its server.
NODES_TRACE=traces/tailscale-sample.h2rt
for db in "${started[@]}"; do
    authkey=$(timeout 60 scripts/headscale.sh authkey --dir "${hs_dir[$db]}" --user demo-nodes \
        --reusable) || die "no pre-auth key from Headscale on $db"
    nrun=$OUT/nodes-$db.h2rr
    runs+=("$nrun")
    step "replaying the captured nodes of $NODES_TRACE against $db at ${SPEED}x (TS2021)"
    echo "$H2R replay $NODES_TRACE --target $db-nodes=ts2021+${hs_url[$db]} --set authkey=*** --db $db-nodes=${hs_dsn[$db]} --speed $SPEED -o $nrun"
    timeout 600 "$H2R" replay "$NODES_TRACE" --target "$db-nodes=ts2021+${hs_url[$db]}" \
        --set "authkey=$authkey" --db "$db-nodes=${hs_dsn[$db]}" --speed "$SPEED" \
        --label "headscale $HS_VERSION_DEMO nodes" -q -o "$nrun" || die "node replay against $db failed"
done
slogs=()
# Each server's own log, kept in OUT_DIR, goes on the same timeline as the client's view.
for db in "${started[@]}"; do
    scripts/headscale.sh stop --dir "${hs_dir[$db]}" --keep >/dev/null 2>&1 || true
    cp "${hs_log[$db]}" "$OUT/headscale-$db.log" 2>/dev/null || continue
    slogs+=(--server-log "$db=$OUT/headscale-$db.log" --server-log "$db-nodes=$OUT/headscale-$db.log")
done

# analyze compares runs of one trace: the admin flow (one run, a section per server) and
# the nodes (a run per server) are two reports.
admin_logs=() node_logs=()
for ((i = 0; i < ${#slogs[@]}; i += 4)); do
    admin_logs+=("${slogs[i]}" "${slogs[i + 1]}")
    node_logs+=("${slogs[i + 2]}" "${slogs[i + 3]}")
done
step "h2replay analyze $run (admin calls over gRPC)"
timeout 120 "$H2R" analyze "$run" "${admin_logs[@]}" --format table
timeout 120 "$H2R" analyze "$run" "${admin_logs[@]}" --format html -o "$OUT/report-admin.html" -q
step "h2replay analyze ${runs[*]:1} (the captured nodes, SQLite vs PostgreSQL)"
timeout 120 "$H2R" analyze "${runs[@]:1}" "${node_logs[@]}" --format table
timeout 120 "$H2R" analyze "${runs[@]:1}" "${node_logs[@]}" --format html -o "$OUT/report.html" -q
echo
echo "trace:  $(cd "$(dirname "$TRACE")" && pwd)/$(basename "$TRACE") ($(stat -c %s "$TRACE") bytes, from $PCAP)"
echo "runs:   ${runs[*]}"
echo "report: $(cd "$OUT" && pwd)/report.html (nodes), $(cd "$OUT" && pwd)/report-admin.html (admin calls)"
echo "demo.sh: done in $((SECONDS - T0)) s"
