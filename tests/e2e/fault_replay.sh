#!/usr/bin/env bash
# fault_replay.sh - a fault injected into a real Headscale during a TS2021 node replay (label e2e).
#
#   tests/e2e/fault_replay.sh H2REPLAY pg-restart|hs-kill|sqlite-full|hs-sigstop [WORKDIR]
#
# Headscale v0.29.2 (scripts/headscale.sh), 80 node sessions arriving over 20 s (--hold 2s, so
# 4 registrations/s, well inside the ~25/s bcrypt budget of this box), and ~5 s into the replay
# one bounded fault from scripts/fault.sh:
#   pg-restart   PostgreSQL stopped (pg_ctl -m fast), 3 s down, started again
#   hs-kill      Headscale SIGKILLed, 3 s down, started again on the same SQLite database
#   sqlite-full  the SQLite database (moved onto a 4 MiB tmpfs, mounted in a private mount
#                namespace: the script re-executes itself under `unshare -m`) filled up for 4 s
#   hs-sigstop   Headscale SIGSTOPped for 6 s, longer than --timeout/--connect-timeout (3 s);
#                60 sessions over 25 s here (2.4/s), for the catch-up described in 3.
# and then checks, asserting on what this release really does:
#   1. the replay exits 0 and the run file is valid: `show --format jsonl --records all` reads to
#      the end (exit 0), the section has its end record, every one of the 80 sessions has its
#      register and map result;
#   2. named failures appear in the fault window and not before it: no failure is observed
#      (t_done, or t_end for a map stream) before the fault began or after the catch-up time
#      (3.) plus one deadline; the classes the fault must cause are present (below), and nothing
#      outside the fault's set of classes occurs;
#   3. every session that starts once the service is back and caught up (ready + 1.5 s; after
#      SIGCONT ready + 8 s: Headscale first works off the registrations queued while it was
#      stopped, and keeps committing registrations whose clients already gave up, so on a busy
#      box fresh ones time out for a few seconds more -- counted and printed) registers and gets
#      its netmap;
#   4. `h2replay db verify`: 0 acknowledged-but-lost nodes (with `--run RUN` when the binary has
#      it, else an acks file built from the run's ok register results); never-acknowledged rows
#      (registered by the server but not confirmed to the client) are printed, not failed;
#   5. `h2replay analyze --format json`: an onset whose window lies between (fault begin - hold
#      or timeout - 1 window) and ready + 1 window (analyze charges a failure to the window of the
#      session's intended start, so a map stream cut by the fault counts from its session start),
#      and a recovery after it, no later than ready + the catch-up time + 2 windows.
# Classes (docs/ts2021.md §7) per fault, as observed on v0.29.2:
#   pg-restart   register answered with an Error (Headscale says "invalid pre auth key" while the
#                database is down; the replay classes it auth_key_refused, register_error also
#                accepted), http_status (endpoint update HTTP 500)
#   hs-kill      refused (nothing listens), closed_by_server (streams and registers cut by the
#                kill)
#   sqlite-full  register Error "database or disk is full" (classed auth_key_refused because
#                Headscale prefixes it "handling register with auth key:"; register_error also
#                accepted), http_status (endpoint update HTTP 500)
#   hs-sigstop   connect_timeout (the TS2021 upgrade is not answered), deadline_exceeded
#                (register sent, no answer), no_netmap
# Prints one line per check and a summary line with the figures docs/headscale.md ("Faults")
# quotes. Exit 77 (skip) when Headscale v0.29.2 is not installed, PostgreSQL is missing
# (pg-restart) or mounts are impossible (sqlite-full: needs root and unshare) -- unless CI=true.
set -uo pipefail

H2R=${1:?usage: fault_replay.sh H2REPLAY pg-restart|hs-kill|sqlite-full|hs-sigstop [WORKDIR]}
MODE=${2:?mode}
ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
WORK=${3:-$(mktemp -d /tmp/h2r-fault.XXXXXX)}
HS=$ROOT/scripts/headscale.sh
FAULT=$ROOT/scripts/fault.sh
VERSION=v0.29.2
prog="fault_replay.sh[$MODE]"
NODES=80 ARRIVAL=20s HOLD_S=2 TIMEOUT_S=5 CONNECT_S=3 AFTER_S=5 CATCHUP_S=1.5

