#!/usr/bin/env bash
# tls_keylog_cases.sh - what h2replay does with missing, wrong and damaged key logs.
#
# On the committed TLS captures (tests/data/tls), every case checks the exit
# status, the message on stderr and the counters and conn-end reasons in the
# trace (docs/capture.md, "TLS"):
#
#   no --keylog                 exit 0, tls_no_keylog, "no --keylog given"
#   key log file missing        exit 1, "key log ...: No such file or directory"
#   not a key log (a pcap)      exit 1, "no valid key line"
#   empty key log               exit 0, warning "has no key lines", keylog.empty, tls_no_key
#   another capture's key log   exit 0, tls_no_key for every flow, "no secrets for them"
#   a truncated line (middle)   exit 0, keylog.bad_lines 1 with its line number; the flow
#                               whose secret was cut fails with tls_no_key
#   cut inside the last line    exit 0, keylog.bad_lines 1
#   CRLF line ends              exit 0, every exchange decrypted
#   all key logs in one file    exit 0, every capture fully decrypted
#
# Usage: tls_keylog_cases.sh H2REPLAY TLS_DATA_DIR WORKDIR
# Exit 0 all cases pass, 1 a case failed, 77 when h2replay cannot take --keylog yet.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"
# shellcheck source-path=SCRIPTDIR source=tls_lib.sh
source "$HERE/tls_lib.sh"

