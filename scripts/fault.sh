#!/usr/bin/env bash
# fault.sh - bounded faults against a throwaway Headscale (scripts/headscale.sh) during a replay.
#
#   scripts/fault.sh pg-restart      --dir DIR [--after S] [--down S]
#   scripts/fault.sh hs-kill-restart --dir DIR [--after S] [--down S]
#   scripts/fault.sh hs-stop-cont    --dir DIR [--after S] --stall S
#   scripts/fault.sh tmpfs           --path DIR --size SIZE
#   scripts/fault.sh fill-fs         --path DIR [--after S] --hold S
#
# DIR is a launcher folder (scripts/headscale.sh start --dir DIR; its DIR/env is read). Every
# fault waits --after seconds (default 0), happens once, is undone by this script, and lasts a
# bounded time (every S at most 120; waits for the server bounded by --timeout, default 60 s):
#   pg-restart       the launcher's PostgreSQL cluster: `pg_ctl stop -m fast` as the postgres
#                    user, --down seconds (default 0) with no database, then `pg_ctl restart`
#                    (which starts it again with the options in postmaster.opts); ready = the
#                    server accepts connections (pg_ctl -w). With --down 0: `pg_ctl restart -m fast`.
#   hs-kill-restart  SIGKILL Headscale (no shutdown path at all), --down seconds (default 0)
#                    with nothing listening, then `headscale.sh server-start` (same config and
#                    data; DIR/env gets the new HS_PID); ready = GET /health answers 200.
#   hs-stop-cont     SIGSTOP Headscale for --stall seconds, then SIGCONT. The kernel still
#                    accepts TCP connections into the listen backlog, but nothing answers.
#   tmpfs            mount a tmpfs of --size (e.g. 16m) on DIR (created if missing). Refused in the
#                    host's mount namespace: run the caller under `unshare -m --propagation private`
#                    so the mount vanishes with it and nothing leaks.
#   fill-fs          fill the filesystem holding DIR with DIR/.h2r-fill until ENOSPC, keep it full
#                    --hold seconds, then delete the filler. Only a tmpfs made by `fault.sh tmpfs`
#                    (source "h2r-fault") or a loop device, at most 1 GiB: never a shared /tmp or
#                    a real disk.
# If this script is interrupted (SIGINT/SIGTERM) mid-fault it undoes the fault first (SIGCONT,
# start the server or cluster again, delete the filler), so nothing is left stopped or full.
#
# Output, one KEY=VALUE per line on stdout (wall clock, ns since the epoch, as the run file's
# section t0_wall_ns, so a caller can place the fault in replay time):
#   FAULT=name  FAULT_BEGIN_NS (fault applied)  FAULT_END_NS (fault undone: signal sent, start
#   command issued, filler deleted)  FAULT_READY_NS (service answers again; = END for fill-fs)
#   plus FAULT_FILL_BYTES for fill-fs.
# Exit status: 0 done; 1 failure (the service did not come back; message on stderr); 2 usage.
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
prog=fault.sh
die() { echo "$prog: $*" >&2; exit 1; }
usage_exit() { echo "$prog: $*" >&2; exit 2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
now_ns() { date +%s%N; }
# sleep that a signal interrupts at once (bash runs traps only between foreground commands)
nap() { sleep "$1" & wait $!; }

cmd=${1:-}
[[ -n $cmd ]] || { usage >&2; exit 2; }
shift
dir="" path="" after=0 down=0 stall="" hold="" size="" timeout_s=60
secs() { # NAME VALUE: a number of seconds in [0, 120] (decimals allowed)
    [[ $2 =~ ^[0-9]+(\.[0-9]+)?$ ]] || usage_exit "$1: '$2' is not seconds"
    awk -v v="$2" 'BEGIN { exit !(v <= 120) }' || usage_exit "$1: $2 s is over the 120 s bound"
    echo "$2"
}
while [[ $# -gt 0 ]]; do
    case $1 in
    --dir) dir=${2:?--dir needs a value}; shift 2 ;;
    --path) path=${2:?--path needs a value}; shift 2 ;;
    --after) after=$(secs --after "${2:?}"); shift 2 ;;
    --down) down=$(secs --down "${2:?}"); shift 2 ;;
    --stall) stall=$(secs --stall "${2:?}"); shift 2 ;;
    --hold) hold=$(secs --hold "${2:?}"); shift 2 ;;
    --size) size=${2:?--size needs a value}; shift 2 ;;
    --timeout) timeout_s=$(secs --timeout "${2:?}"); shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage_exit "unknown argument '$1' (see --help)" ;;
    esac
