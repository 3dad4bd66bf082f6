package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vatrun/vatrun/internal/testbin"
)

// The README's Quickstart is POSIX sh: extracted and run by dash (what `useradd -m` gives as the
// login shell) with bin/ holding the binaries under test and a `make` that does nothing, it prints
// exit 0, the worker's reply and the report's line. The old Quickstart used bash's process
// substitution, a syntax error in dash.
func TestREADMEQuickstartPOSIX(t *testing.T) {
	dash, err := exec.LookPath("dash")
	if err != nil {
		t.Skip("no dash (apt-get install dash)")
	}
	data, err := os.ReadFile(filepath.Join(testbin.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "\n## Quickstart")
	if !ok {
		t.Fatal("README.md has no Quickstart section")
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	if !ok {
		t.Fatal("the Quickstart has no sh block")
	}
	script, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("unterminated sh block")
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Copies, not symlinks: the worker's minimal root binds the worker at the path it is given.
	for name, src := range map[string]string{"vatrun": testbin.Vatrun(t), "vatrun-testworker": testbin.Worker(t)} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "bin", name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fake := filepath.Join(dir, "fakebin")
	os.Mkdir(fake, 0o755)
	if err := os.WriteFile(filepath.Join(fake, "make"), []byte("#!/bin/sh\necho 'make (the test has built bin/ already)'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(dash, "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+fake+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dash ran the Quickstart: %v\n%s", err, out)
	}
	for _, want := range []string{"exit 0", "4:pong,", "cause=exited class=clean"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the Quickstart's output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "Syntax error") {
		t.Errorf("dash: %s", out)
	}
}
