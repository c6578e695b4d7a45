#!/usr/bin/env bash
# replay_faults.sh WORKDIR - failure classification and interruption.
#
# Servers that misbehave (tests/tools/h2stub.c: RST_STREAM every Nth stream,
# never answering, GOAWAY, dying mid-replay, 503s), a closed port, a listener
# whose accept queue is full, an nghttpd killed mid-replay, SIGINT, --between,
# and the exit statuses for usage and local errors. Every run file must be
# valid and every result carry the expected class. Exit 0 pass, 1 fail, 77 skip.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=replay_lib.sh
source "$HERE/replay_lib.sh"
rp_init replay_faults "${1:?usage: replay_faults.sh WORKDIR}"
rp_need nghttpd
W=$RP_WORK

# 2 connections x 12 exchanges, 4 concurrent per group, groups overlap (service > interval)
"$RP_MKTRACE" -o "$W/t.trace" --conns 2 --per-conn 12 --concurrent 4 --interval 50ms \
    --service 60ms 2>>"$W/replay.log"

stub_case() { # NAME "STUB ARGS" CHECKS... (replay args in RP_EXTRA)
    local name=$1 stub_args=$2
    shift 2
    local port rc
    port=$(h2r_free_port)
    # shellcheck disable=SC2086
    rp_start_stub "$port" $stub_args
    # shellcheck disable=SC2086
    rc=$(rp_replay "$W/t.trace" --target "http://127.0.0.1:$port" ${RP_EXTRA:-} -o "$W/$name.run")
    rp_expect_exit 0 "$rc" "$name"
    rp_check "$name" "$W/$name.run" --results 24 "$@"
    h2r_stop_pid "$RP_STUB_PID" TERM 5
}

stub_case rst "--rst-every 3" --class stream_reset=8 --class ok=16 \
    --detail stream_reset=REFUSED_STREAM
stub_case rst_internal "--rst-every 2 --rst-code 2" --class stream_reset=12 \
    --detail stream_reset=INTERNAL_ERROR
RP_EXTRA="--timeout 300ms" stub_case deadline "--never-answer" --class deadline_exceeded=24
stub_case goaway "--goaway-after 3" --class goaway+ --class ok+ --only ok,goaway \
    --detail goaway=NO_ERROR
stub_case died "--close-after 5" --class conn_closed+ --class refused+ \
    --only ok,conn_closed,refused --detail conn_closed=ECONNRESET --detail refused=ECONNREFUSED
stub_case status503 "--status 503" --class http_status=24

# nothing listening
port=$(h2r_free_port)
rc=$(rp_replay "$W/t.trace" --target "http://127.0.0.1:$port" -o "$W/refused.run")
rp_expect_exit 0 "$rc" "refused is data"
rp_check "closed port" "$W/refused.run" --results 24 --class refused=24 \
    --detail refused=ECONNREFUSED

# a listener whose accept queue is full: SYNs are dropped, connects time out
port=$(h2r_free_port)
h2r_bg "$W/fullq.log" "$H2R_PY" -c "
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $port)); s.listen(0)
fill = []
for _ in range(4):
    c = socket.socket(); c.setblocking(False)
    try: c.connect(('127.0.0.1', $port))
    except BlockingIOError: pass
    fill.append(c)
print('ready', flush=True)
time.sleep(60)
"
for _ in $(seq 50); do grep -q ready "$W/fullq.log" 2>/dev/null && break; sleep 0.1; done
rc=$(rp_replay "$W/t.trace" --target "http://127.0.0.1:$port" --connect-timeout 300ms \
    --timeout 1s -o "$W/ctimeout.run")
rp_expect_exit 0 "$rc" "connect timeout is data"
rp_check "accept queue full" "$W/ctimeout.run" --results 24 --class connect_timeout=24
h2r_stop_pid "$H2R_LAST_PID" TERM 5

# a real server killed mid-replay: everything after it is refused
h2r_make_docroot "$W/doc"
"$RP_MKTRACE" -o "$W/long.trace" --conns 4 --per-conn 40 --concurrent 2 --interval 50ms \
    --service 5ms 2>>"$W/replay.log"
