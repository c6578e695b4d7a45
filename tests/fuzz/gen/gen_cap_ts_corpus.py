#!/usr/bin/env python3
"""Writes the fuzz_cap_ts seed corpus (input format: tests/fuzz/fuzz_cap_ts.c).

usage: gen_cap_ts_corpus.py OUTDIR [PLAIN_PCAP]

Synthetic seeds use the TS2021 vector of docs/ts2021.md (control key 0x40..0x5f,
which the fuzz target holds); with PLAIN_PCAP (tests/data/tailscale/plain/
tailscale.pcap) the first packets of its first /ts2021 and /key connections are
added as they were on the wire. Stdlib only.
"""
import os
import struct
import sys

VECTOR_HS = ("AIIBAGA1gHLWNliA0a7qMprfkSE4OFHtIaKOO3XpZdDSzRZiVK1bj+vt65dBW+U2EiBea/qzheNMsSfdiFTE+a+"
             "xD5sOSZRRcdgOUrYrHMd5TskgQtc4DboePJb94Jn59BWOCOo=")
REQ = ("POST /ts2021 HTTP/1.1\r\nHost: h\r\nUpgrade: tailscale-control-protocol\r\n"
       "Connection: upgrade\r\nX-Tailscale-Handshake: %s\r\nContent-Length: 0\r\n\r\n")
H101 = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: tailscale-control-protocol\r\n"
        b"Connection: upgrade\r\n\r\n")
RESP = bytes.fromhex("020030675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958371ea52f"
                     "c9dd7d78df78ba87d8e5e246ffc6af00")
S2C0 = bytes.fromhex("040015970a14771e3986da5bc61cb910623aa7aba8c4df6f")
C2S0 = bytes.fromhex("040028e42e01d8573d1173d84370e6f20edf94d699eeecda7e16e9df232e7952f0f78675a9b5941bce62c2")
C2S2 = bytes.fromhex("0400101c79dcbf03b94133273963f47ec98fdc")

KEY, CAPEND, GAP, PRE_REQ, PRE_101 = 1, 2, 4, 8, 16


def chunks(dir_, data):
    out = b""
    while data:
        n = min(len(data), 127)
        out += bytes([(dir_ << 7) | n]) + data[:n]
        data = data[n:]
    return out


def seed(opt, *parts):
    return bytes([opt]) + b"".join(chunks(d, p) for d, p in parts)


def pcap_flows(path, limit=40):
    """Payloads (dir, bytes) of the first /ts2021 and /key TCP connections."""
    with open(path, "rb") as f:
        raw = f.read()
    magic = struct.unpack("<I", raw[:4])[0]
    endian = "<" if magic in (0xa1b2c3d4, 0xa1b23c4d) else ">"
    link = struct.unpack(endian + "I", raw[20:24])[0]
    off, flows = 24, {}
    while off + 16 <= len(raw):
        _, _, incl, _ = struct.unpack(endian + "IIII", raw[off:off + 16])
        pkt = raw[off + 16:off + 16 + incl]
        off += 16 + incl
        ip = pkt[14:] if link == 1 else pkt[16:] if link == 113 else pkt[4:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        ihl = (ip[0] & 15) * 4
        tcp = ip[ihl:]
        sport, dport = struct.unpack(">HH", tcp[:4])
        payload = tcp[(tcp[12] >> 4) * 4:struct.unpack(">H", ip[2:4])[0] - ihl]
        if not payload:
            continue
        client = max(sport, dport)  # the server listens on the lower, fixed port here
        flows.setdefault(client, []).append((0 if sport == client else 1, payload))
    picked = {}
    for client, pkts in flows.items():
        first = pkts[0][1]
        for name, prefix in (("ts2021", b"POST /ts2021"), ("key", b"GET /key")):
            if first.startswith(prefix) and name not in picked:
                picked[name] = pkts[:limit]
    return picked


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    req = (REQ % VECTOR_HS).encode()
    seeds = {
        "vector_identified": seed(KEY | PRE_REQ | PRE_101, (1, RESP + S2C0), (0, C2S0), (0, C2S2)),
        "vector_bytes": seed(KEY, (0, req), (1, H101 + RESP), (1, S2C0), (0, C2S0)),
        "no_key_capture_end": seed(CAPEND | PRE_REQ | PRE_101, (1, RESP), (0, C2S0[:20])),
        "refused_403": seed(KEY | PRE_REQ, (1, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")),
        "error_frame": seed(KEY | PRE_REQ | PRE_101, (1, b"\x03\x00\x0bunsupported")),
        "gap": seed(KEY | GAP | PRE_REQ | PRE_101, (1, RESP), (0, C2S0), (1, S2C0), (0, C2S2)),
        "bad_base64": seed(0, (0, (REQ % "AIIB!!!!").encode()), (1, H101 + RESP)),
        "short_frame": seed(KEY, (0, (REQ % VECTOR_HS[:40]).encode()), (1, H101)),
        "key_request": seed(0, (0, b"GET /key?v=113 HTTP/1.1\r\nHost: h\r\n\r\n"),
                            (1, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")),
        "framing_error": seed(PRE_REQ | PRE_101, (1, S2C0)),
    }
    if len(sys.argv) > 2:
        for name, pkts in pcap_flows(sys.argv[2]).items():
            seeds["plain_" + name] = seed(KEY, *pkts)
    for name, data in seeds.items():
        with open(os.path.join(out, name + ".bin"), "wb") as f:
            f.write(data)
    print("%d seeds -> %s" % (len(seeds), out))


if __name__ == "__main__":
    main()
