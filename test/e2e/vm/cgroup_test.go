package vm

// The cgroup package against the real kernel: a leaf made by cgroup.Open + NewLeaf (limits written and
// read back), a child cloned into it (CLONE_INTO_CGROUP) and OOM-killed under memory.max, the
// evidence read after its death, pids.max hit by a fork loop, Kill of a live leaf, and Remove.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vatrun/vatrun/cgroup"
)

func init() {
	helpers["forkloop"] = helperForkLoop
	helpers["sleep"] = func([]string) int { time.Sleep(time.Hour); return 0 }
}

// helperForkLoop starts up to 64 sleeping copies of this binary, stopping at the first refusal.
func helperForkLoop([]string) int {
	self, _ := os.Executable()
	for range 64 {
		c := exec.Command(self)
		c.Env = append(os.Environ(), helperEnv+"=sleep")
		if c.Start() != nil {
			return 0
		}
	}
	return 0
}

func cgroupPackage(t *testing.T, who string) {
	start := time.Now()
	p, err := cgroup.Open("", "")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if p.CleanErr != nil {
		t.Fatalf("Open: cleaning stale leaves: %v", p.CleanErr)
	}
	const mem = 32<<20 + 123
	l, err := p.NewLeaf(cgroup.Limits{MemoryMax: mem, SwapMax: 0, CPUMax: "50000 100000", PidsMax: 32})
	if err != nil {
		t.Fatalf("NewLeaf: %v", err)
	}
	defer l.Remove()
	page := int64(os.Getpagesize())
	for file, want := range map[string]string{
		"memory.max": strconv.FormatInt(mem/page*page, 10), "memory.swap.max": "0", "memory.oom.group": "1",
		"cpu.max": "50000 100000", "pids.max": "32",
	} {
		if got := readFile(t, filepath.Join(l.Path(), file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	sig, _ := waitSignal(t, startHelper(t, l.Path(), "alloc", "128M"))
	if sig != syscall.SIGKILL {
		t.Errorf("memory hog ended with signal %v, want SIGKILL", sig)
	}
	ev, notes, err := l.Evidence()
	if err != nil {
		t.Fatalf("Evidence: %v", err)
	}
	t.Logf("evidence %+v notes %q", ev, notes)
	if ev.OOM < 1 || ev.OOMKill < 1 || ev.MemoryMax != mem/page*page || ev.CPUUsageUsec == 0 {
		t.Errorf("evidence after OOM: %+v", ev)
	}
	if ev.MemoryPeak < uint64(mem*7/8) || ev.MemoryPeak > uint64(mem+(1<<20)) {
		t.Errorf("memory.peak %d, want near %d", ev.MemoryPeak, mem)
	}
	if err := l.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(l.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leaf left after Remove: %v", err)
	}

	l2, err := p.NewLeaf(cgroup.Limits{MemoryMax: -1, SwapMax: -1, PidsMax: 8})
	if err != nil {
		t.Fatalf("NewLeaf: %v", err)
	}
	defer l2.Remove()
	// The fork loop's Go runtime may itself die when it cannot make a thread: either way pids.max
	// refused a fork.
	loop := startHelper(t, l2.Path(), "forkloop")
	loop.Wait()
	pev, _, err := l2.Evidence()
	if err != nil || pev.PidsMaxEvents < 1 {
		t.Errorf("after the fork loop: evidence %+v, %v; want pids.events max >= 1", pev, err)
	}
	if err := l2.Kill(); err != nil { // the fork loop's sleeping children
		t.Fatalf("Kill: %v", err)
	}
	sleeper := startHelper(t, l2.Path(), "sleep")
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", sleeper.Process.Pid))
	if !strings.Contains(string(b), "/"+filepath.Base(l2.Path())+"\n") {
		t.Errorf("child's /proc/PID/cgroup %q, want leaf %s", b, filepath.Base(l2.Path()))
	}
	if err := l2.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if sig, _ := waitSignal(t, sleeper); sig != syscall.SIGKILL {
		t.Errorf("sleeper ended with signal %v, want SIGKILL", sig)
	}
	if err := l2.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if l := leaves(cgroupParentPath(t)); len(l) > 0 {
		t.Errorf("leaves left: %v", l)
	}
	row(t, "cgroup-package-"+who, "limits read back, OOM evidence, pids.max hit, kill, remove",
		fmt.Sprintf("oom=%d oom_kill=%d peak=%.1fM pids.events max=%d", ev.OOM, ev.OOMKill, float64(ev.MemoryPeak)/mib, pev.PidsMaxEvents), time.Since(start))
}

// TestCgroupPackage runs as root.
func TestCgroupPackage(t *testing.T) {
	vmTest(t)
	cgroupPackage(t, "root")
}

// TestUnprivCgroupPackage runs as uid 1000 in its delegated subtree.
func TestUnprivCgroupPackage(t *testing.T) {
	vmTest(t)
	cgroupPackage(t, "uid1000")
}
