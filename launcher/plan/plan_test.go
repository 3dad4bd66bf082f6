package plan

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/sandbox"
	"github.com/vatrun/vatrun/seccompprofiles"
)

func parse(t *testing.T, src string) *seccompprofiles.Profile {
	t.Helper()
	p, err := seccompprofiles.Parse([]byte(src), "test")
	if err != nil {
		t.Fatalf("parse %s: %v", src, err)
	}
	return p
}

func builtin(t *testing.T, name string) *seccompprofiles.Profile {
	t.Helper()
	p, ok := seccompprofiles.Builtin(name)
	if !ok {
		t.Fatalf("no built-in %q", name)
	}
	return p
}

func TestCompileOncePerDigest(t *testing.T) {
	a, err := Compile(builtin(t, "xsnap"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compile(builtin(t, "xsnap")) // another *Profile, same digest
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Error("two profiles with one digest compiled to two plans; want the cached one")
	}
	if c, _ := Compile(builtin(t, "solo")); c == a {
		t.Error("solo and xsnap share a plan")
	}
	if a.Digest != builtin(t, "xsnap").Digest() || a.Name != "xsnap" {
		t.Errorf("plan names %s %s", a.Name, a.Digest)
	}
}

func TestPlanFromXsnap(t *testing.T) {
	p := builtin(t, "xsnap")
	pl, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	want := uintptr(unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET)
	cfg, err := pl.Sandbox(true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Namespaces != want || !cfg.PidNS() || !cfg.MountNS() || !cfg.DropCaps || cfg.Hostname != "vat" {
		t.Errorf("stage config %+v, want all five namespaces", cfg)
	}
	if len(cfg.BPF) == 0 || len(cfg.BPF)%8 != 0 {
		t.Errorf("filter of %d bytes", len(cfg.BPF))
	}
	if pl.Cgroup.MemoryMax != int64(p.Limits.Memory) || pl.Cgroup.PidsMax != p.Limits.Pids || pl.Cgroup.CPUMax != p.Limits.CPUMax {
		t.Errorf("cgroup limits %+v from %+v", pl.Cgroup, p.Limits)
	}
	if len(pl.ExitMeanings()) != len(p.ExitCodes) || len(pl.ExitMeanings()) == 0 {
		t.Errorf("exit meanings %v from %v", pl.ExitMeanings(), p.ExitCodes)
	}
	for code, m := range pl.ExitMeanings() {
		if m.Meaning == "" {
			t.Errorf("exit code %d has no meaning", code)
		}
	}
	if pl.SelfSignals {
		t.Error("xsnap lets the worker signal itself")
	}
}

// The stand-in rlimits appear only without a cgroup, and a launch that changes its copy of the
// config does not change the next launch's.
func TestSandboxCopiesAndStandIns(t *testing.T) {
	pl, err := Compile(builtin(t, "xsnap"))
	if err != nil {
		t.Fatal(err)
	}
	hasData := func(c sandbox.Config) bool {
		for _, r := range c.Rlimits {
			if r.Resource == unix.RLIMIT_DATA {
				return true
			}
		}
		return false
	}
	with, _ := pl.Sandbox(true, nil)
	without, _ := pl.Sandbox(false, nil)
	if hasData(with) || !hasData(without) {
		t.Errorf("RLIMIT_DATA with cgroup %v, without %v; want only without", hasData(with), hasData(without))
	}
	if len(without.Rlimits) != len(with.Rlimits)+1 {
		t.Errorf("%d rlimits without cgroup, %d with", len(without.Rlimits), len(with.Rlimits))
	}
	with.Rlimits[0].Max = 1
	with.Mounts = append(with.Mounts, sandbox.Mount{Target: "/x"})
	again, _ := pl.Sandbox(true, nil)
	if again.Rlimits[0].Max == 1 || len(again.Mounts) != 0 {
		t.Error("a launch's change to its config reached the plan")
	}
	e := pl.Enforcement(false)
	e["memory"] = "changed"
	if pl.Enforcement(false)["memory"] == "changed" {
		t.Error("Enforcement returned the plan's own map")
	}
	if !strings.HasPrefix(pl.Enforcement(false)["memory"], "RLIMIT_DATA") || pl.Enforcement(true)["memory"] != "cgroup memory.max" {
		t.Errorf("memory enforcement %q / %q", pl.Enforcement(false)["memory"], pl.Enforcement(true)["memory"])
	}
}

func TestCompileRefusals(t *testing.T) {
	for _, c := range []struct{ name, src, want string }{
		{"no seccomp", `{"name": "bare"}`, "no seccomp section"},
		{"mounts without mount ns", `{"name": "m", "namespaces": {"mount": false}, "mounts": [{"target": "/data"}], "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}`, "no mount namespace"},
	} {
		p := parse(t, c.src)
		if c.name == "no seccomp" {
			p.Seccomp = nil
		}
		_, err := Compile(p)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrConfig saying %q", c.name, err, c.want)
		}
	}
}

func TestAllowAllLoadsNoFilter(t *testing.T) {
	pl, err := Compile(parse(t, `{"name": "open", "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}`))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pl.Sandbox(true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.BPF) != 0 {
		t.Errorf("allow-all profile got a %d-byte filter", len(cfg.BPF))
	}
}

func TestMountSources(t *testing.T) {
	pl, err := Compile(parse(t, `{"name": "m", "tmp": "1M", "mounts": [{"target": "/data", "writable": true}], "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}`))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg, err := pl.Sandbox(true, map[string]string{"/data": dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Mounts) != 2 || cfg.Mounts[0] != (sandbox.Mount{Kind: sandbox.MountRW, Source: dir, Target: "/data"}) || cfg.Mounts[1].Kind != sandbox.MountTmpfs || cfg.Mounts[1].Source != "1048576" {
		t.Errorf("mounts %+v", cfg.Mounts)
	}
	for _, c := range []struct {
		sources map[string]string
		want    string
	}{
		{nil, "vatrun run --mount /data=/host/path"},
		{map[string]string{"/data": "rel"}, "must be an absolute path"},
		{map[string]string{"/data": dir + "/missing"}, "no such file"},
		{map[string]string{"/data": dir, "/other": dir}, "declares no mount at /other"},
	} {
		if _, err := pl.Sandbox(true, c.sources); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("sources %v: %v, want ErrConfig saying %q", c.sources, err, c.want)
		}
	}
}

// Two profiles that differ only in name have one digest (the name does not shape the sandbox),
// but each plan keeps its own name: reports and logs must not name the other profile.
func TestSameDigestOtherName(t *testing.T) {
	a, b := builtin(t, "xsnap"), builtin(t, "xsnap")
	b.Name = "xsnap-renamed"
	if a.Digest() != b.Digest() {
		t.Fatal("renaming changed the digest")
	}
	pa, err := Compile(a)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := Compile(b)
	if err != nil {
		t.Fatal(err)
	}
	if pa.Name != "xsnap" || pb.Name != "xsnap-renamed" {
		t.Errorf("plan names %q and %q, want xsnap and xsnap-renamed", pa.Name, pb.Name)
	}
	if pa.Digest != pb.Digest {
		t.Errorf("digests %s and %s differ", pa.Digest, pb.Digest)
	}
}

// The no-namespace mode refuses a kernel whose Landlock has no scopes (ABI < 6): without a pid
// namespace only the signal scope keeps a worker's allowed kill(…, SIGABRT) off its siblings.
func TestNoNamespacesNeedsScopes(t *testing.T) {
	pl, err := Compile(builtin(t, "xsnap"))
	if err != nil {
		t.Fatal(err)
	}
	for _, abi := range []int{0, 1, 5} {
		if _, err := pl.NoNamespaces(sandbox.Config{}, "/bin/true", abi); err == nil || !errors.Is(err, ErrConfig) {
			t.Errorf("ABI %d: err %v, want a refusal", abi, err)
		} else if abi > 0 && !strings.Contains(err.Error(), "ABI 6") {
			t.Errorf("ABI %d: %v, want the needed ABI named", abi, err)
		}
	}
	cfg, err := pl.NoNamespaces(sandbox.Config{Namespaces: 1}, "/bin/true", MinNoNamespaceLandlockABI)
	if err != nil || cfg.LandlockABI != MinNoNamespaceLandlockABI || cfg.Namespaces != 0 {
		t.Errorf("ABI 6: %+v, %v; want Landlock 6 and no namespaces", cfg.LandlockABI, err)
	}
}
