#!/usr/bin/env bash
# capture-tailscale-sample.sh - record real Tailscale clients registering with a real Headscale.
#
#   scripts/capture-tailscale-sample.sh [--nodes N] [--version HS_VERSION] [--db sqlite|postgres]
#                                       [--tls | --plain] [--ts-version V] [--stagger S]
#                                       [--hold S] [--restarts K] [--seed N] [--timeout S] OUTDIR
#
# Defaults: 12 nodes, Headscale v0.29.2 on SQLite, TLS, tailscale v1.80.3, arrivals spread over
# 15 s, 15 s hold, 2 restarts, seed 2021, 120 s bound on registration.
#
# What it does, in order (every wait is bounded):
#  1. re-executes itself in a private network namespace (`unshare --net`) whose only interface is
#     lo plus a veth pair with 198.51.100.1/32 (TEST-NET-2; tailscaled needs one non-loopback
#     address to consider the network up), so nothing a client does can leave the machine:
#     tailscaled's captive-portal check dials controlplane.tailscale.com / login.tailscale.com
#     when DERP is unreachable, and its portmapper probes the LAN gateway; in the namespace there
#     is no default route, no reachable DNS server and no gateway. It also keeps other programs'
#     loopback traffic out of the capture;
#  2. starts Headscale with scripts/headscale.sh (its dir is OUTDIR/run/headscale) and creates
#     user "sample" and a reusable pre-auth key over REST (/api/v1, Bearer API key);
#  3. starts a real derper (Tailscale's relay, built by install-tailscale.sh) on the port of the
#     launcher's dummy DERP map, with a throwaway certificate for 127.0.0.1: a client only goes
#     from "Starting" to "Running" (and `tailscale up` only returns) with a live DERP connection;
#  4. starts `tcpdump -i lo -w OUTDIR/tailscale.pcap -U -s 0 'tcp port HS_PORT'` (Headscale's
#     HTTP port: /key, /ts2021; the gRPC port carries nothing here) and a second tcpdump of all
#     other loopback traffic (OUTDIR/run/other-lo.pcap: DERP dial attempts, peer UDP);
#  5. starts N tailscaled (--tun=userspace-networking, own --statedir and --socket under
#     OUTDIR/run/nodeI, --no-logs-no-support, TS_DISABLE_PORTMAPPER=1, TS_DISABLE_UPNP=true,
#     TS_ASSUME_NETWORK_UP_FOR_TEST=1, TS_PANIC_IF_HIT_MAIN_CONTROL=1, TS_NO_LOGS_NO_SUPPORT,
#     TS_LOGS_DIR, SSL_CERT_FILE=the DERP certificate plus, with TLS, Headscale's; with TLS also
#     SSLKEYLOGFILE);
#  6. runs `tailscale up --login-server=URL --authkey=K --hostname=nodeI --accept-dns=false
#     --timeout=60s` for each node at seeded random times (uniform arrivals) over --stagger s;
#  7. waits until `headscale nodes list` (local CLI, unix socket) shows all N online, holds --hold
#     s (map streams, keep-alives) while sampling each tailscaled's RSS, then restarts K daemons
#     one after the other (SIGTERM, same state dir: a known machine key in a second session);
#  8. stops the tailscaled and derper, then the tcpdumps (SIGINT, flush), then Headscale
#     (launcher stop --keep).
#
# Output in OUTDIR (must be empty or absent):
#   tailscale.pcap        the capture (Headscale's HTTP port only)
#   tailscale.keylog      TLS only: NSS key log written by the tailscaled (SSLKEYLOGFILE); with
#                         tshark, only the lines of sessions in tailscale.pcap (all: run/all.keylog)
#   noise_private.key     Headscale's Noise private key (throwaway) - decrypts the TS2021 sessions
#   headscale.log         Headscale's log
#   headscale-nodes.json  `headscale nodes list -o json` just before the clients were stopped
#   manifest.json         versions, options, ports, timings, per-node facts, RSS, file list
#   run/                  working files: Headscale dir (config, env), per-node state/logs, the
#                         other-loopback capture (DERP), derper files, tcpdump logs
#
# TLS vs plain: tailscaled verifies the control server with the system roots, which Go reads from
# SSL_CERT_FILE, so pointing it at Headscale's self-signed certificate works offline; and
# tailscale's net/tlsdial honours SSLKEYLOGFILE for both the /key fetch and the /ts2021 dial, so a
# TLS capture stays decryptable. --plain records plain HTTP (the upgrade in cleartext).
#
# Needs: root (tcpdump, unshare), unshare + ip + ss (util-linux, iproute2), tcpdump, curl, jq,
# python3, openssl; binaries from scripts/install-headscale.sh and scripts/install-tailscale.sh;
# for --db postgres the PostgreSQL server already installed (no package install inside the
# namespace). tshark is optional: HTTP counts, the session table in the manifest and the
# trimmed key log need it.
# Exit status: 0 all nodes registered and the capture is complete; 1 failure (files kept);
# 2 usage.
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
SELF=$(readlink -f "${BASH_SOURCE[0]}")
prog=capture-tailscale-sample.sh
orig_args=("$@")