# shellcheck source=tests/e2e/hs_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/hs_lib.sh"

db=sqlite
case $MODE in
pg-restart) db=postgres; fault=(pg-restart --after "$AFTER_S" --down 3) ;;
hs-kill) fault=(hs-kill-restart --after "$AFTER_S" --down 3) ;;
sqlite-full) fault=(fill-fs --after "$AFTER_S" --hold 4) ;;
hs-sigstop) NODES=60 ARRIVAL=25s TIMEOUT_S=3 CATCHUP_S=8; fault=(hs-stop-cont --after "$AFTER_S" --stall 6) ;;
*) echo "$prog: unknown mode (pg-restart|hs-kill|sqlite-full|hs-sigstop)" >&2; exit 2 ;;
esac

[[ -x $H2R ]] || skip "no h2replay binary at $H2R"
[[ -x $ROOT/.cache/bin/headscale-$VERSION/headscale ]] ||
    skip "no $ROOT/.cache/bin/headscale-$VERSION/headscale (scripts/install-headscale.sh $VERSION)"
command -v python3 >/dev/null || skip "python3 missing"
if [[ $db == postgres ]] && ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    skip "PostgreSQL server binaries not installed"
fi
if [[ $MODE == sqlite-full && -z ${H2R_FAULT_PRIVATE_NS:-} ]]; then
    [[ $(id -u) -eq 0 ]] || skip "sqlite-full mounts a tmpfs: needs root"
    command -v unshare >/dev/null || skip "unshare(1) missing"
    unshare -m --propagation private true 2>/dev/null || skip "unshare -m not permitted here"
    # A private mount namespace: the tmpfs is invisible outside and dies with this process.
    H2R_FAULT_PRIVATE_NS=1 exec unshare -m --propagation private bash "${BASH_SOURCE[0]}" "$H2R" "$MODE" "$WORK"
fi

rm -rf "$WORK/hs"
mkdir -p "$WORK"
dir=$WORK/hs
replay_pid="" fault_pid="" mounted=""
cleanup() {
    [[ -n $fault_pid ]] && kill -TERM "$fault_pid" 2>/dev/null && wait "$fault_pid" 2>/dev/null
    [[ -n $replay_pid ]] && kill -TERM "$replay_pid" 2>/dev/null && wait "$replay_pid" 2>/dev/null
    fault_pid="" replay_pid=""
    if [[ -f $dir/env ]]; then
        # never leave Headscale stopped (SIGSTOP) behind, then stop it before unmounting its data
        # shellcheck disable=SC1091
        (. "$dir/env" && kill -CONT "$HS_PID" 2>/dev/null) || true
        "$HS" server-stop --dir "$dir" >/dev/null 2>&1
    fi
    if [[ -n $mounted ]]; then
        umount "$mounted" 2>/dev/null || umount -l "$mounted" 2>/dev/null
        mounted=""
    fi
    [[ -f $dir/env ]] && "$HS" stop --dir "$dir" --keep >/dev/null 2>&1
    return 0
}
trap cleanup EXIT
trap 'exit 1' INT TERM
ulimit -n 4096 2>/dev/null || true
t_test=$(date +%s%N)

env_out=$("$HS" start --version "$VERSION" --db "$db" --dir "$dir" --no-install 2>"$WORK/start.log") || {
    bad "launcher failed: $(tail -3 "$WORK/start.log")"
    exit 1
}
eval "$env_out"
key=$("$HS" authkey --dir "$dir" --user nodes --reusable) || { bad "authkey failed"; exit 1; }
dsn=$HS_DB
if [[ $MODE == sqlite-full ]]; then
    # Only the database goes onto the small filesystem: logs and config stay where they are.
    "$HS" server-stop --dir "$dir" >/dev/null 2>&1 || { bad "server-stop"; exit 1; }
    "$FAULT" tmpfs --path "$dir/dbfs" --size 4m >/dev/null || { bad "tmpfs mount failed"; exit 1; }
    mounted=$dir/dbfs
    mv "$dir"/db.sqlite* "$dir/dbfs/"
    sed -i "s|^    path: $dir/db.sqlite\$|    path: $dir/dbfs/db.sqlite|" "$dir/config.yaml"
    grep -q "path: $dir/dbfs/db.sqlite" "$dir/config.yaml" || { bad "config path not rewritten"; exit 1; }
    env_out=$("$HS" server-start --dir "$dir" 2>"$WORK/start2.log") || { bad "server-start on tmpfs"; exit 1; }
    eval "$env_out"
    dsn=sqlite:$dir/dbfs/db.sqlite
    fault+=(--path "$dir/dbfs")
    ok "database on a 4 MiB tmpfs ($(df -h --output=avail "$dir/dbfs" | tail -1 | tr -d ' ') free)"
