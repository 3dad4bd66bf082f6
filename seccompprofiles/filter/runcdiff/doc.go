// Package runcdiff holds only a test: the differential test of vatrun's seccomp filter
// (seccompprofiles/filter) against runc's own (libcontainer/seccomp), for the same OCI profiles
// and the same syscall probes. It is its own module so that runc never enters vatrun's build;
// run it with `cd seccompprofiles/filter/runcdiff && go test -tags seccomp .` (runc loads
// filters only when built with cgo and that tag).
package runcdiff
