package cgroup

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/report"
)

var full = Limits{MemoryMax: 100_000_001, SwapMax: 0, CPUMax: "50000 100000", PidsMax: 64}

// openLeaf is the launcher's way in: Open the parent, then NewLeaf.
func openLeaf(root, parent string, lim Limits) (*Leaf, error) {
	p, err := Open(root, parent)
	if err != nil {
		return nil, err
	}
	return p.NewLeaf(lim)
}

func mustCreate(t *testing.T, k *fakeKernel, lim Limits) *Leaf {
	t.Helper()
	l, err := openLeaf(k.root, "", lim)
	if err != nil {
		t.Fatalf("Open+NewLeaf: %v", err)
	}
	t.Cleanup(func() { _ = l.Remove() })
	return l
}

func leaves(t *testing.T, k *fakeKernel) []string {
	t.Helper()
	ents, err := os.ReadDir(k.path(parentCG))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestCreateWritesAndVerifiesLimits(t *testing.T) {
	k := newFake(t, nil)
	l := mustCreate(t, k, full)

	start, err := startTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(l.Path())
	if want := fmt.Sprintf("vatrun-%d-%d-", os.Getpid(), start); !strings.HasPrefix(name, want) {
		t.Errorf("leaf name %q, want prefix %q", name, want)
	}
	if got, want := l.Path(), k.path(parentCG+"/"+name); got != want {
		t.Errorf("Path() = %q, want %q", got, want)
	}
	// vatrun sat in the parent: it was moved out before the controllers were enabled.
	if got := k.get(t, parentCG+"/cgroup.procs"); got != "" {
		t.Errorf("parent cgroup.procs = %q, want empty", got)
	}
	if got, want := k.get(t, parentCG+"/vatrun-supervisor/cgroup.procs"), strconv.Itoa(os.Getpid()); got != want {
		t.Errorf("supervisor cgroup.procs = %q, want %q", got, want)
	}
	if got := k.get(t, parentCG+"/cgroup.subtree_control"); got != "cpu memory pids" {
		t.Errorf("parent subtree_control = %q, want %q", got, "cpu memory pids")
	}
	rel := parentCG + "/" + name + "/"
	page := int64(os.Getpagesize())
	for f, want := range map[string]string{
		"memory.max":       strconv.FormatInt(100_000_001/page*page, 10),
		"memory.swap.max":  "0",
		"memory.oom.group": "1",
		"cpu.max":          "50000 100000",
		"pids.max":         "64",
	} {
		if got := k.get(t, rel+f); got != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}
	// The fd is the leaf directory.
	var a, b unix.Stat_t
	if err := unix.Fstat(l.FD(), &a); err != nil {
		t.Fatalf("fstat FD: %v", err)
	}
	if err := unix.Stat(l.Path(), &b); err != nil {
		t.Fatal(err)
	}
	if a.Ino != b.Ino || a.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Errorf("FD is not the leaf directory (ino %d vs %d)", a.Ino, b.Ino)
	}

	if err := l.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(l.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leaf still there after Remove: %v", err)
	}
	if l.FD() != -1 {
		t.Errorf("FD() = %d after Remove, want -1", l.FD())
	}
	if err := l.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if got := leaves(t, k); !slices.Equal(got, []string{"vatrun-supervisor"}) {
		t.Errorf("parent children = %v, want only vatrun-supervisor", got)
	}
}

func TestCreateUnlimitedUsesMemoryOnly(t *testing.T) {
	k := newFake(t, nil)
	l := mustCreate(t, k, Limits{MemoryMax: -1, SwapMax: -1, CPUMax: "max 100000"})
	if got := k.get(t, parentCG+"/cgroup.subtree_control"); got != "memory" {
		t.Errorf("parent subtree_control = %q, want %q", got, "memory")
	}
	for _, f := range []string{"memory.max", "memory.swap.max"} {
		if got := k.get(t, k.rel(l.Path())+"/"+f); got != "max" {
			t.Errorf("%s = %q, want max", f, got)
		}
	}
	for _, w := range k.writes() {
		if strings.HasSuffix(w, "memory.max=max") || strings.Contains(w, "cpu.max") || strings.Contains(w, "pids.max") {
			t.Errorf("unexpected write %q", w)
		}
	}
	ev, notes, err := l.Evidence()
	if err != nil {
		t.Fatalf("Evidence without pids controller: %v", err)
	}
	if ev.MemoryMax != -1 || len(notes) != 0 {
		t.Errorf("Evidence = %+v notes %q, want MemoryMax -1 and no notes", ev, notes)
	}
	// A second leaf finds the controller enabled and moves nobody.
	before := len(k.writes())
	mustCreate(t, k, Limits{MemoryMax: 1 << 20})
	for _, w := range k.writes()[before:] {
		if strings.Contains(w, "cgroup.subtree_control") || strings.Contains(w, "cgroup.procs") {
			t.Errorf("second Create wrote %q", w)
		}
	}
}

