#!/usr/bin/env bash
# record-headscale-trace.sh - capture a real gRPC client's registration traffic against a
# real Headscale, with h2replay's own live capture.
#
#   scripts/record-headscale-trace.sh [--version V] [--users N] [--seed S] OUTDIR
#
# Starts Headscale V (default v0.29.2) on SQLite with scripts/headscale.sh, runs
# `h2replay capture -i lo -f 'tcp port GRPC'` on its gRPC port (cleartext HTTP/2, h2c), and
# drives the seed's registration steps with grpcurl (scripts/install-grpcurl.sh) over h2c
# with the Bearer API key:
#   for each of N users (default 10): CreateUser, then CreatePreAuthKey (reusable) for it;
#   then ListUsers, ListPreAuthKeys, ListNodes
# with pseudo-random gaps of an operator's script that waits for each reply (fixed seed, so a
# re-recording has the same shape): 1.2-1.8 s from a CreateUser to the key for that user, 0.6-1 s
# to the next user, 0.5-0.9 s between the lists; about 27 s in all. Each grpcurl call is its own
# connection, so a replay keeps no order between calls: at 10x a key request still comes
# 120-180 ms after its user's CreateUser (~65 ms on an idle 2-core machine); at 100x it may
# overtake it (docs/headscale.md, "First figures"). Then stops
# the capture and the server and checks the trace: the exchange count, grpc-status 0
# everywhere, and that the API key is not in it (redacted to $H2R{authorization_1}).
#
# Writes OUTDIR/headscale-grpc.h2rt (v0.29.2) or OUTDIR/headscale-grpc-V.h2rt (others), and
# OUTDIR/record-V.log (the grpcurl calls and replies). Needs root (live capture on lo), a
# built h2replay (H2R, default build/cli/h2replay), Go (the headscale module's .proto files
# come from `go mod download`).
#
# Release differences handled here (docs/headscale.md): CreatePreAuthKey.user is the user id
# (uint64) from 0.26 on and the user name before; ListPreAuthKeys needs a user name before
# 0.26 (then the first user's keys are listed) and takes no argument on 0.29.
#
# Exit status: 0 trace written and checked, 1 failure, 2 usage.
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
prog=record-headscale-trace.sh
H2R=${H2R:-$ROOT/build/cli/h2replay}
version=v0.29.2
users=10
seed=2021
out=""

die() { echo "$prog: $*" >&2; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
while [[ $# -gt 0 ]]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    --version) version=${2:?}; shift 2 ;;
    --users) users=${2:?}; shift 2 ;;
    --seed) seed=${2:?}; shift 2 ;;
    -*) echo "$prog: unknown flag $1 (see --help)" >&2; exit 2 ;;
    *) [[ -z $out ]] || { echo "$prog: one OUTDIR only" >&2; exit 2; }; out=$1; shift ;;
    esac
done
[[ -n $out ]] || { echo "$prog: OUTDIR is required (see --help)" >&2; exit 2; }
[[ $users =~ ^[0-9]+$ && $users -ge 1 && $users -le 99 ]] || { echo "$prog: --users 1..99" >&2; exit 2; }
[[ $version =~ ^v0\.([0-9]+)\.[0-9]+$ ]] || { echo "$prog: --version v0.MINOR.PATCH" >&2; exit 2; }
minor=${BASH_REMATCH[1]}
[[ $(id -u) -eq 0 ]] || die "live capture on lo needs root"
[[ -x $H2R ]] || die "no h2replay at $H2R (build it, or set H2R=)"
command -v zstd >/dev/null || die "zstd is required (secret check)"

mkdir -p "$out"
out=$(cd "$out" && pwd)
if [[ $version == v0.29.2 ]]; then trace=$out/headscale-grpc.h2rt; else trace=$out/headscale-grpc-$version.h2rt; fi
log=$out/record-$version.log
: >"$log"