done

load_env() {
    [[ -n $dir ]] || usage_exit "$cmd: --dir DIR (a scripts/headscale.sh folder) is required"
    [[ -f $dir/env && -f $dir/.h2r-headscale ]] || die "$dir is not a folder made by headscale.sh start"
    dir=$(cd "$dir" && pwd)
    # shellcheck disable=SC1091
    . "$dir/env"
}
# True when PID is the headscale serving DIR's config (never signal a recycled pid).
is_our_headscale() {
    [[ $1 =~ ^[0-9]+$ ]] && tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -qF -- "$dir/config.yaml"
}
as_pg() { # runs a command as the cluster owner, from / (pg_ctl dislikes unreadable cwds)
    if [[ $(id -u) -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else (cd / && "$@"); fi
}
report() { # BEGIN END READY [extra lines]
    echo "FAULT=$cmd"
    echo "FAULT_BEGIN_NS=$1"
    echo "FAULT_END_NS=$2"
    echo "FAULT_READY_NS=$3"
}

# What to undo if we are interrupted mid-fault (set while a fault is applied).
undo=""
on_signal() {
    if [[ -n $undo ]]; then eval "$undo" || true; fi
    exit 1
}
trap on_signal INT TERM

case $cmd in
-h | --help) usage; exit 0 ;;
pg-restart)
    load_env
    [[ ${HS_DB_TYPE:-} == postgres ]] || die "pg-restart: $dir runs Headscale on ${HS_DB_TYPE:-?}, not PostgreSQL"
    # shellcheck disable=SC1091
    . "$dir/pg/env"
    pgctl() { as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" "$@"; }
    pgctl status >/dev/null 2>&1 || die "pg-restart: the cluster in $PG_DATA is not running"
    nap "$after"
    t_begin=$(now_ns)
    if [[ $down == 0 ]]; then
        undo="pgctl -l '$PG_LOG' -w -t 30 restart >/dev/null 2>&1"
        pgctl -l "$PG_LOG" -m fast -w -t "$timeout_s" restart >/dev/null 2>&1 || die "pg_ctl restart failed (see $PG_LOG)"
        t_end=$t_begin
    else
        undo="pgctl -l '$PG_LOG' -w -t 30 restart >/dev/null 2>&1"
        pgctl -m fast -w -t "$timeout_s" stop >/dev/null 2>&1 || die "pg_ctl stop failed (see $PG_LOG)"
        nap "$down"
        t_end=$(now_ns)
        # restart on a stopped cluster starts it with the options saved in postmaster.opts
        pgctl -l "$PG_LOG" -w -t "$timeout_s" restart >/dev/null 2>&1 || die "pg_ctl start failed (see $PG_LOG)"
    fi
    undo=""
    report "$t_begin" "$t_end" "$(now_ns)"
    ;;
hs-kill-restart)
    load_env
    is_our_headscale "$HS_PID" || die "hs-kill-restart: headscale pid $HS_PID of $dir is not running"
    nap "$after"
    t_begin=$(now_ns)
    undo="'$ROOT/scripts/headscale.sh' server-start --dir '$dir' >/dev/null 2>&1"
    kill -KILL "$HS_PID"
    for _ in $(seq 1 100); do is_our_headscale "$HS_PID" || break; sleep 0.05; done
    is_our_headscale "$HS_PID" && die "headscale pid $HS_PID survived SIGKILL for 5 s"
    nap "$down"
    t_end=$(now_ns)
    "$ROOT/scripts/headscale.sh" server-start --dir "$dir" --timeout "${timeout_s%.*}" >/dev/null ||
        die "headscale did not come back (see $dir/headscale.log)"
    undo=""
    report "$t_begin" "$t_end" "$(now_ns)"
    ;;