func TestCreateCPUQuotaWithoutPeriod(t *testing.T) {
	k := newFake(t, nil)
	l := mustCreate(t, k, Limits{MemoryMax: -1, CPUMax: "20000"})
	if got := k.get(t, k.rel(l.Path())+"/cpu.max"); got != "20000 100000" {
		t.Errorf("cpu.max = %q, want %q", got, "20000 100000")
	}
}

func TestCreateReadBackMismatch(t *testing.T) {
	k := newFake(t, func(k *fakeKernel) { k.clamp["memory.max"] = "max" })
	_, err := openLeaf(k.root, "", Limits{MemoryMax: 100 << 20})
	want := `memory.max reads back "max", want "104857600"`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("NewLeaf error = %v, want it to contain %s", err, want)
	}
	if got := leaves(t, k); !slices.Equal(got, []string{"vatrun-supervisor"}) {
		t.Errorf("leaf left behind after failed NewLeaf: %v", got)
	}
}

func TestCreateRejectsBadLimits(t *testing.T) {
	k := newFake(t, nil)
	p, err := Open(k.root, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, lim := range []Limits{
		{MemoryMax: 0},
		{MemoryMax: -2},
		{MemoryMax: -1, SwapMax: -5},
		{MemoryMax: -1, PidsMax: -1},
		{MemoryMax: -1, CPUMax: "lots"},
		{MemoryMax: -1, CPUMax: "1000 0"},
	} {
		if _, err := p.NewLeaf(lim); err == nil || !strings.HasPrefix(err.Error(), "cgroup limits: ") {
			t.Errorf("NewLeaf(%+v) error = %v, want a limits error", lim, err)
		}
	}
	if len(k.writes()) != 0 {
		t.Errorf("bad limits caused writes: %q", k.writes())
	}
}

func TestEvidence(t *testing.T) {
	k := newFake(t, func(k *fakeKernel) { k.pidsPeak = true })
	l := mustCreate(t, k, full)
	rel := k.rel(l.Path()) + "/"
	k.put(rel+"memory.events", "low 0\nhigh 3\nmax 9\noom 2\noom_kill 1\noom_group_kill 1")
	k.put(rel+"memory.peak", "99999744")
	k.put(rel+"cpu.stat", "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\nnr_periods 30\n"+
		"nr_throttled 7\nthrottled_usec 250000\nnr_bursts 0\nburst_usec 0")
	k.put(rel+"pids.events", "max 4")
	k.put(rel+"pids.peak", "64")
	ev, notes, err := l.Evidence()
	if err != nil {
		t.Fatal(err)
	}
	page := int64(os.Getpagesize())
	want := report.CgroupEvidence{OOM: 2, OOMKill: 1, OOMGroupKill: 1, MemoryPeak: 99999744,
		MemoryMax: 100_000_001 / page * page, PidsMaxEvents: 4, PidsPeak: 64, CPUUsageUsec: 1500000,
		ThrottledUsec: 250000, NrThrottled: 7}
	if ev != want {
		t.Errorf("Evidence =\n %+v\nwant\n %+v", ev, want)
	}
	if len(notes) != 0 {
		t.Errorf("notes = %q, want none", notes)
	}

	k.put(rel+"memory.events", "oom two")
	if _, _, err := l.Evidence(); err == nil || !strings.Contains(err.Error(), "read memory.events") {
		t.Errorf("malformed memory.events: err = %v", err)
	}
}

func TestEvidenceWithoutMemoryPeak(t *testing.T) {
	k := newFake(t, func(k *fakeKernel) { k.noPeak = true })
	l := mustCreate(t, k, full)
	k.put(k.rel(l.Path())+"/memory.events", "oom 1\noom_kill 1")
	ev, notes, err := l.Evidence()
	if err != nil {
		t.Fatal(err)
	}
	if ev.MemoryPeak != 0 || ev.OOM != 1 || ev.OOMKill != 1 || ev.PidsPeak != 0 {
		t.Errorf("Evidence = %+v", ev)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "memory.peak absent") {
		t.Errorf("notes = %q, want one about memory.peak", notes)
	}
}

func TestKillWritesCgroupKill(t *testing.T) {
	k := newFake(t, nil)
	l := mustCreate(t, k, full)
	rel := k.rel(l.Path())
	if err := k.Write(l.Path()+"/cgroup.procs", strconv.Itoa(deadPid)); err != nil {
		t.Fatal(err)
	}
	if got := k.get(t, rel+"/cgroup.events"); !strings.Contains(got, "populated 1") {
		t.Fatalf("fake leaf not populated: %q", got)
	}
	if err := l.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if w := k.writes(); !slices.Contains(w, rel+"/cgroup.kill=1") {
		t.Errorf("cgroup.kill not written; writes: %q", w)
	}
	if got := k.get(t, rel+"/cgroup.events"); !strings.Contains(got, "populated 0") {
		t.Errorf("cgroup.events after Kill = %q", got)
	}
	if err := l.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
}

func TestKillFallbackSignalsEveryPid(t *testing.T) {
	k := newFake(t, func(k *fakeKernel) { k.noKill = true })
	l := mustCreate(t, k, full)
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The launcher's clone put it there; the launcher reaps it, then the kernel updates the tree.
	if err := k.Write(l.Path()+"/cgroup.procs", strconv.Itoa(cmd.Process.Pid)); err != nil {
		t.Fatal(err)
	}
	reaped := make(chan error, 1)
	go func() { err := cmd.Wait(); k.exited(cmd.Process.Pid); reaped <- err }()
	if err := l.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	select {
	case <-reaped:
	case <-time.After(5 * time.Second):
		t.Fatal("sleep was not killed")
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("sleep ended with %v, want SIGKILL", cmd.ProcessState)
	}
	for _, w := range k.writes() {
		if strings.Contains(w, "cgroup.kill") {
			t.Errorf("wrote %q though cgroup.kill is absent", w)
		}
	}
	if err := l.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
}

func TestKillTimeout(t *testing.T) {
	k := newFake(t, func(k *fakeKernel) { k.noKill = true })
	KillTimeout = 50 * time.Millisecond
	l := mustCreate(t, k, full)
	// A pid that never goes away (the fake kernel never hears of its death).
	if err := k.Write(l.Path()+"/cgroup.procs", strconv.Itoa(deadPid)); err != nil {
		t.Fatal(err)
	}
	err := l.Kill()
	if err == nil || !strings.Contains(err.Error(), "still populated 50ms after kill") {
		t.Fatalf("Kill error = %v, want a timeout", err)
	}
	if err := l.Remove(); err == nil {
		t.Fatal("Remove of a populated leaf succeeded")
	}
	if _, err := os.Stat(l.Path()); err != nil {
		t.Errorf("populated leaf removed: %v", err)
	}
	k.exited(deadPid)
	if err := l.Remove(); err != nil {
		t.Fatalf("Remove once empty: %v", err)
	}
}

func TestRemoveNestedCgroups(t *testing.T) {
	k := newFake(t, nil)
	l := mustCreate(t, k, full)
	k.mkdir(t, k.rel(l.Path())+"/sub")
	k.mkdir(t, k.rel(l.Path())+"/sub/deeper")
	if err := k.Write(l.Path()+"/sub/deeper/cgroup.procs", strconv.Itoa(deadPid)); err != nil {
		t.Fatal(err)
	}
	if err := l.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(l.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leaf still there: %v", err)
	}
}

func TestOpenCleansStale(t *testing.T) {
	k := newFake(t, nil)
	live := mustCreate(t, k, full) // this process owns it: kept
	start, err := startTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("vatrun-%d-%d-1", deadPid, 123)
	reused := fmt.Sprintf("vatrun-%d-%d-9", os.Getpid(), start+1) // same pid, another process
	for _, n := range []string{dead, reused, "unrelated", "vatrun-x-1-2"} {
		k.mkdir(t, parentCG+"/"+n)
	}
	if err := k.Write(k.path(parentCG+"/"+dead+"/cgroup.procs"), strconv.Itoa(deadPid)); err != nil {
		t.Fatal(err)
	}
	p, err := Open(k.root, "")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if p.CleanErr != nil {
		t.Fatalf("Open: CleanErr %v", p.CleanErr)
	}
	removed := p.Removed
	slices.Sort(removed)
	wantRemoved := []string{parentCG + "/" + dead, parentCG + "/" + reused}
	slices.Sort(wantRemoved)
	if want := wantRemoved; !slices.Equal(removed, want) {
		t.Errorf("removed %q, want %q", removed, want)
	}
	got := leaves(t, k)
	want := []string{filepath.Base(live.Path()), "unrelated", "vatrun-supervisor", "vatrun-x-1-2"}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("left %q, want %q", got, want)
	}
	if w := k.writes(); !slices.Contains(w, k.rel(k.path(parentCG+"/"+dead))+"/cgroup.kill=1") {
		t.Errorf("stale leaf not killed; writes %q", w)
	}
}