else
    fault+=(--dir "$dir")
fi
ok "Headscale $VERSION on $db up in ${HS_READY_MS} ms: $HS_URL"

# Replay and fault start together; fault.sh waits --after seconds. Both are bounded.
run=$WORK/run.h2rr
timeout -k 5 90 "$H2R" replay -q --nodes $NODES --arrival $ARRIVAL --hold ${HOLD_S}s \
    --timeout ${TIMEOUT_S}s --connect-timeout ${CONNECT_S}s --target "hs=ts2021+$HS_URL" \
    --set "authkey=$key" --db "hs=$dsn" --label "fault $MODE" -o "$run" >"$WORK/replay.log" 2>&1 &
replay_pid=$!
timeout -k 5 100 "$FAULT" "${fault[@]}" >"$WORK/fault.env" 2>"$WORK/fault.log" &
fault_pid=$!
wait "$fault_pid"
frc=$?
fault_pid=""
wait "$replay_pid"
rrc=$?
replay_pid=""
if [[ $frc -eq 0 ]]; then ok "fault: $(tr '\n' ' ' <"$WORK/fault.env")"; else bad "fault.sh exit $frc: $(tail -3 "$WORK/fault.log")"; fi
if [[ $rrc -eq 0 ]]; then ok "replay exit 0"; else bad "replay exit $rrc: $(tail -3 "$WORK/replay.log")"; fi
[[ $frc -eq 0 && -s $run ]] || exit 1
[[ $MODE == sqlite-full ]] && note "Headscale logged $(grep -c 'database or disk is full' "$HS_LOG") 'database or disk is full' errors"

