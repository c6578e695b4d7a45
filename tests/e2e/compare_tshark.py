#!/usr/bin/env python3
"""compare_tshark.py - h2replay's exchanges versus tshark's, for one pcap.

Runs `h2replay capture -r PCAP -o TRACE`, then
`h2replay show TRACE --format jsonl --records all`, and the independent
tshark extractor (tshark_exchanges.py, beside this file). Connections are
matched by their client and server endpoints (h2replay's conn records give
them), exchanges by (client, server, stream id); the fields compared are
method, path, status, req_bytes, resp_bytes and grpc_status (plus any
--field). Several connections with the same endpoints (port reuse) are paired
in time order.

With --keylog KEYS (TLS captures) h2replay runs with `--keylog KEYS` and tshark
decrypts with `-o tls.keylog_file:KEYS`.

Usage: compare_tshark.py PCAP H2REPLAY [--allow-empty] [--field NAME]...
                         [--port P]... [--keylog KEYS] [--workdir DIR] [--timeout S]
Prints a diff and exits 1 on any mismatch; prints
`compare: N exchanges match` and exits 0 otherwise. Exit 2: a tool failed
(h2replay crashed or exited non-zero, tshark failed). Standard library only.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tshark_exchanges  # noqa: E402

DEFAULT_FIELDS = ["method", "path", "status", "req_bytes", "resp_bytes", "grpc_status"]


def fail_tool(msg):
    print("compare: ERROR: " + msg, file=sys.stderr)
    sys.exit(2)


def run(argv, timeout, what):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                           check=False)
    except FileNotFoundError:
        fail_tool("%s: %s not found" % (what, argv[0]))
    except subprocess.TimeoutExpired:
        fail_tool("%s took more than %ds (hang?): %s" % (what, timeout, " ".join(argv)))
    err = p.stderr.decode("utf-8", "replace")
    if p.returncode < 0 or p.returncode >= 128:
        fail_tool("%s crashed (exit %d): %s\n%s" % (what, p.returncode, " ".join(argv), err))
    if p.returncode != 0:
        fail_tool("%s exited %d: %s\n%s" % (what, p.returncode, " ".join(argv), err))
    return p.stdout.decode("utf-8", "replace"), err


def h2replay_exchanges(h2replay, pcap, workdir, timeout, keylog=None):
    trace = os.path.join(workdir, os.path.splitext(os.path.basename(pcap))[0] + ".h2rt")
    argv = [h2replay, "capture", "-r", pcap, "-o", trace]
    if keylog:
        argv += ["--keylog", keylog]
    _, cap_err = run(argv, timeout, "h2replay capture")
    out, _ = run([h2replay, "show", trace, "--format", "jsonl", "--records", "all"], timeout,
                 "h2replay show")
    conns = {}
    exchanges = []
    for n, line in enumerate(out.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            fail_tool("h2replay show: line %d is not JSON (%s): %s" % (n, e, line[:200]))
        kind = rec.get("type", "exchange")
        if kind == "conn":
            conns[rec.get("id")] = (rec.get("client"), rec.get("server"))
        elif kind == "exchange":
            exchanges.append(rec)
    out_recs = []
    for ex in exchanges:
        ends = conns.get(ex.get("conn"))
        if ends is None:
            fail_tool("h2replay show: exchange on conn %r has no conn record: %s"
                      % (ex.get("conn"), json.dumps(ex)))
        r = dict(ex)
        r["client"], r["server"] = ends
        out_recs.append(r)
    return out_recs, cap_err, trace


def group(recs):
    """(client, server, stream) -> records in time order."""
    g = {}
    for r in recs:
        g.setdefault((r["client"], r["server"], r["stream"]), []).append(r)
    for k in g:
        g[k].sort(key=lambda r: r.get("t_start_ns") or 0)
    return g


def fmt_key(k):
    return "%s -> %s stream %s" % k


def brief(r, fields):
    return " ".join("%s=%s" % (f, json.dumps(r.get(f))) for f in fields)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pcap")
    ap.add_argument("h2replay")
    ap.add_argument("--allow-empty", action="store_true",
                    help="0 exchanges on both sides is a pass (non-HTTP/2 captures)")
    ap.add_argument("--field", action="append", default=[],
                    help="compare this field too (e.g. authority)")
    ap.add_argument("--port", type=int, action="append", default=[],
                    help="extra server port for tshark to decode as HTTP")
    ap.add_argument("--keylog", help="TLS capture: NSS key log for h2replay and tshark")
    ap.add_argument("--workdir", help="keep the trace here (default: a temp dir, removed)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds each tool may take")
    args = ap.parse_args()

    if not os.path.isfile(args.pcap):
        fail_tool("no such pcap: %s" % args.pcap)
    fields = DEFAULT_FIELDS + [f for f in args.field if f not in DEFAULT_FIELDS]

    tmp = None
    workdir = args.workdir
    if workdir is None:
        tmp = workdir = tempfile.mkdtemp(prefix="h2r-compare.")
    else:
        os.makedirs(workdir, exist_ok=True)
    try:
        ours, cap_err, trace = h2replay_exchanges(args.h2replay, args.pcap, workdir, args.timeout,
                                                  args.keylog)
        theirs = tshark_exchanges.extract(args.pcap, args.port, timeout=args.timeout,
                                          keylog=args.keylog)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    g_ours, g_theirs = group(ours), group(theirs)
    problems = []
    matched = 0
    for key in sorted(set(g_ours) | set(g_theirs), key=lambda k: (k[0], k[1], k[2])):
        a, b = g_ours.get(key, []), g_theirs.get(key, [])
        for i in range(max(len(a), len(b))):
            if i >= len(a):
                problems.append("MISSING in h2replay: %s: tshark has %s"
                                % (fmt_key(key), brief(b[i], fields)))
                continue
            if i >= len(b):
                problems.append("EXTRA in h2replay:   %s: %s (tshark has no such exchange)"
                                % (fmt_key(key), brief(a[i], fields)))
                continue
            diffs = [(f, a[i].get(f), b[i].get(f)) for f in fields if a[i].get(f) != b[i].get(f)]
            if diffs:
                problems.append("DIFF %s:\n%s" % (fmt_key(key), "\n".join(
                    "    %-12s h2replay=%-20s tshark=%s" % (f, json.dumps(x), json.dumps(y))
                    for f, x, y in diffs)))
            else:
                matched += 1

    name = os.path.basename(args.pcap)
    if problems:
        print("compare: %s: %d mismatches (%d exchanges match; h2replay %d, tshark %d)"
              % (name, len(problems), matched, len(ours), len(theirs)))
        for p in problems[:200]:
            print("  " + p)
        if len(problems) > 200:
            print("  ... %d more" % (len(problems) - 200))
        if cap_err.strip():
            print("h2replay capture stderr:\n" + cap_err.strip()[-4000:])
        sys.exit(1)
    if matched == 0 and not args.allow_empty:
        print("compare: %s: no exchanges on either side (use --allow-empty for non-HTTP/2 "
              "captures)" % name)
        sys.exit(1)
    print("compare: %d exchanges match" % matched)


if __name__ == "__main__":
    main()
