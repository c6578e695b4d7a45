#!/usr/bin/env bash
# pg-cluster.sh - a throwaway PostgreSQL cluster on loopback, for tests and launchers.
#
#   scripts/pg-cluster.sh start --dir DIR [--port P] [--db NAME]... [--no-install] [--timeout S]
#   scripts/pg-cluster.sh stop --dir DIR
#   scripts/pg-cluster.sh status --dir DIR
#
# start: initdb into DIR/pg/data (trust auth, superuser "postgres", UTF8, timezone UTC), then
# pg_ctl start listening on 127.0.0.1:P only (a free port when --port is absent) with its unix
# socket in DIR/pg/run (or a short /tmp folder when that path would exceed the socket limit),
# creates each --db, and prints KEY=VALUE lines (also written to DIR/pg/env):
#   PG_HOST PG_PORT PG_SOCKET_DIR PG_DATA PG_LOG PG_BIN PG_USER PG_DSN_BASE PG_START_MS
# (PG_START_MS: initdb + start + createdb)
# PostgreSQL refuses to run as root, so as root every server-side command runs as the "postgres"
# system user (runuser) and DIR/pg is owned by it; DIR must be traversable by that user.
# fsync stays on: the cluster is throwaway but durability is part of what we measure.
# When the server binaries are missing: as root, `apt-get install -y postgresql` (bounded) unless
# --no-install; otherwise exit 3.
# stop: pg_ctl stop -m fast (then immediate, then SIGKILL of the postmaster), leaves files alone.
#
# Exit status: 0 ok, 1 failure (the server log tail is printed), 2 usage, 3 PostgreSQL missing,
# status: 0 running, 1 not running.
set -euo pipefail

prog="pg-cluster.sh"
die() { echo "$prog: $*" >&2; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }

cmd=${1:-}
[[ -n $cmd ]] || { usage >&2; exit 2; }
shift
dir="" port="" no_install=0 timeout_s=60
dbs=()
while [[ $# -gt 0 ]]; do
    case $1 in
    --dir) dir=${2:?--dir needs a value}; shift 2 ;;
    --port) port=${2:?--port needs a value}; shift 2 ;;
    --db) dbs+=("${2:?--db needs a value}"); shift 2 ;;
    --no-install) no_install=1; shift ;;
    --timeout) timeout_s=${2:?--timeout needs a value}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "$prog: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case $cmd in start | stop | status) ;; -h | --help) usage; exit 0 ;;
*) echo "$prog: unknown command '$cmd' (start|stop|status)" >&2; exit 2 ;;
esac
[[ -n $dir ]] || { echo "$prog: --dir DIR is required" >&2; exit 2; }
[[ -z $port || $port =~ ^[0-9]+$ ]] || { echo "$prog: --port: '$port' is not a port" >&2; exit 2; }
[[ $timeout_s =~ ^[0-9]+$ ]] || { echo "$prog: --timeout: '$timeout_s' is not seconds" >&2; exit 2; }

# Server binaries: PATH first, then the newest Debian versioned folder.
find_pg_bin() {
    local d
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return 0
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
        [[ -x $d/pg_ctl && -x $d/initdb && -x $d/postgres ]] && { echo "$d"; return 0; }
    done
    return 1
}

# Runs a command as the cluster owner (the postgres user when we are root), from "/" so
# pg_ctl never complains about an unreadable working directory.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
        return
    fi
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    return 1
}

pg=$dir/pg
envf=$pg/env

if [[ $cmd == status ]]; then
    [[ -f $envf ]] || { echo "$prog: no cluster in $dir" >&2; exit 1; }
    # shellcheck disable=SC1090
    . "$envf"
    if as_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        echo "running 127.0.0.1:$PG_PORT data=$PG_DATA"
        exit 0
    fi
    echo "not running (data=$PG_DATA)"
    exit 1
fi

