package launcher

import (
	"errors"
	"github.com/vatrun/vatrun/launcher/plan"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// plainTree lays out, in a temporary directory (never the host's cgroups), just enough of a
// unified cgroup2 tree for cgroup.Open to accept /k.slice as a parent: a plain directory has no
// kernel behind it, so a leaf made there lacks its control files and NewLeaf fails, which is what
// the cache's eviction needs.
func plainTree(t *testing.T) (root string) {
	t.Helper()
	root = t.TempDir()
	put := func(rel, data string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put("cgroup.controllers", "cpu memory pids")
	put("k.slice/cgroup.controllers", "cpu memory pids")
	put("k.slice/cgroup.subtree_control", "cpu memory pids")
	put("k.slice/cgroup.procs", "")
	return root
}

// staleDir makes an empty leaf named for a dead owner (pid above any pid_max) under /k.slice.
func staleDir(t *testing.T, root, name string) string {
	t.Helper()
	dir := filepath.Join(root, "k.slice", name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.events"), []byte("populated 0\nfrozen 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// The launcher opens a parent once (detection and stale cleaning) and reuses it; a failed leaf
// drops it, so the next launch opens it afresh (cleaning again), and a parent that was removed is
// reported as gone.
func TestParentCache(t *testing.T) {
	root := plainTree(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := CgroupOptions{Root: root, Parent: "/k.slice"}
	stale1 := staleDir(t, root, "vatrun-4194305-1-1")

	p1, err := openParent(opts, log)
	if err != nil {
		t.Fatalf("openParent: %v", err)
	}
	if exists(stale1) || len(p1.Removed) != 1 {
		t.Errorf("first open: stale leaf still there (%v) or Removed %q", exists(stale1), p1.Removed)
	}
	stale2 := staleDir(t, root, "vatrun-4194305-1-2")
	p2, err := openParent(opts, log)
	if err != nil || p2 != p1 {
		t.Fatalf("second openParent: %p, %v; want the cached %p", p2, err, p1)
	}
	if !exists(stale2) {
		t.Error("the cached parent cleaned again")
	}

	// A leaf that cannot be made (a plain directory gets no memory.max) drops the entry.
	spec := Spec{Profile: profile(t, "xsnap"), Cgroup: opts, Logger: log}
	pl, err := plan.Compile(spec.Profile)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := setupCgroup(spec, pl); !errors.Is(err, ErrSetup) || !strings.Contains(err.Error(), "memory.max missing") {
		t.Fatalf("setupCgroup in a plain tree: %v, want ErrSetup naming memory.max", err)
	}
	p3, err := openParent(opts, log)
	if err != nil || p3 == p1 {
		t.Fatalf("openParent after a failed leaf: %p, %v; want a fresh parent", p3, err)
	}
	if exists(stale2) {
		t.Error("reopening did not clean the stale leaf left meanwhile")
	}

	// The parent goes away: the launch says so (an explicit parent is an error for any profile).
	if err := os.RemoveAll(filepath.Join(root, "k.slice")); err != nil {
		t.Fatal(err)
	}
	_, _, err = setupCgroup(spec, pl)
	if !errors.Is(err, ErrSetup) || !strings.Contains(err.Error(), "cgroup parent /k.slice no longer exists") || !strings.Contains(err.Error(), "fix: ") {
		t.Fatalf("setupCgroup after the parent went: %v", err)
	}
	if _, ok := parents.Load(parentKey(opts)); ok {
		t.Error("a gone parent stayed cached")
	}
	if _, err := openParent(opts, log); err == nil || !strings.Contains(err.Error(), "cannot read") {
		t.Errorf("openParent of the removed parent: %v", err)
	}
}

// The launcher reads no environment: Parent "" is this process's own cgroup, never
// $VATRUN_CGROUP_PARENT (the vatrun command passes that explicitly).
func TestParentIgnoresEnvironment(t *testing.T) {
	root := plainTree(t)
	t.Setenv("VATRUN_CGROUP_PARENT", "/k.slice")
	p, err := openParent(CgroupOptions{Root: root}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil && p.Path() == "/k.slice" {
		t.Fatal("Parent \"\" opened $VATRUN_CGROUP_PARENT")
	}
	p, err = openParent(CgroupOptions{Root: root, Parent: "/k.slice"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil || p.Path() != "/k.slice" {
		t.Fatalf("explicit Parent: %v, %v", p, err)
	}
}

// Launches that start together open the parent once: they share one Parent, and the stale leaf
// is cleaned by one of them without a race (no CleanErr, so the entry is cached).
func TestParentOpenedOnceConcurrently(t *testing.T) {
	root := plainTree(t)
	staleDir(t, root, "vatrun-4194305-1-1")
	opts := CgroupOptions{Root: root, Parent: "/k.slice"}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	got := make(chan any, 8)
	for range 8 {
		go func() {
			p, err := openParent(opts, log)
			if err != nil {
				got <- err
				return
			}
			got <- p
		}()
	}
	var first any
	for range 8 {
		p := <-got
		if err, ok := p.(error); ok {
			t.Fatalf("openParent: %v", err)
		}
		if first == nil {
			first = p
		} else if p != first {
			t.Errorf("two launches opened the parent separately (%p, %p)", first, p)
		}
	}
	if p, ok := parents.Load(parentKey(opts)); !ok || p != first {
		t.Errorf("cached %v, want the shared parent", p)
	}
}
