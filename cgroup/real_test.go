package cgroup

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cgroups "github.com/containerd/cgroups/v3"
)

// RealEnv, set to 1, lets TestRealKernel use the real cgroup2 hierarchy. Only the e2e VM sets it
// (build with `go test -c ./cgroup`, run as a manifest entry); on a host that is not unified the
// test skips even then, so it can never touch the development machines' cgroups.
const RealEnv = "VATRUN_CGROUP_REAL"

// TestRealKernel: clone a child into a leaf (CLONE_INTO_CGROUP), OOM it under memory.max, read
// the evidence, hit pids.max, kill a live leaf and remove it.
func TestRealKernel(t *testing.T) {
	if os.Getenv(RealEnv) != "1" {
		t.Skip(RealEnv + " is not 1: real cgroups are tested in the e2e VM only")
	}
	if cgroups.Mode() != cgroups.Unified || sim != nil {
		t.Skip("not a unified cgroup v2 host")
	}
	if _, err := CleanStale("", ""); err != nil {
		t.Fatalf("CleanStale: %v", err)
	}
	const mem = 32<<20 + 123
	l, err := Create("", "", Limits{MemoryMax: mem, SwapMax: 0, CPUMax: "50000 100000", PidsMax: 32})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer l.Remove()
	st := helper(t, l, "hog").Run()
	var ee *exec.ExitError
	if !errors.As(st, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("memory hog ended with %v, want SIGKILL", st)
	}
	ev, notes, err := l.Evidence()
	if err != nil {
		t.Fatalf("Evidence: %v", err)
	}
	t.Logf("evidence %+v notes %q", ev, notes)
	page := int64(os.Getpagesize())
	if ev.OOM < 1 || ev.OOMKill < 1 || ev.MemoryMax != mem/page*page || ev.CPUUsageUsec == 0 {
		t.Errorf("evidence after OOM: %+v", ev)
	}
	if len(notes) == 0 && ev.MemoryPeak < uint64(mem/2) {
		t.Errorf("memory.peak %d, want near %d", ev.MemoryPeak, mem)
	}
	if err := l.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(l.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leaf left after Remove: %v", err)
	}

	l2, err := Create("", "", Limits{MemoryMax: -1, PidsMax: 16})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer l2.Remove()
	_ = helper(t, l2, "fork").Run() // the Go runtime may die when it cannot make a thread
	if ev, _, err := l2.Evidence(); err != nil || ev.PidsMaxEvents < 1 {
		t.Errorf("after fork loop: evidence %+v, %v; want pids.events max >= 1", ev, err)
	}

	if err := l2.Kill(); err != nil { // the fork loop's sleeping children
		t.Fatalf("Kill: %v", err)
	}
	sleeper := helper(t, l2, "sleep")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(sleeper.Process.Pid) + "/cgroup")
	if !strings.Contains(string(b), "/"+filepath.Base(l2.Path())+"\n") {
		t.Errorf("child's /proc/PID/cgroup %q, want leaf %s", b, filepath.Base(l2.Path()))
	}
	if err := l2.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := sleeper.Wait(); err == nil || sleeper.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("sleeper ended with %v, want SIGKILL", err)
	}
	if err := l2.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
}

// helper runs this test binary as a child cloned into l, doing what.
func helper(t *testing.T, l *Leaf, what string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRealKernelHelper$")
	cmd.Env = append(os.Environ(), "VATRUN_CGROUP_HELPER="+what)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: l.FD()}
	return cmd
}

// TestRealKernelHelper is the child of TestRealKernel.
func TestRealKernelHelper(t *testing.T) {
	switch os.Getenv("VATRUN_CGROUP_HELPER") {
	case "hog":
		for {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			hogged = append(hogged, b)
		}
	case "fork":
		for range 64 {
			c := exec.Command(os.Args[0], "-test.run=^TestRealKernelHelper$")
			c.Env = append(os.Environ(), "VATRUN_CGROUP_HELPER=sleep")
			if c.Start() != nil {
				return
			}
		}
	case "sleep":
		time.Sleep(time.Hour)
	default:
		t.Skip("only a child of TestRealKernel")
	}
}

var hogged [][]byte
