// A separate module so that runc and its dependencies stay out of vatrun's own dependency
// graph: requiring runc in the main module would raise cilium/ebpf, go-systemd, godbus,
// moby/sys/userns, logrus and protobuf for the production binaries (cgroup support) too.
module github.com/vatrun/vatrun/seccompprofiles/filter/runcdiff

go 1.26.0

require (
	github.com/opencontainers/runc v1.5.3
	github.com/opencontainers/runtime-spec v1.3.0
	github.com/seccomp/libseccomp-golang v0.12.0
	github.com/vatrun/vatrun v0.0.0
	golang.org/x/sys v0.49.0
)

require (
	cyphar.com/go-pathrs v0.2.6 // indirect
	github.com/coreos/go-systemd/v22 v22.7.0 // indirect
	github.com/cyphar/filepath-securejoin v0.7.0 // indirect
	github.com/godbus/dbus/v5 v5.2.2 // indirect
	github.com/moby/sys/mountinfo v0.7.2 // indirect
	github.com/moby/sys/userns v0.2.1 // indirect
	github.com/opencontainers/cgroups v0.1.0 // indirect
	github.com/sirupsen/logrus v1.9.4 // indirect
	golang.org/x/net v0.62.0 // indirect
)

replace github.com/vatrun/vatrun => ../../..
