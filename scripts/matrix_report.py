#!/usr/bin/env python3
"""matrix_report.py - combine the cells of scripts/matrix.sh into OUT/report.md and report.html.

    scripts/matrix_report.py --out OUT [--versions "..."] [--dbs "..."] [--nodes "..."]

Reads, per cell folder OUT/cells/VERSION-DB-N/: cell.env (what matrix.sh measured and decided),
analyze.json (h2replay analyze of the node sessions), nodes.jsonl (h2replay show --records all
of the same run file), verify.json (h2replay db verify), proc.tsv (the 1 s /proc sampler),
time.txt (/usr/bin/time -v), hs/headscale.log (Headscale's log), admin.json (the admin trace).
Cells that were asked for but have no folder are listed as not run. Python 3 standard library
only. Exit status 0, or 1 when OUT has no cells at all.
"""
import argparse
import bisect
import html
import json
import math
import os
import re
import sys
from collections import Counter

# ---------------------------------------------------------------- helpers


def read_env(path):
    d = {}
    if os.path.exists(path):
        for line in open(path, errors="replace"):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                d[k] = v
    return d


def read_env_text(text):
    d = {}
    for line in text.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            d[k] = v
    return d


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def pct(values, p):
    """nearest-rank percentile of a sorted list (None when empty)"""
    if not values:
        return None
    k = max(0, min(len(values) - 1, math.ceil(p / 100.0 * len(values)) - 1))
    return values[k]


def fmt_s(ns):
    if ns is None:
        return "-"
    s = ns / 1e9
    if s < 0.01:
        return "%.1f ms" % (ns / 1e6)
    if s < 1:
        return "%.0f ms" % (ns / 1e6)
    if s < 100:
        return "%.1f s" % s
    return "%.0f s" % s


def trio(vals):
    vals = sorted(vals)
    if not vals:
        return "-"
    return "%s / %s / %s" % (fmt_s(pct(vals, 50)), fmt_s(pct(vals, 99)), fmt_s(vals[-1]))


def classes(counter):
    items = [(c, n) for c, n in counter.most_common() if n and c != "ok"]
    return ", ".join("%d %s" % (n, c) for c, n in items) or "0"


# ---------------------------------------------------------------- one cell


def server_log_classes(path, fmt):
    """warn/error lines of Headscale's log grouped by message (digits and hex folded)."""
    c = Counter()
    if not os.path.exists(path):
        return c
    for line in open(path, errors="replace"):
        line = line.strip()
        level = msg = None
        if line.startswith("{"):
            try:
                r = json.loads(line)
            except ValueError:
                continue
            level = str(r.get("level", ""))
            msg = str(r.get("message", r.get("msg", "")))
            if r.get("error"):
                msg += ": " + str(r.get("error"))
        else:  # zerolog console: TIME LVL [caller >] message key=value ...
            m = re.match(r"^\S+\s+(TRC|DBG|INF|WRN|ERR|FTL|PNC)\s+(.*)$", line)
            if not m:
                continue
            level = {"WRN": "warn", "ERR": "error", "FTL": "fatal", "PNC": "panic"}.get(m.group(1), "")
            msg = m.group(2)
            if " > " in msg:
                msg = msg.split(" > ", 1)[1]
            msg = re.split(r"\s\S+=", " " + msg, maxsplit=1)[0].strip()
        if level not in ("warn", "error", "fatal", "panic"):
            continue
        msg = re.sub(r"\b[0-9a-f]{8,}\b", "X", msg)
        msg = re.sub(r"\d+", "N", msg)[:90]
        c["%s: %s" % (level, msg)] += 1
    return c


def proc_peaks(path):
    """peak client fds, client RSS and Headscale RSS (kB) from proc.tsv"""
    fds = rss = hs = 0
    if os.path.exists(path):
        for i, line in enumerate(open(path)):
            f = line.rstrip("\n").split("\t")
            if i == 0 or len(f) < 3:
                continue
            try:
                fds, rss = max(fds, int(f[1])), max(rss, int(f[2]))
                hs = max(hs, int(f[4]))
            except (ValueError, IndexError):
                pass
    return fds, rss, hs


