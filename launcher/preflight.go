package launcher

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/cgroup"
	"github.com/vatrun/vatrun/hostfacts"
	"github.com/vatrun/vatrun/launcher/plan"
	"github.com/vatrun/vatrun/sandbox"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// Preflight is what a launch of a spec would do on this host, decided without starting a worker
// and without writing any cgroup: the same plan, the same cgroup decision (cgroupVerdict, on a
// read-only detection judged for the plan's controllers), the same user-namespace choice
// (Plan.Sandbox), and the causes that will refuse the sandbox (a probe clone in a child). vatrun
// check prints it, and it is the ExecStartPre= preflight: when Err is nil a launch gets as far as
// starting the init stage.
type Preflight struct {
	Plan *plan.Plan
	// Cgroup is the read-only detection for spec.Cgroup (zero when cgroups are disabled);
	// UseCgroup says a launch makes a leaf, CgroupWarnings what its report says when not.
	Cgroup         cgroup.Host
	UseCgroup      bool
	CgroupWarnings []string
	// UserNS: the launch creates a user namespace (the profile's "user" and this process's
	// capabilities); Namespaces names the others.
	UserNS     bool
	Namespaces string
	// Where is where vatrun runs; Refusals the causes, each with its fix, that will make a launch
	// fail (the first is the one a launch meets first).
	Where    hostfacts.Where
	Refusals []hostfacts.Refusal
	// Isolation is what will confine the worker (report.Isolation); NoNamespaceMode: the profile
	// accepts Landlock instead of its namespaces and gets it (the Refusals say why, if any).
	Isolation       []string
	NoNamespaceMode bool
	// Err is what a launch would return before the worker runs (nil: none foreseen).
	Err error
}

// Check decides what Launch would do with spec (spec.Path is not resolved: the worker is the
// caller's to check). getenv is passed to hostfacts for the container's runtime (nil: none).
func Check(spec Spec, getenv func(string) string) Preflight {
	var pf Preflight
	pf.Where = hostfacts.Source{}.ReadWhere(getenv)
	pl, err := plan.Compile(spec.Profile)
	if err != nil {
		pf.Err = err
		return pf
	}
	pf.Plan = pl
	var unusable *cgroup.Host
	if !spec.Cgroup.Disable {
		pf.Cgroup = cgroup.DetectFor(spec.Cgroup.Root, spec.Cgroup.Parent, pl.Cgroup)
		if pf.Cgroup.Problem != "" {
			unusable = &pf.Cgroup
		}
	}
	pf.CgroupWarnings, err = cgroupVerdict(pl, spec.Cgroup, unusable)
	if err != nil {
		pf.Err = err
		return pf
	}
	pf.UseCgroup = !spec.Cgroup.Disable && unusable == nil
	cfg, err := pl.Sandbox(pf.UseCgroup, spec.MountSources)
	if err != nil {
		pf.Err = err
		return pf
	}
	if pl.Isolation != seccompprofiles.IsolationLandlock {
		pf.Refusals = refusals(pf.Where, cfg, sandbox.ProbeUserNS)
	}
	path := spec.Path
	if path == "" {
		path = "/bin/true" // check's probe worker
	}
	cfg, err = chooseIsolation(pl, cfg, path, func(sandbox.Config) []hostfacts.Refusal { return pf.Refusals })
	if err != nil {
		pf.Err = err
		return pf
	}
	pf.UserNS = cfg.UserNS
	pf.Namespaces = namespaceNames(cfg.Namespaces, cfg.UserNS)
	pf.Isolation = isolationLayers(cfg)
	pf.NoNamespaceMode = cfg.LandlockABI > 0 && cfg.Namespaces == 0
	if len(pf.Refusals) > 0 && !pf.NoNamespaceMode {
		pf.Err = fmt.Errorf("%w: %s", ErrSetup, pf.Refusals[0].Problem)
	}
	return pf
}

// refusals are the causes that will refuse a sandbox with cfg here, in the order a launch meets
// them: the clone of the user namespace (probed: probe returns the clone's errno), then the fresh
// /proc a pid and mount namespace mount from inside it. The first is the one a launch meets.
func refusals(w hostfacts.Where, cfg sandbox.Config, probe func() syscall.Errno) []hostfacts.Refusal {
	var out []hostfacts.Refusal
	if cfg.UserNS {
		if errno := probe(); errno != 0 {
			r := hostfacts.JudgeUserNS(w, errno)
			out = append(out, r)
			if r.Cause != hostfacts.CauseSeccomp {
				return out // the host refuses user namespaces: nothing after it would apply
			}
			// A seccomp filter stands in front of what comes next: once its fix lets the clone
			// through, the masked /proc refuses the sandbox too, so say both now.
		}
	}
	freshProc := cfg.Namespaces&unix.CLONE_NEWPID != 0 && cfg.MountNS()
	if r, ok := hostfacts.JudgeProc(w, freshProc, cfg.UserNS); ok {
		out = append(out, r)
	}
	return out
}

// explainSetup turns a refused clone into the precise cause and its fixes for this runtime
// (what vatrun check says): the same judgement on the same facts.
func explainSetup(err error) error {
	var ce *sandbox.CloneError
	var se *sandbox.SetupError
	switch {
	case errors.As(err, &ce) && ce.UserNS:
		w := hostfacts.Source{}.ReadWhere(nil)
		return fmt.Errorf("%w\n%s", err, FormatRefusal(hostfacts.JudgeUserNS(w, ce.Errno), w.Runtime))
	case errors.As(err, &se) && (se.Errno == syscall.EPERM || se.Errno == syscall.EACCES):
		w := hostfacts.Source{}.ReadWhere(nil)
		if r, ok := hostfacts.JudgeProc(w, strings.Contains(se.Step, "/proc"), w.InUserNS || !hostfacts.HasCap(w.CapEff, "SYS_ADMIN")); ok {
			return fmt.Errorf("%w\n%s", err, FormatRefusal(r, w.Runtime))
		}
		if r, ok := hostfacts.JudgeAppArmor(w); ok && strings.Contains(se.Step, "mount") {
			return fmt.Errorf("%w\n%s", err, FormatRefusal(r, w.Runtime))
		}
	}
	return err
}

// FormatRefusal is a refusal as lines: the cause, then one "fix (runtime): …" line per fix that
// applies to runtime (every fix when the runtime is unknown).
func FormatRefusal(r hostfacts.Refusal, runtime string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "cause (%s): %s", r.Cause, r.Problem)
	for _, f := range r.FixFor(runtime) {
		fmt.Fprintf(&b, "\nfix (%s): %s", f.Runtime, f.How)
	}
	return b.String()
}

func namespaceNames(flags uintptr, user bool) string {
	var ns []string
	for _, n := range []struct {
		flag uintptr
		name string
	}{{unix.CLONE_NEWPID, "pid"}, {unix.CLONE_NEWNET, "net"}, {unix.CLONE_NEWIPC, "ipc"}, {unix.CLONE_NEWUTS, "uts"}, {unix.CLONE_NEWNS, "mount"}} {
		if flags&n.flag != 0 {
			ns = append(ns, n.name)
		}
	}
	if user {
		ns = append(ns, "user")
	}
	if len(ns) == 0 {
		return "none"
	}
	return strings.Join(ns, " ")
}
