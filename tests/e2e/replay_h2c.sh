#!/usr/bin/env bash
# replay_h2c.sh WORKDIR - replay against a real nghttpd over h2c (prior knowledge).
#
# Synthetic traces (rp_mktrace: many connections, concurrent streams, a POST
# body larger than the default flow-control window) and every committed
# capture in tests/data (through `h2replay capture --no-redact`) are replayed
# at 1x, 10x and max, with 1 and 2 loop threads, and into two sections of
# one run file. Every exchange must come back ok with the status the trace
# recorded. Exit 0 pass, 1 fail, 77 skip (no nghttpd).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=replay_lib.sh
source "$HERE/replay_lib.sh"
rp_init replay_h2c "${1:?usage: replay_h2c.sh WORKDIR}"
rp_need nghttpd
W=$RP_WORK

h2r_make_docroot "$W/doc"
PORT=$(h2r_free_port)
h2r_start_nghttpd "$W/doc" "$PORT" "$W/nghttpd.log" --echo-upload
URL=http://127.0.0.1:$PORT

"$RP_MKTRACE" -o "$W/syn.trace" --conns 6 --per-conn 20 --concurrent 2 --interval 40ms \
    --service 2ms --paths /small.txt,/1k.bin,/data.json,/16k.bin 2>>"$W/replay.log"
for speed in 1 10 max; do
    rc=$(rp_replay "$W/syn.trace" --target "$URL" --speed "$speed" -o "$W/syn-$speed.run")
    rp_expect_exit 0 "$rc" "synthetic at $speed"
    rp_check "synthetic at speed $speed" "$W/syn-$speed.run" --sections 1 --results 120 \
        --all-ok --interrupted 0
done
rc=$(rp_replay "$W/syn.trace" --target "$URL" --speed 10 -t 2 -o "$W/syn-t2.run")
rp_expect_exit 0 "$rc" "synthetic -t 2"
rp_check "synthetic, 2 threads" "$W/syn-t2.run" --results 120 --all-ok

# uploads beyond the 64 KiB initial window: flow control on the request side
"$RP_MKTRACE" -o "$W/post.trace" --conns 2 --per-conn 4 --concurrent 2 --interval 50ms \
    --service 5ms --method POST --body 100000 --paths /echo 2>>"$W/replay.log"
rc=$(rp_replay "$W/post.trace" --target "$URL" --speed max -o "$W/post.run")
rp_expect_exit 0 "$rc" "POST bodies"
rp_check "100 kB POST bodies echoed" "$W/post.run" --results 8 --all-ok

# two targets, one run file
rc=$(rp_replay "$W/syn.trace" --target "a=$URL" --target "b=$URL" --speed max -o "$W/two.run")
rp_expect_exit 0 "$rc" "two targets"
rp_check "two sections" "$W/two.run" --sections 2 --results 120 --all-ok

# rewriting (when the build has it): a placeholder filled by --set, a value captured from
# one response put into the next request on the connection, an :authority set by a rule
"$RP_MKTRACE" -o "$W/rw.trace" --conns 2 --per-conn 4 --interval 50ms --service 5ms \
    --paths /data.json,/small.txt --placeholder 2>>"$W/replay.log"
cat >"$W/rules.txt" <<'EOF'
capture cnt from json .count when path ^/data\.json$ status 2xx
query c := "{{var:cnt}}" when path ^/small\.txt$
header x-replay-run := "{{run}}"
header :authority = rewritten.example when path ^/small\.txt$
EOF
rc=$(rp_replay "$W/rw.trace" --target "$URL" --rewrite "$W/rules.txt" --set token=abc -t 2 \
    -o "$W/rw.run")
if [[ $rc -eq 2 ]] && grep -q "not supported by this build" "$W/replay.log"; then
    echo "note: no rewrite module in this build; rewriting not tested" >&2
else
    rp_expect_exit 0 "$rc" "rewrite"
    rp_check "rewrite rules and --set" "$W/rw.run" --results 8 --all-ok \
        --count "path=/small.txt?c=2:4" --count "authority=rewritten.example:4" \
        --count "authority=127.0.0.1:$PORT:4"
    rc=$(rp_replay "$W/rw.trace" --target "$URL" -o "$W/rw-noset.run")
    rp_expect_exit 2 "$rc" "placeholder without a value"
fi

# real captures from tests/data (recorded against nghttpd/nghttpx with this docroot)
ncap=0
for pcap in "$HERE"/../data/*.pcap; do
    name=$(basename "$pcap" .pcap)
    [[ $name == non-h2* ]] && continue
    if ! timeout 30 "$H2REPLAY" capture -q --no-redact -r "$pcap" -o "$W/$name.trace" \
        2>>"$W/replay.log"; then
        echo "note: capture of $name failed; skipped" >&2
        continue
    fi
    ncap=$((ncap + 1))
    for speed in 1 10 max; do
        rc=$(rp_replay "$W/$name.trace" --target "$URL" --speed "$speed" -o "$W/$name-$speed.run")
        rp_expect_exit 0 "$rc" "$name at $speed"
        rp_check "capture $name at speed $speed" "$W/$name-$speed.run" --sections 1 --all-ok
    done
done
echo "replayed $ncap captures" >&2
rp_finish
