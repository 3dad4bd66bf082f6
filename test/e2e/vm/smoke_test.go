package vm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const cgroup2SuperMagic = 0x63677270

var wantControllers = []string{"memory", "cpu", "pids"}

func hasAll(t *testing.T, path string, want []string) {
	t.Helper()
	have := strings.Fields(readFile(t, path))
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			t.Errorf("%s = %q, missing %q", path, have, w)
		}
	}
}

// TestEnvironment proves the VM gives what the other tests rely on: a
// cgroup2 mount with memory, cpu and pids, a parent with them enabled for its
// children, and this process in a cgroup below that parent.
func TestEnvironment(t *testing.T) {
	vmTest(t)
	start := time.Now()
	var st syscall.Statfs_t
	if err := syscall.Statfs(cgroupRoot, &st); err != nil {
		t.Fatalf("statfs %s: %v", cgroupRoot, err)
	}
	if st.Type != cgroup2SuperMagic {
		t.Fatalf("%s is not cgroup2 (type %#x)", cgroupRoot, st.Type)
	}
	hasAll(t, cgroupRoot+"/cgroup.controllers", wantControllers)
	hasAll(t, cgroupRoot+"/cgroup.subtree_control", wantControllers)
	parent := cgroupParent(t)
	hasAll(t, parent+"/cgroup.subtree_control", wantControllers)
	own := ownCgroup(t)
	if !strings.HasPrefix(filepath.Join(cgroupRoot, own), parent+"/") {
		t.Errorf("own cgroup %s is not below the parent %s", own, parent)
	}
	var uts syscall.Utsname
	_ = syscall.Uname(&uts)
	release := utsString(uts.Release[:])
	t.Logf("kernel %s, cgroup %s, parent %s", release, own, parent)
	row(t, "env-cgroup2", "cgroup2 with memory cpu pids", fmt.Sprintf("ok, kernel %s", release), time.Since(start))
}

func utsString(b []int8) string {
	var s strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		s.WriteByte(byte(c))
	}
	return s.String()
}

// oomCase starts a child that touches 64M directly in a cgroup with
// memory.max=32M and checks the kernel's OOM evidence.
func oomCase(t *testing.T, rowName string) {
	const limit = 32 << 20
	start := time.Now()
	cg := newCgroup(t, "memory.max", "32M", "memory.swap.max", "0")
	cmd := startHelper(t, cg, "alloc", "64M")
	sig, code := waitSignal(t, cmd)
	elapsed := time.Since(start)
	ev := readKeyed(t, cg+"/memory.events")
	peak := readInt(t, cg+"/memory.peak")
	status := fmt.Sprintf("exit %d", code)
	if sig != 0 {
		status = fmt.Sprintf("signal %d (%v)", int(sig), sig)
	}
	observed := fmt.Sprintf("%s, oom=%d oom_kill=%d peak=%.1fM", status, ev["oom"], ev["oom_kill"], float64(peak)/(1<<20))
	t.Log(observed)
	row(t, rowName, "signal 9 (killed), oom>=1 oom_kill>=1 peak~32M", observed, elapsed)
	if sig != syscall.SIGKILL {
		t.Errorf("child ended with %s, want SIGKILL", status)
	}
	if ev["oom"] < 1 || ev["oom_kill"] < 1 {
		t.Errorf("memory.events = %v, want oom >= 1 and oom_kill >= 1", ev)
	}
	if peak < limit*7/8 || peak > limit+(1<<20) {
		t.Errorf("memory.peak = %d, want about %d", peak, limit)
	}
}

// TestOOMKillInCgroup: as root, a child placed with CLONE_INTO_CGROUP under
// memory.max=32M is OOM-killed when it touches 64M.
func TestOOMKillInCgroup(t *testing.T) {
	vmTest(t)
	oomCase(t, "oom-root")
}

// TestUnprivOOMKillInCgroup: the same as uid 1000, in the delegated subtree.
func TestUnprivOOMKillInCgroup(t *testing.T) {
	vmTest(t)
	oomCase(t, "oom-uid1000")
}

// TestUnprivDelegation: uid 1000 owns its parent and nothing above it.
func TestUnprivDelegation(t *testing.T) {
	vmTest(t)
	start := time.Now()
	parent := cgroupParent(t)
	st, err := os.Stat(parent)
	if err != nil {
		t.Fatal(err)
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; int(uid) != os.Getuid() {
		t.Errorf("parent %s owned by uid %d, want %d", parent, uid, os.Getuid())
	}
	err = os.Mkdir(filepath.Join(cgroupRoot, "not-mine"), 0o755)
	if !errors.Is(err, os.ErrPermission) {
		t.Errorf("mkdir in the root cgroup as uid %d: %v, want permission denied", os.Getuid(), err)
	}
	err = os.WriteFile(cgroupRoot+"/cgroup.subtree_control", []byte("-pids"), 0)
	if !errors.Is(err, os.ErrPermission) {
		t.Errorf("write root cgroup.subtree_control as uid %d: %v, want permission denied", os.Getuid(), err)
	}
	row(t, "delegation-uid1000", "own parent, root cgroup denied", "ok", time.Since(start))
}
