#!/usr/bin/env bash
# capture_ts2021.sh H2REPLAY DATA_DIR WORK_DIR [tls|plain]
#
# TS2021 recognition on the committed Tailscale capture (tests/data/tailscale,
# 12 tailscaled registering with Headscale, two of them reconnecting): captures
# the TLS pcap with its key log (or the plain one) and the server's
# noise_private.key, then checks every ts_session record against
#   - manifest.json: one session per /ts2021 stream, the node (by client port)
#     and its machine key, the stream's duration, the restarted nodes;
#   - headscale-nodes.json: the server's list of machine keys;
#   - tshark, as an independent decoder: the reassembled (and, for TLS,
#     decrypted) stream of each /ts2021 connection, split into controlbase
#     frames by a few lines of Python, gives the frame and byte counts per
#     direction that the record must carry.
# Also: the 14 /key connections carry reason ts2021_key, the counters add up,
# and a capture without --noise-key records the same sessions unidentified.
set -euo pipefail

H2R=${1:?h2replay binary}
DATA=${2:?tests/data/tailscale}
WORK=${3:?work dir}
VARIANT=${4:-tls}

source "$(dirname "$0")/lib.sh"

if ! h2r_have_tools tshark; then
    echo "SKIP: tshark not installed" >&2
    exit 77
fi

rm -rf "$WORK" && mkdir -p "$WORK"
if [[ $VARIANT == plain ]]; then
    dir=$DATA/plain
    keylog_args=()
else
    dir=$DATA
    keylog_args=(--keylog "$DATA/tailscale.keylog")
fi
pcap=$dir/tailscale.pcap
port=$(h2r_python -c 'import json,sys; print(json.load(open(sys.argv[1]))["network"]["http_port"])' \
    "$dir/manifest.json")

h2r_log "capture ($VARIANT) with --noise-key"
"$H2R" capture -q -r "$pcap" "${keylog_args[@]}" --noise-key "$dir/noise_private.key" \
    -o "$WORK/ts.h2rt" 2>"$WORK/capture.err" || h2r_die "capture failed: $(cat "$WORK/capture.err")"
"$H2R" show "$WORK/ts.h2rt" --format jsonl --records all --frames >"$WORK/ts.jsonl"
"$H2R" show "$WORK/ts.h2rt" >"$WORK/ts.table"

h2r_log "capture ($VARIANT) without --noise-key"
"$H2R" capture -q -r "$pcap" "${keylog_args[@]}" -o "$WORK/anon.h2rt" 2>"$WORK/anon.err" ||
    h2r_die "capture without --noise-key failed"
grep -q "recorded without machine keys" "$WORK/anon.err" ||
    h2r_die "no hint about --noise-key on stderr: $(cat "$WORK/anon.err")"
"$H2R" show "$WORK/anon.h2rt" --format jsonl --records ts2021 >"$WORK/anon.jsonl"

h2r_log "tshark: reassembled /ts2021 streams"
if [[ $VARIANT == plain ]]; then
    dissect=(-d "tcp.port==$port,http")
    follow=tcp
else
    dissect=(-d "tcp.port==$port,tls" -o "tls.keylog_file:$DATA/tailscale.keylog" -o "http.tls.port:$port")
    follow=tls
fi
tshark -r "$pcap" "${dissect[@]}" -Y 'http.request.uri == "/ts2021"' -T fields \
    -e tcp.stream -e tcp.srcport 2>/dev/null | sort -u >"$WORK/streams.tsv"
[[ -s $WORK/streams.tsv ]] || h2r_die "tshark found no /ts2021 request"
zargs=()
while read -r stream _; do
    zargs+=(-z "follow,$follow,raw,$stream")
done <"$WORK/streams.tsv"
tshark -r "$pcap" "${dissect[@]}" -q "${zargs[@]}" >"$WORK/follow.txt" 2>/dev/null

h2r_python - "$WORK" "$dir" "$VARIANT" <<'EOF'
import json
import sys

work, data, variant = sys.argv[1:4]
manifest = json.load(open(data + "/manifest.json"))
hs_nodes = json.load(open(data + "/headscale-nodes.json"))
recs = [json.loads(l) for l in open(work + "/ts.jsonl")]
anon = [json.loads(l) for l in open(work + "/anon.jsonl")]
errors = []


def fail(msg):
    errors.append(msg)


