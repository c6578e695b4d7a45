#!/usr/bin/env python3
"""oracle_selftest.py - checks the tshark extractor against what was really sent.

compare_tshark.py trusts tshark_exchanges.py as its oracle; this test keeps
the oracle honest without h2replay. The scenarios of make_captures.sh request
known files from a known docroot, so for every exchange tshark reports the
status and byte counts follow from the path alone (GET /1k.bin -> 200, 1024
bytes; POSTs are echoed, so resp_bytes == req_bytes), and each scenario has a
known number of exchanges.

Usage: oracle_selftest.py DIR   (a directory of make_captures.sh pcaps)
Prints one line per pcap and `oracle: N passed, M failed`; exits 1 on failure.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tshark_exchanges  # noqa: E402

# GET path -> (status, response body bytes); None: any non-zero size.
FILES = {
    "/small.txt": (200, 10),
    "/1k.bin": (200, 1024),
    "/16k.bin": (200, 16 * 1024),
    "/64k.bin": (200, 64 * 1024),
    "/250k.bin": (200, 250 * 1024),
    "/1m.bin": (200, 1024 * 1024),
    "/data.json": (200, 69),
    "/missing": (404, None),
    "/missing.txt": (404, None),
    "/does-not-exist": (404, None),
}
POST_SIZES = {60, 1024, 64 * 1024}  # post.json, 1k.bin, 64k.bin

# pcap -> (exchanges, upgraded exchanges, grpc_status expected on all or None)
SCENARIOS = {
    "nghttp.pcap": (16, 0, None),
    "curl-prior.pcap": (4, 0, None),
    "curl-upgrade.pcap": (6, 4, None),
    "h2load.pcap": (200, 0, None),
    "large.pcap": (3, 0, None),
    "padded.pcap": (4, 0, 0),
    "sample.pcap": (8, 1, None),
    "non-h2-http11.pcap": (0, 0, None),
    "non-h2-tcp.pcap": (0, 0, None),
}


def check_exchange(r):
    """Returns a problem string, or None when the exchange is what was sent."""
    m, path, st = r["method"], r["path"], r["status"]
    if m in ("GET", "HEAD"):
        if path not in FILES:
            return "unexpected path %r" % path
        want_st, want_len = FILES[path]
        if m == "HEAD":
            want_len = 0
        if st != want_st:
            return "status %r, want %r" % (st, want_st)
        if r["req_bytes"] != 0:
            return "req_bytes %r, want 0" % r["req_bytes"]
        if want_len is None:
            if not r["resp_bytes"]:
                return "resp_bytes 0, want an error page"
        elif r["resp_bytes"] != want_len:
            return "resp_bytes %r, want %r" % (r["resp_bytes"], want_len)
        return None
    if m == "POST":
        if st != 200:
            return "status %r, want 200" % st
        if r["req_bytes"] not in POST_SIZES:
            return "req_bytes %r, want one of %s" % (r["req_bytes"], sorted(POST_SIZES))
        if r["resp_bytes"] != r["req_bytes"]:
            return "resp_bytes %r != req_bytes %r (nghttpd --echo-upload)" % (
                r["resp_bytes"], r["req_bytes"])
        return None
    if m == "OPTIONS" and path == "*":
        return None
    return "unexpected method %r" % m


def main():
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit("usage: oracle_selftest.py DIR")
    d = sys.argv[1]
    passed = failed = 0
    for name, (n_want, n_upgrade, grpc) in sorted(SCENARIOS.items()):
        path = os.path.join(d, name)
        problems = []
        if not os.path.isfile(path):
            problems.append("missing (run tests/e2e/make_captures.sh)")
            recs = []
        else:
            recs = tshark_exchanges.extract(path, [])
        if not problems and len(recs) != n_want:
            problems.append("%d exchanges, want %d" % (len(recs), n_want))
        ups = sum(1 for r in recs if r["upgrade"])
        if not problems and ups != n_upgrade:
            problems.append("%d upgraded exchanges, want %d" % (ups, n_upgrade))
        for r in recs:
            p = check_exchange(r)
            if p is None and grpc is not None and r["grpc_status"] != grpc:
                p = "grpc_status %r, want %r" % (r["grpc_status"], grpc)
            if p is not None:
                problems.append("%s -> %s stream %s %s %s: %s" % (
                    r["client"], r["server"], r["stream"], r["method"], r["path"], p))
        if problems:
            failed += 1
            print("FAIL %s:\n  %s" % (name, "\n  ".join(problems[:20])))
        else:
            passed += 1
            print("ok   %s: %d exchanges as sent" % (name, len(recs)))
    print("oracle: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