# 1.-3. the run file
"$H2R" show "$run" --format jsonl --records all >"$WORK/run.jsonl" 2>"$WORK/show.err"
src=$?
if [[ $src -eq 0 ]]; then ok "show reads the run file to the end ($(wc -l <"$WORK/run.jsonl") records)"
else bad "show exit $src: $(head -c 300 "$WORK/show.err")"; fi
out=$(python3 - "$WORK/run.jsonl" "$WORK/fault.env" "$MODE" $NODES $HOLD_S $TIMEOUT_S $CONNECT_S $CATCHUP_S <<'EOF'
import collections, json, sys
path, fenv, mode = sys.argv[1:4]
n, hold, timeout, connect, catchup = int(sys.argv[4]), *map(float, sys.argv[5:9])
f = dict(l.strip().split("=", 1) for l in open(fenv) if "=" in l)
recs = [json.loads(l) for l in open(path) if l.strip()]
sec = next(r for r in recs if r.get("type") == "section")
t0 = sec["t0_wall_ns"]
begin, end, ready = ((int(f[k]) - t0) / 1e9 for k in ("FAULT_BEGIN_NS", "FAULT_END_NS", "FAULT_READY_NS"))
res = [r for r in recs if "exchange" in r]
ends = [r for r in recs if r.get("type") == "section_end"]
errs, lines = [], []
def ok(m): lines.append("ok: " + m)
if len(ends) != 1:
    errs.append(f"{len(ends)} section_end records")
reg = {r["conn"]: r for r in res if r["path"] == "/machine/register"}
mp = {r["conn"]: r for r in res if r["path"] == "/machine/map"}
if len(res) != 2 * n or sorted(reg) != list(range(n)) or sorted(mp) != list(range(n)):
    errs.append(f"{len(res)} results ({len(reg)} register, {len(mp)} map), want {n} sessions x 2")
else:
    ok(f"every planned session has its 2 results ({2 * n})")
def t_fail(r):  # when the client saw the failure
    return (r["t_end_ns"] if r["path"] == "/machine/map" and r.get("t_end_ns") else r["t_done_ns"]) / 1e9
fails = [r for r in res if r["class"] != "ok"]
by_class = collections.Counter(r["class"] for r in fails)
must = {"pg-restart": [{"auth_key_refused", "register_error"}],
        "hs-kill": [{"refused"}, {"closed_by_server"}],
        "sqlite-full": [{"auth_key_refused", "register_error"}],
        "hs-sigstop": [{"connect_timeout"}, {"deadline_exceeded", "no_netmap"}]}[mode]
allowed = set().union(*must) | {"skipped", "http_status", "closed_by_server", "no_netmap",
                                 "deadline_exceeded", "connect_timeout"}
early = [r for r in fails if t_fail(r) < begin - 0.25]
late_edge = ready + catchup + max(timeout, connect) + 0.5
late = [r for r in fails if t_fail(r) > late_edge]
if early:
    r = early[0]
    errs.append(f"{len(early)} failures before the fault (first: conn {r['conn']} {r['path']} "
                f"{r['class']} at {t_fail(r):.2f}s, fault at {begin:.2f}s: {r['detail']})")
if late:
    r = late[0]
    errs.append(f"{len(late)} failures after ready+{late_edge - ready:.1f}s (first: conn {r['conn']} "
                f"{r['path']} {r['class']} at {t_fail(r):.2f}s: {r['detail']})")
for want in must:
    if not any(c in by_class for c in want):
        errs.append(f"no {'/'.join(sorted(want))} failure during the fault (classes: {dict(by_class)})")
odd = set(by_class) - allowed
if odd:
    errs.append(f"unexpected classes {sorted(odd)}: " +
                "; ".join(f"{r['class']} {r['detail']}" for r in fails if r["class"] in odd)[:300])
if mode == "sqlite-full" and not any("disk is full" in (r["detail"] or "") for r in fails):
    errs.append("no register failure names 'database or disk is full'")
if not early and not late and fails:
    ok(f"{len(fails)} failures, all observed in [{min(map(t_fail, fails)):.2f}, "
       f"{max(map(t_fail, fails)):.2f}] s, fault {begin:.2f}-{end:.2f} s, ready {ready:.2f} s")
after = [i for i in range(n) if i in reg and reg[i]["t_intended_ns"] / 1e9 >= ready + catchup]
notok = [i for i in after if reg[i]["class"] != "ok" or mp[i]["class"] != "ok"]
if len(after) < 10 or notok:
    i = notok[0] if notok else None
    errs.append(f"{len(after)} sessions after recovery, {len(notok)} not ok" +
                (f" (conn {i}: {reg[i]['class']} / {mp[i]['class']} {mp[i]['detail']})" if notok else ""))
else:
    ok(f"all {len(after)} sessions started after ready+{catchup:g}s register and get a netmap")
after_end = [r for r in fails if r["path"] == "/machine/register" and r["t_intended_ns"] / 1e9 >= end]
if after_end:
    c = collections.Counter(r["class"] for r in after_end)
    lines.append(f"note: {len(after_end)} registration(s) started after the fault ended still failed "
                 f"({dict(c)}), the last observed at {max(map(t_fail, after_end)):.2f}s")
auth = [r for r in fails if r["class"] == "auth_key_refused"]
if auth:
    lines.append(f"note: {len(auth)} register failures classed auth_key_refused, e.g. {auth[0]['detail'][:160]!r}")
cls = ",".join(f"{k}={v}" for k, v in sorted(by_class.items()))
lines.append(f"FIG fault={begin:.2f}-{end:.2f}s ready={ready:.2f}s failures={len(fails)} [{cls}] "
             f"register_ok={sum(r['class'] == 'ok' for r in reg.values())}/{n}")
print("\n".join(lines + ["FAIL: " + e for e in errs]))
sys.exit(1 if errs else 0)
EOF
)
prc=$?
while IFS= read -r l; do
    case $l in
    "ok: "*) ok "${l#ok: }" ;;
    "note: "*) note "${l#note: }" ;;
    "FAIL: "*) bad "${l#FAIL: }" ;;
    FIG*) fig=${l#FIG } ;;
    esac
done <<<"$out"
[[ $prc -le 1 ]] || bad "run checker crashed: $out"

# 4. verify: what the server acknowledged is in the database
vrc=0
"$H2R" db verify --db "$dsn" --run "$run" --kinds nodes --format json >"$WORK/verify.json" \
    2>"$WORK/verify.err" || vrc=$?
how="--run"
read -r lost unacked < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
print(d.get("acknowledged_but_lost"), d.get("present_but_never_acknowledged"))' "$WORK/verify.json" 2>/dev/null ||
    echo "? ?")