hs-stop-cont)
    load_env
    [[ -n $stall ]] || usage_exit "hs-stop-cont: --stall S is required"
    is_our_headscale "$HS_PID" || die "hs-stop-cont: headscale pid $HS_PID of $dir is not running"
    nap "$after"
    t_begin=$(now_ns)
    undo="kill -CONT $HS_PID"
    kill -STOP "$HS_PID"
    nap "$stall"
    t_end=$(now_ns)
    kill -CONT "$HS_PID"
    undo=""
    deadline=$(($(date +%s) + ${timeout_s%.*}))
    until curl -s -o /dev/null -m 2 -w '%{http_code}' "$HS_URL/health" 2>/dev/null | grep -q '^200$'; do
        (($(date +%s) < deadline)) || die "headscale /health not 200 within $timeout_s s of SIGCONT"
        sleep 0.05
    done
    report "$t_begin" "$t_end" "$(now_ns)"
    ;;
tmpfs)
    [[ -n $path && -n $size ]] || usage_exit "tmpfs: --path DIR and --size SIZE are required"
    [[ $size =~ ^[0-9]+[kKmM]$ ]] || usage_exit "tmpfs: --size '$size' is not like 16m or 512k"
    [[ $(id -u) -eq 0 ]] || die "tmpfs: mounting needs root"
    # Only inside a mount namespace of our own: some ancestor (below pid 1, whose link may be
    # unreadable) must be in another one -- the `unshare -m` boundary -- and the parent mount must
    # not propagate (shared) back out.
    own=$(readlink /proc/self/ns/mnt) private=0 p=$PPID
    while [[ $p =~ ^[0-9]+$ && $p -gt 1 ]]; do
        ns=$(readlink "/proc/$p/ns/mnt" 2>/dev/null || true)
        [[ -n $ns && $ns != "$own" ]] && { private=1; break; }
        p=$(awk '/^PPid:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 1)
    done
    mkdir -p "$path"
    prop=$(findmnt -n -o PROPAGATION --target "$path" 2>/dev/null || echo unknown)
    if [[ $private -ne 1 || $prop == *shared* || $prop == unknown ]]; then
        die "tmpfs: refused outside a private mount namespace (propagation: $prop); run under: unshare -m --propagation private"
    fi
    mount -t tmpfs -o "size=$size,mode=0755" h2r-fault "$path" || die "mount tmpfs on $path failed"
    echo "FAULT_TMPFS=$(cd "$path" && pwd)"
    ;;
fill-fs)
    [[ -n $path && -n $hold ]] || usage_exit "fill-fs: --path DIR and --hold S are required"
    path=$(cd "$path" && pwd) || die "fill-fs: no folder $path"
    fstype=$(stat -f -c %T "$path")
    total=$(($(stat -f -c '%b * %S' "$path")))
    src=$(findmnt -n -o SOURCE --target "$path" 2>/dev/null | tail -1 || true)
    [[ ($fstype == tmpfs && $src == h2r-fault) || $src == /dev/loop* ]] ||
        die "fill-fs: $path is on $fstype ($src), not a 'fault.sh tmpfs' mount or a loop device; refused"
    ((total <= 1073741824)) || die "fill-fs: the filesystem of $path is $total bytes (> 1 GiB); refused"
    filler=$path/.h2r-fill
    nap "$after"
    t_begin=$(now_ns)
    undo="rm -f '$filler'"
    # dd stops at ENOSPC (exit 1, expected); bounded by the filesystem size checked above.
    dd if=/dev/zero of="$filler" bs=64k status=none 2>/dev/null || true
    bytes=$(stat -c %s "$filler" 2>/dev/null || echo 0)
    nap "$hold"
    t_end=$(now_ns)
    rm -f "$filler"
    undo=""
    report "$t_begin" "$t_end" "$t_end"
    echo "FAULT_FILL_BYTES=$bytes"
    ;;
*) usage_exit "unknown fault '$cmd' (pg-restart|hs-kill-restart|hs-stop-cont|tmpfs|fill-fs)" ;;
esac
