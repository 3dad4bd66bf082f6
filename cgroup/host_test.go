package cgroup

import (
	"bufio"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// wantRefusal checks that Open or NewLeaf refuses with an *UnusableError (wrapping ErrUnusable)
// holding every text in want, writing nothing, and that Detect reports the same problem.
func wantRefusal(t *testing.T, k *fakeKernel, root, parent string, lim Limits, want ...string) Host {
	t.Helper()
	before := len(k.writes())
	_, err := openLeaf(root, parent, lim)
	var ue *UnusableError
	if !errors.Is(err, ErrUnusable) || !errors.As(err, &ue) {
		t.Fatalf("Open+NewLeaf error = %v, want an *UnusableError", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Open+NewLeaf error lacks %q:\n%v", w, err)
		}
	}
	if w := k.writes()[before:]; len(w) != 0 {
		t.Errorf("refused Open+NewLeaf wrote %q", w)
	}
	h := Detect(root, parent)
	if ue.Host.Problem != h.Problem || ue.Host.Fix != h.Fix || h.Problem == "" {
		t.Errorf("Detect Problem/Fix %q / %q not the refusal's %q / %q", h.Problem, h.Fix, ue.Host.Problem, ue.Host.Fix)
	}
	return h
}

func TestDetectUsableFake(t *testing.T) {
	k := newFake(t, nil)
	h := Detect(k.root, "")
	want := Host{Mode: ModeUnified, Mountpoint: k.root, Self: parentCG, Parent: parentCG,
		Controllers: []string{"cpu", "memory", "pids"}, Writable: true}
	if h.Mode != want.Mode || h.Mountpoint != want.Mountpoint || h.Self != want.Self || h.Parent != want.Parent ||
		!slices.Equal(h.Controllers, want.Controllers) || h.Writable != want.Writable || h.Problem != "" || h.Fix != "" {
		t.Errorf("Detect = %+v\nwant %+v", h, want)
	}
	if len(k.writes()) != 0 {
		t.Errorf("Detect wrote %q", k.writes())
	}
	if _, err := os.Stat(k.path(parentCG + "/vatrun-supervisor")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Detect created something: %v", err)
	}
}

func TestDetectParentChoice(t *testing.T) {
	k := newFake(t, nil)
	// vatrun already in the supervisor leaf (a sibling vatrun moved it there): same parent.
	k.setSelf(t, parentCG+"/vatrun-supervisor")
	if h := Detect(k.root, ""); h.Parent != parentCG || h.Problem != "" {
		t.Errorf("self in supervisor: Parent %q Problem %q, want %q and none", h.Parent, h.Problem, parentCG)
	}
	if h := Detect(k.root, "/system.slice"); h.Parent != "/system.slice" {
		t.Errorf("explicit parent: Parent %q, want /system.slice", h.Parent)
	}
	// The library reads no environment: "" is this process's own cgroup, whatever
	// $VATRUN_CGROUP_PARENT says (only the vatrun command reads it).
	t.Setenv("VATRUN_CGROUP_PARENT", "/system.slice")
	if h := Detect(k.root, ""); h.Parent != parentCG {
		t.Errorf("Detect with $VATRUN_CGROUP_PARENT set: Parent %q, want own cgroup %q", h.Parent, parentCG)
	}
	if p, err := Open(k.root, ""); err != nil || p.Path() != parentCG {
		t.Errorf("Open with $VATRUN_CGROUP_PARENT set: %v, %v; want own cgroup %q", p, err, parentCG)
	}
}

func TestRefuseParentNotWritable(t *testing.T) {
	k := newFake(t, nil)
	dir := k.path(parentCG)
	accessW = func(p string) error {
		if p == dir || p == filepath.Join(dir, "cgroup.procs") {
			return unix.EACCES
		}
		return nil
	}
	h := wantRefusal(t, k, k.root, "", full,
		"cgroup parent /system.slice/kernel.service is not writable by uid ",
		dir+" (uid 0, mode 0755): permission denied",
		"cgroup.procs (uid 0, mode 0644): permission denied",
		"[Service]\nDelegate=yes\nUser=",
		"--cgroup-parent")
	if h.Writable {
		t.Error("Detect says Writable")
	}
}

func TestRefuseControllerMissing(t *testing.T) {
	k := newFake(t, nil)
	k.put(parentCG+"/cgroup.controllers", "cpu memory")
	h := wantRefusal(t, k, k.root, "", full,
		`cgroup parent /system.slice/kernel.service lacks the pids controller(s): its cgroup.controllers lists "cpu memory"`,
		"Delegate=yes",
		k.path("/system.slice/cgroup.subtree_control"))
	if !slices.Equal(h.Controllers, []string{"cpu", "memory"}) {
		t.Errorf("Controllers = %q", h.Controllers)
	}
	// A profile without a pids limit does not need the controller: the parent opens (Open needs
	// only memory), and NewLeaf makes the leaf.
	l, err := openLeaf(k.root, "", Limits{MemoryMax: 1 << 20, CPUMax: "1000 10000"})
	if err != nil {
		t.Fatalf("NewLeaf without pids limit: %v", err)
	}
	if err := l.Remove(); err != nil {
		t.Fatal(err)
	}
}

func TestRefuseNotUnified(t *testing.T) {
	k := newFake(t, nil) // installs the fake kernel; the roots below are other trees
	hybrid := t.TempDir()
	if err := os.Mkdir(filepath.Join(hybrid, "unified"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hybrid, "unified", "cgroup.controllers"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h := wantRefusal(t, k, hybrid, "", full, "are in hybrid mode",
		filepath.Join(hybrid, "unified")+" has none of them", "systemd.unified_cgroup_hierarchy=1")
	if h.Mode != ModeHybrid {
		t.Errorf("Mode = %q, want hybrid", h.Mode)
	}
	h = wantRefusal(t, k, t.TempDir(), "", full, "cgroup v1 only (legacy mode)", "systemd.unified_cgroup_hierarchy=1")
	if h.Mode != ModeLegacy {
		t.Errorf("Mode = %q, want legacy", h.Mode)
	}
	gone := filepath.Join(t.TempDir(), "none")
	h = wantRefusal(t, k, gone, "", full, "no cgroup filesystem is mounted at "+gone, "mount -t cgroup2")
	if h.Mode != ModeUnavailable {
		t.Errorf("Mode = %q, want unavailable", h.Mode)
	}
}

func TestRefuseBadOrMissingParent(t *testing.T) {
	k := newFake(t, nil)
	wantRefusal(t, k, k.root, "/nope.slice", full, "cgroup parent /nope.slice: cannot read", "no such file")
	wantRefusal(t, k, k.root, "system.slice", full, `cgroup parent "system.slice" is not a clean absolute cgroup path`)
	wantRefusal(t, k, k.root, "/system.slice/../x", full, "not a clean absolute cgroup path")
}

func TestRefuseParentWithForeignProcesses(t *testing.T) {
	k := newFake(t, nil)
	k.mkdir(t, "/other.slice")
	k.put("/other.slice/cgroup.procs", "4194305\n4194306")
	wantRefusal(t, k, k.root, "/other.slice", full,
		"cgroup parent /other.slice holds processes (4194305 4194306) and is not vatrun's own cgroup",
		"pass a --cgroup-parent that holds no processes")
	if got := k.get(t, "/other.slice/cgroup.procs"); got != "4194305\n4194306" {
		t.Errorf("foreign processes moved: %q", got)
	}
}

// TestDetectRealHost runs Detect on this machine's real /sys/fs/cgroup: it must report the mode
// /proc/self/mounts implies (this project's machines are hybrid) and change nothing.
func TestDetectRealHost(t *testing.T) {
	if sim != nil {
		t.Fatal("fake kernel installed")
	}
	fstype := map[string]string{}
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fl := strings.Fields(s.Text()); len(fl) >= 3 {
			fstype[fl[1]] = fl[2]
		}
	}
	f.Close()
	want := ModeUnavailable
	switch {
	case fstype["/sys/fs/cgroup"] == "cgroup2":
		t.Skip("this host is unified cgroup v2; the real-host check is for the hybrid development machines")
	case fstype["/sys/fs/cgroup/unified"] == "cgroup2":
		want = ModeHybrid
	case fstype["/sys/fs/cgroup"] != "":
		want = ModeLegacy
	}
	snap := func() map[string]string {
		m := map[string]string{}
		for _, d := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
			ents, _ := os.ReadDir(d)
			for _, e := range ents {
				info, err := e.Info()
				if err == nil {
					m[filepath.Join(d, e.Name())] = info.ModTime().Format(time.RFC3339Nano)
				}
			}
		}
		b, _ := os.ReadFile("/sys/fs/cgroup/unified/cgroup.subtree_control")
		m["subtree_control"] = string(b)
		return m
	}
	before := snap()
	h := Detect("", "")
	if h.Mode != want || h.Mountpoint != "/sys/fs/cgroup" {
		t.Errorf("Detect mode %q at %q, want %q at /sys/fs/cgroup", h.Mode, h.Mountpoint, want)
	}
	if h.Problem == "" || !strings.Contains(h.Fix, "systemd.unified_cgroup_hierarchy=1") || h.Writable || h.Parent != "" {
		t.Errorf("Detect on a non-unified host: %+v", h)
	}
	if want == ModeHybrid && !strings.Contains(h.Problem, "hybrid mode") {
		t.Errorf("Problem %q does not say hybrid", h.Problem)
	}
	if after := snap(); !maps.Equal(before, after) {
		t.Errorf("Detect changed the host's cgroups:\nbefore %v\nafter  %v", before, after)
	}
}

// TestRefuseNamespaceRootWithProcesses: in a container's private cgroup namespace, "/" is the
// container's own cgroup (it has cgroup.type, the host's root has not), so the no-internal-process
// rule applies to it: with the container's processes still in it, check refuses it as the parent,
// naming the nesting recipe, as Open does (it cannot enable the controllers: EBUSY on a kernel).
// Without processes, or on the host's root, it is accepted.
func TestRefuseNamespaceRootWithProcesses(t *testing.T) {
	k := newFake(t, nil)
	k.put("cgroup.subtree_control", "")
	k.put("cgroup.procs", "4194305")
	k.setSelf(t, "/")
	if h := Detect(k.root, "/"); h.Problem != "" {
		t.Errorf("the host's root with processes: %q, want it accepted (exempt from the rule)", h.Problem)
	}
	k.put("cgroup.type", "domain")
	wantRefusal(t, k, k.root, "/", full,
		"cgroup parent / is the root of a cgroup namespace (a container's cgroup, not the host's root) and holds processes (4194305)",
		"contrib/containers/cgroup-nest.sh")
	k.put("cgroup.procs", "")
	if h := Detect(k.root, "/"); h.Problem != "" {
		t.Errorf("an empty namespace root: %q, want it accepted", h.Problem)
	}
}
