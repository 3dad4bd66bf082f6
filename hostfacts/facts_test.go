package hostfacts

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/hostfacts/factnames"
)

// fakeTree writes files (path relative to the root → content) under a temporary root.
func fakeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const cpuinfo = `processor	: 0
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz
flags		: fpu vme sse2 avx avx2 fma bmi2 avx512f

processor	: 1
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz
flags		: fpu vme sse2 avx avx2 fma bmi2 avx512f
`

// unifiedHost is a fake unified cgroup v2 host; vatrun runs in /svc, which has the memory and
// pids controllers but no pids.peak (an older kernel).
func unifiedHost() map[string]string {
	return map[string]string{
		"proc/sys/kernel/seccomp/actions_avail":      "kill_process kill_thread trap errno user_notif trace log allow\n",
		"proc/sys/vm/overcommit_memory":              "2\n",
		"proc/swaps":                                 "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/vda2 partition 1048572 0 -2\n",
		"sys/kernel/mm/transparent_hugepage/enabled": "[always] madvise never\n",
		"proc/cpuinfo":                               cpuinfo,
		"sys/devices/system/cpu/online":              "0-3,6\n",
		"proc/self/cgroup":                           "0::/svc\n",
		"sys/fs/cgroup/cgroup.controllers":           "cpuset cpu io memory hugetlb pids rdma misc\n",
		"sys/fs/cgroup/svc/cgroup.procs":             "",
		"sys/fs/cgroup/svc/cgroup.kill":              "",
		"sys/fs/cgroup/svc/memory.current":           "0\n",
		"sys/fs/cgroup/svc/memory.peak":              "0\n",
		"sys/fs/cgroup/svc/memory.oom.group":         "0\n",
		"sys/fs/cgroup/svc/memory.events.local":      "",
		"sys/fs/cgroup/svc/memory.swap.max":          "max\n",
		"sys/fs/cgroup/svc/pids.current":             "1\n",
	}
}

func fakeSource(root string) Source {
	return Source{
		Root:              root,
		Uname:             func() (string, string, error) { return "6.1.0-18-amd64", "x86_64", nil },
		LibseccompVersion: func() string { return "2.5.4" },
		SeccompFlags:      func() string { return "tsync log" },
		PageSize:          func() int { return 4096 },
	}
}

func values(fs Facts) map[string]string {
	m := map[string]string{}
	for _, f := range fs {
		m[f.Name] = f.Value
	}
	return m
}

func wantValues(t *testing.T, got Facts, want map[string]string) {
	t.Helper()
	v := values(got)
	for k, w := range want {
		if v[k] != w {
			t.Errorf("%s = %q, want %q", k, v[k], w)
		}
	}
}

func TestGatherUnifiedFakeTree(t *testing.T) {
	fs := Gather(fakeSource(fakeTree(t, unifiedHost())))
	if len(fs) != len(factnames.Specs()) {
		t.Fatalf("%d facts, want %d", len(fs), len(factnames.Specs()))
	}
	wantValues(t, fs, map[string]string{
		KernelRelease:       "6.1.0-18-amd64",
		KernelArch:          "x86_64",
		LibseccompVersion:   "2.5.4",
		SeccompActions:      "allow errno kill_process kill_thread log trace trap user_notif",
		SeccompFlags:        "tsync log",
		CgroupMode:          "unified",
		CgroupControllers:   "cpu memory pids",
		CgroupKill:          "yes",
		CgroupMemoryPeak:    "yes",
		CgroupOOMGroup:      "yes",
		CgroupEventsLocal:   "yes",
		CgroupPidsPeak:      "no",
		CgroupSwapAccount:   "yes",
		VMOvercommit:        "2",
		SwapPresent:         "yes",
		TransparentHugepage: "always",
		PageSize:            "4096",
		CPUMathFeatures:     "avx2 fma",
		CPUModel:            "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
		CPUCount:            "5",
	})
	for _, f := range fs {
		if f.Why == "" {
			t.Errorf("%s has no why", f.Name)
		}
	}
}

