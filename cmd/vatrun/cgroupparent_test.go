package main

import (
	"flag"
	"io"
	"testing"
)

// --cgroup-parent defaults to $VATRUN_CGROUP_PARENT (read in this command, nowhere else), and the
// flag wins over it.
func TestCgroupParentFlag(t *testing.T) {
	parse := func(args ...string) string {
		t.Helper()
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		p := cgroupParentFlag(fs, "parent")
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return *p
	}
	t.Setenv(cgroupParentEnv, "")
	if got := parse(); got != "" {
		t.Errorf("unset: %q, want \"\" (vatrun's own cgroup)", got)
	}
	t.Setenv(cgroupParentEnv, "/vat.slice")
	if got := parse(); got != "/vat.slice" {
		t.Errorf("with $%s: %q, want /vat.slice", cgroupParentEnv, got)
	}
	if got := parse("--cgroup-parent", "/other.slice"); got != "/other.slice" {
		t.Errorf("flag and env: %q, want the flag's /other.slice", got)
	}
}
