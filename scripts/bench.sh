#!/usr/bin/env bash
# make bench: vatrun against plain fork/exec, unshare, bubblewrap and crun on this machine, side by
# side in one run; rewrites BENCHMARKS.md. Installs what it needs when run as root (Debian), else
# names what is missing (the rows that need it then say "skipped"). Extra arguments go to
# bin/vatrun-bench (e.g. -runs 100 -out - for a quick look; -h for the list).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v gcc >/dev/null || need+=(gcc)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
command -v unshare >/dev/null || need+=(util-linux)
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v crun >/dev/null || need+=(crun)
# The start-up comparison across sandboxes (section 8): nsjail and minijail where Debian has them
# (bookworm has neither; the rows then say so).
for p in nsjail:nsjail minijail0:minijail; do
	if ! command -v "${p%%:*}" >/dev/null && apt-cache policy "${p#*:}" 2>/dev/null | grep -q 'Candidate: [^(]'; then
		need+=("${p#*:}")
	fi
done
# The phase-by-phase trace of `vatrun run` (bench/tools/phases.sh): perf with uprobes.
command -v perf >/dev/null || need+=(linux-perf)
# The real xsnap worker and the SwingSet kernel (test/swingset/setup.sh builds them): Node.js.
command -v node >/dev/null || need+=(nodejs npm)
command -v c++ >/dev/null || need+=(g++)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -eq 0 ]; then
		echo "bench: installing ${need[*]}" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq "${need[@]}" >/dev/null
	else
		echo "bench: missing Debian packages: ${need[*]} (sudo apt-get install -y ${need[*]}); their rows are skipped" >&2
	fi
fi

make --no-print-directory build
mkdir -p bin
gcc -O2 -Wall -Wextra -static -o bin/vatrun-bench-true bench/csrc/true.c
gcc -O2 -Wall -Wextra -static -o bin/vatrun-bench-sysloop bench/csrc/sysloop.c
gcc -O2 -Wall -Wextra -static -o bin/vatrun-bench-rusage bench/csrc/rusage.c
gcc -O2 -Wall -Wextra -static -o bin/vatrun-bench-thin bench/csrc/thin.c
# vatrun run writes a launch-cache entry only for files that changed over 2 s ago
# (docs/launch-cache.md): let the freshly built workers settle, so the runs use the C-first launch.
sleep 2
# Linked like bin/vatrun (static, cgo): the Go runtime's start, and the cold steps of a launch.
for t in noop phases; do
	CGO_ENABLED=1 go build -trimpath -tags osusergo,netgo -ldflags '-linkmode external -extldflags "-static"' \
		-o bin/vatrun-bench-$t ./bench/$t
done
# Linked like bin/vatrun (static, cgo): it is also the init stage of its own Go API runs.
CGO_ENABLED=1 go build -trimpath -tags osusergo,netgo -ldflags '-linkmode external -extldflags "-static"' \
	-o bin/vatrun-bench ./bench

# `scripts/bench.sh -only compare -out -` (or any -only without spawn, xsnap and a VM figure):
# only those sections, without the slow preparations below (SwingSet setup, phase trace, VM).
quick=0
args=" $* "
if [[ "$args" == *" -only "* ]]; then
	only=$(printf '%s\n' "$@" | sed -n '/^-only$/{n;p}')
	case ",$only," in
	*,spawn,* | *,xsnap,*) ;;
	*) quick=1 ;;
	esac
fi
if [ "$quick" = 1 ]; then
	pin=()
	if [ "$(nproc)" -gt 2 ] && command -v taskset >/dev/null; then
		pin=(taskset -c 0,1)
	fi
	cmd=("${pin[@]}" bin/vatrun-bench "$@")
	echo "bench: ${cmd[*]}" >&2
	exec "${cmd[@]}" -vm-skipped "this run was limited to -only $only"
fi

# The real xsnap worker (npm @agoric/xsnap, built from C) and the SwingSet kernel for section 7.
if ! ./test/swingset/setup.sh >"${TMPDIR:-/tmp}/vatrun-bench-setup.log" 2>&1; then
	tail -5 "${TMPDIR:-/tmp}/vatrun-bench-setup.log" >&2
	echo "bench: test/swingset/setup.sh failed: the xsnap section says so" >&2
fi

# The phase-by-phase timeline of `vatrun run` (perf, uprobes: root only), before the other runs.
phase=()
ptable="${TMPDIR:-/tmp}/vatrun-bench-phases.md"
if [ "$(id -u)" -eq 0 ] && command -v perf >/dev/null && python3 -c '' 2>/dev/null; then
	echo "bench: phase timeline of vatrun run (bench/tools/phases.sh 60)" >&2
	if ./bench/tools/phases.sh 60 >"$ptable" 2>"$ptable.err"; then
		phase=(-phase-table "$ptable")
	else
		echo "bench: bench/tools/phases.sh failed: $(tail -1 "$ptable.err")" >&2
	fi
fi

# The cgroup figures come from the e2e VM (the host's cgroups are off limits): boot it once for
# TestBenchSpawn, before the host runs, so the two never compete for the CPUs.
vm=()
vmdir=$(mktemp -d)
trap 'rm -rf "$vmdir"' EXIT
if [ "${VATRUN_BENCH_VM:-1}" = 0 ]; then
	echo "bench: VATRUN_BENCH_VM=0: no VM run" >&2
	vm=(-vm-skipped "this run skipped the VM (VATRUN_BENCH_VM=0); make bench runs it")
elif ./test/e2e/setup.sh >"$vmdir/setup.log" 2>&1; then
	echo "bench: spawn latency with cgroups in the e2e VM (TestBenchSpawn)" >&2
	if ! VATRUN_E2E=1 VATRUN_E2E_RUN='^TestBench' VATRUN_E2E_OUT="$vmdir/out" ./test/e2e/run.sh -run TestVM >"$vmdir/go-test.log" 2>&1; then
		cat "$vmdir/go-test.log" >&2
		echo "bench: the VM benchmark failed (log above)" >&2
		exit 1
	fi
	vm=(-vm-results "$vmdir/out/results.log")
else
	echo "bench: no e2e VM here ($(tail -1 "$vmdir/setup.log")); the cgroup row says so" >&2
	vm=(-vm-skipped "the e2e VM could not be set up here: $(tail -1 "$vmdir/setup.log")")
fi

# The figures are for 2 cores: pin the run to two CPUs on bigger machines.
pin=()
if [ "$(nproc)" -gt 2 ] && command -v taskset >/dev/null; then
	pin=(taskset -c 0,1)
fi
cmd=("${pin[@]}" bin/vatrun-bench -out BENCHMARKS.md "$@")
echo "bench: ${cmd[*]}" >&2
"${cmd[@]}" -command "${cmd[*]}" "${vm[@]}" "${phase[@]}"
