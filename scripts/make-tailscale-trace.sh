#!/usr/bin/env bash
# make-tailscale-trace.sh - turn the committed Tailscale capture into the sample trace.
#
#   scripts/make-tailscale-trace.sh [OUT]     (default: traces/tailscale-sample.h2rt)
#
# Captures tests/data/tailscale/tailscale.pcap (12 tailscaled v1.80.3 registering with
# Headscale v0.29.2 over TLS, two of them reconnecting) with its TLS key log and Headscale's
# noise_private.key, redaction on (the default), so the trace holds one ts_session record per
# TS2021 session: node, machine key (a public key), capability version, timing and the size,
# direction and time of every Noise frame. The content of the sessions is forward-secret and
# was never decrypted; the key log and the noise key are only read, never written.
#
# Then checks the result: 14 sessions, 12 nodes, all identified; and that no secret of the
# inputs is in the decompressed trace (each TLS secret of the key log, the noise private key,
# in hex as in the files) and no Headscale pre-auth key (hskey-auth-) either.
# Needs a built h2replay (H2R, default build/cli/h2replay) and zstd.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
H2R=${H2R:-$ROOT/build/cli/h2replay}
DATA=$ROOT/tests/data/tailscale
OUT=${1:-$ROOT/traces/tailscale-sample.h2rt}

die() {
    echo "make-tailscale-trace: $*" >&2
    exit 1
}

[[ -x $H2R ]] || die "no h2replay at $H2R (build first, or set H2R)"
command -v zstd >/dev/null || die "zstd is needed to check the trace"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Relative input paths: the trace header records the source, and a path under the
# checkout says more than one under someone's home directory.
(cd "$ROOT" && "$H2R" capture -q -r tests/data/tailscale/tailscale.pcap \
    --keylog tests/data/tailscale/tailscale.keylog \
    --noise-key tests/data/tailscale/noise_private.key -o "$tmp/trace.h2rt")

"$H2R" show "$tmp/trace.h2rt" >"$tmp/table.txt"
grep -q "^14 TS2021 sessions, 12 distinct nodes, 14 identified$" "$tmp/table.txt" ||
    die "unexpected sessions: $(tail -1 "$tmp/table.txt")"

zstd -q -dc "$tmp/trace.h2rt" >"$tmp/plain.bin"
# Every secret, as hex text (either case) and as raw bytes.
python3 - "$tmp/plain.bin" "$DATA/tailscale.keylog" "$DATA/noise_private.key" <<'PY' ||
import sys
data = open(sys.argv[1], "rb").read()
secrets = []
for line in open(sys.argv[2]):
    f = line.split()
    if len(f) == 3 and not f[0].startswith("#"):
        secrets.append(("TLS secret " + f[0], f[2]))
noise = open(sys.argv[3]).read().strip()
if not noise.startswith("privkey:") or len(noise) != 72:
    sys.exit("cannot read the noise key")
secrets.append(("the noise private key", noise[8:]))
leaks = [what for what, hx in secrets
         if hx.lower().encode() in data.lower() or bytes.fromhex(hx) in data]
if b"hskey-" in data:
    leaks.append("a Headscale key (hskey-)")
for what in leaks:
    print("make-tailscale-trace: %s found in the trace" % what, file=sys.stderr)
print("checked %d secrets: %d found" % (len(secrets), len(leaks)))
sys.exit(1 if leaks else 0)
PY
    die "secrets in the trace: not written"

mv "$tmp/trace.h2rt" "$OUT"
echo "wrote $OUT ($(stat -c %s "$OUT") bytes): $(tail -1 "$tmp/table.txt")"
