#!/bin/sh
# Cost of recording refused syscalls (docs/sandbox.md, "Refused syscalls"): compares two vatrun
# binaries (without and with the recording) on 1e5 refused calls, 2e5 allowed calls, and 200
# launches. Usage: scripts/bench-denied.sh OLD_VATRUN NEW_VATRUN TESTWORKER
# Run it under the heavy lock: flock /tmp/vatrun-heavy.lock scripts/bench-denied.sh ...
set -eu
old=$1 new=$2 worker=$3
ns() { printf '%d:%s,' "${#1}" "$1"; }
cmds=$(mktemp)
ms() { date +%s%N; }
run() { # bin profile command repeat
	ns "$3" >"$cmds"
	t0=$(ms)
	i=0
	while [ $i -lt "$4" ]; do
		"$1" run --profile "$2" --no-cgroup --report-file /dev/null -- "$worker" 3<"$cmds" 4>/dev/null 2>/dev/null || true
		i=$((i + 1))
	done
	t1=$(ms)
	echo $(((t1 - t0) / 1000 / $4))
}
for round in 1 2 3; do
	for b in old new; do
		eval bin=\$$b
		refused=$(run "$bin" solo deny:100000:1 3)
		allowed=$(run "$bin" dev deny:100000:1 3)
		launch=$(run "$bin" xsnap ping 200)
		echo "round $round $b: 1e5 refused socket() run ${refused}us; 1e5 allowed socket()+close() run ${allowed}us; launch ${launch}us"
	done
done
rm -f "$cmds"
