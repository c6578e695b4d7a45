#!/usr/bin/env python3
"""replay_check.py - assertions on a run file, read through `h2replay show --format jsonl`.

Usage: replay_check.py H2REPLAY RUN [checks...]

  --sections N          exactly N sections, each with a section_end
  --results N           every section has N results (one per trace exchange)
  --all-ok              every result has class ok and the status the trace recorded
  --class NAME=N        section(s) have exactly N results of class NAME
  --class NAME+         at least one result of class NAME
  --only CLASSES        no class outside the comma-separated list
  --detail CLASS=TEXT   every result of CLASS has err_detail containing TEXT
  --count FIELD=VALUE:N exactly N results whose FIELD (a show jsonl key) is VALUE
  --interrupted 0|1     the last section's end says so
  --section I           restrict the class checks to section I (default: all)

Prints one summary line per section; exit 0 when every check holds, 1 otherwise.
Stdlib only.
"""
import collections
import json
import subprocess
import sys


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    h2replay, run = argv[1], argv[2]
    args = argv[3:]
    proc = subprocess.run([h2replay, "show", run, "--format", "jsonl", "--records", "all"],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        print(f"FAIL: show exited {proc.returncode}: {proc.stderr.strip()}")
        return 1
    sections, ends, results = {}, {}, collections.defaultdict(list)
    for line in proc.stdout.splitlines():
        rec = json.loads(line)
        kind = rec.get("type", "result" if "class" in rec else None)
        if kind == "section":
            sections[rec["section"]] = rec
        elif kind == "section_end":
            ends[rec["section"]] = rec
        elif kind == "result":
            results[rec["section"]].append(rec)

    failures = []
    for sid in sorted(sections):
        counts = collections.Counter(r["class"] for r in results[sid])
        print(f"section {sid} ({sections[sid]['name']}): {len(results[sid])} results "
              + " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
              + (" ended" if sid in ends else " NOT ENDED"))
        if sid not in ends:
            failures.append(f"section {sid} has no section_end")
        elif ends[sid]["exchanges"] != len(results[sid]):
            failures.append(f"section {sid}: section_end says {ends[sid]['exchanges']} "
                            f"results, file has {len(results[sid])}")

    only_section = None
    i = 0
    while i < len(args):
        if args[i] == "--section":
            only_section = int(args[i + 1])
        i += 2 if args[i] != "--all-ok" else 1
    chosen = [s for s in sorted(sections) if only_section is None or s == only_section]

    i = 0
    while i < len(args):
        opt = args[i]
        val = args[i + 1] if i + 1 < len(args) else None
        i += 2
        if opt == "--sections":
            if len(sections) != int(val):
                failures.append(f"{len(sections)} sections, expected {val}")
        elif opt == "--results":
            for s in chosen:
                if len(results[s]) != int(val):
                    failures.append(f"section {s}: {len(results[s])} results, expected {val}")
        elif opt == "--all-ok":
            i -= 1
            for s in chosen:
                bad = [r for r in results[s]
                       if r["class"] != "ok" or r["status"] != r["trace_status"]]
                if bad:
                    r = bad[0]
                    failures.append(f"section {s}: {len(bad)} results not ok with the recorded "
                                    f"status (first: exchange {r['exchange']} class {r['class']} "
                                    f"status {r['status']} trace {r['trace_status']} "
                                    f"detail {r['detail']})")
        elif opt == "--class":
            for s in chosen:
                counts = collections.Counter(r["class"] for r in results[s])
                if val.endswith("+"):
                    if counts[val[:-1]] == 0:
                        failures.append(f"section {s}: no result of class {val[:-1]}")
                else:
                    name, n = val.split("=")
                    if counts[name] != int(n):
                        failures.append(f"section {s}: {counts[name]} x {name}, expected {n}")
        elif opt == "--only":
            allowed = set(val.split(","))
            for s in chosen:
                extra = {r["class"] for r in results[s]} - allowed
                if extra:
                    failures.append(f"section {s}: unexpected classes {sorted(extra)}")
        elif opt == "--detail":
            cls, text = val.split("=", 1)
            for s in chosen:
                bad = [r for r in results[s]
                       if r["class"] == cls and text not in (r["detail"] or "")]
                if bad:
                    failures.append(f"section {s}: {cls} detail {bad[0]['detail']!r} lacks "
                                    f"{text!r}")
        elif opt == "--count":
            spec, n = val.rsplit(":", 1)
            key, want = spec.split("=", 1)
            for s in chosen:
                got = sum(1 for r in results[s] if str(r.get(key)) == want)
                if got != int(n):
                    failures.append(f"section {s}: {got} results with {key}={want}, "
                                    f"expected {n}")
        elif opt == "--interrupted":
            last = max(ends) if ends else None
            if last is None or int(bool(ends[last]["interrupted"])) != int(val):
                failures.append(f"interrupted flag is not {val}")
        elif opt == "--section":
            pass
        else:
            failures.append(f"unknown check {opt}")

    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
