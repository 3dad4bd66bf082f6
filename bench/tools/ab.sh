#!/usr/bin/env bash
# A/B start-up figures of two vatrun binaries (a cut's before and after), interleaved: N runs of
# each of `BIN run --profile xsnap --no-cgroup -- bin/vatrun-bench-true`, one of each in turn, every
# one under bin/vatrun-bench-rusage (bench/csrc/rusage.c: wall time, CPU of the process tree, page
# faults, max RSS). Prints a markdown table of medians (p90 for wall time) and the load average.
# Usage: bench/tools/ab.sh BIN_A BIN_B [N]   (after make build and scripts/bench.sh's tools, or:
#   gcc -O2 -static -o bin/vatrun-bench-rusage bench/csrc/rusage.c; gcc -O2 -static -o bin/vatrun-bench-true bench/csrc/true.c)
set -euo pipefail
cd "$(dirname "$0")/../.."
a=$1 b=$2 n=${3:-300}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
load0=$(cut -d' ' -f1-3 /proc/loadavg)
for i in $(seq "$n"); do
	for x in a b; do
		bin=$a
		[ "$x" = b ] && bin=$b
		bin/vatrun-bench-rusage "$bin" run --profile xsnap --no-cgroup -- "$PWD/bin/vatrun-bench-true" 3>>"$tmp/$x" </dev/null >/dev/null 2>&1
	done
done
echo "load average before / after: $load0 / $(cut -d' ' -f1-3 /proc/loadavg); $n interleaved runs each"
echo
python3 - "$tmp/a" "$tmp/b" "$a" "$b" <<'PY'
import statistics, sys
def q(v, p):
    v = sorted(v); return v[max(0, min(len(v) - 1, int(p * len(v) + 0.999999) - 1))]
print("| binary | wall median | p90 | CPU user+sys | page faults | max RSS |")
print("|---|---:|---:|---:|---:|---:|")
for f, name in ((sys.argv[1], sys.argv[3]), (sys.argv[2], sys.argv[4])):
    rows = [list(map(int, l.split())) for l in open(f)]
    wall = [r[0] / 1e6 for r in rows]; cpu = [(r[1] + r[2]) / 1e3 for r in rows]
    flt = [r[3] + r[4] for r in rows]; rss = [r[5] / 1024 for r in rows]
    print(f"| {name} | {q(wall,.5):.2f} ms | {q(wall,.9):.2f} ms | {q(cpu,.5):.2f} ms | {q(flt,.5)} | {q(rss,.5):.2f} MiB |")
PY
