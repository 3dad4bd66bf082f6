package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vatrun/vatrun/internal/testbin"
)

// make install DESTDIR=… PREFIX=…: the binary (the one under test: -o keeps make from rebuilding
// it), the systemd unit with its paths under PREFIX, its README and the example profiles, each of
// which the installed vatrun validates; make uninstall removes them again.
func TestMakeInstall(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	bin := testbin.Vatrun(t)
	root := testbin.RepoRoot()
	dest := t.TempDir()
	const prefix = "/opt/vatrun-test"
	mk := func(target string) {
		cmd := exec.Command("make", "-C", root, "--no-print-directory", "-o", bin, target, "VATRUN="+bin, "DESTDIR="+dest, "PREFIX="+prefix)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make %s: %v\n%s", target, err, out)
		}
	}
	mk("install")
	installed := filepath.Join(dest, prefix, "bin", "vatrun")
	if st, err := os.Stat(installed); err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("installed binary: %v %v", st, err)
	}
	unit, err := os.ReadFile(filepath.Join(dest, prefix, "lib/systemd/system/vat-kernel.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStartPre="+prefix+"/bin/vatrun check") || strings.Contains(string(unit), "/usr/local/bin/vatrun") {
		t.Errorf("the installed unit does not run %s/bin/vatrun:\n%s", prefix, unit)
	}
	if _, err := os.Stat(filepath.Join(dest, prefix, "share/doc/vatrun/contrib/systemd/README.md")); err != nil {
		t.Error(err)
	}
	examples, _ := filepath.Glob(filepath.Join(root, "examples/profiles/*.json"))
	if len(examples) == 0 {
		t.Fatal("no example profiles in the tree")
	}
	for _, e := range examples {
		p := filepath.Join(dest, prefix, "share/vatrun/profiles", filepath.Base(e))
		if out, err := exec.Command(installed, "profile", "validate", p).CombinedOutput(); err != nil {
			t.Errorf("installed %s: vatrun profile validate: %v %s", p, err, out)
		}
	}
	mk("uninstall")
	var left []string
	filepath.Walk(dest, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("make uninstall left %v", left)
	}
}