port=$(h2r_free_port)
h2r_start_nghttpd "$W/doc" "$port" "$W/nghttpd-kill.log"
npid=$H2R_LAST_PID
timeout -k 5 50 "$H2REPLAY" replay -q "$W/long.trace" --target "http://127.0.0.1:$port" \
    -o "$W/killed.run" >>"$W/replay.log" 2>&1 &
rpid=$!
sleep 0.6
kill -KILL "$npid"
rc=0
wait "$rpid" || rc=$?
rp_expect_exit 0 "$rc" "server killed"
rp_check "server killed mid-replay" "$W/killed.run" --results 160 --class ok+ --class refused+ \
    --only ok,refused,conn_closed

# SIGINT: in flight -> cancelled, unsent -> skipped, section ended, later targets not run
port=$(h2r_free_port)
rp_start_stub "$port" --delay 3000
"$RP_MKTRACE" -o "$W/slow.trace" --conns 3 --per-conn 40 --interval 100ms --service 150ms \
    2>>"$W/replay.log"
timeout -k 5 50 "$H2REPLAY" replay -q "$W/slow.trace" --target "a=http://127.0.0.1:$port" \
    --target "b=http://127.0.0.1:$port" -o "$W/sigint.run" >>"$W/replay.log" 2>&1 &
rpid=$!
sleep 1.2
kill -INT "$rpid"
rc=0
wait "$rpid" || rc=$?
rp_expect_exit 0 "$rc" "SIGINT"
rp_check "SIGINT" "$W/sigint.run" --sections 1 --results 120 --class cancelled+ --class skipped+ \
    --only cancelled,skipped,ok --interrupted 1
h2r_stop_pid "$RP_STUB_PID" TERM 5

# --between runs between targets; a failing one stops the replay with exit 1
port=$(h2r_free_port)
h2r_start_nghttpd "$W/doc" "$port" "$W/nghttpd-between.log"
AB=(--target "a=http://127.0.0.1:$port" --target "b=http://127.0.0.1:$port")
rc=$(rp_replay "$W/t.trace" "${AB[@]}" \
    --speed max --between "echo \"\$H2R_PREV_TARGET>\$H2R_NEXT_TARGET\" > '$W/between.out'" \
    -o "$W/between.run")
rp_expect_exit 0 "$rc" "--between"
rp_check "--between ran" "$W/between.run" --sections 2 --results 24 --all-ok
[[ $(cat "$W/between.out" 2>/dev/null) == "a>b" ]] || {
    echo "FAIL: --between did not see H2R_PREV_TARGET/H2R_NEXT_TARGET" >&2
    RP_FAILS=$((RP_FAILS + 1))
}
rc=$(rp_replay "$W/t.trace" "${AB[@]}" --speed max --between "exit 3" -o "$W/between-fail.run")
rp_expect_exit 1 "$rc" "failing --between"
rp_check "failing --between: first section intact" "$W/between-fail.run" --sections 1 --all-ok

# exit statuses: usage 2, local failure 1
rc=$(rp_replay "$W/t.trace" --target "ftp://x" -o "$W/x.run")
rp_expect_exit 2 "$rc" "bad URL"
rc=$(rp_replay "$W/t.trace" --target "http://127.0.0.1:$port")
rp_expect_exit 2 "$rc" "missing -o"
rc=$(rp_replay "$W/t.trace" --target "http://127.0.0.1:$port" --speed 0 -o "$W/x.run")
rp_expect_exit 2 "$rc" "bad speed"
rc=$(rp_replay "$W/t.trace" --target "http://127.0.0.1:$port" -o "$W/no/such/dir/x.run")
rp_expect_exit 1 "$rc" "unwritable run file"
rc=$(rp_replay "$W/nonexistent.trace" --target "http://127.0.0.1:$port" -o "$W/x.run")
rp_expect_exit 1 "$rc" "unreadable trace"
"$RP_MKTRACE" -o "$W/ph.trace" --conns 1 --per-conn 2 --placeholder 2>>"$W/replay.log"
rc=$(rp_replay "$W/ph.trace" --target "http://127.0.0.1:$port" -o "$W/ph.run")
if [[ $rc -eq 0 ]] || ! grep -q 'H2R{' "$W/replay.log"; then
    echo "FAIL: a placeholder without a value must be refused, naming it (exit $rc)" >&2
    RP_FAILS=$((RP_FAILS + 1))
fi
rp_finish
