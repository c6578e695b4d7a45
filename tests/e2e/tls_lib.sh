# shellcheck shell=bash
# tls_lib.sh - helpers for the TLS end-to-end scripts (sourced after lib.sh).

# h2r_tls_supported H2REPLAY PCAP KEYS: 0 when this h2replay build takes --keylog.
# Until the capture driver passes the key log on, it refuses the flag with
# "not supported yet"; the TLS tests then skip (exit 77) instead of failing.
h2r_tls_supported() {
    local h2r=$1 pcap=$2 keys=$3 err
    err=$(timeout -k 5 60 "$h2r" capture -q -r "$pcap" -o /dev/null --keylog "$keys" 2>&1 >/dev/null) ||
        true
    [[ $err != *"not supported yet"* ]]
}

# h2r_trace_value TRACE KEY: a summary field ("exchanges") or counter ("tls.no_key") of a
# trace, 0 when absent (counters that stayed 0 are not written).
h2r_trace_value() {
    local h2r=${H2R:?} trace=$1 key=$2
    "$h2r" show "$trace" --format jsonl --records all |
        "$H2R_PY" -c '
import json, sys
key = sys.argv[1]
for line in sys.stdin:
    rec = json.loads(line)
    if rec.get("type") == "summary":
        v = rec.get(key, rec.get("counters", {}).get(key, 0))
        print(v)
        break
else:
    print("no-summary")
' "$key"
}

# h2r_trace_reasons TRACE: the conn-end reasons of a trace, sorted, one per line.
h2r_trace_reasons() {
    local h2r=${H2R:?} trace=$1
    "$h2r" show "$trace" --format jsonl --records all |
        "$H2R_PY" -c '
import json, sys
out = []
for line in sys.stdin:
    rec = json.loads(line)
    if rec.get("type") == "conn_end":
        out.append(rec.get("reason") or "-")
print("\n".join(sorted(out)))
'
}
