#!/usr/bin/env bash
# make demo: a short scripted session with the real vatrun and the C test worker on this host.
# Each case launches `vatrun run` exactly as a kernel would (commands as netstrings on fd 3,
# replies on fd 4, the JSON report on fd 5) and prints the report with `vatrun report`.
# The output is meant to be read top to bottom; no shell job-control notices ("Segmentation
# fault", "Killed"...) appear: a worker's death is told by its report, not by bash.
set -uo pipefail
cd "$(dirname "$0")/.."
VATRUN=${VATRUN:-bin/vatrun}
WORKER=${WORKER:-bin/vatrun-testworker}
PROFILE=${PROFILE:-examples/profiles/demo.json}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: >"$tmp/seen-warnings"

ns() { printf '%d:%s,' "${#1}" "$1"; } # one netstring
say() { printf '%s\n' "$@"; }

# show_report NAME CODE REPLY: one row (case, vatrun's exit status, reply, the report's one line),
# then vatrun's own stderr, then each warning of the report the first time it appears.
show_report() {
	local name=$1 code=$2 reply=$3 out line
	out=$("$VATRUN" report "$tmp/report" 2>&1)
	printf '  %-28s exit=%-3d %-14s %s\n' "$name" "$code" "$reply" "$(head -n1 <<<"$out")"
	if [ -s "$tmp/stderr" ]; then sed 's/^/      vatrun said: /' "$tmp/stderr"; fi
	while IFS= read -r line; do
		line=${line#  warning: }
		if ! grep -qxF -- "$line" "$tmp/seen-warnings"; then
			printf '%s\n' "$line" >>"$tmp/seen-warnings"
			printf '      warning: %s\n' "$line"
		fi
	done < <(tail -n +2 <<<"$out")
}

# launch NAME COMMANDS... : runs the worker with the commands on fd 3, then EOF.
# The braces with 2>/dev/null take bash's own notice of a death by signal (vatrun mirrors the
# worker's); vatrun's stderr goes to a file and is shown by show_report.
launch() {
	local name=$1; shift
	local cmds="" c code
	for c in "$@"; do cmds+=$(ns "$c"); done
	{ "$VATRUN" run --profile "$PROFILE" --report-fd 5 -- "$WORKER" \
		3< <(printf '%s' "$cmds") 4>"$tmp/reply" 5>"$tmp/report" 2>"$tmp/stderr"; } 2>/dev/null
	code=$?
	show_report "$name" "$code" "$(head -c 30 "$tmp/reply")"
}

# launch_bg NAME HOW COMMAND [PROFILE] : starts a long-running worker, then HOW signals it
launch_bg() {
	local name=$1 how=$2 cmd=$3 code
	mkfifo "$tmp/cmd"
	"$VATRUN" run --profile "${4:-$PROFILE}" --report-fd 5 -- "$WORKER" --ready \
		3<"$tmp/cmd" 4>"$tmp/reply" 5>"$tmp/report" 2>"$tmp/stderr" &
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
	{ wait "$vp"; } 2>/dev/null
	code=$?
	exec 6>&-
	rm -f "$tmp/cmd"
	show_report "$name" "$code" ""
}

say "vatrun demo: the C test worker (a stand-in for xsnap-worker) under vatrun, on this host."
say "Profile $PROFILE, digest $("$VATRUN" profile digest "$PROFILE")."
say "Each row: the case, vatrun's exit status (the worker's own, or 128+signal: vatrun dies the"
say "way its worker died), the worker's reply on fd 4, and the death report as 'vatrun report'"
say "prints it. A warning is printed under the first report that has it."
say
say "1. A worker that answers its commands, then exits at EOF:"
launch "ping, add:5, add:37, EOF" ping add:5 add:37
say
say "2. Deaths the profile causes or names, each told apart by the report:"
launch "exit 11 (a metering fault)" exit:11
launch "spin: RLIMIT_CPU, SIGXCPU" spin
launch "recursion: SIGSEGV" recurse
launch "abort(): SIGABRT" abort
launch "ptrace: seccomp, SIGSYS" syscall:ptrace
say
say "3. Stop signals: to vatrun (it forwards them), and to the worker from outside. The demo"
say "   profile lets the worker signal itself, so a signal to it is not taken as external; under"
say "   the built-in solo profile (the worker may only abort itself) it is:"
launch_bg "SIGTERM to vatrun" vatrun-TERM sleep:60000
launch_bg "SIGTERM to the worker (demo)" worker-TERM sleep:60000
launch_bg "SIGTERM to the worker (solo)" worker-TERM sleep:60000 solo
launch_bg "SIGKILL to the worker (solo)" worker-KILL sleep:60000 solo

say
say "4. The reference kernel (vatrun kernel), consensus mode: a crash that is not deterministic"
say "   halts the kernel without committing. (The demo profile is not a consensus profile, so"
say "   consensus mode needs --allow-nonconsensus-profile, a demo flag; validators run"
say "   --profile consensus. --pin-digest pins the profile every validator must run.)"
db="$tmp/kernel.db"
kern() { "$VATRUN" kernel --db "$db" --profile "$PROFILE" --no-cgroup "$@" 2>/dev/null | sed 's/^/     /'; }
pin=$("$VATRUN" profile digest "$PROFILE")
kern --mode consensus --allow-nonconsensus-profile --pin-digest "$pin" --step v1:add:5 --step v1:add:37 --step v1:abort
say "   The store still holds crank 2; restarting the kernel resumes there by replaying v1's transcript:"
kern --mode consensus --allow-nonconsensus-profile --pin-digest "$pin" --step v1:get --step v1:exit:11
say
say "5. Solo mode: an external kill restarts the worker; a crash is retried once, then the vat is terminated:"
rm -f "$db"
kern --mode solo --profile solo --backoff-base 200ms --step v1:add:1 --step signal:v1:KILL --step idle:500ms --step v1:get --step v1:abort --step v1:ping
say
if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
	say "This host has cgroup v2 with the memory controller: run as root, or in a delegated subtree, reports carry"
	say "cgroup evidence (OOM kills, cpu.max, pids). 'make e2e' shows them in a VM."
else
	say "This host has no unified cgroup v2 (see the warning above), so the reports say cgroup=none:"
	say "'make e2e' shows OOM kills, cpu.max and pids in a VM."
fi
