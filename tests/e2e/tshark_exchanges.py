#!/usr/bin/env python3
"""tshark_exchanges.py - an independent oracle: HTTP/2 exchanges in a pcap, per tshark.

Runs tshark (Wireshark 4.0 as shipped by Debian 12) over a pcap and normalises
what it dissects into one JSON object per HTTP/2 exchange, keyed by
(client endpoint, server endpoint, stream id):

    {"client": "127.0.0.1:5555", "server": "127.0.0.1:8080", "stream": 1,
     "method": "GET", "path": "/", "authority": "...", "status": 200,
     "req_bytes": 0, "resp_bytes": 10, "grpc_status": null, "upgrade": false,
     "rst_code": null, "tcp_stream": 0, "t_start_ns": ..., "t_end_ns": ...}

req_bytes / resp_bytes are the sums of DATA frame payload lengths minus
padding (RFC 9113 section 6.1) client->server / server->client. For
`Upgrade: h2c` connections (RFC 7540 section 3.2) stream 1's request is the
HTTP/1.1 request: method, path and authority (Host) come from it and
req_bytes is its body length; it only counts as an HTTP/2 exchange once the
server answered 101.

How tshark is made to see h2c on any port (tshark 4.0 has no TCP heuristic
for HTTP/2 and no http2.decompress_body preference):
  * a first, cheap pass lists server ports from SYNs (plus --port P);
  * the main pass decodes each of those ports as *http* (`-d tcp.port==P,http`),
    not http2: the HTTP dissector hands the "PRI * HTTP/2.0" preface to HTTP/2
    (prior knowledge, also when the server's SETTINGS comes first) and follows
    `Upgrade: h2c` + 101 into HTTP/2, so both kinds work on one port;
  * `-2` (two passes) and `-o tcp.reassemble_out_of_order:TRUE` so reordered
    segments are put back in order before dissection; `-T json -J ...
    --no-duplicate-keys` so several HTTP/2 frames in one packet come as a list.

TLS (--keylog KEYS): the server ports are decoded as *tls* instead
(`-d tcp.port==P,tls`) and tshark decrypts with `-o tls.keylog_file:KEYS`;
the TLS dissector hands ALPN "h2" application data to HTTP/2, so the same
frame handling applies. A connection whose secrets are not in KEYS yields no
HTTP/2 frames, hence no exchanges.

Usage: tshark_exchanges.py [--port P]... [--keylog KEYS] [--tshark PATH] [--timeout S] PCAP
Prints JSON lines sorted by (client, server, stream); exits 1 when tshark fails.
Standard library only.
"""

import argparse
import json
import os
import subprocess
import sys

MAIN_PROTOCOLS = "frame ip ipv6 tcp http http2"


def as_list(v):
    """tshark --no-duplicate-keys gives a value for one occurrence, a list for many."""
    if v is None:
        return []
    if isinstance(v, list):
        return v
    return [v]


def find_all(obj, key, out=None):
    """Every value of `key` anywhere under obj (dicts and lists), in document order."""
    if out is None:
        out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                out.extend(as_list(v))
            elif isinstance(v, (dict, list)):
                find_all(v, key, out)
    elif isinstance(obj, list):
        for v in obj:
            find_all(v, key, out)
    return out


def find_first(obj, key):
    vals = find_all(obj, key)
    return vals[0] if vals else None


def to_int(s, default=None):
    if s is None:
        return default
    try:
        return int(str(s), 0)
    except ValueError:
        return default


def epoch_ns(s):
    """'1795735312.285099000' -> integer nanoseconds, exactly."""
    if not s:
        return None
    sec, _, frac = str(s).partition(".")
    frac = (frac + "000000000")[:9]
    return int(sec) * 1000000000 + int(frac)


def endpoint(addr, port):
    if ":" in addr:
        return "[%s]:%s" % (addr, port)
    return "%s:%s" % (addr, port)


def run_tshark(argv, timeout):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, check=False)
    except FileNotFoundError:
        sys.exit("tshark_exchanges: tshark not found (scripts/setup.sh installs it)")
    except subprocess.TimeoutExpired:
        sys.exit("tshark_exchanges: tshark took more than %ds: %s" % (timeout, " ".join(argv)))
    err = "\n".join(l for l in p.stderr.decode("utf-8", "replace").splitlines()
                    if "Running as user" not in l)
    if p.returncode != 0:
        sys.exit("tshark_exchanges: tshark exited %d: %s\n%s" % (p.returncode, " ".join(argv), err))
    return p.stdout


