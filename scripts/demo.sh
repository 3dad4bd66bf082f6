#!/usr/bin/env bash
# make demo: a short scripted session with the real vatrun and the C test worker on this host.
# Each case launches `vatrun run` exactly as a kernel would (commands as netstrings on fd 3,
# replies on fd 4, the JSON report on fd 5) and prints the report in one line.
set -uo pipefail
cd "$(dirname "$0")/.."
VATRUN=${VATRUN:-bin/vatrun}
WORKER=${WORKER:-bin/vatrun-testworker}
PROFILE=${PROFILE:-examples/profiles/demo.json}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ns() { printf '%d:%s,' "${#1}" "$1"; } # one netstring

# launch NAME COMMANDS... : runs the worker with the commands on fd 3 (then EOF or hold open)
launch() {
	local name=$1; shift
	local cmds="" c
	for c in "$@"; do cmds+=$(ns "$c"); done
	printf '%-28s ' "$name"
	"$VATRUN" run --log-level warn --profile "$PROFILE" --report-fd 5 -- "$WORKER" \
		3< <(printf '%s' "$cmds") 4>"$tmp/reply" 5>"$tmp/report"
	local code=$?
	printf 'exit=%-3d reply=%-12s %s\n' "$code" "$(head -c 40 "$tmp/reply")" "$("$VATRUN" report "$tmp/report")"
}

# launch_bg NAME HOW COMMAND [PROFILE] : starts a long-running worker, then HOW kills it
launch_bg() {
	local name=$1 how=$2 cmd=$3
	printf '%-28s ' "$name"
	mkfifo "$tmp/cmd"
	"$VATRUN" run --log-level warn --profile "${4:-$PROFILE}" --report-fd 5 -- "$WORKER" --ready \
		3<"$tmp/cmd" 4>"$tmp/reply" 5>"$tmp/report" &
	local vp=$!
	exec 6>"$tmp/cmd"
	ns "$cmd" >&6
	# wait for the worker's "ready" reply, then find its host pid: vatrun -> init stage -> worker
	for _ in $(seq 100); do [ -s "$tmp/reply" ] && break; sleep 0.02; done
	local init worker
	init=$(pgrep -P "$vp" | head -1)
	worker=$(pgrep -P "$init" | head -1)
	case $how in
	worker-TERM) kill -TERM "$worker" ;;
	worker-KILL) kill -KILL "$worker" ;;
	vatrun-TERM) kill -TERM "$vp" ;;
	esac
	{ wait "$vp"; } 2>/dev/null # no "Killed" job notice: the report below says it
	local code=$?
	exec 6>&-
	rm -f "$tmp/cmd"
	printf 'exit=%-3d %-19s %s\n' "$code" "" "$("$VATRUN" report "$tmp/report")"
}

echo "vatrun demo — profile $PROFILE (digest $("$VATRUN" profile digest "$PROFILE"))"
echo
launch "answers (ping, add, EOF)" ping add:5 add:37
launch "metering fault (exit 11)" exit:11
launch "RLIMIT_CPU -> SIGXCPU" spin
launch "recursion -> SIGSEGV" recurse
launch "abort() -> SIGABRT" abort
launch "ptrace -> SIGSYS" syscall:ptrace
launch_bg "SIGTERM to vatrun" vatrun-TERM sleep:60000
echo "-- signals from outside: the demo profile lets the worker signal itself, so they are not taken as external;"
echo "   under the built-in solo profile (kill only with SIGABRT) they are:"
launch_bg "SIGTERM to the worker (demo)" worker-TERM sleep:60000
launch_bg "SIGTERM to the worker (solo)" worker-TERM sleep:60000 solo
launch_bg "SIGKILL to the worker (solo)" worker-KILL sleep:60000 solo

echo
echo "== reference kernel, consensus mode: a worker crash halts the kernel without committing"
db="$tmp/kernel.db"
kern() { "$VATRUN" kernel --db "$db" --profile "$PROFILE" --no-cgroup "$@" 2>/dev/null | sed 's/^/  /'; }
pin=$("$VATRUN" profile digest "$PROFILE")
kern --mode consensus --allow-nonconsensus-profile --pin-digest "$pin" --step v1:add:5 --step v1:add:37 --step v1:abort
echo "  -> the store still holds crank 2; restarting the kernel resumes there by replaying v1's transcript:"
kern --mode consensus --allow-nonconsensus-profile --pin-digest "$pin" --step v1:get --step v1:exit:11
echo
echo "== reference kernel, solo mode: an external kill restarts the worker; a crash is retried once, then the vat is terminated"
rm -f "$db"
kern --mode solo --profile solo --backoff-base 200ms --step v1:add:1 --step signal:v1:KILL --step idle:500ms --step v1:get --step v1:abort --step v1:ping
echo
echo "cgroup evidence is unavailable on this host (no unified cgroup v2): see 'make e2e' for OOM, cpu.max and pids in a VM."