def time_v(path):
    d = {}
    if os.path.exists(path):
        for line in open(path, errors="replace"):
            k, _, v = line.strip().rpartition(": ")
            d[k] = v
    def num(k):
        try:
            return float(d.get(k))
        except (TypeError, ValueError):
            return None
    return {"user": num("User time (seconds)"), "sys": num("System time (seconds)"),
            "rss_kb": num("Maximum resident set size (kbytes)")}


def cell_row(out, version, db, nodes):
    name = "%s-%s-%s" % (version, db, nodes)
    d = os.path.join(out, "cells", name)
    env = read_env(os.path.join(d, "cell.env"))
    row = {"name": name, "version": version, "db": db, "nodes": int(nodes),
           "status": env.get("status", "not run"), "env": env, "dir": d}
    if not env:
        row["reason"] = "not run (no cell folder: not selected in this run, or the matrix stopped first)"
        return row
    row["reason"] = env.get("reason", "")
    an = load_json(os.path.join(d, "analyze.json"))
    run = an["runs"][0] if an and an.get("runs") else None
    row["run"] = run
    adm = load_json(os.path.join(d, "admin.json"))
    if adm and adm.get("runs"):
        a0 = adm["runs"][0]
        row["admin"] = "%d calls, errors: %s, p50 %s" % (a0["count"], classes(Counter(a0.get("errors_by_class") or {})),
                                           fmt_s((a0.get("latency_from_intended") or {}).get("p50_ns")))
    else:
        row["admin"] = "failed (see admin.log)" if env.get("admin") == "failed" else "-"
    # ---- per-session figures from the results
    reg, mp = {}, {}  # by node identity (a node of a trace may have several sessions)
    reg_all, mp_all = [], []  # every session
    jl = os.path.join(d, "nodes.jsonl")
    if os.path.exists(jl):
        for line in open(jl, errors="replace"):
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("path") == "/machine/register":
                reg[r.get("conn")] = r
                reg_all.append(r)
            elif r.get("path") == "/machine/map":
                mp[r.get("conn")] = r
                mp_all.append(r)
    row["sessions"] = len(reg)  # distinct nodes
    row["planned"] = int(env.get("sessions", nodes))
    cls = Counter(r.get("class") for r in reg_all) + Counter(r.get("class") for r in mp_all)
    row["classes"] = cls
    ok_reg = [r for r in reg_all if r.get("class") == "ok"]
    row["registered"] = len(ok_reg)
    row["started"] = sum(1 for r in reg_all if r.get("class") != "skipped")
    row["reg_lat"] = [r["t_done_ns"] - r["t_intended_ns"] for r in ok_reg]
    # first netmap, from the session's intended start (its register's t_intended)
    fn = []
    for i, m in mp.items():
        t = m.get("t_netmap_ns") or 0
        if t > 0 and i in reg:
            fn.append(t - reg[i]["t_intended_ns"])
    row["netmap_lat"] = fn
    # full mesh: every node (distinct identity) has every other one as a peer
    expected = len(reg) - 1
    with_nm = [m for m in mp.values() if (m.get("t_netmap_ns") or 0) > 0]
    full = [m for m in with_nm if m.get("peers", 0) >= expected]
    row["full"] = len(full)
    row["expected_peers"] = expected
    ends = [m.get("t_end_ns") for m in mp.values() if (m.get("t_end_ns") or 0) > 0]
    first_departure = min(ends) if ends else None
    mesh = None
    if reg and len(full) == len(reg):
        last = max(m.get("t_last_netmap_ns") or 0 for m in full)
        exact = first_departure is None or last < first_departure
        mesh = ("" if exact else "≤ ") + fmt_s(last)
    row["mesh"] = mesh
    peers = sorted(m.get("peers", 0) for m in with_nm)
    short = [m for m in with_nm if m.get("peers", 0) < expected]
    row["short"] = Counter(m.get("class") for m in short)
    row["msgs"] = sorted(m.get("netmaps", 0) for m in mp.values())
    row["peers_range"] = "%d..%d" % (peers[0], peers[-1]) if peers else "-"
    # ---- failure onset. A session fails at the moment its failure happened: a register or a
    # first netmap that failed at its t_done, a stream the server ended (or that stalled) at
    # its t_end. Results cancelled or skipped by the budget's SIGINT are not failures. Onset =
    # the first second from which, for 3 seconds in a row, more than 5 % of the sessions
    # started so far had failed; the load then = sessions started and nodes registered.
    fail_at = {}
    for i in set(reg) | set(mp):
        ts = []
        for r in (reg.get(i), mp.get(i)):
            if not r or r.get("class") in ("ok", "cancelled", "skipped", None):
                continue
            if r["class"] in ("closed_by_server", "stream_stalled") and (r.get("t_end_ns") or 0) > 0:
                ts.append(r["t_end_ns"])
            else:
                ts.append(r["t_done_ns"])
        if ts:
            fail_at[i] = min(ts)
    starts = sorted(r["t_intended_ns"] for r in reg.values() if r.get("class") != "skipped")
    fails = sorted(fail_at.values())
    onset, streak = None, 0
    if fails:
        end_s = int(max(fails[-1], starts[-1] if starts else 0) // 1000000000) + 3
        for sec in range(int(fails[0] // 1000000000), end_s + 1):
            t = (sec + 1) * 1000000000
            st, fl = bisect.bisect_right(starts, t), bisect.bisect_right(fails, t)
            streak = streak + 1 if st and fl / float(st) > 0.05 else 0
            if streak == 3:
                onset = sec - 2
                break
    if onset is not None:
        t = (onset + 1) * 1000000000
        row["onset"] = "%s (%d sessions started, %d registered, %d failed by then)" % (
            fmt_s(onset * 1000000000), bisect.bisect_right(starts, t),
            sum(1 for r in ok_reg if r["t_done_ns"] <= t), bisect.bisect_right(fails, t))
    else:
        row["onset"] = "none" + (" (%d failed sessions, the first at %s)" % (len(fails), fmt_s(fails[0]))
                                 if fails else "")
    # ---- verify: acknowledged but lost
    v = load_json(os.path.join(d, "verify.json"))
    lost = None
    if isinstance(v, dict) and isinstance(v.get("acknowledged_but_lost"), int):
        lost = v["acknowledged_but_lost"]
        nodes_v = (v.get("kinds") or {}).get("nodes") or {}
        if lost and lost == nodes_v.get("acknowledged") and lost == nodes_v.get("unacknowledged"):
            lost = "unknown (no acknowledged hostname matched: naming differs)"
    row["lost"] = "-" if lost is None else str(lost)
    if isinstance(v, dict) and isinstance(lost, int) and v.get("present_but_never_acknowledged"):
        row["lost"] += " (%d in the database never acknowledged)" % v["present_but_never_acknowledged"]
    # ---- database evidence
    dbe = (run or {}).get("db") or {}
    ev = []
    nodes_rows = ((dbe.get("rows") or {}).get("nodes") or {})
    if nodes_rows:
        ev.append("nodes rows %s→%s" % (nodes_rows.get("first"), nodes_rows.get("last")))
    pg = dbe.get("pg")
    if pg:
        ev.append("lock waits max %s (%s samples), rollbacks %s, deadlocks %s, backends max %s" % (
            pg.get("lock_waits_max"), pg.get("samples_with_lock_waits"), pg.get("rollbacks"),
            pg.get("deadlocks"), pg.get("backends_max")))
        we = pg.get("wait_events") or {}
        if we:
            top = sorted(we.items(), key=lambda kv: -kv[1])[:2]
            ev.append("waits " + ", ".join("%s %.0f" % kv for kv in top))
    sq = dbe.get("sqlite")
    if sq and sq.get("wal_bytes"):
        w = sq["wal_bytes"]
        ev.append("WAL growth %.1f MB (peak %.1f MB)" % ((w.get("growth") or 0) / 1e6, (w.get("max") or 0) / 1e6))
    row["dbev"] = "; ".join(ev) or "-"
    # ---- server log
    sl = (run or {}).get("server_log") if run else None
    slc = Counter()
    if isinstance(sl, dict):  # h2replay analyze --server-log, when this h2replay has it
        for key in ("classes", "by_class", "errors_by_class"):
            if isinstance(sl.get(key), dict):
                slc = Counter({k: v for k, v in sl[key].items() if isinstance(v, int)})
                break
    if not slc:
        slc = server_log_classes(os.path.join(d, "hs", "headscale.log"), env.get("hs_log_format"))
    row["slog"] = "; ".join("%d× %s" % (n, c) for c, n in slc.most_common(3)) or "none"
    row["slog_total"] = sum(slc.values())
    # ---- resources: the client (replay) against the server (Headscale, PostgreSQL)
    cost = (run or {}).get("replay_cost") or {}
    tv = time_v(os.path.join(d, "time.txt"))
    cpu = None
    if cost.get("cpu_user_ns") or cost.get("cpu_sys_ns"):
        cpu = ((cost.get("cpu_user_ns") or 0) + (cost.get("cpu_sys_ns") or 0)) / 1e9
    elif tv["user"] is not None:
        cpu = tv["user"] + (tv["sys"] or 0)
    rss = cost.get("max_rss_kb") or tv["rss_kb"]
    fds, rss2, hs_rss = proc_peaks(os.path.join(d, "proc.tsv"))
    rss = rss or rss2
    wall = float(env.get("replay_wall_ms", 0)) / 1000.0
    hs_cpu = float(env.get("hs_cpu_s", 0) or 0)
    pg_cpu = float(env.get("pg_cpu_s", 0) or 0)
    mach = float(env.get("machine_cpu_s", 0) or 0)
    other = max(0.0, mach - (cpu or 0) - hs_cpu - pg_cpu)
    late = cost.get("max_send_late_ns")
    row["res"] = {"wall": wall, "cpu": cpu, "rss": rss, "fds": fds, "hs": hs_cpu, "pg": pg_cpu,
                  "other": other, "late": late, "hs_rss": hs_rss}
    # the client was the bottleneck when it fell behind its own schedule or used a whole core;
    # otherwise failures are the server's, and "starved" says when other work took much of the
    # machine (the server then had less CPU than the cores would give it)
    cpus = float(read_env(os.path.join(out, "matrix.env")).get("cpus", 0) or 0) or 1.0
    busy_other = other / (wall * cpus) if wall > 0 else 0.0
    failures = sum(n for c, n in row["classes"].items() if c != "ok")
    short = sum(row["short"].values()) if row.get("short") else 0
    if cpu is not None and wall > 0 and cpu / wall > 0.8:
        verdict = "client (CPU %.0f%% of a core)" % (100 * cpu / wall)
    elif late is not None and late > 1e9:
        verdict = "client (sent up to %s late)" % fmt_s(late)
    elif failures == 0 and short == 0:
        verdict = "none (no failures, full mesh)"
    else:
        verdict = "server (Headscale %.0f%% of a core)" % (100 * hs_cpu / wall if wall > 0 else 0)
        if busy_other > 0.3:
            verdict += "; machine shared: other work used %.0f%% of it" % (100 * busy_other)
    row["verdict"] = verdict
    return row


# ---------------------------------------------------------------- tables

T1 = ["cell", "status", "sessions", "registered", "register p50 / p99 / max", "first netmap p50 / p99 / max",
      "all peers seen", "nodes with N−1 peers", "map messages per node p50 / max", "admin gRPC calls",
      "wall"]
T2 = ["cell", "errors by class", "onset", "acknowledged but lost", "database evidence", "server log (warn/error)"]
T3 = ["cell", "client CPU", "client peak RSS", "client peak fds", "max send lateness", "Headscale CPU",
      "Headscale peak RSS",
      "PostgreSQL CPU", "other load (CPU s)", "load avg start → end", "bottleneck"]


def tables(rows):
    t1, t2, t3 = [], [], []
    for r in rows:
        c = "%s %s %d" % (r["version"], r["db"], r["nodes"])
        if not r.get("env") or r["status"] in ("not_run", "not run", "failed") and not r.get("run"):
            why = r.get("reason") or "not run"
            if r["status"] == "failed":
                why = "failed: " + why
            elif not why.startswith("not run"):
                why = "not run: " + why
            t1.append([c, why] + ["-"] * (len(T1) - 2))
            t2.append([c] + ["-"] * (len(T2) - 1))
            t3.append([c] + ["-"] * (len(T3) - 1))
            continue
        st = r["status"]
        if st == "cut":
            st = "cut by the %s s budget: %d of %d sessions started, %d registered" % (
                r["env"].get("budget_s"), r["started"], r["planned"], r["registered"])
        sess = str(r["planned"])
        if r["env"].get("mode") == "trace":
            sess += " (%s clones of 14)" % r["env"].get("clone")
        mesh = r["mesh"] or "not reached"
        t1.append([c, st, sess, "%d" % r["registered"], trio(r["reg_lat"]), trio(r["netmap_lat"]), mesh,
                   "%d of %d (peers %s%s)" % (r["full"], r["sessions"], r["peers_range"], "".join(
                       "; short: " + ", ".join("%d %s" % (n, "held to the end" if c == "ok" else c)
                                               for c, n in r["short"].most_common()) if r["short"] else "")),
                   "%s / %s" % (pct(r["msgs"], 50), r["msgs"][-1]) if r["msgs"] else "-", r["admin"],
                   "%.0f s (cell %s s)" % (r["res"]["wall"], r["env"].get("cell_wall_s", "?"))])
        t2.append([c, classes(r["classes"]), r["onset"], r["lost"], r["dbev"], r["slog"]])
        x = r["res"]
        t3.append([c, "-" if x["cpu"] is None else "%.1f s" % x["cpu"],
                   "-" if not x["rss"] else "%.0f MB" % (x["rss"] / 1024.0), str(x["fds"] or "-"),
                   fmt_s(x["late"]), "%.1f s" % x["hs"],
                   "%.0f MB" % (x["hs_rss"] / 1024.0) if x["hs_rss"] else "-", "%.1f s" % x["pg"] if r["db"] == "postgres" else "-",
                   "%.1f s" % x["other"], "%s → %s" % (r["env"].get("load_start", "?").split()[0],
                                                       r["env"].get("load_end", "?").split()[0]),
                   r["verdict"]])
    return [(T1, t1), (T2, t2), (T3, t3)]


def md_table(head, body):
    esc = lambda s: str(s).replace("|", "\\|")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(esc(x) for x in r) + " |" for r in body]
    return "\n".join(out)


NOTES = """\
How to read it:

- **admin gRPC calls**: the committed admin trace (CreateUser, CreatePreAuthKey with reusable
  keys, List*) replayed at 10× before the nodes: calls, errors by class, p50 from intended.
- **register**: `t_done − t_intended` of the registrations that succeeded (from the intended
  send, so a late client cannot hide a slow server); **first netmap**: the first map message
  minus the session's intended start.
- **all peers seen**: the time from the replay's start at which the last node received its last
  map message, when every node ended with every other node as a peer (`peers == N−1` in its map
  result). It is exact when that message came before the first session ended; `≤` marks an
  upper bound (later messages may be departures, not new peers). "not reached" gives how many
  nodes had N−1 peers at their end.
- **onset**: a session fails when its failure happens (a register or first netmap that failed,
  at its completion; a stream the server ended, at its end; sessions cancelled or skipped by the
  budget's SIGINT are not failures). Onset = the first second from which, 3 seconds in a row,
  more than 5 % of the sessions started so far had failed, with the sessions started, nodes
  registered and sessions failed by then. "none" gives the failed sessions and the first one.
- **acknowledged but lost**: nodes whose registration Headscale confirmed but which are not in
  its database after the run (`h2replay db verify`); in brackets, nodes in the database whose
  registration the client never saw confirmed (it gave up at the deadline, or was stopped).
- **client CPU / RSS** from the run file (else `/usr/bin/time -v`), **fds** from `/proc` every
  second; **Headscale / PostgreSQL CPU** from `/proc/PID/stat` over the node phase; **other
  load** = the machine's busy CPU seconds minus those three (other people's work).
  **bottleneck**: "client" when the replay used more than 80 % of a core or sent more than 1 s
  late; "server" when sessions failed otherwise.
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--versions", default="")
    ap.add_argument("--dbs", default="")
    ap.add_argument("--nodes", default="")
    a = ap.parse_args()
    out = a.out
    cells_dir = os.path.join(out, "cells")
    found = sorted(os.listdir(cells_dir)) if os.path.isdir(cells_dir) else []
    wanted = [(v, d, n) for v in a.versions.split() for n in a.nodes.split() for d in a.dbs.split()]
    for c in found:  # cells already in OUT from earlier runs are reported too
        m = re.match(r"^(v[0-9.]+)-(sqlite|postgres)-(\d+)$", c)
        if m and m.groups() not in wanted:
            wanted.append(m.groups())
    if not wanted:
        print("matrix_report.py: no cells in %s" % cells_dir, file=sys.stderr)
        return 1
    order = {"sqlite": 0, "postgres": 1}
    wanted.sort(key=lambda t: (t[0], int(t[2]), order.get(t[1], 2)))
    rows = [cell_row(out, v, d, n) for v, d, n in wanted]
    menv = read_env(os.path.join(out, "matrix.env"))
    tabs = tables(rows)

    md = ["# Headscale SQLite vs PostgreSQL matrix", ""]
    md.append("Machine: %s, %s CPUs, %s; %s; sessions: %s." % (
        menv.get("host", "?"), menv.get("cpus", "?"), menv.get("mem", "?"), menv.get("kernel", "?"),
        menv.get("sessions_mode", "?")))
    md.append("Load at start: `%s`; at end: `%s`. Matrix wall time: %s s." % (
        menv.get("uptime", "?").strip(), menv.get("uptime_end", "?").strip(), menv.get("wall_s", "?")))
    md.append("Arguments: `%s`." % menv.get("args", "?"))
    if os.path.exists(os.path.join(out, "runs.log")):
        runs = [read_env_text(b) for b in open(os.path.join(out, "runs.log")).read().split("--- ")[1:]]
        if len(runs) > 1:
            md.append("")
            md.append("This folder holds cells of %d invocations (each cell's own load is in the "
                      "resources table):" % len(runs))
            for e in runs:
                md.append("- %s: `%s`, %s s, load `%s` → `%s`" % (
                    e.get("started", "?"), e.get("args", "?"), e.get("wall_s", "?"),
                    e.get("uptime", "?").split("load average: ")[-1].strip(),
                    e.get("uptime_end", "?").split("load average: ")[-1].strip()))
    md.append("")
    titles = ["Registration and netmaps", "Failures and evidence", "Resources (node phase)"]
    for (head, body), title in zip(tabs, titles):
        md += ["## " + title, "", md_table(head, body), ""]
    md += ["## Commands", ""]
    for r in rows:
        if r.get("env", {}).get("command"):
            md.append("- %s: `%s`" % (r["name"], r["env"]["command"].strip()))
    md += ["", NOTES]
    md.append("Per-cell reports: " + ", ".join(
        "[%s](cells/%s/analyze.html)" % (r["name"], r["name"]) for r in rows
        if os.path.exists(os.path.join(r["dir"], "analyze.html"))))
    open(os.path.join(out, "report.md"), "w").write("\n".join(md) + "\n")

    # HTML: the same tables, inline CSS, links to the per-cell analyze reports (all offline)
    h = ["<!doctype html><html><head><meta charset='utf-8'><title>Headscale SQLite vs PostgreSQL</title>",
         "<style>body{font:14px sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
         "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}th{background:#eee}"
         "code{background:#f4f4f4}</style></head><body>",
         "<h1>Headscale SQLite vs PostgreSQL matrix</h1>"]
    for line in md[2:md.index("## " + titles[0])]:
        if line:
            h.append("<p>%s</p>" % html.escape(line))
    for (head, body), title in zip(tabs, titles):
        h.append("<h2>%s</h2><table><tr>%s</tr>" % (html.escape(title), "".join(
            "<th>%s</th>" % html.escape(x) for x in head)))
        for r in body:
            h.append("<tr>%s</tr>" % "".join("<td>%s</td>" % html.escape(str(x)) for x in r))
        h.append("</table>")
    h.append("<h2>Commands</h2><ul>")
    for r in rows:
        if r.get("env", {}).get("command"):
            h.append("<li>%s: <code>%s</code></li>" % (html.escape(r["name"]), html.escape(r["env"]["command"])))
    h.append("</ul><h2>Per-cell reports</h2><ul>")
    for r in rows:
        if os.path.exists(os.path.join(r["dir"], "analyze.html")):
            h.append("<li><a href='cells/%s/analyze.html'>%s</a></li>" % (r["name"], html.escape(r["name"])))
    h.append("</ul><pre>%s</pre></body></html>" % html.escape(NOTES))
    open(os.path.join(out, "report.html"), "w").write("\n".join(h) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