func TestGatherVariants(t *testing.T) {
	t.Run("no swap, THP never, no math flags", func(t *testing.T) {
		h := unifiedHost()
		h["proc/swaps"] = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
		h["sys/kernel/mm/transparent_hugepage/enabled"] = "always madvise [never]\n"
		h["proc/cpuinfo"] = "processor\t: 0\nmodel name\t: Old\nflags\t\t: fpu sse2\n"
		wantValues(t, Gather(fakeSource(fakeTree(t, h))), map[string]string{
			SwapPresent: "no", TransparentHugepage: "never", CPUMathFeatures: "none", CPUModel: "Old",
		})
	})
	t.Run("no THP support", func(t *testing.T) {
		h := unifiedHost()
		delete(h, "sys/kernel/mm/transparent_hugepage/enabled")
		wantValues(t, Gather(fakeSource(fakeTree(t, h))), map[string]string{TransparentHugepage: "unsupported"})
	})
	t.Run("vatrun in the root cgroup: features read in a child", func(t *testing.T) {
		h := unifiedHost()
		h["proc/self/cgroup"] = "0::/\n"
		wantValues(t, Gather(fakeSource(fakeTree(t, h))), map[string]string{CgroupMemoryPeak: "yes", CgroupPidsPeak: "no", CgroupKill: "yes"})
	})
	t.Run("explicit parent with the controllers in its leaves", func(t *testing.T) {
		h := unifiedHost()
		h["sys/fs/cgroup/vatrun.slice/cgroup.procs"] = ""
		h["sys/fs/cgroup/vatrun.slice/leaf/cgroup.procs"] = ""
		h["sys/fs/cgroup/vatrun.slice/leaf/memory.current"] = "0\n"
		h["sys/fs/cgroup/vatrun.slice/leaf/pids.current"] = "0\n"
		h["sys/fs/cgroup/vatrun.slice/leaf/pids.peak"] = "0\n"
		src := fakeSource(fakeTree(t, h))
		src.CgroupParent = "/vatrun.slice"
		wantValues(t, Gather(src), map[string]string{
			CgroupPidsPeak: "yes", CgroupMemoryPeak: "no", CgroupSwapAccount: "no", CgroupKill: "no",
		})
	})
	t.Run("no cgroup with the memory controller", func(t *testing.T) {
		h := map[string]string{"sys/fs/cgroup/cgroup.controllers": "cpu\n", "proc/self/cgroup": "0::/\n"}
		v := values(Gather(fakeSource(fakeTree(t, h))))
		if v[CgroupControllers] != "cpu" || !strings.HasPrefix(v[CgroupMemoryPeak], "unknown: ") {
			t.Errorf("controllers %q, memoryPeak %q", v[CgroupControllers], v[CgroupMemoryPeak])
		}
	})
	for _, c := range []struct {
		name, file, mode string
	}{
		{"hybrid", "sys/fs/cgroup/unified/cgroup.controllers", "hybrid"},
		{"legacy", "sys/fs/cgroup/memory/memory.limit_in_bytes", "legacy"},
		{"unavailable", "proc/swaps", "unavailable"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := values(Gather(fakeSource(fakeTree(t, map[string]string{c.file: ""}))))
			if v[CgroupMode] != c.mode || v[CgroupControllers] != "none" || !strings.HasPrefix(v[CgroupKill], "no: ") {
				t.Errorf("mode %q controllers %q kill %q", v[CgroupMode], v[CgroupControllers], v[CgroupKill])
			}
		})
	}
	t.Run("nothing readable", func(t *testing.T) {
		v := values(Gather(fakeSource(t.TempDir())))
		for _, k := range []string{SeccompActions, VMOvercommit, SwapPresent, CPUModel, CPUCount} {
			if !strings.HasPrefix(v[k], "unknown: ") {
				t.Errorf("%s = %q, want unknown: …", k, v[k])
			}
		}
	})
	t.Run("bad cpu list", func(t *testing.T) {
		h := unifiedHost()
		h["sys/devices/system/cpu/online"] = "3-1\n"
		if v := values(Gather(fakeSource(fakeTree(t, h)))); !strings.HasPrefix(v[CPUCount], "unknown: ") {
			t.Errorf("cpu.count %q", v[CPUCount])
		}
	})
}

