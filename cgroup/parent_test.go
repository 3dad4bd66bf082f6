package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// staleLeaf makes a leaf named for a dead owner under parentCG, holding a (never exiting) pid, and
// returns its name.
func staleLeaf(t *testing.T, k *fakeKernel, n int) string {
	t.Helper()
	name := fmt.Sprintf("vatrun-%d-%d-%d", deadPid, 123, n)
	k.mkdir(t, parentCG+"/"+name)
	if err := k.Write(k.path(parentCG+"/"+name+"/cgroup.procs"), strconv.Itoa(deadPid)); err != nil {
		t.Fatal(err)
	}
	return name
}

func count(ws []string, w string) int {
	n := 0
	for _, x := range ws {
		if x == w {
			n++
		}
	}
	return n
}

// Open cleans the stale leaves once; the leaves made from the Parent clean nothing (a stale leaf
// appearing after Open stays until the parent is opened again), and a second Open cleans it.
func TestOpenCleansStaleOncePerOpen(t *testing.T) {
	k := newFake(t, nil)
	first := staleLeaf(t, k, 1)
	p, err := Open(k.root, "")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if want := []string{parentCG + "/" + first}; !slices.Equal(p.Removed, want) || p.CleanErr != nil {
		t.Errorf("Open: Removed %q CleanErr %v, want %q and nil", p.Removed, p.CleanErr, want)
	}
	killFirst := parentCG[1:] + "/" + first + "/cgroup.kill=1"
	if n := count(k.writes(), killFirst); n != 1 {
		t.Errorf("stale leaf killed %d times by Open, want 1", n)
	}

	later := staleLeaf(t, k, 2)
	for range 2 {
		l, err := p.NewLeaf(full)
		if err != nil {
			t.Fatalf("NewLeaf: %v", err)
		}
		if err := l.Remove(); err != nil {
			t.Fatal(err)
		}
	}
	killLater := parentCG[1:] + "/" + later + "/cgroup.kill=1"
	if n := count(k.writes(), killLater); n != 0 {
		t.Errorf("NewLeaf killed the stale leaf %s (%d times): only Open cleans", later, n)
	}
	if _, err := os.Stat(k.path(parentCG + "/" + later)); err != nil {
		t.Errorf("NewLeaf removed the stale leaf %s: %v", later, err)
	}

	p2, err := Open(k.root, "")
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	if want := []string{parentCG + "/" + later}; !slices.Equal(p2.Removed, want) {
		t.Errorf("second Open removed %q, want %q", p2.Removed, want)
	}
	if n, m := count(k.writes(), killFirst), count(k.writes(), killLater); n != 1 || m != 1 {
		t.Errorf("cgroup.kill of the stale leaves written %d and %d times, want 1 each", n, m)
	}
}

// Open detects once: the leaves it makes do not read the host again (here /proc/self/cgroup
// becomes unreadable after Open, and NewLeaf still works), and it writes nothing when there is
// nothing stale. The first leaf prepares the parent; the next ones find it prepared.
func TestNewLeafAfterOpen(t *testing.T) {
	k := newFake(t, nil)
	p, err := Open(k.root, "")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if w := k.writes(); len(w) != 0 {
		t.Errorf("Open with nothing stale wrote %q", w)
	}
	h := p.Host
	if h.Mode != ModeUnified || h.Parent != parentCG || h.Self != parentCG || !h.Writable || h.Problem != "" ||
		!slices.Equal(h.Controllers, []string{"cpu", "memory", "pids"}) || len(p.Removed) != 0 {
		t.Errorf("Open: Host %+v Removed %q", h, p.Removed)
	}
	selfCgroupFile = filepath.Join(t.TempDir(), "gone")
	var names []string
	for i := range 3 {
		before := len(k.writes())
		l, err := p.NewLeaf(full)
		if err != nil {
			t.Fatalf("NewLeaf %d: %v", i, err)
		}
		t.Cleanup(func() { _ = l.Remove() })
		names = append(names, filepath.Base(l.Path()))
		if got := k.get(t, k.rel(l.Path())+"/pids.max"); got != "64" {
			t.Errorf("leaf %d pids.max = %q", i, got)
		}
		prepared := false
		for _, w := range k.writes()[before:] {
			prepared = prepared || strings.HasPrefix(w, parentCG[1:]+"/cgroup.")
		}
		if prepared != (i == 0) {
			t.Errorf("NewLeaf %d wrote the parent's cgroup.* files: %v, want only the first", i, prepared)
		}
	}
	if len(slices.Compact(slices.Sorted(slices.Values(names)))) != 3 {
		t.Errorf("leaf names not distinct: %q", names)
	}
}

// A parent removed between Open and NewLeaf (its service stopped) gives a refusal that says so and
// how to recover, and nothing is created.
func TestNewLeafParentGone(t *testing.T) {
	k := newFake(t, nil)
	p, err := Open(k.root, "")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := os.RemoveAll(k.path(parentCG)); err != nil {
		t.Fatal(err)
	}
	before := len(k.writes())
	_, err = p.NewLeaf(full)
	var ue *UnusableError
	if !errors.As(err, &ue) || !errors.Is(err, ErrUnusable) {
		t.Fatalf("NewLeaf after the parent went: %v, want an *UnusableError", err)
	}
	for _, want := range []string{
		"cgroup parent " + parentCG + " no longer exists (" + k.path(parentCG) + " was removed after vatrun opened it",
		"fix: open the parent again",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if ue.Host.Parent != parentCG {
		t.Errorf("refusal's Host.Parent %q", ue.Host.Parent)
	}
	if w := k.writes()[before:]; len(w) != 0 {
		t.Errorf("NewLeaf wrote %q", w)
	}
	if _, err := os.Stat(k.path(parentCG)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("parent recreated: %v", err)
	}
	// Opening it again says what a fresh look finds.
	if _, err := Open(k.root, parentCG); !errors.Is(err, ErrUnusable) || !strings.Contains(err.Error(), "cannot read") {
		t.Errorf("Open of the removed parent: %v", err)
	}
}

// Open refuses what Detect finds unusable, and NewLeaf refuses a leaf whose limits need a
// controller the parent lacks, before writing anything.
func TestNewLeafRefusesMissingController(t *testing.T) {
	k := newFake(t, nil)
	k.put(parentCG+"/cgroup.controllers", "memory")
	p, err := Open(k.root, "")
	if err != nil {
		t.Fatalf("Open of a parent with memory only: %v", err)
	}
	for _, c := range []struct {
		lim  Limits
		want string
	}{
		{Limits{MemoryMax: -1, PidsMax: 4}, "lacks the pids controller(s)"},
		{Limits{MemoryMax: -1, CPUMax: "1000 10000"}, "lacks the cpu controller(s)"},
		{full, "lacks the cpu, pids controller(s)"},
	} {
		_, err := p.NewLeaf(c.lim)
		if !errors.Is(err, ErrUnusable) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "Delegate=yes") {
			t.Errorf("NewLeaf(%+v): %v, want %q and the fix", c.lim, err, c.want)
		}
	}
	if w := k.writes(); len(w) != 0 {
		t.Errorf("refused NewLeaf wrote %q", w)
	}
	l, err := p.NewLeaf(Limits{MemoryMax: 1 << 20})
	if err != nil {
		t.Fatalf("NewLeaf with memory only: %v", err)
	}
	if err := l.Remove(); err != nil {
		t.Fatal(err)
	}
}