die() { echo "$prog: $*" >&2; exit 1; }
usage_exit() { echo "$prog: $*" >&2; exit 2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$SELF"; }
log_file=""
log() { # to stderr and, once OUTDIR/run exists, to run/capture.log; never fails
    local line
    line="$(date -u +%H:%M:%S.%3N) $*"
    printf '%s\n' "$line" >&2 2>/dev/null || true
    if [[ -n $log_file ]]; then printf '%s\n' "$line" >>"$log_file" 2>/dev/null || true; fi
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

nodes=12 hs_version=v0.29.2 db=sqlite tls=1 ts_version=v1.80.3 stagger=15 hold=15 restarts=2
seed=2021 timeout_s=120 outdir=""
while [[ $# -gt 0 ]]; do
    case $1 in
    --nodes) nodes=${2:?--nodes needs a value}; shift 2 ;;
    --version) hs_version=${2:?--version needs a value}; shift 2 ;;
    --db) db=${2:?--db needs a value}; shift 2 ;;
    --tls) tls=1; shift ;;
    --plain) tls=0; shift ;;
    --ts-version) ts_version=${2:?--ts-version needs a value}; shift 2 ;;
    --stagger) stagger=${2:?--stagger needs a value}; shift 2 ;;
    --hold) hold=${2:?--hold needs a value}; shift 2 ;;
    --restarts) restarts=${2:?--restarts needs a value}; shift 2 ;;
    --seed) seed=${2:?--seed needs a value}; shift 2 ;;
    --timeout) timeout_s=${2:?--timeout needs a value}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    -*) usage_exit "unknown option '$1' (see --help)" ;;
    *) [[ -z $outdir ]] || usage_exit "one OUTDIR only"; outdir=$1; shift ;;
    esac
done
[[ -n $outdir ]] || usage_exit "OUTDIR is required (see --help)"
for v in nodes stagger hold restarts seed timeout_s; do
    [[ ${!v} =~ ^[0-9]+$ ]] || usage_exit "--${v%_s}: '${!v}' is not a whole number"
done
((nodes >= 1 && nodes <= 64)) || usage_exit "--nodes: 1..64 (real daemons, ~40-60 MB each)"
((restarts <= nodes)) || usage_exit "--restarts: at most --nodes"
((timeout_s > 0)) || usage_exit "--timeout must be > 0"
[[ $hs_version =~ ^v0\.([0-9]+)\.[0-9]+$ ]] ||
    usage_exit "--version: '$hs_version' is not v0.MINOR.PATCH"
hs_minor=${BASH_REMATCH[1]}
((hs_minor >= 23)) || usage_exit "--version: the launcher supports 0.23 and later"
[[ $ts_version =~ ^v1\.[0-9]+\.[0-9]+$ ]] ||
    usage_exit "--ts-version: '$ts_version' is not v1.MINOR.PATCH"
case $db in sqlite | postgres) ;; *) usage_exit "--db: '$db' is not sqlite or postgres" ;; esac

TS_DIR=$ROOT/.cache/bin/tailscale-$ts_version
TAILSCALED=$TS_DIR/tailscaled
TAILSCALE=$TS_DIR/tailscale
DERPER=$TS_DIR/derper

# ---- outside the namespace: checks, then re-exec inside a fresh one
if [[ ${H2R_TS_NETNS:-} != 1 ]]; then
    [[ $(id -u) -eq 0 ]] || die "needs root (tcpdump on lo, unshare --net)"
    for t in unshare ip ss tcpdump curl jq python3 openssl; do
        command -v "$t" >/dev/null 2>&1 || die "$t is required"
    done
    [[ -x $TAILSCALED && -x $TAILSCALE && -x $DERPER ]] ||
        die "no tailscale $ts_version in $TS_DIR; run: scripts/install-tailscale.sh $ts_version"
    [[ -x $ROOT/.cache/bin/headscale-$hs_version/headscale ]] ||
        die "no headscale $hs_version; run: scripts/install-headscale.sh $hs_version"
    if [[ -e $outdir ]]; then
        [[ -d $outdir && -z $(ls -A "$outdir") ]] || die "OUTDIR $outdir exists and is not empty"
    fi
    mkdir -p "$outdir"
    unshare --net true 2>/dev/null || die "unshare --net failed (no CAP_SYS_ADMIN?); refusing" \
        "to run tailscaled on the host network (its captive-portal check dials the internet)"
    export H2R_TS_NETNS=1
    exec unshare --net -- "$BASH" "$SELF" "${orig_args[@]}"
fi

# ---- inside the namespace
ip link set lo up || die "cannot bring lo up in the namespace"
# tailscaled treats a host whose only interface is lo as offline: magicsock then never dials DERP
# (netmon AnyInterfaceUp needs a non-loopback v4/v6 address) and the node stays "Starting". Give
# the namespace one "LAN" interface: a veth pair whose ends both stay in here, with an address
# from TEST-NET-2 (RFC 5737 documentation range: not private, routed nowhere) and no routes
# beyond it. The clients advertise it as their local endpoint; packets to it are delivered
# locally (seen on lo); nothing can leave the namespace.
ip link add h2r0 type veth peer name h2r1 || die "cannot create a veth pair in the namespace"
for l in h2r0 h2r1; do
    sysctl -qw "net.ipv6.conf.$l.disable_ipv6=1" 2>/dev/null || true
    ip link set "$l" up
done
ip addr add 198.51.100.1/32 dev h2r0 || die "cannot address h2r0"
OUT=$(cd "$outdir" && pwd)
RUN=$OUT/run
mkdir -p "$RUN"
log_file=$RUN/capture.log
log "$prog ${orig_args[*]}"
log "network namespace: $(ip -br addr | tr -s ' ' | tr '\n' ';')"
t_script0=$(now_ms)