func TestDigestOnlyRelevantFacts(t *testing.T) {
	base := Gather(fakeSource(fakeTree(t, unifiedHost())))
	d := base.Digest()
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(d) {
		t.Fatalf("digest %q", d)
	}
	with := func(name, value string) Facts {
		out := append(Facts(nil), base...)
		for i := range out {
			if out[i].Name == name {
				out[i].Value = value
			}
		}
		return out
	}
	if with(CPUModel, "AMD EPYC").Digest() != d || with(CPUCount, "64").Digest() != d || with(SeccompFlags, "").Digest() != d {
		t.Error("an irrelevant fact changed the digest")
	}
	for _, n := range []string{VMOvercommit, KernelRelease, TransparentHugepage, CgroupMemoryPeak} {
		if with(n, "other").Digest() == d {
			t.Errorf("%s did not change the digest", n)
		}
	}
}

func TestRealHost(t *testing.T) {
	fs := Host()
	v := values(fs)
	for _, f := range fs {
		if f.Value == "" {
			t.Errorf("%s is empty", f.Name)
		}
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	if v[KernelRelease] != unix.ByteSliceToString(u.Release[:]) {
		t.Errorf("kernel.release %q", v[KernelRelease])
	}
	if _, err := ParseVersion(v[KernelRelease]); err != nil {
		t.Error(err)
	}
	if v[PageSize] != strconv.Itoa(os.Getpagesize()) {
		t.Errorf("page size %q", v[PageSize])
	}
	if n, err := strconv.Atoi(v[CPUCount]); err != nil || n < 1 {
		t.Errorf("cpu.count %q", v[CPUCount])
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v[LibseccompVersion]) {
		t.Errorf("libseccomp.version %q", v[LibseccompVersion])
	}
	if !strings.Contains(v[SeccompActions], "kill_process") {
		t.Errorf("seccomp.actions %q", v[SeccompActions])
	}
	switch v[VMOvercommit] {
	case "0", "1", "2":
	default:
		t.Errorf("vm.overcommit_memory %q", v[VMOvercommit])
	}
	switch v[CgroupMode] {
	case "unified", "hybrid", "legacy", "unavailable":
	default:
		t.Errorf("cgroup.mode %q", v[CgroupMode])
	}
	if HostDigest() != fs.Digest() {
		t.Error("HostDigest differs from Host().Digest()")
	}
	t.Logf("host facts digest %s", HostDigest())
	for _, f := range fs {
		t.Logf("%-26s %s", f.Name, f.Value)
	}
}

func TestKernelAtLeast(t *testing.T) {
	for _, c := range []struct {
		release, min string
		want         bool
	}{
		{"6.1.0-18-amd64", "6.1", true},
		{"6.1.0-18-amd64", "6.2", false},
		{"5.15.0", "5.15.1", false},
		{"6.18.44-fc-v1045", "6.1", true},
		{"6.10", "6.9", true},
		{"4.19.0", "5.0", false},
	} {
		got, err := KernelAtLeast(c.release, c.min)
		if err != nil || got != c.want {
			t.Errorf("KernelAtLeast(%q, %q) = %v, %v; want %v", c.release, c.min, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "6", "x.y", "1.2.3.4"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) accepted", bad)
		}
	}
}

func TestKnownNames(t *testing.T) {
	if !Known(VMOvercommit) || Known("vm.nope") {
		t.Error("Known")
	}
	if !Relevant(VMOvercommit) || Relevant(CPUModel) {
		t.Error("Relevant")
	}
	if len(Names()) != len(factnames.Specs()) {
		t.Error("Names")
	}
}