conns = {r["id"]: r for r in recs if r.get("type") == "conn"}
ends = {r["id"]: r for r in recs if r.get("type") == "conn_end"}
sess = sorted((r for r in recs if r.get("type") == "ts_session"), key=lambda r: r["id"])
summary = [r for r in recs if r.get("type") == "summary"][0]
counters = summary["counters"]

m_ts = [s for s in manifest["sessions"] if s["kind"] == "ts2021"]
m_key = [s for s in manifest["sessions"] if s["kind"] == "key"]
by_port = {s["client_port"]: s for s in manifest["sessions"]}
node_mkey = {n["hostname"]: n["machine_key"] for n in manifest["nodes"]}
hs_mkeys = {n["machine_key"] for n in hs_nodes}
hs_by_name = {n["name"]: n["machine_key"] for n in hs_nodes}

# -- every session found, identified, with the right machine key
if len(sess) != len(m_ts):
    fail("%d ts_session records, manifest has %d /ts2021 streams" % (len(sess), len(m_ts)))
seen_ports = set()
for r in sess:
    c = conns.get(r["conn"])
    if not c or c["transport"] != "ts2021":
        fail("session %d: conn %s is not a ts2021 conn" % (r["id"], r["conn"]))
        continue
    port = int(c["client"].rsplit(":", 1)[1])
    seen_ports.add(port)
    m = by_port.get(port)
    if not m or m["kind"] != "ts2021":
        fail("session %d: client port %d is not a manifest /ts2021 stream" % (r["id"], port))
        continue
    want = node_mkey[m["node"]]
    if r["machine_key"] != want or hs_by_name.get(m["node"]) != want:
        fail("session %d (%s): machine key %s, manifest/headscale %s / %s" % (
            r["id"], m["node"], r["machine_key"], want, hs_by_name.get(m["node"])))
    for k, v in (("capver", 113), ("status", 101), ("identified", True),
                 ("tls", variant == "tls"), ("reason", None), ("frames_dropped", 0)):
        if r[k] != v:
            fail("session %d: %s = %r, want %r" % (r["id"], k, r[k], v))
    if r["how"] not in ("fin", "rst"):
        fail("session %d: how %s" % (r["id"], r["how"]))
    dur = r["duration_ns"] / 1e9
    if abs(dur - m["duration_s"]) > 0.1:
        fail("session %d: duration %.3f s, manifest %.3f s" % (r["id"], dur, m["duration_s"]))
    if not (0 < r["t_handshake_ns"] - r["t_upgrade_ns"] < 1e9):
        fail("session %d: handshake %d ns after the upgrade" % (r["id"],
             r["t_handshake_ns"] - r["t_upgrade_ns"]))
    e = ends[r["conn"]]
    if e["exchanges"] != 0 or e["reason"] is not None:
        fail("session %d: conn_end %r" % (r["id"], e))
    if len(r["frames"]) != r["frames_c2s"] + r["frames_s2c"]:
        fail("session %d: %d frames listed, %d counted" % (r["id"], len(r["frames"]),
             r["frames_c2s"] + r["frames_s2c"]))
    first = r["frames"][0] if r["frames"] else None
    if not first or first[1:] != [1, 2, 51]:
        fail("session %d: first frame %r is not the 51-byte handshake response" % (r["id"], first))
if seen_ports != {s["client_port"] for s in m_ts}:
    fail("sessions on ports %s, manifest %s" % (sorted(seen_ports), sorted(s["client_port"] for s in m_ts)))

# -- nodes: 12 distinct machine keys = headscale's list; numbered by first appearance
mkeys = [r["machine_key"] for r in sess]
if set(mkeys) != hs_mkeys or len(hs_mkeys) != len(manifest["nodes"]):
    fail("machine keys %d distinct, headscale lists %d, manifest %d nodes" % (
        len(set(mkeys)), len(hs_mkeys), len(manifest["nodes"])))
order, node_of = [], {}
for r in sess:
    if r["machine_key"] not in node_of:
        order.append(r["machine_key"])
        node_of[r["machine_key"]] = len(order)
    if r["node"] != node_of[r["machine_key"]]:
        fail("session %d: node %d, first-appearance order gives %d" % (r["id"], r["node"],
             node_of[r["machine_key"]]))
ups = [r["t_upgrade_ns"] for r in sess]
if ups != sorted(ups):
    fail("session ids are not in upgrade order")