func TestParseLeafName(t *testing.T) {
	for name, ok := range map[string]bool{
		"vatrun-12-345-6": true, "vatrun-supervisor": false, "vatrun-0-1-1": false,
		"vatrun-1-2": false, "vatrun-1-2-3-4": false, "x-1-2-3": false, "vatrun-1-a-3": false,
	} {
		if _, _, got := parseLeafName(name); got != ok {
			t.Errorf("parseLeafName(%q) ok = %v, want %v", name, got, ok)
		}
	}
	pid, start, _ := parseLeafName("vatrun-12-345-6")
	if pid != 12 || start != 345 {
		t.Errorf("parseLeafName = %d, %d", pid, start)
	}
}

// After a Kill that emptied the leaf, Remove goes straight to rmdir (no second cgroup.kill).
func TestRemoveAfterKillDoesNotKillAgain(t *testing.T) {
	k := newFake(t, nil)
	l := mustCreate(t, k, full)
	rel := k.rel(l.Path())
	if err := k.Write(l.Path()+"/cgroup.procs", strconv.Itoa(deadPid)); err != nil {
		t.Fatal(err)
	}
	if err := l.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := l.Remove(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, w := range k.writes() {
		if w == rel+"/cgroup.kill=1" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("cgroup.kill written %d times for Kill+Remove, want 1", n)
	}
	if _, err := os.Stat(l.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leaf still there: %v", err)
	}
}

// Killing a leaf that holds no live process writes nothing: cgroup.events already says so.
func TestKillEmptyLeafWritesNothing(t *testing.T) {
	k := newFake(t, nil)
	l := mustCreate(t, k, full)
	rel := k.rel(l.Path())
	if err := l.Kill(); err != nil {
		t.Fatal(err)
	}
	if w := k.writes(); slices.Contains(w, rel+"/cgroup.kill=1") {
		t.Errorf("cgroup.kill written for an empty leaf; writes: %q", w)
	}
}

// The limit files a leaf gets, and the values written to them, exactly: nothing for "no limit"
// (a new leaf reads "max"), page rounding left to the kernel, a cpu.max period only when given.
func TestLeafWritesExactly(t *testing.T) {
	for _, c := range []struct {
		name string
		lim  Limits
		want []string
	}{
		{"full", full, []string{"cpu.max=50000 100000", "memory.max=100000001", "memory.oom.group=1",
			"memory.swap.max=0", "pids.max=64"}},
		{"no limits", Limits{MemoryMax: -1, SwapMax: -1, CPUMax: "max 100000"}, []string{"memory.oom.group=1"}},
		{"quota without period", Limits{MemoryMax: 1 << 20, SwapMax: -1, CPUMax: " 20000 "}, []string{
			"cpu.max=20000", "memory.max=1048576", "memory.oom.group=1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := newFake(t, nil)
			p, err := Open(k.root, "")
			if err != nil {
				t.Fatal(err)
			}
			before := len(k.writes())
			l, err := p.NewLeaf(c.lim)
			if err != nil {
				t.Fatalf("NewLeaf: %v", err)
			}
			defer l.Remove()
			prefix := k.rel(l.Path()) + "/"
			var got []string
			for _, w := range k.writes()[before:] {
				if s, ok := strings.CutPrefix(w, prefix); ok {
					got = append(got, s)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, c.want) {
				t.Errorf("leaf writes %q, want %q", got, c.want)
			}
		})
	}
}
