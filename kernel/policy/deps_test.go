package policy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsOnlyReport: the policy can be used without cgo, libseccomp, bbolt or the launcher.
// It asks `go list` for the package's direct imports and all its dependencies.
func TestImportsOnlyReport(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH to list the package's dependencies")
	}
	const self = "github.com/vatrun/vatrun/kernel/policy"
	list := func(args ...string) []string {
		t.Helper()
		out, err := exec.Command(goBin, append([]string{"list"}, args...)...).Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("go list %v: %v\n%s", args, err, stderr)
		}
		return strings.Fields(string(out))
	}
	std := map[string]bool{}
	for _, p := range list("std") {
		std[p] = true
	}
	for _, p := range list("-f", `{{join .Imports "\n"}}`, self) {
		if !std[p] && p != "github.com/vatrun/vatrun/report" {
			t.Errorf("imports %s: want only report and the standard library", p)
		}
	}
	// Every dependency, and whether it has cgo files. (A few standard packages do, e.g. net,
	// runtime/cgo; those are not pulled in either.)
	deps := list("-deps", "-f", `{{.ImportPath}}:{{len .CgoFiles}}`, self)
	if len(deps) < 10 {
		t.Fatalf("go list -deps gave %d packages, too few to be real: %v", len(deps), deps)
	}
	for _, d := range deps {
		path, ncgo, _ := strings.Cut(d, ":")
		if ncgo != "0" {
			t.Errorf("depends on %s, which has cgo files", path)
		}
		for _, bad := range []string{"seccomp", "bbolt", "vatrun/launcher", "vatrun/sandbox", "vatrun/cgroup", "vatrun/kernel:"} {
			if strings.Contains(path+":", bad) {
				t.Errorf("depends on %s", path)
			}
		}
	}
}
