package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/sandbox"
)

// An fd that this process opened itself (as the Go runtime does, briefly, to read the cgroup CPU
// quota) is not the caller's report pipe, however writable: --report-fd is judged against the fds
// the C constructor saw at start. The old check (fcntl now) accepted it.
func TestReportFDOpenedByVatrunItselfIsRefused(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "not-passed"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	if fd < 5 || fd >= sandbox.MaxInheritedFD || sandbox.InheritedFD(fd) {
		t.Skipf("fd %d: not a fresh fd in 5..%d", fd, sandbox.MaxInheritedFD-1)
	}
	_, err = openReportFD(fd, nil)
	if err == nil || !strings.Contains(err.Error(), "the parent did not pass fd") {
		t.Fatalf("openReportFD(%d) for an fd the parent never passed: %v, want a refusal that says so", fd, err)
	}
}

// `vatrun run --report-fd 5` without fd 5 says the parent did not pass it, never that it is
// "open read-only" (what the Go runtime's own cgroup read on fd 5 used to make it say).
func TestReportFDNotPassed(t *testing.T) {
	bin, worker := testbin.Vatrun(t), testbin.Worker(t)
	for _, fd := range []string{"5", "6"} {
		cmd := exec.Command(bin, "run", "--profile", "xsnap", "--no-cgroup", "--report-fd", fd, "--", worker)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitUsage {
			t.Fatalf("fd %s: %v, want exit %d (stderr %s)", fd, err, exitUsage, stderr.String())
		}
		if !strings.Contains(stderr.String(), "the parent did not pass fd "+fd) || strings.Contains(stderr.String(), "read-only") {
			t.Errorf("fd %s: stderr %q, want 'the parent did not pass fd %s'", fd, stderr.String(), fd)
		}
	}
}
