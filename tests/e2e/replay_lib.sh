# replay_lib.sh - shared helpers for the replay end-to-end scripts (sourced, not run).
#
# Builds on lib.sh (peers started by pid, bounded waits). Tools come from the
# environment (tests/e2e/replay.cmake sets them): H2REPLAY, H2STUB, RP_MKTRACE.
# Every replay runs under `timeout`, every peer has its own --exit-after or
# is stopped by pid in the EXIT trap.

RP_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$RP_HERE/lib.sh"

# rp_init NAME WORKDIR: checks the tools, makes WORKDIR, installs the cleanup trap.
rp_init() {
    RP_NAME=$1
    RP_WORK=$2
    local v
    for v in H2REPLAY H2STUB RP_MKTRACE; do
        [[ -n ${!v:-} && -x ${!v} ]] || {
            echo "$RP_NAME: SKIP: \$$v not set (run through ctest)" >&2
            exit 77
        }
    done
    rm -rf "$RP_WORK"
    mkdir -p "$RP_WORK"
    trap 'h2r_cleanup' EXIT
    RP_FAILS=0
}

# rp_need TOOL...: exit 77 (skip) when a tool is missing.
rp_need() {
    h2r_have_tools "$@" || {
        echo "$RP_NAME: SKIP: needs $*" >&2
        exit 77
    }
}

# rp_replay ARGS...: h2replay replay with a hard 50 s limit; prints and returns its exit status.
rp_replay() {
    local rc=0
    timeout -k 5 50 "$H2REPLAY" replay -q "$@" >>"$RP_WORK/replay.log" 2>&1 || rc=$?
    echo "$rc"
}

# rp_expect_exit WANT GOT WHAT
rp_expect_exit() {
    if [[ $2 -ne $1 ]]; then
        echo "FAIL: $3: exit status $2, expected $1" >&2
        tail -n 5 "$RP_WORK/replay.log" >&2 || true
        RP_FAILS=$((RP_FAILS + 1))
    fi
}

# rp_check WHAT RUN CHECKS...: replay_check.py on RUN; counts a failure.
rp_check() {
    local what=$1
    shift
    echo "--- $what" >&2
    if ! h2r_python "$RP_HERE/replay_check.py" "$H2REPLAY" "$@" >&2; then
        echo "FAIL: $what" >&2
        RP_FAILS=$((RP_FAILS + 1))
    fi
}

# rp_start_stub PORT ARGS...: h2stub on 127.0.0.1:PORT (exits by itself after 60 s).
rp_start_stub() {
    local port=$1
    shift
    h2r_bg "$RP_WORK/stub-$port.log" "$H2STUB" -p "$port" --exit-after 60 "$@"
    RP_STUB_PID=$H2R_LAST_PID
    h2r_wait_port "$port" 10 || h2r_die "h2stub did not listen on $port"
}

# rp_finish: one summary line, exit status.
rp_finish() {
    if [[ $RP_FAILS -ne 0 ]]; then
        echo "$RP_NAME: $RP_FAILS check(s) failed (logs in $RP_WORK)" >&2
        exit 1
    fi
    echo "$RP_NAME: all checks passed" >&2
    exit 0
}
