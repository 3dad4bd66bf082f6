//go:build !(cgo && seccomp)

package runcdiff

import "testing"

// runc's libcontainer/seccomp only loads filters when built with cgo and the "seccomp" tag;
// without them InitSeccomp refuses every profile, so there is nothing to compare against.
func TestDifferentialAgainstRunc(t *testing.T) {
	t.Skip("build with the seccomp tag: cd seccompprofiles/filter/runcdiff && go test -tags seccomp .")
}
