#!/bin/sh
# The cgroup v2 nesting recipe with Podman (docs/containers.md): a private cgroup namespace whose
# /sys/fs/cgroup Podman mounts read-write (systemd mode), and cgroup-nest.sh as the entrypoint,
# which moves the container's processes out of its root and delegates memory, pids and cpu to
# /vatrun, the workers' parent.
exec podman run --rm \
	--cgroupns=private --systemd=always \
	--security-opt seccomp="$(dirname "$0")/../docker-seccomp.json" \
	--security-opt unmask=/proc/* \
	-v "$(dirname "$0")/cgroup-nest.sh:/usr/local/bin/cgroup-nest.sh:ro" \
	--entrypoint /usr/local/bin/cgroup-nest.sh \
	"$@"
