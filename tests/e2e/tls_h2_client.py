#!/usr/bin/env python3
"""tls_h2_client.py - a minimal HTTP/2-over-TLS client for resumption captures.

curl reuses one connection for every URL of a run, so it cannot show a
resumed TLS session on the wire; this client opens one connection per
--conns, offering the session of the previous connection (TLS 1.3 PSK, or
the TLS 1.2 session id / ticket), and writes the NSS key log through
Python's ssl module (SSLContext.keylog_filename). Each connection sends one
GET per path on streams 1, 3, ... with HPACK literal fields (RFC 7541
§6.2.2, no dynamic table), reads until every stream ended, then GOAWAY.

Usage: tls_h2_client.py --port P --keylog FILE [--tls12] [--conns N] PATH...
Exits 1 when a response is missing or a later connection was not resumed.
Standard library only.
"""

import argparse
import socket
import ssl
import struct
import sys


def hpack_int(value, prefix_bits, first):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name, value):
    """RFC 7541 §6.2.2: literal header field without indexing, new name, no Huffman."""
    n, v = name.encode(), value.encode()
    return b"\x00" + hpack_int(len(n), 7, 0) + n + hpack_int(len(v), 7, 0) + v


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def read_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def one_connection(ctx, port, paths, session):
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    if s.selected_alpn_protocol() != "h2":
        raise RuntimeError("ALPN: %r" % s.selected_alpn_protocol())
    out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0)
    open_streams = set()
    for i, path in enumerate(paths):
        sid = 1 + 2 * i
        block = b"".join(literal(k, v) for k, v in ((":method", "GET"), (":scheme", "https"),
                                                    (":authority", "localhost:%d" % port),
                                                    (":path", path), ("user-agent", "h2r-e2e")))
        out += frame(1, 0x5, sid, block)  # END_STREAM | END_HEADERS
        open_streams.add(sid)
    s.sendall(out)
    got = 0
    while open_streams:
        hdr = read_exact(s, 9)
        length = struct.unpack(">I", b"\x00" + hdr[:3])[0]
        ftype, flags, sid = hdr[3], hdr[4], struct.unpack(">I", hdr[5:])[0] & 0x7FFFFFFF
        payload = read_exact(s, length)
        if ftype == 4 and not flags & 1:
            s.sendall(frame(4, 1, 0))  # SETTINGS ACK
        elif ftype == 0:
            got += length
            if length:
                # keep both windows open (RFC 9113 §6.9)
                s.sendall(frame(8, 0, 0, struct.pack(">I", length)) +
                          frame(8, 0, sid, struct.pack(">I", length)))
        if ftype in (0, 1) and flags & 1:
            open_streams.discard(sid)
        if ftype == 7:
            raise RuntimeError("GOAWAY from the server")
    s.sendall(frame(7, 0, 0, struct.pack(">II", 2 * len(paths) - 1, 0)))
    reused = s.session_reused
    session = s.session
    # close_notify first: OpenSSL drops the session of a connection that was not shut down
    # cleanly from the server's cache, and the next connection could not resume.
    try:
        s.unwrap()
    except (OSError, ssl.SSLError):
        pass
    s.close()
    return got, reused, session


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--keylog", required=True)
    ap.add_argument("--tls12", action="store_true", help="at most TLS 1.2")
    ap.add_argument("--conns", type=int, default=2)
    ap.add_argument("paths", nargs="+")
    args = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    ctx.keylog_filename = args.keylog
    if args.tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256")
    session = None
    for i in range(args.conns):
        got, reused, session = one_connection(ctx, args.port, args.paths, session)
        print("connection %d: %d body bytes, resumed=%s" % (i + 1, got, reused))
        if i > 0 and not reused:
            sys.exit("tls_h2_client: connection %d was not resumed" % (i + 1))


if __name__ == "__main__":
    main()
