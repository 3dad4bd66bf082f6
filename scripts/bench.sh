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
# Linked like bin/vatrun (static, cgo): it is also the init stage of its own Go API runs.
CGO_ENABLED=1 go build -trimpath -tags osusergo,netgo -ldflags '-linkmode external -extldflags "-static"' \
	-o bin/vatrun-bench ./bench

# The cgroup figures come from the e2e VM (the host's cgroups are off limits): boot it once for
# TestBenchSpawn, before the host runs, so the two never compete for the CPUs.
vm=()
vmdir=$(mktemp -d)
trap 'rm -rf "$vmdir"' EXIT
if ./test/e2e/setup.sh >"$vmdir/setup.log" 2>&1; then
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
"${cmd[@]}" -command "${cmd[*]}" "${vm[@]}"