def syn_pass(tshark, pcap, timeout):
    """(client endpoint, server endpoint) pairs from SYNs, and the set of server ports."""
    out = run_tshark([tshark, "-n", "-r", pcap, "-T", "fields", "-E", "separator=|",
                      "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport",
                      "-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport",
                      "-Y", "tcp.flags.syn==1 && tcp.flags.ack==0"], timeout)
    clients = {}
    ports = set()
    for line in out.decode("utf-8", "replace").splitlines():
        f = line.split("|")
        if len(f) != 6:
            continue
        src = endpoint(f[0] or f[1], f[2])
        dst = endpoint(f[3] or f[4], f[5])
        clients[frozenset((src, dst))] = src
        if f[5]:
            ports.add(int(f[5]))
    return clients, ports


class Conn:
    def __init__(self, a, b):
        self.pair = frozenset((a, b))
        self.client = None
        self.pending_upgrade = None  # HTTP/1.1 request carrying Upgrade: h2c
        self.streams = {}            # stream id -> exchange dict


def new_exchange(sid):
    return {"stream": sid, "method": None, "path": None, "authority": None, "status": None,
            "req_bytes": 0, "resp_bytes": 0, "grpc_status": None, "upgrade": False,
            "rst_code": None, "has_request": False, "t_start_ns": None, "t_end_ns": None}


def touch(ex, t):
    if t is None:
        return
    if ex["t_start_ns"] is None:
        ex["t_start_ns"] = t
    ex["t_end_ns"] = t


def header_list(frame):
    """[(name, value)] of a HEADERS/CONTINUATION frame as tshark decoded them."""
    out = []
    for h in as_list(frame.get("http2.header")):
        if isinstance(h, dict):
            out.append((h.get("http2.header.name", ""), h.get("http2.header.value", "")))
    return out


def http1_body_len(http):
    cl = find_first(http, "http.content_length_header")
    if cl is not None:
        return to_int(cl, 0)
    te = (find_first(http, "http.transfer_encoding") or "").lower()
    if "chunked" in te:
        return sum(to_int(s, 0) for s in find_all(http, "http.chunk_size"))
    return 0


def handle_http1(conn, src, http, t):
    method = find_first(http, "http.request.method")
    if method is not None:
        if conn.client is None:
            conn.client = src
        upgrade = (find_first(http, "http.upgrade") or "").lower()
        if "h2c" in upgrade:
            conn.pending_upgrade = {
                "method": method,
                "path": find_first(http, "http.request.uri"),
                "authority": find_first(http, "http.host"),
                "req_bytes": http1_body_len(http),
                "t": t,
            }
        return
    code = to_int(find_first(http, "http.response.code"))
    if code == 101 and conn.pending_upgrade is not None:
        req = conn.pending_upgrade
        conn.pending_upgrade = None
        ex = conn.streams.setdefault(1, new_exchange(1))
        ex.update(method=req["method"], path=req["path"], authority=req["authority"],
                  req_bytes=ex["req_bytes"] + req["req_bytes"], upgrade=True, has_request=True)
        touch(ex, req["t"])
        touch(ex, t)


def handle_http2_frame(conn, src, dst, server_ports, f, t):
    if "http2.streamid" not in f or "http2.type" not in f:
        if "http2.magic" in f and conn.client is None:
            conn.client = src
        return
    sid = to_int(f.get("http2.streamid"), 0)
    ftype = to_int(f.get("http2.type"), -1)
    if sid == 0 or ftype not in (0, 1, 3, 9):
        return
    hdrs = header_list(f) if ftype in (1, 9) else []
    if conn.client is None:
        if any(n == ":method" for n, _ in hdrs):
            conn.client = src
        elif to_int(dst.rsplit(":", 1)[1]) in server_ports:
            conn.client = src
        elif to_int(src.rsplit(":", 1)[1]) in server_ports:
            conn.client = dst
    from_client = conn.client == src if conn.client is not None else (ftype in (1, 9) and sid % 2 == 1)
    ex = conn.streams.setdefault(sid, new_exchange(sid))
    touch(ex, t)
    if ftype == 0:  # DATA, RFC 9113 section 6.1: Pad Length (1) + padding are not payload
        length = to_int(f.get("http2.length"), 0)
        flags = to_int(f.get("http2.flags"), 0)
        if flags & 0x8:
            length -= 1 + to_int(f.get("http2.pad_length"), 0)
        ex["req_bytes" if from_client else "resp_bytes"] += max(length, 0)
    elif ftype == 3:  # RST_STREAM
        ex["rst_code"] = to_int(find_first(f, "http2.rst_stream.error"))
    else:  # HEADERS / CONTINUATION with the decoded block
        if from_client:
            if not ex["has_request"] and hdrs:
                d = dict(hdrs)
                ex["method"] = d.get(":method")
                ex["path"] = d.get(":path")
                ex["authority"] = d.get(":authority")
                ex["has_request"] = True
        else:
            for n, v in hdrs:
                if n == ":status":
                    st = to_int(v)
                    # 1xx are interim (RFC 9113 section 8.1); keep the final status
                    if st is not None and st >= 200 and ex["status"] is None:
                        ex["status"] = st
                elif n == "grpc-status":
                    ex["grpc_status"] = to_int(v)