if [[ $vrc -eq 0 && $lost == 0 ]]; then
    ok "db verify $how: 0 acknowledged-but-lost, $unacked present-but-never-acknowledged"
else
    bad "db verify $how: exit $vrc, acknowledged-but-lost=$lost (FINDING if > 0: Headscale lost an acknowledged registration), never-acknowledged=$unacked $(head -c 200 "$WORK/verify.err")"
fi
[[ $unacked != 0 && $unacked != "?" ]] &&
    note "$unacked node(s) in the database whose registration the client never saw succeed (answered with an error or timed out, committed anyway)"

# 5. analyze: onset inside the fault window, recovery after it
"$H2R" analyze "$run" --format json -q >"$WORK/analyze.json" 2>"$WORK/analyze.err"
arc=$?
aout=$(python3 - "$WORK/analyze.json" "$WORK/fault.env" "$WORK/run.jsonl" $HOLD_S $TIMEOUT_S $CATCHUP_S <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
f = dict(l.strip().split("=", 1) for l in open(sys.argv[2]) if "=" in l)
sec = next(json.loads(l) for l in open(sys.argv[3]) if '"type":"section"' in l)
hold, timeout, catchup = (float(a) for a in sys.argv[4:7])
t0 = sec["t0_wall_ns"]
begin, ready = ((int(f[k]) - t0) / 1e9 for k in ("FAULT_BEGIN_NS", "FAULT_READY_NS"))
r = d["runs"][0]
fl = r["failures"]
win = r["windows"]["width_ns"] / 1e9 if isinstance(r.get("windows"), dict) and "width_ns" in r["windows"] else 1.0
on, rec, first = fl["onset"], fl["recovery"], fl["first"]
errs = []
lo, hi = begin - max(hold, timeout) - win, ready + win
if not on:
    errs.append("no onset")
elif not lo <= on["t_ns"] / 1e9 <= hi:
    errs.append(f"onset at {on['t_ns'] / 1e9:.1f}s outside [{lo:.1f}, {hi:.1f}]")
if not rec:
    errs.append("no recovery")
elif on and not (on["t_ns"] < rec["t_ns"] and rec["t_ns"] / 1e9 <= ready + catchup + 2 * win):
    errs.append(f"recovery at {rec['t_ns'] / 1e9:.1f}s (onset {on['t_ns'] / 1e9:.1f}s, ready {ready:.1f}s)")
s = (f"errors {r['errors']}/{r['count']}, first failure {first['class']} intended "
     f"{first['t_intended_ns'] / 1e9:.2f}s" if first else "no first failure")
if on:
    s += f", onset {on['t_ns'] / 1e9:.1f}s (rate {on['error_rate']:.2f}, {on['offered_per_s']:.0f}/s offered)"
if rec:
    s += f", recovery {rec['t_ns'] / 1e9:.1f}s ({rec['after_onset_ns'] / 1e9:.1f}s after onset)"
print(s)
for e in errs:
    print("FAIL: " + e)
sys.exit(1 if errs else 0)
EOF
)
ark=$?
if [[ $arc -ne 0 ]]; then
    bad "analyze exit $arc: $(head -c 200 "$WORK/analyze.err")"
elif [[ $ark -eq 0 ]]; then
    ok "analyze: $aout"
else
    bad "analyze: ${aout//$'\n'/; }"
fi

secs=$((($(date +%s%N) - t_test) / 1000000000))
echo "$prog: summary: ${fig:-?} lost=$lost never_acked=$unacked analyze: ${aout%%$'\n'*} (${secs}s)"
cleanup
trap - EXIT
[[ $fails -eq 0 ]] && rm -rf "$WORK"
echo "$prog: $fails failure(s)"
[[ $fails -eq 0 ]]
