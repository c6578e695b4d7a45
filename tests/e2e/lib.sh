# shellcheck shell=bash
# lib.sh - shared helpers for the end-to-end scripts (sourced, not run).
#
# Starting and stopping real peers (nghttpd, nghttpx, tcpdump) on loopback
# with every wait bounded in count and time. Each background process started
# through h2r_bg is remembered by pid and ended by pid in h2r_cleanup, which
# the caller installs as its EXIT trap (plus its own temp-dir removal).
#
# Callers run with `set -euo pipefail`.

H2R_PIDS=()

h2r_log() {
    echo "[$(date +%H:%M:%S)] $*" >&2
}

h2r_die() {
    echo "error: $*" >&2
    exit 1
}

# h2r_have_tools TOOL... : 0 when every tool is on PATH (or /usr/sbin).
h2r_have_tools() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || [[ -x /usr/sbin/$t ]] || return 1
    done
}

# H2R_PY: the interpreter for our stdlib-only helpers (Debian's, when there).
if [[ -x /usr/bin/python3 ]]; then
    H2R_PY=/usr/bin/python3
else
    H2R_PY=python3
fi
h2r_python() {
    "$H2R_PY" "$@"
}

# h2r_free_port: prints a TCP port that was free on 127.0.0.1 a moment ago.
# Ports come from the kernel's ephemeral allocator; a retry loop in the caller
# (or the server failing to bind and our bounded wait noticing) covers races.
h2r_free_port() {
    h2r_python - <<'EOF'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

# h2r_wait_port PORT [TIMEOUT_S]: waits until 127.0.0.1:PORT accepts.
h2r_wait_port() {
    local port=$1 limit=${2:-10} i
    for ((i = 0; i < limit * 10; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# h2r_bg LOGFILE CMD...: starts CMD in the background, logs to LOGFILE,
# remembers its pid (in H2R_LAST_PID and H2R_PIDS).
h2r_bg() {
    local log=$1
    shift
    "$@" >"$log" 2>&1 &
    H2R_LAST_PID=$!
    H2R_PIDS+=("$H2R_LAST_PID")
}

# h2r_stop_pid PID [SIGNAL] [TIMEOUT_S]: signals one process we started and
# waits (bounded) for it to exit; escalates to SIGKILL.
h2r_stop_pid() {
    local pid=$1 sig=${2:-TERM} limit=${3:-10} i
    kill -0 "$pid" 2>/dev/null || {
        wait "$pid" 2>/dev/null || true
        return 0
    }
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < limit * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        h2r_log "pid $pid ignored SIG$sig for ${limit}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# h2r_cleanup: ends every process started with h2r_bg (safe to call twice).
h2r_cleanup() {
    local pid
    for pid in "${H2R_PIDS[@]}"; do
        h2r_stop_pid "$pid" TERM 5
    done
    H2R_PIDS=()
}

# h2r_make_docroot DIR: the files every scenario serves. Deterministic content
# (no /dev/urandom) so repeated captures differ only in timing and ports.
h2r_make_docroot() {
    local dir=$1
    mkdir -p "$dir"
    h2r_python - "$dir" <<'EOF'
import hashlib, os, sys
d = sys.argv[1]
def blob(n, seed):
    out = bytearray()
    h = hashlib.sha256(seed.encode()).digest()
    while len(out) < n:
        h = hashlib.sha256(h).digest()
        out += h
    return bytes(out[:n])
files = {
    "small.txt": b"hello h2c\n",
    "1k.bin": blob(1024, "1k"),
    "16k.bin": blob(16 * 1024, "16k"),
    "64k.bin": blob(64 * 1024, "64k"),
    "250k.bin": blob(250 * 1024, "250k"),
    "1m.bin": blob(1024 * 1024, "1m"),
    "data.json": b'{"items":[{"id":1,"name":"alpha"},{"id":2,"name":"beta"}],"count":2}\n',
    "post.json": b'{"user":"alice","password":"hunter2","note":"h2replay e2e"}\n',
}
for name, data in files.items():
    p = os.path.join(d, name)
    if not os.path.exists(p) or os.path.getsize(p) != len(data):
        with open(p, "wb") as f:
            f.write(data)
EOF
}

# h2r_start_nghttpd DOCROOT PORT LOG [EXTRA ARGS...]: cleartext nghttpd on
# 127.0.0.1:PORT; returns once it accepts connections.
h2r_start_nghttpd() {
    local doc=$1 port=$2 log=$3
    shift 3
    h2r_bg "$log" nghttpd --no-tls -a 127.0.0.1 -d "$doc" "$@" "$port"
    h2r_wait_port "$port" 10 || {
        cat "$log" >&2 || true
        h2r_die "nghttpd did not listen on 127.0.0.1:$port within 10s"
    }
}

# h2r_start_nghttpx FRONT_PORT BACK_PORT LOGDIR: cleartext nghttpx frontend
# (it accepts h2c prior knowledge and the HTTP/1.1 `Upgrade: h2c` dance,
# which nghttpd does not) proxying to an h2c backend.
h2r_start_nghttpx() {
    local front=$1 back=$2 logdir=$3
    h2r_bg "$logdir/nghttpx.out" nghttpx --conf=/dev/null \
        "--frontend=127.0.0.1,$front;no-tls" "--backend=127.0.0.1,$back;;proto=h2" \
        --workers=1 --single-process --accesslog-file=/dev/null \
        "--errorlog-file=$logdir/nghttpx.err"
    h2r_wait_port "$front" 10 || {
        cat "$logdir/nghttpx.out" "$logdir/nghttpx.err" >&2 || true
        h2r_die "nghttpx did not listen on 127.0.0.1:$front within 10s"
    }
}

# h2r_tcpdump_start OUT.pcap FILTER LOG: starts a loopback capture and returns
# once tcpdump says it is listening. Sets H2R_TCPDUMP_PID.
h2r_tcpdump_start() {
    local out=$1 filter=$2 log=$3 i
    # -U: write each packet as it arrives; --immediate-mode: no kernel
    # buffering, so SIGINT never leaves packets behind in the ring buffer;
    # -Z root: keep the file owned by us; -B: a large kernel buffer, or bursts
    # (h2load's 8 connections) overflow the default 2 MiB and drop packets.
    h2r_bg "$log" tcpdump -i lo -w "$out" -U --immediate-mode -s 0 -Z root -n \
        -B "${H2R_TCPDUMP_BUFFER_KB:-65536}" "$filter"
    H2R_TCPDUMP_PID=$H2R_LAST_PID
    for ((i = 0; i < 100; i++)); do
        grep -q "listening on" "$log" 2>/dev/null && return 0
        kill -0 "$H2R_TCPDUMP_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$log" >&2 || true
    h2r_die "tcpdump did not start listening within 10s"
}

# h2r_tcpdump_stop LOG: lets the last packets (FIN/ACK) land, then SIGINT so
# tcpdump flushes and closes the file; bounded wait. Fails when the kernel
# dropped packets (the capture would be missing segments) or nothing was seen.
# Prints the number of packets captured.
h2r_tcpdump_stop() {
    local log=$1 n d
    sleep 0.3
    h2r_stop_pid "$H2R_TCPDUMP_PID" INT 10
    n=$(sed -n 's/^\([0-9][0-9]*\) packets\{0,1\} captured.*/\1/p' "$log")
    d=$(sed -n 's/^\([0-9][0-9]*\) packets\{0,1\} dropped by kernel.*/\1/p' "$log")
    [[ -n $n && -n $d ]] || {
        cat "$log" >&2
        h2r_die "tcpdump did not report its counts (killed?)"
    }
    [[ $d -eq 0 ]] || h2r_die "tcpdump: $d packets dropped by kernel (raise H2R_TCPDUMP_BUFFER_KB)"
    [[ $n -gt 0 ]] || h2r_die "tcpdump captured no packets"
    echo "$n"
}

# h2r_run TIMEOUT_S CMD...: runs a client with a hard time limit; a failure
# is fatal and names the command.
h2r_run() {
    local limit=$1 rc=0
    shift
    timeout -k 5 "$limit" "$@" >>"${H2R_CLIENT_LOG:-/dev/null}" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
        [[ -n ${H2R_CLIENT_LOG:-} ]] && tail -n 20 "$H2R_CLIENT_LOG" >&2
        h2r_die "client failed (exit $rc): $*"
    fi
}