# State for cleanup (everything is killed by pid; all of it lives in this namespace).
ts_pids=() up_pids=() hs_dir="" tcpdump_pid="" other_pid="" derper_pid="" finished=0
stop_pid() { # PID SIGNAL SECONDS: signal, wait up to SECONDS, then SIGKILL. 0 = it exited in time.
    local pid=$1 sig=$2 secs=$3 i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    log "pid $pid ignored SIG$sig for ${secs}s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    return 1
}
cleanup() {
    local rc=$? p
    # A second signal (`timeout` and Ctrl-C signal the whole process group) or a closed stderr
    # must not cut the cleanup short: Headscale runs in its own session and would be left behind.
    trap '' INT TERM PIPE
    trap - EXIT
    set +e
    if [[ $finished -ne 1 ]]; then
        log "aborting (exit $rc): stopping everything; files kept in $OUT"
        for p in "${up_pids[@]}"; do stop_pid "$p" TERM 2 || true; done
        for p in "${ts_pids[@]}"; do stop_pid "$p" TERM 10 || true; done
        stop_pid "$derper_pid" TERM 10 || true
        stop_pid "$tcpdump_pid" INT 10 || true
        stop_pid "$other_pid" INT 10 || true
        if [[ -n $hs_dir ]]; then
            "$ROOT/scripts/headscale.sh" stop --dir "$hs_dir" --keep-all || true
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- Headscale
hs_dir=$RUN/headscale
hs_args=(start --version "$hs_version" --db "$db" --dir "$hs_dir" --no-install)
[[ $tls -eq 1 ]] && hs_args+=(--tls)
log "starting Headscale $hs_version ($db, $([[ $tls -eq 1 ]] && echo TLS || echo plain HTTP))"
"$ROOT/scripts/headscale.sh" "${hs_args[@]}" >"$RUN/headscale-env.txt" \
    2>"$RUN/headscale-start.log" || {
    cat "$RUN/headscale-start.log" >&2
    die "the launcher failed"
}
while IFS='=' read -r k v; do
    [[ $k =~ ^(HS|PG)_[A-Z0-9_]+$ ]] && printf -v "$k" '%s' "$v"
done <"$RUN/headscale-env.txt"
[[ -n ${HS_URL:-} && -n ${HS_API_KEY:-} && -n ${HS_BIN:-} && -n ${HS_DIR:-} ]] ||
    die "launcher output lacks HS_URL/HS_API_KEY/HS_BIN/HS_DIR"
HS_PORT=${HS_URL##*:}
hs_curl() { # METHOD PATH [JSON]
    local ca=()
    [[ $tls -eq 1 ]] && ca=(--cacert "$HS_CA")
    curl -sS -m 10 --fail-with-body "${ca[@]}" -X "$1" -H "Authorization: Bearer $HS_API_KEY" \
        -H 'Content-Type: application/json' ${3:+--data "$3"} "$HS_URL$2"
}
hs_cli() { HEADSCALE_CLI_TIMEOUT=30s timeout -k 5 40 "$HS_BIN" -c "$HS_CONFIG" "$@"; }
user_json=$(hs_curl POST /api/v1/user '{"name":"sample"}') || die "create user: $user_json"
user_id=$(jq -r '.user.id' <<<"$user_json")
# CreatePreAuthKey.user is the user name up to 0.25 and the numeric id from 0.26 (REST: a string).
key_user=$user_id
((hs_minor <= 25)) && key_user=sample
expiry=$(date -u -d '+6 hours' +%Y-%m-%dT%H:%M:%SZ)
key_json=$(hs_curl POST /api/v1/preauthkey \
    "{\"user\":\"$key_user\",\"reusable\":true,\"ephemeral\":false,\"expiration\":\"$expiry\"}") ||
    die "create pre-auth key: $key_json"
auth_key=$(jq -r '.preAuthKey.key' <<<"$key_json")
[[ -n $auth_key && $auth_key != null ]] || die "no key in $key_json"
log "Headscale at $HS_URL (pid $HS_PID); user sample id $user_id; reusable pre-auth key made"

# ---- DERP relay on the port of the launcher's dummy DERP map
# tailscaled moves from "Starting" to "Running" only with a live DERP connection or a live peer
# (ipnlocal nextStateLocked: NumLive > 0 || LiveDERPs > 0); without one `tailscale up` times out
# although the node is registered. So a real derper serves the map's region on loopback, with a
# throwaway certificate for 127.0.0.1 that the clients trust through SSL_CERT_FILE.
derp_host=$(awk '$1 == "ipv4:" { print $2; exit }' "$HS_DIR/derp.yaml")
derp_port=$(awk '$1 == "derpport:" { print $2; exit }' "$HS_DIR/derp.yaml")
[[ $derp_host == 127.0.0.1 && $derp_port =~ ^[0-9]+$ ]] ||
    die "unexpected DERP map in $HS_DIR/derp.yaml (want ipv4 127.0.0.1 and a derpport)"
mkdir -p "$RUN/derp"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext "subjectAltName=IP:127.0.0.1" \
    -keyout "$RUN/derp/127.0.0.1.key" -out "$RUN/derp/127.0.0.1.crt" \
    >"$RUN/derp/openssl.log" 2>&1 ||
    die "openssl req failed (see $RUN/derp/openssl.log)"
ca_bundle=$RUN/ca-bundle.pem
cat "$RUN/derp/127.0.0.1.crt" >"$ca_bundle"
[[ $tls -eq 1 ]] && cat "$HS_CA" >>"$ca_bundle"
"$DERPER" -a "127.0.0.1:$derp_port" -http-port=-1 -stun=false -certmode=manual \
    -certdir="$RUN/derp" -hostname=127.0.0.1 -c="$RUN/derp/derper.json" \
    >"$RUN/derp/derper.log" 2>&1 </dev/null &
derper_pid=$!
for ((i = 0; ; i++)); do
    code=$(curl -s -o /dev/null -m 2 --cacert "$RUN/derp/127.0.0.1.crt" -w '%{http_code}' \
        "https://127.0.0.1:$derp_port/" 2>/dev/null || true)
    [[ $code =~ ^[1-5][0-9][0-9]$ ]] && break
    kill -0 "$derper_pid" 2>/dev/null || { cat "$RUN/derp/derper.log" >&2; die "derper exited"; }
    ((i < 100)) || die "derper not answering on 127.0.0.1:$derp_port after 10 s"
    sleep 0.1
done
log "derper $ts_version on https://127.0.0.1:$derp_port (region 900 of the dummy DERP map)"

# ---- tcpdump
start_tcpdump() { # OUT FILTER LOG -> sets last_pid
    tcpdump -i lo -w "$1" -U --immediate-mode -s 0 -Z root -n -B 65536 "$2" >"$3" 2>&1 &
    last_pid=$!
    local i
    for ((i = 0; i < 100; i++)); do
        grep -q "listening on" "$3" 2>/dev/null && return 0
        kill -0 "$last_pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$3" >&2
    die "tcpdump did not start listening within 10 s"
}
pcap_filter="tcp port $HS_PORT"
start_tcpdump "$OUT/tailscale.pcap" "$pcap_filter" "$RUN/tcpdump.log"
tcpdump_pid=$last_pid
start_tcpdump "$RUN/other-lo.pcap" "not ($pcap_filter)" "$RUN/tcpdump-other.log"
other_pid=$last_pid
log "tcpdump on lo: '$pcap_filter' -> tailscale.pcap; everything else -> run/other-lo.pcap"

# ---- tailscaled
# Unix sockets are limited to 108 bytes; fall back to a short folder when OUTDIR is deep.
sock_base=$RUN
if ((${#RUN} + 24 > 100)); then
    sock_base=$(mktemp -d /tmp/h2r-ts.XXXXXX)
    log "OUTDIR path too long for unix sockets; sockets in $sock_base"
fi
node_dir() { echo "$RUN/node$1"; }
node_sock() { echo "$sock_base/node$1/tailscaled.sock"; }
ts_env=(
    env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy -u ALL_PROXY -u NO_PROXY
    TS_DISABLE_PORTMAPPER=1 TS_DISABLE_UPNP=true TS_ASSUME_NETWORK_UP_FOR_TEST=1
    TS_PANIC_IF_HIT_MAIN_CONTROL=1 TS_NO_LOGS_NO_SUPPORT=true
)
ts_env+=(SSL_CERT_FILE="$ca_bundle")
start_node() { # I -> ts_pids[I]
    local d s
    d=$(node_dir "$1")
    s=$(node_sock "$1")
    mkdir -p "$d/state" "$d/logs" "$(dirname "$s")"
    local extra=()
    [[ $tls -eq 1 ]] && extra=(SSLKEYLOGFILE="$d/sslkeylog")
    "${ts_env[@]}" "${extra[@]}" TS_LOGS_DIR="$d/logs" \
        "$TAILSCALED" --tun=userspace-networking --statedir="$d/state" --socket="$s" --port=0 \
        --no-logs-no-support >>"$d/tailscaled.log" 2>&1 </dev/null &
    ts_pids[$1]=$!
}
ts_cli() { # I ARGS...
    local i=$1
    shift
    "${ts_env[@]}" timeout -k 5 "${CLI_TIMEOUT:-20}" "$TAILSCALE" --socket="$(node_sock "$i")" "$@"
}
backend_state() {
    ts_cli "$1" status --json 2>/dev/null | jq -r '.BackendState // empty' 2>/dev/null || true
}
wait_state() { # I REGEX SECONDS -> 0 when the backend state matches
    local deadline=$(($(date +%s) + $3)) st
    while :; do
        st=$(CLI_TIMEOUT=5 backend_state "$1")
        [[ $st =~ $2 ]] && return 0
        kill -0 "${ts_pids[$1]}" 2>/dev/null || { log "node$1: tailscaled exited"; return 1; }
        (($(date +%s) < deadline)) || { log "node$1: state '$st' after $3 s"; return 1; }
        sleep 0.2
    done
}
log "starting $nodes tailscaled $ts_version (userspace networking)"
for ((i = 1; i <= nodes; i++)); do start_node "$i"; done
for ((i = 1; i <= nodes; i++)); do
    wait_state "$i" '^(NeedsLogin|NoState|Stopped)$' 30 ||
        die "node$i: tailscaled not ready (see $(node_dir "$i")/tailscaled.log)"
done
t_daemons_ready=$(now_ms)
log "all $nodes tailscaled answer on their sockets" \
    "($((t_daemons_ready - t_script0)) ms after start)"

# ---- staggered `tailscale up`
# Arrival offsets: node 1 at 0, the others uniform in [0, stagger] (sorted) - Poisson arrivals
# conditioned on the count; seeded so a rerun has the same pattern.
mapfile -t offsets < <(python3 -c '
import random, sys
n, w, seed = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
r = random.Random(seed)
for t in [0.0] + sorted(r.uniform(0, w) for _ in range(n - 1)):
    print(int(t * 1000))' "$nodes" "$stagger" "$seed")
log "tailscale up at offsets (ms): ${offsets[*]}"
t_up0=$(now_ms)
for ((i = 1; i <= nodes; i++)); do
    target=$((t_up0 + offsets[i - 1]))
    while (($(now_ms) < target)); do sleep 0.02; done
    d=$(node_dir "$i")
    (
        s=$(now_ms)
        rc=0
        CLI_TIMEOUT=90 ts_cli "$i" up --login-server="$HS_URL" --authkey="$auth_key" \
            --hostname="node$i" --accept-dns=false --timeout=60s >"$d/up.log" 2>&1 || rc=$?
        echo "$rc $s $(now_ms)" >"$d/up.result"
    ) &
    up_pids[i]=$!
done
for ((i = 1; i <= nodes; i++)); do wait "${up_pids[$i]}" 2>/dev/null || true; done
up_pids=()
t_up_done=$(now_ms)
up_failed=0
for ((i = 1; i <= nodes; i++)); do
    read -r rc _ _ <"$(node_dir "$i")/up.result" || rc=99
    if [[ $rc -ne 0 ]]; then
        up_failed=$((up_failed + 1))
        log "node$i: tailscale up exit $rc: $(tail -3 "$(node_dir "$i")/up.log" | tr '\n' ' ')"
    fi
done
log "tailscale up returned for all $nodes nodes after $((t_up_done - t_up0)) ms ($up_failed failed)"

# ---- wait until Headscale lists all nodes online
ONLINE_JQ='[.[] | select(.online == true)] | length'
online_count() { hs_cli nodes list -o json 2>/dev/null | jq "$ONLINE_JQ" 2>/dev/null || echo 0; }
deadline=$(($(date +%s) + timeout_s))
registered=0
while :; do
    n=$(online_count)
    if [[ $n -ge $nodes ]]; then registered=1; break; fi
    (($(date +%s) < deadline)) || break
    sleep 0.2
done
t_all_online=$(now_ms)
if [[ $registered -eq 1 ]]; then
    log "Headscale shows all $nodes nodes online $((t_all_online - t_up0)) ms after the first 'up'"
else
    log "only $n of $nodes nodes online after $timeout_s s"
fi
hs_cli nodes list -o json >"$RUN/nodes-online.json" 2>/dev/null || true
# Which tailscaled holds which connection to Headscale (client port -> pid -> node): the only
# exact link between a TCP stream in the pcap and a node, since everything above TCP is encrypted.
ss_snapshot() { # TAG
    local i
    for ((i = 1; i <= nodes; i++)); do echo "$i ${ts_pids[$i]}"; done >"$RUN/pids-$1.txt"
    ss -tnpH state established "( dport = :$HS_PORT )" >"$RUN/ss-$1.txt" 2>/dev/null || true
}
ss_snapshot online

# ---- hold: map streams and keep-alives; sample RSS once a second
rss_of() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_of() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
declare -A rss_max rss_last
log "holding ${hold} s"
t_hold0=$(now_ms)
for ((s = 0; s < hold; s++)); do
    sleep 1
    for ((i = 1; i <= nodes; i++)); do
        r=$(rss_of "${ts_pids[$i]}")
        rss_last[$i]=$r
        ((r > ${rss_max[$i]:-0})) && rss_max[$i]=$r
    done
done
declare -A rss_hwm
for ((i = 1; i <= nodes; i++)); do rss_hwm[$i]=$(hwm_of "${ts_pids[$i]}"); done
hs_rss=$(rss_of "$HS_PID")
hs_hwm=$(hwm_of "$HS_PID")
t_hold1=$(now_ms)

# ---- restarts: the same state dir (machine key) comes back in a new session
# Spread over the nodes: ceil(k*N/(K+1)) for k = 1..K (distinct whenever K <= N; 4 and 8 of 12).
restart_list=()
for ((k = 1; k <= restarts; k++)); do
    restart_list+=($(((k * nodes + restarts) / (restarts + 1))))
done
declare -A restart_ready_ms
restart_ok=1
for i in "${restart_list[@]}"; do
    log "restarting node$i (pid ${ts_pids[$i]})"
    t0=$(now_ms)
    stop_pid "${ts_pids[$i]}" TERM 15 || true
    echo "---- restart $(date -u +%FT%T.%3NZ) ----" >>"$(node_dir "$i")/tailscaled.log"
    start_node "$i"
    if wait_state "$i" '^Running$' 60; then
        restart_ready_ms[$i]=$(($(now_ms) - t0))
        log "node$i Running again after ${restart_ready_ms[$i]} ms"
    else
        restart_ok=0
        restart_ready_ms[$i]=-1
    fi
    sleep 3
done
# Let the restarted sessions stream, then take Headscale's view.
if [[ ${#restart_list[@]} -gt 0 ]]; then
    sleep 5
    ss_snapshot restarted
fi
hs_cli nodes list -o json >"$OUT/headscale-nodes.json" 2>"$RUN/nodes-list.err" ||
    log "nodes list failed: $(cat "$RUN/nodes-list.err")"
final_online=$(jq "$ONLINE_JQ" "$OUT/headscale-nodes.json" 2>/dev/null || echo 0)
for ((i = 1; i <= nodes; i++)); do
    ts_cli "$i" status --json >"$(node_dir "$i")/status.json" 2>/dev/null || true
done

# ---- stop: clients, then the captures, then Headscale
log "stopping tailscaled"
t_stop0=$(now_ms)
for ((i = 1; i <= nodes; i++)); do kill -TERM "${ts_pids[$i]}" 2>/dev/null || true; done
for ((i = 1; i <= nodes; i++)); do stop_pid "${ts_pids[$i]}" TERM 15 || true; done
stop_pid "$derper_pid" TERM 10 || true
sleep 0.5 # the last FIN/ACKs
tcpdump_counts() { # LOG -> "captured dropped"
    local c d
    c=$(sed -n 's/^\([0-9][0-9]*\) packets\{0,1\} captured.*/\1/p' "$1")
    d=$(sed -n 's/^\([0-9][0-9]*\) packets\{0,1\} dropped by kernel.*/\1/p' "$1")
    echo "${c:--1} ${d:--1}"
}
stop_pid "$tcpdump_pid" INT 10 || true
stop_pid "$other_pid" INT 10 || true
read -r pcap_packets pcap_dropped < <(tcpdump_counts "$RUN/tcpdump.log")
read -r other_packets other_dropped < <(tcpdump_counts "$RUN/tcpdump-other.log")
cp "$HS_NOISE_KEY" "$OUT/noise_private.key"
[[ $tls -eq 1 ]] && cp "$HS_CA" "$RUN/tls.crt"
"$ROOT/scripts/headscale.sh" stop --dir "$hs_dir" --keep 2>>"$RUN/headscale-start.log" || true
hs_dir=""
cp "$RUN/headscale/headscale.log" "$OUT/headscale.log"
if [[ $tls -eq 1 ]]; then
    # Every tailscaled TLS session is logged: control (/key, /ts2021) and DERP. Keep the lines of
    # the sessions in tailscale.pcap (matched on the ClientHello random) when tshark can say.
    : >"$RUN/all.keylog"
    for ((i = 1; i <= nodes; i++)); do
        f=$(node_dir "$i")/sslkeylog
        if [[ -f $f ]]; then cat "$f" >>"$RUN/all.keylog"; fi
    done
    if command -v tshark >/dev/null 2>&1 &&
        tshark -r "$OUT/tailscale.pcap" -d "tcp.port==$HS_PORT,tls" -Y 'tls.handshake.type == 1' \
            -T fields -e tls.handshake.random >"$RUN/client-randoms.txt" 2>/dev/null &&
        [[ -s $RUN/client-randoms.txt ]]; then
        awk 'NR == FNR { r[tolower($1)] = 1; next } (tolower($2) in r)' \
            "$RUN/client-randoms.txt" "$RUN/all.keylog" >"$OUT/tailscale.keylog"
    else
        cp "$RUN/all.keylog" "$OUT/tailscale.keylog"
    fi
fi
t_end=$(now_ms)
finished=1

# ---- facts for the manifest
{
    for ((i = 1; i <= nodes; i++)); do
        read -r rc s e <"$(node_dir "$i")/up.result" || { rc=99 s=0 e=0; }
        nk=$(jq -r '.Self.PublicKey // ""' "$(node_dir "$i")/status.json" 2>/dev/null || true)
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "${offsets[i - 1]}" "$rc" \
            "$((s - t_up0))" "$((e - s))" "${rss_last[$i]:-0}" "${rss_max[$i]:-0}" \
            "${rss_hwm[$i]:-0}" "${restart_ready_ms[$i]:-}" "$nk"
    done
} >"$RUN/nodes.tsv"
SYN_ONLY='tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn'
syn_count=$(tcpdump -r "$OUT/tailscale.pcap" -n "$SYN_ONLY" 2>/dev/null | wc -l)
other_syn=$(tcpdump -r "$RUN/other-lo.pcap" -n "$SYN_ONLY" 2>/dev/null | wc -l)
other_udp=$(tcpdump -r "$RUN/other-lo.pcap" -n 'udp' 2>/dev/null | wc -l)
http_key=-1 http_upgrade=-1 http_101=-1
if command -v tshark >/dev/null 2>&1; then
    tsk=(-r "$OUT/tailscale.pcap" -d "tcp.port==$HS_PORT,http")
    [[ $tls -eq 1 ]] && tsk=(-r "$OUT/tailscale.pcap" -d "tcp.port==$HS_PORT,tls"
        -o "tls.keylog_file:$OUT/tailscale.keylog" -o "http.tls.port:$HS_PORT")
    tshark "${tsk[@]}" -Y http -T fields -e http.request.uri -e http.response.code \
        >"$RUN/http.tsv" 2>/dev/null || true
    tshark "${tsk[@]}" -Y http.request -T fields -e tcp.stream -e frame.time_epoch \
        -e http.request.uri >"$RUN/http-requests.tsv" 2>/dev/null || true
    tshark "${tsk[@]}" -T fields -e tcp.stream -e frame.time_epoch -e tcp.srcport -e tcp.dstport \
        -e tcp.len -e tcp.flags.syn -e tcp.flags.ack -e tcp.flags.fin -e tcp.flags.reset \
        >"$RUN/segments.tsv" 2>/dev/null || true
    http_key=$(grep -c '^/key' "$RUN/http.tsv" || true)
    http_upgrade=$(grep -c '^/ts2021' "$RUN/http.tsv" || true)
    http_101=$(awk -F'\t' '$2 == 101' "$RUN/http.tsv" | wc -l)
fi

ts_build=$(tr '\n' ';' <"$TS_DIR/build.txt" 2>/dev/null || true)
hs_build=$(tr '\n' ';' <"$ROOT/.cache/bin/headscale-$hs_version/build.txt" 2>/dev/null || true)
tcpdump_version=$(tcpdump --version 2>&1 | head -1)
kernel=$(uname -sr)
cores=$(nproc)
export M_OUT=$OUT M_RUN=$RUN M_ARGS="${orig_args[*]}" M_NODES=$nodes M_HS_VERSION=$hs_version \
    M_DB=$db \
    M_TLS=$tls M_TS_VERSION=$ts_version M_STAGGER=$stagger M_HOLD=$hold M_SEED=$seed \
    M_HS_URL=$HS_URL M_HS_PORT=$HS_PORT M_HS_GRPC=${HS_GRPC:-} M_HS_METRICS=${HS_METRICS:-} \
    M_HS_LOG_FORMAT=${HS_LOG_FORMAT:-} M_FILTER="$pcap_filter" M_PCAP_PACKETS=$pcap_packets \
    M_PCAP_DROPPED=$pcap_dropped M_OTHER_PACKETS=$other_packets M_OTHER_DROPPED=$other_dropped \
    M_SYN=$syn_count M_OTHER_SYN=$other_syn M_OTHER_UDP=$other_udp M_HTTP_KEY=$http_key \
    M_HTTP_UPGRADE=$http_upgrade M_HTTP_101=$http_101 M_REGISTERED=$registered \
    M_UP_FAILED=$up_failed \
    M_FINAL_ONLINE=$final_online M_RESTART_OK=$restart_ok M_RESTARTS="${restart_list[*]}" \
    M_T_SCRIPT0=$t_script0 M_T_DAEMONS=$t_daemons_ready M_T_UP0=$t_up0 M_T_UP_DONE=$t_up_done \
    M_T_ONLINE=$t_all_online M_T_HOLD0=$t_hold0 M_T_HOLD1=$t_hold1 M_T_STOP0=$t_stop0 \
    M_T_END=$t_end \
    M_HS_START_MS=${HS_START_MS:-} M_DERP_PORT=$derp_port M_HS_RSS=$hs_rss M_HS_HWM=$hs_hwm \
    M_TS_BUILD="$ts_build" M_HS_BUILD="$hs_build" M_TCPDUMP="$tcpdump_version" M_KERNEL="$kernel" \
    M_CORES="$cores"
python3 - <<'EOF'
import hashlib, json, os, re, statistics, time
E = os.environ
out, run = E["M_OUT"], E["M_RUN"]
i = lambda k: int(E[k])
nodes = []
for line in open(os.path.join(run, "nodes.tsv")):
    f = line.rstrip("\n").split("\t")
    nodes.append({
        "hostname": "node" + f[0], "up_offset_ms": int(f[1]), "up_exit": int(f[2]),
        "up_started_ms": int(f[3]), "up_duration_ms": int(f[4]),
        "rss_kib_end_of_hold": int(f[5]), "rss_kib_max_during_hold": int(f[6]),
        "rss_kib_high_water_before_restart": int(f[7]),
        "restarted": f[8] != "", "restart_to_running_ms": int(f[8]) if f[8] else None,
        "node_key": f[9] or None})
rss = [n["rss_kib_end_of_hold"] for n in nodes if n["rss_kib_end_of_hold"] > 0]
hs_port = i("M_HS_PORT")

# Client port -> node, from the ss snapshots (pid of the tailscaled holding the connection).
port_node = {}
for tag in ("online", "restarted"):
    pids, ssf = os.path.join(run, "pids-%s.txt" % tag), os.path.join(run, "ss-%s.txt" % tag)
    if not (os.path.exists(pids) and os.path.exists(ssf)):
        continue
    pid_node = {}
    for line in open(pids):
        n_, pid = line.split()
        pid_node[pid] = int(n_)
    for line in open(ssf):
        mm = re.search(r"127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:%d\b.*pid=(\d+)" % hs_port, line)
        if mm and mm.group(2) in pid_node:
            port_node[int(mm.group(1))] = pid_node[mm.group(2)]

# TCP streams of the pcap (tshark field dumps; absent without tshark).
streams, first_req = {}, {}
seg = os.path.join(run, "segments.tsv")
if os.path.exists(seg):
    for line in open(os.path.join(run, "http-requests.tsv")):
        f = line.rstrip("\n").split("\t")
        if len(f) == 3 and f[0] not in first_req:
            first_req[f[0]] = (float(f[1]), f[2])
    for line in open(seg):
        f = line.rstrip("\n").split("\t")
        if len(f) < 9 or not f[0]:
            continue
        sid, t, sp, dp, ln = f[0], float(f[1]), int(f[2]), int(f[3]), int(f[4] or 0)
        st = streams.setdefault(sid, {"start": t, "end": t, "c2s": 0, "s2c": 0, "packets": 0,
                                      "client_port": sp if dp == hs_port else dp, "fin_by": None})
        st["end"] = t
        st["packets"] += 1
        c2s = dp == hs_port
        st["c2s" if c2s else "s2c"] += ln
        fin, rst = f[7] in ("1", "True"), f[8] in ("1", "True")
        if st["fin_by"] is None and (fin or rst):
            st["fin_by"] = ("client" if c2s else "server") + (" RST" if rst else " FIN")
pcap_t0 = min((s_["start"] for s_ in streams.values()), default=0.0)
sessions = []
for sid in sorted(streams, key=lambda k: streams[k]["start"]):
    st = streams[sid]
    uri = first_req.get(sid, (0, ""))[1]
    kind = "key" if uri.startswith("/key") else "ts2021" if uri.startswith("/ts2021") else "other"
    sessions.append({"tcp_stream": int(sid), "kind": kind, "first_request": uri,
                     "client_port": st["client_port"], "node": None,
                     "start_s": round(st["start"] - pcap_t0, 3),
                     "duration_s": round(st["end"] - st["start"], 3),
                     "payload_bytes_client_to_server": st["c2s"],
                     "payload_bytes_server_to_client": st["s2c"], "packets": st["packets"],
                     "first_close": st["fin_by"]})
for x in sessions:
    if x["kind"] == "ts2021" and x["client_port"] in port_node:
        x["node"] = "node%d" % port_node[x["client_port"]]
# A /key fetch belongs to the /ts2021 dial that follows it (the dial needs the key): match each
# ts2021 stream with the latest unmatched /key stream that started before it. Inferred from timing.
used = set()
for x in sessions:
    if x["kind"] != "ts2021":
        continue
    cands = [k for k in sessions if k["kind"] == "key" and k["tcp_stream"] not in used
             and k["start_s"] <= x["start_s"]]
    if cands:
        k = max(cands, key=lambda k: k["start_s"])
        used.add(k["tcp_stream"])
        k["node"] = x["node"]
        k["node_inferred_from_timing"] = True
by_node = {}
for x in sessions:
    if x["kind"] == "ts2021" and x["node"]:
        by_node.setdefault(x["node"], []).append(x["tcp_stream"])
try:
    hs_nodes = {n["name"]: n for n in json.load(open(os.path.join(out, "headscale-nodes.json")))}
except Exception:
    hs_nodes = {}
for n in nodes:
    n["ts2021_streams"] = by_node.get(n["hostname"], [])
    h = hs_nodes.get(n["hostname"], {})
    n["machine_key"] = h.get("machine_key")
    n["headscale_id"] = h.get("id")
    n["ipv4"] = next((a for a in h.get("ip_addresses", []) if "." in a), None)
tls = E["M_TLS"] == "1"
desc = {
    "tailscale.pcap": "tcpdump -i lo, filter '%s' (Headscale's HTTP listener: /key, /ts2021)"
                      % E["M_FILTER"],
    "tailscale.keylog": "NSS key log (SSLKEYLOGFILE) of every tailscaled: decrypts the TLS layer",
    "noise_private.key": "Headscale's Noise private key (privkey:hex), throwaway: decrypts TS2021",
    "headscale.log": "Headscale's log (%s)" % E["M_HS_LOG_FORMAT"],
    "headscale-nodes.json": "`headscale nodes list -o json` after the restarts, before the "
                            "clients stopped",
    "manifest.json": "this file",
}
files = {}
for name, d in desc.items():
    p = os.path.join(out, name)
    if name == "manifest.json" or not os.path.exists(p):
        continue
    files[name] = {"what": d, "bytes": os.path.getsize(p),
                   "sha256": hashlib.sha256(open(p, "rb").read()).hexdigest()}
files["manifest.json"] = {"what": desc["manifest.json"]}
t0 = i("M_T_UP0")
m = {
    "what": "real tailscaled clients registering with a real Headscale on loopback",
    "made_by": "scripts/capture-tailscale-sample.sh " + E["M_ARGS"],
    "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(i("M_T_SCRIPT0") / 1000)),
    "complete": E["M_REGISTERED"] == "1" and E["M_UP_FAILED"] == "0" and E["M_RESTART_OK"] == "1"
                and E["M_PCAP_DROPPED"] == "0",
    "versions": {"headscale": E["M_HS_VERSION"], "tailscale": E["M_TS_VERSION"],
                 "headscale_build": E["M_HS_BUILD"], "tailscale_build": E["M_TS_BUILD"],
                 "tcpdump": E["M_TCPDUMP"], "kernel": E["M_KERNEL"], "cores": i("M_CORES")},
    "options": {"nodes": i("M_NODES"), "db": E["M_DB"], "tls": tls, "stagger_s": i("M_STAGGER"),
                "hold_s": i("M_HOLD"), "seed": i("M_SEED"),
                "restarted_nodes": ["node" + x for x in E["M_RESTARTS"].split()]},
    "network": {"namespace": "private (unshare --net): lo + veth h2r0 198.51.100.1/32, "
                             "no routes out",
                "server_url": E["M_HS_URL"], "http_port": i("M_HS_PORT"),
                "grpc": E["M_HS_GRPC"] + " (not used, not captured)", "metrics": E["M_HS_METRICS"],
                "client_env": ["TS_DISABLE_PORTMAPPER=1", "TS_DISABLE_UPNP=true",
                               "TS_ASSUME_NETWORK_UP_FOR_TEST=1", "TS_PANIC_IF_HIT_MAIN_CONTROL=1",
                               "TS_NO_LOGS_NO_SUPPORT=true", "TS_LOGS_DIR=<node>/logs",
                               "SSL_CERT_FILE=run/ca-bundle.pem (derper cert%s)"
                               % (" + headscale tls.crt" if tls else "")]
                              + (["SSLKEYLOGFILE=<node>/sslkeylog"] if tls else []),
                "derp": "derper %s on https://127.0.0.1:%s (region 900 of the launcher's dummy "
                        "map), STUN off" % (E["M_TS_VERSION"], E["M_DERP_PORT"]),
                "client_flags": "--tun=userspace-networking --statedir --socket --port=0 "
                                "--no-logs-no-support"},
    "timings_ms": {
        "headscale_start": int(E["M_HS_START_MS"] or -1),
        "script_start_to_daemons_ready": i("M_T_DAEMONS") - i("M_T_SCRIPT0"),
        "first_up_to_last_up_returned": i("M_T_UP_DONE") - t0,
        "first_up_to_all_online": i("M_T_ONLINE") - t0,
        "hold": i("M_T_HOLD1") - i("M_T_HOLD0"),
        "first_up_to_clients_stopped": i("M_T_STOP0") - t0,
        "total": i("M_T_END") - i("M_T_SCRIPT0")},
    "result": {"all_online": E["M_REGISTERED"] == "1", "up_failed": i("M_UP_FAILED"),
               "online_before_stop": i("M_FINAL_ONLINE"), "restarts_ok": E["M_RESTART_OK"] == "1"},
    "capture": {"packets": i("M_PCAP_PACKETS"), "dropped_by_kernel": i("M_PCAP_DROPPED"),
                "tcp_connections": i("M_SYN"),
                "http_key_requests": i("M_HTTP_KEY"), "http_ts2021_upgrades": i("M_HTTP_UPGRADE"),
                "http_101_responses": i("M_HTTP_101"),
                "other_loopback": {"file": "run/other-lo.pcap", "packets": i("M_OTHER_PACKETS"),
                                   "tcp_syns": i("M_OTHER_SYN"), "udp_packets": i("M_OTHER_UDP")}},
    "memory_kib": {"tailscaled_rss_end_of_hold": {"min": min(rss) if rss else None,
                                                  "median": statistics.median(rss) if rss else None,
                                                  "max": max(rss) if rss else None},
                   "headscale_rss_end_of_hold": i("M_HS_RSS"),
                   "headscale_high_water": i("M_HS_HWM")},
    "nodes": nodes,
    "sessions": sessions,
    "sessions_note": "TCP streams of tailscale.pcap (tshark); payload = TCP payload bytes (TLS "
                     "records with --tls); node of a ts2021 stream from `ss -tnp` snapshots "
                     "(exact), of a key "
                     "stream inferred from timing; start_s from the first packet",
    "files": files,
}
json.dump(m, open(os.path.join(out, "manifest.json"), "w"), indent=2)
open(os.path.join(out, "manifest.json"), "a").write("\n")
EOF

ok=$(jq -r .complete "$OUT/manifest.json")
mode=plain
[[ $tls -eq 1 ]] && mode=TLS
restart_result=FAILED
[[ $restart_ok -eq 1 ]] && restart_result=ok
echo "capture-tailscale-sample: $OUT"
echo "  headscale $hs_version ($db, $mode) at $HS_URL; tailscale $ts_version x $nodes"
echo "  registration: all online $((t_all_online - t_up0)) ms after the first 'up'" \
    "(last 'up' returned at $((t_up_done - t_up0)) ms); up failures: $up_failed"
echo "  restarts: ${restart_list[*]/#/node} ($restart_result); online before stop:" \
    "$final_online/$nodes"
echo "  tailscale.pcap: $pcap_packets packets ($pcap_dropped dropped), $syn_count TCP" \
    "connections, $(stat -c %s "$OUT/tailscale.pcap") bytes"
echo "  HTTP (tshark): $http_key /key, $http_upgrade /ts2021, $http_101 x 101"
echo "  other loopback traffic: $other_packets packets ($other_syn TCP SYNs, $other_udp UDP)"
echo "  tailscaled RSS at end of hold (KiB):" \
    "$(jq -c '.memory_kib.tailscaled_rss_end_of_hold' "$OUT/manifest.json"); headscale: $hs_rss"
echo "  complete: $ok"
[[ $ok == true ]]
