#!/bin/sh
# cgroup-nest.sh — the container entrypoint of the cgroup v2 nesting recipe (docs/containers.md).
#
# In a private cgroup namespace with a writable /sys/fs/cgroup, the container's processes sit in
# the namespace's root cgroup, which is not the host's root: cgroup v2's no-internal-process rule
# forbids enabling controllers for its children while processes sit in it. This moves every
# process of the root into a leaf (/init), delegates memory, pids and cpu to the children, makes
# /vatrun for the workers' leaves, and then runs the container's command (agd, say) in /init.
# vatrun is then run with VATRUN_CGROUP_PARENT=/vatrun (set below for the command's children).
set -eu
cg=/sys/fs/cgroup
if [ "$(cat /proc/self/cgroup)" != "0::/" ]; then
	echo "cgroup-nest: not at the root of a private cgroup namespace ($(cat /proc/self/cgroup)); run the container with --cgroupns=private" >&2
	exit 1
fi
if ! touch "$cg/cgroup.procs" 2>/dev/null; then
	echo "cgroup-nest: $cg is read-only; mount it read-write (docs/containers.md: the cgroup v2 nesting recipe)" >&2
	exit 1
fi
mkdir -p "$cg/init"
# Move everything (this shell included); a process that exits meanwhile is no error.
for pid in $(cat "$cg/cgroup.procs"); do
	echo "$pid" >"$cg/init/cgroup.procs" 2>/dev/null || true
done
ctl=""
for c in memory pids cpu; do
	grep -qw "$c" "$cg/cgroup.controllers" && ctl="$ctl +$c"
done
echo "$ctl" >"$cg/cgroup.subtree_control"
mkdir -p "$cg/vatrun"
echo "$ctl" >"$cg/vatrun/cgroup.subtree_control"
export VATRUN_CGROUP_PARENT=/vatrun
exec "$@"
