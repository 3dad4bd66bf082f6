package seccompprofiles

import (
	"os/exec"
	"strings"
	"testing"
)

// The profile package parses and validates without cgo: it must not link libseccomp (that is
// seccompprofiles/filter's job) nor the death report types.
func TestNoCgoDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list dependencies")
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch dep {
		case "runtime/cgo", "github.com/seccomp/libseccomp-golang", "github.com/vatrun/vatrun/report":
			t.Errorf("seccompprofiles depends on %s", dep)
		}
	}
}
