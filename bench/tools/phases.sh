#!/usr/bin/env bash
# Phase-by-phase timeline of `vatrun run --profile xsnap --no-cgroup -- WORKER` on the real binary:
# uprobes on vatrun's own functions (the same binary is the init stage, so its C constructor is
# probed in both processes) plus sched exec/fork/exit and exit_group, recorded with perf over N
# runs; bench/tools/phases.py turns the trace into a table of medians. Needs root and perf
# (Debian: linux-perf); mounts tracefs if it is not mounted; removes its probes at the end.
# Usage: bench/tools/phases.sh [N] [WORKER]   (run from the repository; after make build)
# Wall times include uprobe overhead (~µs per probe hit); the page-fault column comes from a second
# recording that traces every fault (which slows it: its times are not used).
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-40}
worker=$(realpath "${2:-bin/vatrun-bench-true}")
bin=$PWD/bin/vatrun
[ -d /sys/kernel/tracing/events ] || mount -t tracefs nodev /sys/kernel/tracing
tmp=$(mktemp -d)
trap 'perf probe -q -d "probe_vatrun:*" 2>/dev/null || true; rm -rf "$tmp"' EXIT
perf probe -q -d 'probe_vatrun:*' 2>/dev/null || true
while read -r name fn; do
	perf probe -q -x "$bin" --add "$name=$fn"
done <<'PROBES'
p01_ctor vr_init_constructor
p02_cgoinit x_cgo_init
p03_schedinit runtime.schedinit
p04_rtmain runtime.main
p05_earlysig github.com/vatrun/vatrun/cmd/vatrun/internal/earlysig.init.0
p06_main main.main
p07_load github.com/vatrun/vatrun/seccompprofiles.Load
p09_launch github.com/vatrun/vatrun/launcher.Launch
p11_stagecfg github.com/vatrun/vatrun/launcher/plan.compile
p13_cgroup github.com/vatrun/vatrun/launcher.setupCgroup
p14_sbstart github.com/vatrun/vatrun/sandbox.Start
p16_build github.com/vatrun/vatrun/report.Build
p17_write main.(*reportSink).write
p18_exit os.Exit
p02_prelaunch vr_prelaunch
p03_stagemain vr_stage_main
p15_adopt github.com/vatrun/vatrun/sandbox.adopt
PROBES
# Two paths, each in its own pair of recordings: the ordinary launch (VATRUN_PRELAUNCH=off: the Go
# runtime first, then the sandbox) and the C-first launch (a launch-cache entry made by one priming
# run: the sandbox starts in the C constructor, docs/launch-cache.md).
for mode in ordinary cfirst; do
	env=(VATRUN_CACHE_DIR="$tmp/cache")
	[ "$mode" = ordinary ] && env+=(VATRUN_PRELAUNCH=off)
	cat >"$tmp/loop.sh" <<LOOP
#!/bin/sh
for i in \$(seq $n); do "$bin" run --profile xsnap --no-cgroup -- "$worker" || exit 1; done
LOOP
	chmod +x "$tmp/loop.sh"
	env "${env[@]}" "$bin" run --profile xsnap --no-cgroup -- "$worker" # the priming run
	# Two recordings: times (no fault tracing), then page faults (every fault traced, times unused).
	for kind in times faults; do
		pf=()
		[ "$kind" = faults ] && pf=(-e page-faults -c 1)
		env "${env[@]}" perf record -q -o "$tmp/$kind.data" -e 'probe_vatrun:*' -e sched:sched_process_exec -e sched:sched_process_fork \
			-e sched:sched_process_exit "${pf[@]}" -e raw_syscalls:sys_enter --filter 'id == 231' -- "$tmp/loop.sh" >/dev/null
		perf script -i "$tmp/$kind.data" -F pid,tid,time,event,trace 2>/dev/null >"$tmp/$kind.txt"
	done
	if [ "$mode" = ordinary ]; then
		echo "Ordinary launch (\`VATRUN_PRELAUNCH=off\`: the Go runtime first, then the sandbox):"
	else
		echo "C-first launch (a launch-cache entry: the sandbox is started by the C constructor and waits at its gate):"
	fi
	echo
	python3 bench/tools/phases.py "$mode" "$tmp/times.txt" "$tmp/faults.txt"
	echo
done