twice = sorted(k for k in set(mkeys) if mkeys.count(k) == 2)
restarted = sorted(node_mkey[n] for n in manifest["options"]["restarted_nodes"])
if twice != restarted or len(sess) - len(set(mkeys)) != len(restarted):
    fail("reconnected machine keys %s, manifest restarted %s" % (twice, restarted))

# -- /key connections and counters
keys = [e for e in ends.values() if e["reason"] == "ts2021_key"]
if len(keys) != len(m_key):
    fail("%d conn_end ts2021_key, manifest %d /key streams" % (len(keys), len(m_key)))
if any(e["reason"] not in (None, "ts2021_key") for e in ends.values()):
    fail("other conn_end reasons: %s" % sorted({e["reason"] for e in ends.values()} - {None}))
for k, v in (("ts2021.sessions", len(m_ts)), ("ts2021.identified", len(m_ts)),
             ("ts2021.key_requests", len(m_key))):
    if counters.get(k) != v:
        fail("counter %s = %s, want %d" % (k, counters.get(k), v))
if summary["undecodable_flows"] != 0:
    fail("undecodable_flows %d" % summary["undecodable_flows"])

# -- without the noise key: same sessions, same shape, no identity
if len(anon) != len(sess):
    fail("without --noise-key: %d sessions, with: %d" % (len(anon), len(sess)))
for a, r in zip(sorted(anon, key=lambda x: x["id"]), sess):
    if a["identified"] or a["node"] is not None or a["machine_key"] is not None:
        fail("anon session %d is identified" % a["id"])
    for k in ("capver", "frames_c2s", "frames_s2c", "bytes_c2s", "bytes_s2c", "how"):
        if a[k] != r[k]:
            fail("anon session %d: %s %r != %r" % (a["id"], k, a[k], r[k]))

# -- tshark's reassembled streams, split into frames independently
port_of_stream = {}
for line in open(work + "/streams.tsv"):
    st, p = line.split()
    port_of_stream[st] = int(p)
blocks, cur = [], None
for line in open(work + "/follow.txt"):
    if line.startswith("Filter: tcp.stream eq "):
        cur = {"stream": line.split()[-1], "plain": [], "tab": []}
        blocks.append(cur)
    elif cur is not None and line.strip() and all(ch in "0123456789abcdef" for ch in line.strip()):
        (cur["tab"] if line.startswith("\t") else cur["plain"]).append(bytes.fromhex(line.strip()))


def frames(buf, first_answer):
    """Frames after the HTTP head: (count, bytes). The head ends at the first CRLFCRLF."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    p = end + 4
    n = 0
    total = 0
    while p + 3 <= len(buf):
        ln = 3 + int.from_bytes(buf[p + 1:p + 3], "big")
        if p + ln > len(buf):
            break
        n += 1
        total += ln
        p += ln
    return n, len(buf) - end - 4, total


by_conn_port = {int(conns[r["conn"]]["client"].rsplit(":", 1)[1]): r for r in sess}
if len(blocks) != len(sess):
    fail("tshark followed %d /ts2021 streams, %d sessions" % (len(blocks), len(sess)))
for b in blocks:
    a, t = b"".join(b["plain"]), b"".join(b["tab"])
    c2s, s2c = (a, t) if a.startswith(b"POST /ts2021") else (t, a)
    r = by_conn_port.get(port_of_stream.get(b["stream"]))
    if r is None:
        fail("tshark stream %s has no session" % b["stream"])
        continue
    fc, fs = frames(c2s, False), frames(s2c, True)
    got = (r["frames_c2s"], r["bytes_c2s"], r["frames_s2c"], r["bytes_s2c"])
    want = (fc[0], fc[1], fs[0], fs[1])
    if got != want:
        fail("session %d (tcp.stream %s): frames/bytes c2s, s2c %r, tshark %r" % (
            r["id"], b["stream"], got, want))

print("%s: %d sessions, %d nodes, %d identified, %d reconnects, %d frames; tshark agrees on %d streams"
      % (variant, len(sess), len(set(mkeys)), sum(r["identified"] for r in sess),
         len(sess) - len(set(mkeys)), sum(r["frames_c2s"] + r["frames_s2c"] for r in sess),
         len(blocks)))
if errors:
    for e in errors:
        print("FAIL:", e)
    sys.exit(1)
EOF
grep -q "14 TS2021 sessions, 12 distinct nodes, 14 identified" "$WORK/ts.table" ||
    h2r_die "show table summary: $(tail -1 "$WORK/ts.table")"
echo "PASS capture_ts2021 ($VARIANT)"
