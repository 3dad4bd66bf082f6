package main

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vatrun/vatrun/internal/testbin"
)

func runKernel(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(testbin.Vatrun(t), append([]string{"kernel", "--worker", testbin.Worker(t), "--no-cgroup", "--profile", "solo"}, args...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatal(err)
	return 0, ""
}

func TestKernelCommandHaltsAndResumes(t *testing.T) {
	db := filepath.Join(t.TempDir(), "k.db")
	digest, err := exec.Command(testbin.Vatrun(t), "profile", "digest", "solo").Output()
	if err != nil {
		t.Fatal(err)
	}
	consensus := []string{"--db", db, "--mode", "consensus", "--allow-nonconsensus-profile", "--pin-digest", strings.TrimSpace(string(digest))}
	code, out := runKernel(t, append(consensus, "--step", "v1:add:7", "--step", "v1:abort")...)
	if code != kernelExitHalted || !strings.Contains(out, "kernel HALTED") || !strings.Contains(out, "crank 1: vat v1") {
		t.Fatalf("exit %d, want %d:\n%s", code, kernelExitHalted, out)
	}
	code, out = runKernel(t, append(consensus, "--step", "v1:get")...)
	if code != 0 || !strings.Contains(out, "resuming at crank 1") || !strings.Contains(out, `crank 2: vat v1 "get" -> "sum:7"`) {
		t.Fatalf("exit %d after restart:\n%s", code, out)
	}
}

func TestKernelCommandUsage(t *testing.T) {
	db := filepath.Join(t.TempDir(), "k.db")
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{nil, "--db is required"},
		{[]string{"--db", db, "--mode", "consensus"}, "not a consensus profile"},
		{[]string{"--db", db, "--mode", "consensus", "--allow-nonconsensus-profile"}, "--pin-digest sha256:"},
		{[]string{"--db", db, "--mode", "consensus", "--allow-nonconsensus-profile", "--pin-digest", "sha256:00"}, "differs from the pinned"},
		{[]string{"--db", db, "--mode", "solo", "--step", "nocolon"}, "want VAT:COMMAND"},
		{[]string{"--db", db, "--mode", "solo", "--solo-policy", "maybe"}, "want restart or halt"},
		{[]string{"--db", db, "--mode", "solo", "--retries", "-1"}, "retries -1: want 0 or more"},
		{[]string{"--db", db, "--mode", "solo", "--max-external-restarts", "-1"}, "max external restarts -1"},
		{[]string{"--db", db, "--mode", "solo", "--backoff-base", "2m"}, "cap 1m0s below base 2m0s"},
	} {
		code, out := runKernel(t, c.args...)
		if code == 0 || !strings.Contains(out, c.msg) {
			t.Errorf("%v: exit %d, output %q; want failure saying %q", c.args, code, out, c.msg)
		}
	}
}

// TestKernelCommandZeroBudgets: --retries 0 and --max-external-restarts 0 mean none.
func TestKernelCommandZeroBudgets(t *testing.T) {
	solo := []string{"--mode", "solo", "--backoff-base", "1ms", "--backoff-cap", "10ms"}
	code, out := runKernel(t, append(solo, "--db", filepath.Join(t.TempDir(), "k.db"), "--retries", "0", "--step", "v1:add:1", "--step", "v1:abort", "--step", "v1:get")...)
	if code != 0 || strings.Contains(out, "restart-worker") || !strings.Contains(out, "retry budget of 0 used up") || !strings.Contains(out, "vat v1 terminated (committed)") {
		t.Fatalf("--retries 0: exit %d, want 0 with the vat terminated at once:\n%s", code, out)
	}
	code, out = runKernel(t, append(solo, "--db", filepath.Join(t.TempDir(), "k.db"), "--retries", "2", "--step", "v1:add:1", "--step", "v1:abort")...)
	if code != 0 || strings.Count(out, "restart-worker") != 2 || !strings.Contains(out, "retry budget of 2 used up") {
		t.Fatalf("--retries 2: exit %d, want two restarts then termination:\n%s", code, out)
	}
	code, out = runKernel(t, append(solo, "--db", filepath.Join(t.TempDir(), "k.db"), "--max-external-restarts", "0", "--step", "v1:add:1", "--step", "signal:v1:KILL", "--step", "idle:2s")...)
	if code != kernelExitHalted || strings.Contains(out, "restart-worker") || !strings.Contains(out, "kernel HALTED") {
		t.Fatalf("--max-external-restarts 0: exit %d, want a halt at the first external death:\n%s", code, out)
	}
}
