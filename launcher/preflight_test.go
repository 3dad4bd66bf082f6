package launcher

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/hostfacts"
	"github.com/vatrun/vatrun/launcher/plan"
	"github.com/vatrun/vatrun/sandbox"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// TestCheckAgreesWithLaunchOnCgroups: on a hybrid host (a fake tree), Check and a launch's
// cgroup step decide alike for every profile × flags: both refuse with the same error, or both
// run without a leaf with the same warnings. (Issue 24: check said "can run here" where run
// exited 122 for an explicit --cgroup-parent.)
func TestCheckAgreesWithLaunchOnCgroups(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "unified"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "unified", "cgroup.controllers"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"xsnap", "consensus", "dev"} {
		p, err := seccompprofiles.Load(name)
		if err != nil {
			t.Fatal(err)
		}
		pl, err := plan.Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, opts := range []CgroupOptions{{Root: root}, {Root: root, Parent: "/vatrun.slice"}, {Root: root, Disable: true}} {
			spec := Spec{Profile: p, Cgroup: opts}
			pf := Check(spec, nil)
			cg, warnings, lerr := setupCgroup(Spec{Profile: p, Cgroup: opts, Logger: slog.New(slog.DiscardHandler)}, pl)
			if cg != nil {
				t.Fatalf("%s %+v: a leaf on a hybrid fake tree", name, opts)
			}
			cgErr := ""
			if lerr != nil {
				cgErr = lerr.Error()
			}
			pfErr := ""
			if pf.Err != nil && len(pf.Refusals) == 0 {
				pfErr = pf.Err.Error()
			}
			if cgErr != pfErr || !equal(warnings, pf.CgroupWarnings) {
				t.Errorf("%s %+v:\n check: %q %q\nlaunch: %q %q", name, opts, pfErr, pf.CgroupWarnings, cgErr, warnings)
			}
			wantRefuse := name == "consensus" || opts.Parent != "" && !opts.Disable
			if (cgErr != "") != wantRefuse {
				t.Errorf("%s %+v: refused %v (%q), want %v", name, opts, cgErr != "", cgErr, wantRefuse)
			}
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestRefusalsOrder: a refused user namespace is the one cause (nothing after it is tried);
// with the namespace allowed, a masked /proc refuses a sandbox that mounts a fresh /proc; a
// sandbox without a user namespace is not probed at all.
func TestRefusalsOrder(t *testing.T) {
	w := hostfacts.Where{Seccomp: 2, SeccompFilters: 1, Runtime: hostfacts.RuntimeDocker, InContainer: true,
		UnprivUsernsClone: "1", MaxUserNamespaces: "100", UserNamespacesBuilt: true, MaskedProc: []string{"/proc/kcore"}}
	full := sandbox.Config{UserNS: true, Namespaces: unix.CLONE_NEWPID | unix.CLONE_NEWNS}
	probed := 0
	eperm := func() syscall.Errno { probed++; return syscall.EPERM }
	ok := func() syscall.Errno { probed++; return 0 }
	if r := refusals(w, full, eperm); len(r) != 2 || r[0].Cause != hostfacts.CauseSeccomp || r[1].Cause != hostfacts.CauseMaskedProc {
		t.Errorf("EPERM under a filter: %+v, want the seccomp filter, then the masked /proc its fix would meet", r)
	}
	host := w
	host.Seccomp, host.UnprivUsernsClone = 0, "0"
	if r := refusals(host, full, eperm); len(r) != 1 || r[0].Cause != hostfacts.CauseSysctlClone {
		t.Errorf("EPERM from the sysctl: %+v, want only the sysctl", r)
	}
	if r := refusals(w, full, ok); len(r) != 1 || r[0].Cause != hostfacts.CauseMaskedProc {
		t.Errorf("userns allowed, /proc masked: %+v, want the masked-proc refusal", r)
	}
	noProc := sandbox.Config{UserNS: true, Namespaces: unix.CLONE_NEWNET}
	if r := refusals(w, noProc, ok); len(r) != 0 {
		t.Errorf("no pid namespace: %+v, want none", r)
	}
	probed = 0
	if r := refusals(w, sandbox.Config{Namespaces: unix.CLONE_NEWPID | unix.CLONE_NEWNS}, eperm); len(r) != 0 || probed != 0 {
		t.Errorf("no user namespace: %+v (probed %d times), want no refusal and no probe", r, probed)
	}
}

// TestChooseIsolation: the default keeps the namespaces even when they are refused (the launch
// then fails naming the cause); namespaces-or-landlock takes the no-namespace mode only where
// they are refused; landlock always takes it; and the mode has no namespace and a Landlock
// ruleset over the worker's own files.
func TestChooseIsolation(t *testing.T) {
	if sandbox.LandlockABI() == 0 {
		t.Skip("the kernel has no Landlock")
	}
	worker, err := ResolvePath("/bin/true")
	if err != nil {
		t.Skip("needs /bin/true")
	}
	seccompDev, err := seccompprofiles.Load("dev")
	if err != nil {
		t.Fatal(err)
	}
	refused := func(sandbox.Config) []hostfacts.Refusal {
		return []hostfacts.Refusal{{Cause: hostfacts.CauseSeccomp}}
	}
	allowed := func(sandbox.Config) []hostfacts.Refusal { return nil }
	for _, tc := range []struct {
		iso     seccompprofiles.Isolation
		refuse  bool
		landlok bool
	}{
		{"", true, false},
		{seccompprofiles.IsolationNamespaces, true, false},
		{seccompprofiles.IsolationNamespacesOrLandlock, false, false},
		{seccompprofiles.IsolationNamespacesOrLandlock, true, true},
		{seccompprofiles.IsolationLandlock, false, true},
	} {
		p := *seccompDev
		p.Name, p.Isolation = "dev-"+string(tc.iso), tc.iso
		pl, err := plan.Compile(&p)
		if err != nil {
			t.Fatal(err)
		}
		cfg := sandbox.Config{Namespaces: unix.CLONE_NEWPID | unix.CLONE_NEWNS, UserNS: true, DropCaps: true}
		how := allowed
		if tc.refuse {
			how = refused
		}
		got, err := chooseIsolation(pl, cfg, worker, how)
		if err != nil {
			t.Fatalf("%q refused=%v: %v", tc.iso, tc.refuse, err)
		}
		isLL := got.LandlockABI > 0 && got.Namespaces == 0 && !got.UserNS && len(got.LandlockPaths) > 0
		if isLL != tc.landlok || !isLL && got.Namespaces != cfg.Namespaces {
			t.Errorf("%q refused=%v: landlock %v (%+v), want %v", tc.iso, tc.refuse, isLL, got, tc.landlok)
		}
		if isLL && !slices.Contains(got.LandlockPaths, worker) {
			t.Errorf("%q: landlock paths %v lack the worker %s", tc.iso, got.LandlockPaths, worker)
		}
	}
}