def extract(pcap, extra_ports, tshark="tshark", timeout=900, keylog=None):
    syn_clients, ports = syn_pass(tshark, pcap, timeout)
    ports |= set(extra_ports)
    argv = [tshark, "-n", "-r", pcap, "-2",
            "-o", "tcp.reassemble_out_of_order:TRUE",
            "-o", "tcp.desegment_tcp_streams:TRUE",
            "-o", "http.desegment_body:TRUE"]
    if keylog:
        argv += ["-o", "tls.keylog_file:%s" % keylog, "-o", "tls.desegment_ssl_records:TRUE",
                 "-o", "tls.desegment_ssl_application_data:TRUE"]
    for p in sorted(ports):
        argv += ["-d", "tcp.port==%d,%s" % (p, "tls" if keylog else "http")]
    argv += ["-T", "json", "-J", MAIN_PROTOCOLS, "--no-duplicate-keys", "-Y", "http || http2"]
    raw = run_tshark(argv, timeout)
    packets = json.loads(raw.decode("utf-8", "replace") or "[]")

    conns = {}
    for pkt in packets:
        layers = pkt.get("_source", {}).get("layers", {})
        ip = as_list(layers.get("ip")) or as_list(layers.get("ipv6"))
        tcp = as_list(layers.get("tcp"))
        if not ip or not tcp:
            continue
        ip, tcp = ip[-1], tcp[-1]
        src_a = ip.get("ip.src") or ip.get("ipv6.src")
        dst_a = ip.get("ip.dst") or ip.get("ipv6.dst")
        src = endpoint(src_a, tcp.get("tcp.srcport"))
        dst = endpoint(dst_a, tcp.get("tcp.dstport"))
        key = tcp.get("tcp.stream")
        conn = conns.get(key)
        if conn is None:
            conn = conns[key] = Conn(src, dst)
            conn.client = syn_clients.get(conn.pair)
        t = epoch_ns(find_first(layers.get("frame", {}), "frame.time_epoch"))
        for name, layer in layers.items():
            if name == "http":
                for h in as_list(layer):
                    if isinstance(h, dict):
                        handle_http1(conn, src, h, t)
            elif name == "http2":
                for h in as_list(layer):
                    if not isinstance(h, dict):
                        continue
                    for f in as_list(h.get("http2.stream")):
                        if isinstance(f, dict):
                            handle_http2_frame(conn, src, dst, ports, f, t)

    out = []
    for key, conn in conns.items():
        a, b = sorted(conn.pair) if len(conn.pair) == 2 else (next(iter(conn.pair)),) * 2
        client = conn.client or a
        server = b if client == a else a
        for sid, ex in conn.streams.items():
            if not ex["has_request"] and ex["status"] is None:
                continue  # e.g. RST_STREAM on a stream we never saw open
            rec = {"client": client, "server": server}
            rec.update({k: v for k, v in ex.items() if k != "has_request"})
            rec["tcp_stream"] = to_int(key)
            out.append(rec)
    out.sort(key=lambda r: (r["client"], r["server"], r["stream"], r["t_start_ns"] or 0))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pcap")
    ap.add_argument("--port", type=int, action="append", default=[],
                    help="also decode this TCP port as HTTP (servers whose SYN is not captured)")
    ap.add_argument("--keylog", help="NSS key log: decode the server ports as TLS and decrypt")
    ap.add_argument("--tshark", default=os.environ.get("TSHARK", "tshark"))
    ap.add_argument("--timeout", type=int, default=900, help="seconds tshark may take")
    args = ap.parse_args()
    if not os.path.isfile(args.pcap):
        sys.exit("tshark_exchanges: no such file: %s" % args.pcap)
    for rec in extract(args.pcap, args.port, args.tshark, args.timeout, args.keylog):
        print(json.dumps(rec, sort_keys=True))


if __name__ == "__main__":
    main()