[[ $# -eq 3 ]] || {
    echo "usage: $0 H2REPLAY TLS_DATA_DIR WORKDIR" >&2
    exit 2
}
H2R=$1
DATA=$2
W=$3
rm -rf "$W"
mkdir -p "$W"

P13=$DATA/tls13-aes128gcm.pcap
P12=$DATA/tls12-aes128gcm.pcap
PRES=$DATA/tls-resumed.pcap
if ! h2r_tls_supported "$H2R" "$P13" "${P13%.pcap}.keys"; then
    echo "tls_keylog_cases: SKIP: $H2R does not support --keylog yet (capture driver)" >&2
    exit 77
fi

passed=0
failed=0
check() { # check DESCRIPTION ACTUAL EXPECTED
    if [[ $2 == "$3" ]]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $1: got '$2', want '$3'"
    fi
}
check_grep() { # check_grep DESCRIPTION FILE PATTERN
    if grep -qE -- "$3" "$2"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $1: no /$3/ in:"
        sed 's/^/     /' "$2"
    fi
}

# cap NAME PCAP [capture flags...]: runs a capture into W/NAME.h2rt; sets RC and ERR.
cap() {
    local name=$1 pcap=$2
    shift 2
    ERR=$W/$name.err
    TRACE=$W/$name.h2rt
    RC=0
    timeout -k 5 120 "$H2R" capture -r "$pcap" -o "$TRACE" "$@" 2>"$ERR" >/dev/null || RC=$?
    if [[ $RC -ge 124 ]] || grep -qE 'AddressSanitizer|runtime error:' "$ERR"; then
        failed=$((failed + 1))
        echo "FAIL $name: crash or hang (exit $RC)"
        sed 's/^/     /' "$ERR"
    fi
}

# --- no key log at all -------------------------------------------------------
cap nokeylog "$P13"
check "no --keylog: exit" "$RC" 0
check "no --keylog: exchanges" "$(h2r_trace_value "$TRACE" exchanges)" 0
check "no --keylog: undecodable" "$(h2r_trace_value "$TRACE" undecodable_flows)" 1
check "no --keylog: counter" "$(h2r_trace_value "$TRACE" undecodable.tls_no_keylog)" 1
check "no --keylog: reason" "$(h2r_trace_reasons "$TRACE")" tls_no_keylog
check_grep "no --keylog: message" "$ERR" "TLS flows not decrypted: no --keylog given"

# --- the key log file is missing / not a key log ----------------------------
cap missing "$P13" --keylog "$W/does-not-exist.keys"
check "missing key log: exit" "$RC" 1
check_grep "missing key log: message" "$ERR" "key log .*does-not-exist.keys: No such file"
cap notakeylog "$P13" --keylog "$P12"
check "not a key log: exit" "$RC" 1
check_grep "not a key log: message" "$ERR" "no valid key line"

# --- empty -------------------------------------------------------------------
: >"$W/empty.keys"
cap empty "$P13" --keylog "$W/empty.keys"
check "empty key log: exit" "$RC" 0
check_grep "empty key log: warning" "$ERR" "has no key lines"
check "empty key log: keylog.empty" "$(h2r_trace_value "$TRACE" keylog.empty)" 1
check "empty key log: reason" "$(h2r_trace_reasons "$TRACE")" tls_no_key

# --- another capture's key log ------------------------------------------------
cap wrong "$P13" --keylog "${P12%.pcap}.keys"
check "wrong key log: exit" "$RC" 0
check "wrong key log: tls.no_key" "$(h2r_trace_value "$TRACE" tls.no_key)" 1
check "wrong key log: exchanges" "$(h2r_trace_value "$TRACE" exchanges)" 0
check "wrong key log: reason" "$(h2r_trace_reasons "$TRACE")" tls_no_key
check_grep "wrong key log: message" "$ERR" "1 of 1 TLS flows not decrypted: no secrets for them"
cap wrong5 "$PRES" --keylog "$DATA/tls13-keyupdate.keys"
check "wrong key log, 5 flows: tls.no_key" "$(h2r_trace_value "$TRACE" tls.no_key)" 5
check "wrong key log, 5 flows: undecodable" "$(h2r_trace_value "$TRACE" undecodable_flows)" 5

# --- a line truncated in the middle of the file ------------------------------
# Cut the client's application traffic secret in half: the server's data still
# decrypts, the client's does not, so no exchange can be assembled.
keys13=${P13%.pcap}.keys
line=$(grep -n '^CLIENT_TRAFFIC_SECRET_0 ' "$keys13" | cut -d: -f1)
awk -v n="$line" 'NR == n { print substr($0, 1, 100); next } { print }' "$keys13" >"$W/cut.keys"
cap cutline "$P13" --keylog "$W/cut.keys"
check "cut line: exit" "$RC" 0
check "cut line: keylog.bad_lines" "$(h2r_trace_value "$TRACE" keylog.bad_lines)" 1
check "cut line: keylog.first_bad_line" "$(h2r_trace_value "$TRACE" keylog.first_bad_line)" "$line"
check "cut line: reason" "$(h2r_trace_reasons "$TRACE")" tls_no_key
check_grep "cut line: warning" "$ERR" "1 bad lines skipped \\(line $line: "

# --- cut inside the last line (a writer that died mid-line) ------------------
size=$(stat -c %s "$keys13")
head -c $((size - 20)) "$keys13" >"$W/cuttail.keys"
cap cuttail "$P13" --keylog "$W/cuttail.keys"
check "cut tail: exit" "$RC" 0
check "cut tail: keylog.bad_lines" "$(h2r_trace_value "$TRACE" keylog.bad_lines)" 1
check "cut tail: undecodable" "$(h2r_trace_value "$TRACE" undecodable_flows)" 1

# --- CRLF ----------------------------------------------------------------------
sed 's/$/\r/' "$keys13" >"$W/crlf.keys"
cap crlf "$P13" --keylog "$W/crlf.keys"
check "CRLF: exit" "$RC" 0
check "CRLF: exchanges" "$(h2r_trace_value "$TRACE" exchanges)" 3
check "CRLF: undecodable" "$(h2r_trace_value "$TRACE" undecodable_flows)" 0

# --- one key log for everything (SSLKEYLOGFILE shared by many clients) --------
cat "$DATA"/*.keys >"$W/all.keys"
for pcap in "$DATA"/*.pcap; do
    name=$(basename "$pcap" .pcap)
    cap "all-$name" "$pcap" --keylog "$W/all.keys"
    check "all keys, $name: exit" "$RC" 0
    check "all keys, $name: undecodable" "$(h2r_trace_value "$TRACE" undecodable_flows)" 0
    check "all keys, $name: decrypted" "$(h2r_trace_value "$TRACE" tls.decrypted_flows)" \
        "$(h2r_trace_value "$TRACE" tls.flows)"
done

echo "tls_keylog_cases: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