# ---- grpcurl and the release's own .proto files
grpcurl=$("$ROOT/scripts/install-grpcurl.sh" | sed -n 's/^GRPCURL=//p')
[[ -x $grpcurl ]] || die "grpcurl not available"
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
moddir=$(cd /tmp && GOFLAGS=-mod=mod "$GO" mod download -json "github.com/juanfont/headscale@$version" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') || die "go mod download headscale@$version failed"
[[ -f $moddir/proto/headscale/v1/headscale.proto ]] || die "no proto/headscale/v1 in $moddir"

work=$(mktemp -d /tmp/h2r-record.XXXXXX)
cap_pid=""
hs_dir=""
cleanup() {
    [[ -n $cap_pid ]] && kill -INT "$cap_pid" 2>/dev/null && wait "$cap_pid" 2>/dev/null
    [[ -n $hs_dir ]] && "$ROOT/scripts/headscale.sh" stop --dir "$hs_dir" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT

# headscale.proto imports google/api/annotations.proto for the REST mapping (buf pulls it from
# googleapis; the Go module does not ship it). grpcurl only needs the message types, so a
# minimal copy of the two googleapis files (same names, numbers and extension) stands in.
mkdir -p "$work/stub/google/api"
cat >"$work/stub/google/api/http.proto" <<'EOF'
syntax = "proto3";
package google.api;
message HttpRule {
  string selector = 1;
  oneof pattern {
    string get = 2;
    string put = 3;
    string post = 4;
    string delete = 5;
    string patch = 6;
    CustomHttpPattern custom = 8;
  }
  string body = 7;
  string response_body = 12;
  repeated HttpRule additional_bindings = 11;
}
message CustomHttpPattern {
  string kind = 1;
  string path = 2;
}
EOF
cat >"$work/stub/google/api/annotations.proto" <<'EOF'
syntax = "proto3";
package google.api;
import "google/api/http.proto";
import "google/protobuf/descriptor.proto";
extend google.protobuf.MethodOptions {
  HttpRule http = 72295728;
}
EOF

# ---- server and capture
hs_env=$("$ROOT/scripts/headscale.sh" start --version "$version" --db sqlite) || die "launcher failed"
eval "$hs_env"
hs_dir=$HS_DIR
grpc_port=${HS_GRPC##*:}
echo "$prog: headscale $version at $HS_GRPC (h2c gRPC), capturing tcp port $grpc_port" >&2

# Response bodies are not kept (--max-resp-body 0 keeps their sizes only): they hold the new
# pre-auth keys, which a committed trace has no use for.
"$H2R" capture -i lo -f "tcp port $grpc_port" -o "$trace" --duration 300s --max-resp-body 0 -q \
    2>"$work/capture.err" &
cap_pid=$!
# Ready = the capture holds a packet socket (pcap activated); bounded 10 s.
for ((i = 0; i < 100; i++)); do
    kill -0 "$cap_pid" 2>/dev/null || { cat "$work/capture.err" >&2; die "capture exited early"; }
    inodes=$(awk 'NR > 1 { print $NF }' /proc/net/packet)
    fds=$(ls -l "/proc/$cap_pid/fd" 2>/dev/null || true)
    hit=0
    for ino in $inodes; do [[ $fds == *"socket:[$ino]"* ]] && hit=1; done
    [[ $hit -eq 1 ]] && break
    sleep 0.1
done
sleep 0.5 # the BPF filter goes in right after activation

: # calls are counted from the log (rpc runs in command substitutions)
rpc() { # METHOD JSON -> reply on stdout
    local reply

    echo "> $1 $2" >>"$log"
    reply=$(timeout 30 "$grpcurl" -plaintext -max-time 20 \
        -H "authorization: Bearer $HS_API_KEY" \
        -import-path "$work/stub" -import-path "$moddir/proto" -proto headscale/v1/headscale.proto \
        -d "$2" "$HS_GRPC" "headscale.v1.HeadscaleService/$1" 2>&1) || {
        echo "$reply" >>"$log"
        die "grpcurl $1 failed: $reply"
    }
    echo "$reply" >>"$log"
    printf '%s\n' "$reply"
}
RANDOM=$seed
gap() { # LOW_MS SPAN_MS: sleep LOW + random(SPAN) ms
    local ms=$(($1 + RANDOM % $2))
    sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
}
for ((i = 1; i <= users; i++)); do
    name=$(printf 'user-%02d' "$i")
    if ((minor >= 24)); then
        body="{\"name\":\"$name\",\"display_name\":\"User $i\",\"email\":\"$name@example.test\"}"
    else
        body="{\"name\":\"$name\"}"
    fi
    reply=$(rpc CreateUser "$body")
    uid=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["user"]["id"])' <<<"$reply")
    gap 1200 600
    if ((minor >= 26)); then u=$uid; else u="\"$name\""; fi
    rpc CreatePreAuthKey "{\"user\":$u,\"reusable\":true,\"expiration\":\"2035-01-01T00:00:00Z\"}" >/dev/null
    gap 600 400
done
gap 500 400
rpc ListUsers '{}' >/dev/null
gap 500 400
if ((minor >= 26)); then
    rpc ListPreAuthKeys '{}' >/dev/null
else
    rpc ListPreAuthKeys '{"user":"user-01"}' >/dev/null
fi
gap 500 400
rpc ListNodes '{}' >/dev/null
sleep 1

kill -INT "$cap_pid"
for ((i = 0; i < 150; i++)); do kill -0 "$cap_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$cap_pid" 2>/dev/null && die "capture did not stop within 15 s"
crc=0
wait "$cap_pid" || crc=$?
cap_pid=""
[[ $crc -eq 0 ]] || { cat "$work/capture.err" >&2; die "capture exited $crc"; }
"$ROOT/scripts/headscale.sh" stop --dir "$hs_dir" >/dev/null 2>&1 || true
hs_dir=""

# ---- checks
calls=$(grep -c "^> " "$log")
read -r n bad < <("$H2R" show "$trace" --format jsonl | python3 -c '
import json, sys
xs = [json.loads(l) for l in sys.stdin if l.strip()]
print(len(xs), sum(1 for x in xs if x.get("grpc_status") != 0 or x.get("error")))')
[[ $n -eq $calls ]] || die "trace has $n exchanges, grpcurl made $calls calls"
[[ $bad -eq 0 ]] || die "$bad exchanges in the trace without grpc-status 0"
# The secret part alone must not be there either: 0.28+ keys are hskey-api-<12-char prefix>-SECRET,
# older ones PREFIX.SECRET.
if [[ $HS_API_KEY == hskey-api-* ]]; then secret=${HS_API_KEY:23}; else secret=${HS_API_KEY#*.}; fi
[[ ${#secret} -ge 16 ]] || die "cannot tell the secret part of the API key"
hits=$(zstd -dc "$trace" | grep -a -c -F -e "$HS_API_KEY" -e "$secret" || true)
[[ $hits -eq 0 ]] || die "the API key is in the trace ($hits lines); not writing it"
zstd -dc "$trace" | grep -a -q -F 'H2R{authorization_1}' || die "no \$H2R{authorization_1} placeholder in the trace"
keys=$(zstd -dc "$trace" | grep -a -c -e 'hskey-auth-' -e '[0-9a-f]\{48\}' || true)
[[ $keys -eq 0 ]] || die "pre-auth keys in the trace ($keys lines); not writing it"
echo "$prog: $trace: $n exchanges from $calls grpcurl calls; API key redacted (0 hits), no pre-auth key" >&2
echo "$trace"