if [[ $cmd == stop ]]; then
    [[ -f $envf ]] || { echo "$prog: no cluster in $dir (nothing to stop)" >&2; exit 0; }
    # shellcheck disable=SC1090
    . "$envf"
    if as_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        as_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null 2>&1 ||
            as_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
    fi
    # Last resort: the postmaster named in this cluster's own pid file, and only if it is a postgres.
    if [[ -f $PG_DATA/postmaster.pid ]]; then
        pid=$(head -1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)
        if [[ $pid =~ ^[0-9]+$ ]] && grep -qa postgres "/proc/$pid/cmdline" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    [[ -n ${PG_SOCKET_DIR:-} && $PG_SOCKET_DIR == /tmp/h2r-pgsock.* ]] && rm -rf "$PG_SOCKET_DIR"
    echo "$prog: stopped cluster in $PG_DATA" >&2
    exit 0
fi

# ---- start
if ! bin=$(find_pg_bin); then
    if [[ $no_install -eq 0 && $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "$prog: PostgreSQL server binaries missing; apt-get install -y postgresql" >&2
        DEBIAN_FRONTEND=noninteractive timeout 900 apt-get -o DPkg::Lock::Timeout=120 \
            install -y -q --no-install-recommends postgresql >&2 ||
            die "apt-get install postgresql failed (exit $?)"
        bin=$(find_pg_bin) || die "postgresql installed but no pg_ctl/initdb found"
    else
        echo "$prog: PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install postgresql" >&2
        exit 3
    fi
fi
if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user to own the cluster"
    command -v runuser >/dev/null 2>&1 || die "running as root but runuser(1) is missing"
fi
[[ ! -e $pg/data ]] || die "$pg/data already exists; stop and remove that cluster first"

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
pg=$dir/pg
envf=$pg/env
mkdir -p "$pg/run"
sockdir=$pg/run
# sun_path is 108 bytes: "<sockdir>/.s.PGSQL.65535" must fit.
if [[ $((${#sockdir} + 18)) -gt 100 ]]; then
    sockdir=$(mktemp -d /tmp/h2r-pgsock.XXXXXX)
fi
if [[ $(id -u) -eq 0 ]]; then
    # The postgres user must reach DIR/pg: make DIR (and only DIR) traversable.
    chmod o+x "$dir"
    chown -R postgres: "$pg" "$sockdir"
    runuser -u postgres -- test -x "$pg" ||
        die "the postgres user cannot reach $pg (a parent folder is not traversable); use another --dir"
fi
[[ -n $port ]] || port=$(free_port) || die "no free loopback port found"

log=$pg/postgres.log
t0=$(date +%s%N)
if ! as_owner "$bin/initdb" -D "$pg/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
    --no-sync >"$pg/initdb.log" 2>&1; then
    sed 's/^/    /' "$pg/initdb.log" >&2
    die "initdb failed (log above, also $pg/initdb.log)"
fi
opts="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$sockdir"
opts+=" -c timezone=UTC -c log_timezone=UTC -c max_connections=200"
if ! as_owner "$bin/pg_ctl" -D "$pg/data" -l "$log" -w -t "$timeout_s" -o "$opts" start >/dev/null 2>&1; then
    tail -20 "$log" 2>/dev/null | sed 's/^/    /' >&2
    die "pg_ctl start failed on 127.0.0.1:$port (log above, also $log)"
fi
for db in "${dbs[@]}"; do
    [[ $db =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "--db: '$db' is not a plain identifier"
    as_owner "$bin/createdb" -h "$sockdir" -p "$port" -U postgres "$db" ||
        die "createdb $db failed"
done
{
    echo "PG_HOST=127.0.0.1"
    echo "PG_PORT=$port"
    echo "PG_SOCKET_DIR=$sockdir"
    echo "PG_DATA=$pg/data"
    echo "PG_LOG=$log"
    echo "PG_BIN=$bin"
    echo "PG_USER=postgres"
    echo "PG_DSN_BASE=postgresql://postgres@127.0.0.1:$port"
    echo "PG_START_MS=$((($(date +%s%N) - t0) / 1000000))"
} >"$envf"
cat "$envf"
