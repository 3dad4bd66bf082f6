// Package plan is where a profile becomes what a launch needs: Compile turns a
// seccompprofiles.Profile, once per profile digest, into an immutable Plan (the init stage's
// config with its compiled seccomp filter, the cgroup limits, the rlimits standing in for a missing
// cgroup, the exit-code meanings, the RLIMIT_CPU hard limit, the digest). The launcher hands parts
// of the plan to sandbox and cgroup and never looks inside the profile again.
package plan

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/cgroup"
	"github.com/vatrun/vatrun/report"
	"github.com/vatrun/vatrun/sandbox"
	"github.com/vatrun/vatrun/seccompprofiles"
	"github.com/vatrun/vatrun/seccompprofiles/filter"
)

// ErrConfig is wrapped by every error of Compile and Plan.Sandbox: the profile (or the run's
// mount sources) cannot work on this host as asked. launcher.ErrConfig is the same value.
var ErrConfig = errors.New("bad launch configuration")

// Plan is a profile compiled for launching. It is shared by every launch of the same profile
// and never changes; the methods return fresh copies of whatever a launch may modify.
type Plan struct {
	// Name and Digest name the profile in logs and reports.
	Name, Digest string
	// Consensus: stdout and stderr are always /dev/null, and a cgroup leaf is required.
	Consensus bool
	// Pins are the profile's pins (nil: none), checked at each launch against the worker.
	Pins *seccompprofiles.Pins
	// Cgroup are the limits each worker's leaf gets.
	Cgroup cgroup.Limits
	// CPUHard is the RLIMIT_CPU hard limit (0: none), evidence for the classification.
	CPUHard uint64
	// SelfSignals: the filter may let the worker signal itself with more than SIGABRT.
	SelfSignals bool
	// Isolation is the least isolation the profile accepts (seccompprofiles.Profile.Isolation;
	// "" is IsolationNamespaces).
	Isolation seccompprofiles.Isolation
	// Warnings are the non-fatal findings of compiling the filter (syscall names libseccomp does
	// not know here: their rules are ignored, as runc does); logged at every launch.
	Warnings []string
	// LimitWarnings: a non-consensus profile's limits that could fire before the engine's own
	// meters (a consensus profile with one is refused); logged at every launch.
	LimitWarnings []string
	// SharedMemory: the filter may let the worker hold memory RLIMIT_DATA does not count (shared
	// anonymous mappings, System V shared memory, memfd), so without a cgroup the memory limit
	// does not bind it.
	SharedMemory bool

	stage      sandbox.Config // everything but per-launch mounts and the cgroup stand-ins
	mounts     []seccompprofiles.MountPoint
	tmp        seccompprofiles.Size
	exits      map[int]report.ExitMeaning
	withCgroup map[string]string
	noCgroup   map[string]string
	standIns   []sandbox.Rlimit // rlimits that stand in for cgroup limits when there is no leaf
	userNS     seccompprofiles.UserNS
}

var cache sync.Map // profile digest NUL name → *Plan

// Compile returns p's plan: from the cache when a profile with the same digest and name was
// compiled by this process before, else compiled now (the seccomp filter with libseccomp) and
// cached. The name is part of the key although not of the digest: two profiles that differ only
// in name shape the same sandbox, but each report and log line must name its own.
func Compile(p *seccompprofiles.Profile) (*Plan, error) {
	if p == nil {
		return nil, fmt.Errorf("%w: no profile", ErrConfig)
	}
	digest := p.Digest()
	key := digest + "\x00" + p.Name
	if digest != "" {
		if v, ok := cache.Load(key); ok {
			return v.(*Plan), nil
		}
	}
	pl, err := compile(p, digest)
	if err != nil {
		return nil, err
	}
	if digest != "" { // no canonical form: never share a cache entry
		v, _ := cache.LoadOrStore(key, pl)
		pl = v.(*Plan)
	}
	return pl, nil
}

func compile(p *seccompprofiles.Profile, digest string) (*Plan, error) {
	if p.Seccomp == nil {
		// Fail closed: a profile that forgot its filter (or a file holding just `null`) must not
		// run the worker unfiltered; no filter has to be asked for.
		return nil, fmt.Errorf("%w: profile %q has no seccomp section, so the worker would run with no system call filter; start from a built-in (vatrun profile show --raw xsnap > my.json), or, to run unfiltered on purpose, write \"seccomp\": {\"defaultAction\": \"SCMP_ACT_ALLOW\"}", ErrConfig, p.Name)
	}
	ns := p.Namespaces
	if !ns.Mount && (len(p.Mounts) > 0 || p.Tmp > 0) {
		return nil, fmt.Errorf("%w: profile %q declares mounts or tmp but no mount namespace", ErrConfig, p.Name)
	}
	pl := &Plan{
		Name:        p.Name,
		Digest:      digest,
		Consensus:   p.Consensus,
		Pins:        p.Pins,
		SelfSignals: workerCanSignalItself(p),
		Isolation:   p.Isolation,
		Cgroup: cgroup.Limits{
			MemoryMax: int64(p.Limits.Memory),
			SwapMax:   int64(p.Limits.Swap),
			CPUMax:    p.Limits.CPUMax,
			PidsMax:   p.Limits.Pids,
		},
		mounts: append([]seccompprofiles.MountPoint(nil), p.Mounts...),
		tmp:    p.Tmp,
		exits:  profileExitMeanings(p),
	}
	pl.stage = sandbox.Config{DropCaps: true, Hostname: "vat"}
	for _, f := range []struct {
		on   bool
		flag uintptr
	}{{ns.Pid, unix.CLONE_NEWPID}, {ns.Mount, unix.CLONE_NEWNS}, {ns.UTS, unix.CLONE_NEWUTS}, {ns.IPC, unix.CLONE_NEWIPC}, {ns.Net, unix.CLONE_NEWNET}} {
		if f.on {
			pl.stage.Namespaces |= f.flag
		}
	}
	pl.userNS = ns.User
	for _, r := range ProfileRlimits(p) {
		pl.stage.Rlimits = append(pl.stage.Rlimits, sandbox.Rlimit{Resource: r.Resource, Cur: r.Cur, Max: r.Max})
		if r.Resource == unix.RLIMIT_CPU {
			pl.CPUHard = r.Max
		}
	}
	if !(p.Seccomp.DefaultAction == "SCMP_ACT_ALLOW" && len(p.Seccomp.Syscalls) == 0) {
		// (An allow-everything filter would only cost: it is not loaded.)
		// A built-in's program was compiled when vatrun was built (filter.Precompiled); any
		// other profile's is compiled now.
		bpf, warnings, ok := filter.Precompiled(digest)
		var err error
		if !ok {
			bpf, warnings, err = filter.Compile(p)
		}
		pl.Warnings = warnings
		if err != nil {
			return nil, fmt.Errorf("%w: profile %q: compile seccomp filter: %w", ErrConfig, p.Name, err)
		}
		pl.stage.BPF = bpf
		// The syscalls it refuses with an errno are recorded for the report (the init stage
		// does it only where the program has ERRNO returns; docs/sandbox.md).
		pl.stage.RecordDenied = true
	}
	if problems := limitOrder(p); len(problems) > 0 {
		if p.Consensus && p.Engine != nil {
			return nil, fmt.Errorf("%w: consensus profile %q: %s", ErrConfig, p.Name, strings.Join(problems, "; "))
		}
		pl.LimitWarnings = problems
	}
	pl.SharedMemory = sharedMemoryPossible(p)
	procs := allowsProcessCreation(p)
	pl.withCgroup, _ = enforcement(p, true, procs, pl.SharedMemory)
	pl.noCgroup, pl.standIns = enforcement(p, false, procs, pl.SharedMemory)
	return pl, nil
}

// MemoryStandIn names the rlimit that holds the memory limit for a worker without a cgroup
// leaf ("" when the cgroup holds it or the profile sets none): the report's evidence that a
// memory metering fault may be the stand-in's doing rather than the engine's meter.
func (pl *Plan) MemoryStandIn(cgroup bool) string {
	if cgroup {
		return ""
	}
	for _, r := range pl.standIns {
		if r.Resource == unix.RLIMIT_DATA {
			return "RLIMIT_DATA"
		}
	}
	return ""
}

// ExitMeanings returns the profile's exit codes by number (shared: do not modify).
func (pl *Plan) ExitMeanings() map[int]report.ExitMeaning { return pl.exits }

// Enforcement says what holds each of the profile's limits for one worker, with or without its
// cgroup leaf (a fresh map each call, for the report's limitsEnforced).
func (pl *Plan) Enforcement(cgroup bool) map[string]string {
	src := pl.noCgroup
	if cgroup {
		src = pl.withCgroup
	}
	out := make(map[string]string, len(src))
	for k, v := range src {
		out[k] = v
	}
	return out
}

// Sandbox returns the init stage's config for one launch (a fresh copy): the plan's namespaces,
// rlimits and filter, plus the rlimits standing in for the cgroup when there is none, and the
// minimal root's entries for the profile's mounts, whose host sources (by target) the run gives.
func (pl *Plan) Sandbox(cgroup bool, sources map[string]string) (sandbox.Config, error) {
	cfg := pl.stage
	// Whether the worker needs a user namespace depends on this process's capabilities at this
	// launch (a Go kernel may drop CAP_SYS_ADMIN after its first launch), not on the profile alone.
	switch pl.userNS {
	case seccompprofiles.UserAlways:
		cfg.UserNS = true
	case seccompprofiles.UserNever:
		if cfg.Namespaces != 0 && !hasCapSysAdmin() {
			return sandbox.Config{}, fmt.Errorf("%w: profile %q asks for namespaces and forbids a user namespace (\"user\": \"never\"), but vatrun runs without CAP_SYS_ADMIN; set \"user\": \"auto\" or run as root", ErrConfig, pl.Name)
		}
	default:
		cfg.UserNS = cfg.Namespaces != 0 && !hasCapSysAdmin()
	}
	// A root vatrun's worker never runs as root: it switches to an id that owns nothing on the
	// host (identity.go, docs/worker-identity.md).
	if os.Geteuid() == 0 {
		id, err := RootWorkerID()
		if err != nil {
			return sandbox.Config{}, err
		}
		cfg.SetIDs, cfg.UID, cfg.GID = true, id, id
	}
	cfg.Rlimits = append([]sandbox.Rlimit(nil), pl.stage.Rlimits...)
	if !cgroup {
		cfg.Rlimits = append(cfg.Rlimits, pl.standIns...)
	}
	if cfg.MountNS() {
		ms, err := pl.profileMounts(sources)
		if err != nil {
			return sandbox.Config{}, err
		}
		cfg.Mounts = ms
	} else if len(sources) > 0 {
		return sandbox.Config{}, fmt.Errorf("%w: --mount given, but profile %q has no mount namespace to mount it in", ErrConfig, pl.Name)
	}
	return cfg, nil
}

// profileMounts turns the profile's mounts (targets, writable or not) and the run's host sources
// into the minimal root's extra entries, plus its private /tmp.
func (pl *Plan) profileMounts(sources map[string]string) ([]sandbox.Mount, error) {
	var out []sandbox.Mount
	declared := map[string]bool{}
	for _, m := range pl.mounts {
		declared[m.Target] = true
		src, ok := sources[m.Target]
		if !ok || src == "" {
			return nil, fmt.Errorf("%w: profile %q declares the mount %s: give its host source (vatrun run --mount %s=/host/path)", ErrConfig, pl.Name, m.Target, m.Target)
		}
		if !filepath.IsAbs(src) {
			return nil, fmt.Errorf("%w: --mount %s=%s: the source must be an absolute path", ErrConfig, m.Target, src)
		}
		if _, err := os.Stat(src); err != nil {
			return nil, fmt.Errorf("%w: --mount %s=%s: %v", ErrConfig, m.Target, src, err)
		}
		kind := sandbox.MountRO
		if m.Writable {
			kind = sandbox.MountRW
		}
		out = append(out, sandbox.Mount{Kind: kind, Source: src, Target: m.Target})
	}
	for target := range sources {
		if !declared[target] {
			return nil, fmt.Errorf("%w: --mount %s=…: profile %q declares no mount at %s (what the worker sees is the profile's, so that it is in the digest: add {\"target\": %q} to its \"mounts\")", ErrConfig, target, pl.Name, target, target)
		}
	}
	if pl.tmp > 0 {
		out = append(out, sandbox.Mount{Kind: sandbox.MountTmpfs, Source: strconv.FormatInt(int64(pl.tmp), 10), Target: "/tmp"})
	}
	return out, nil
}

// enforcement says what holds each of the profile's limits for one worker, and which rlimits
// stand in for a missing cgroup: RLIMIT_DATA for memory.max (the private writable mappings, which
// is stricter than resident memory: a worker that maps more than it touches fails sooner; not
// RLIMIT_AS, which would count xsnap's 1 GiB PROT_NONE heap reservation). The process-count limit
// holds without a cgroup only where the seccomp filter forbids process creation altogether
// (RLIMIT_NPROC counts a uid's processes across the whole host and does not bind root); cpu.max
// has no stand-in.
func enforcement(p *seccompprofiles.Profile, cgroup, procs, shared bool) (map[string]string, []sandbox.Rlimit) {
	l := p.Limits
	m := map[string]string{}
	var extra []sandbox.Rlimit
	switch {
	case l.Memory == seccompprofiles.Unlimited:
		m["memory"] = "none: the profile sets no memory limit"
	case cgroup:
		m["memory"] = "cgroup memory.max"
	case shared:
		m["memory"] = "RLIMIT_DATA (no cgroup: the private writable memory the worker maps, not what it touches), which does NOT bound shared memory: the profile's filter lets the worker map shared anonymous memory (or use System V shared memory or a memfd), so it can hold more than the limit"
		extra = append(extra, sandbox.Rlimit{Resource: unix.RLIMIT_DATA, Cur: uint64(l.Memory), Max: uint64(l.Memory)})
	default:
		m["memory"] = "RLIMIT_DATA (no cgroup: the private writable memory the worker maps, not what it touches; the profile's filter allows no shared memory)"
		extra = append(extra, sandbox.Rlimit{Resource: unix.RLIMIT_DATA, Cur: uint64(l.Memory), Max: uint64(l.Memory)})
	}
	switch {
	case !procs:
		m["pids"] = "seccomp: no process creation"
	case l.Pids <= 0:
		m["pids"] = "none: the profile sets no pids limit"
	case cgroup:
		m["pids"] = "cgroup pids.max"
	default:
		m["pids"] = "none: no cgroup, and the profile allows process creation"
	}
	switch {
	case strings.HasPrefix(l.CPUMax, "max"):
		m["cpuMax"] = "none: the profile sets no cpu.max quota"
	case cgroup:
		m["cpuMax"] = "cgroup cpu.max"
	default:
		m["cpuMax"] = "none: no cgroup"
	}
	if l.CPUSeconds > 0 {
		m["cpuSeconds"] = "RLIMIT_CPU"
	} else {
		m["cpuSeconds"] = "none: the profile sets no lifetime CPU limit"
	}
	return m, extra
}

// hasCapSysAdmin says whether this process may create namespaces without a user namespace.
func hasCapSysAdmin() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[0].Effective&(1<<unix.CAP_SYS_ADMIN) != 0
}

// MinNoNamespaceLandlockABI is the least Landlock ABI the no-namespace mode accepts: 6, the first
// with scopes (LANDLOCK_SCOPE_SIGNAL, LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET).
const MinNoNamespaceLandlockABI = 6

// NoNamespaces turns cfg (from Sandbox) into the no-namespace mode: no namespace, no minimal
// root, and Landlock at abi (the kernel's, at most sandbox.MaxLandlockABI) confining the worker
// at path (resolved) to reading its own files (sandbox.LandlockPathsFor). The filter, rlimits,
// no_new_privs, the new session and the parent-death signal stay. An abi below
// MinNoNamespaceLandlockABI is an error: without Landlock the host's files would be readable, and
// without its scopes one worker could signal another.
func (pl *Plan) NoNamespaces(cfg sandbox.Config, path string, abi int) (sandbox.Config, error) {
	if abi <= 0 {
		return sandbox.Config{}, fmt.Errorf("%w: profile %q: the no-namespace mode needs Landlock, and this kernel has none (or it is disabled at boot: add landlock to lsm=)", ErrConfig, pl.Name)
	}
	if abi < MinNoNamespaceLandlockABI {
		// Without a pid namespace, only Landlock's signal scope keeps a worker from signalling
		// its siblings (every built-in filter allows kill/tgkill with SIGABRT, for abort(), to
		// any pid; a root vatrun's workers share one uid): one worker could then choose another's
		// death.
		return sandbox.Config{}, fmt.Errorf("%w: profile %q: the no-namespace mode needs Landlock ABI %d (Linux 6.12: signal and abstract-socket scopes, so a worker cannot signal another worker), and this kernel has ABI %d; allow user namespaces instead (vatrun check names what refuses them)", ErrConfig, pl.Name, MinNoNamespaceLandlockABI, abi)
	}
	paths, err := sandbox.LandlockPathsFor(path)
	if err != nil {
		return sandbox.Config{}, fmt.Errorf("%w: profile %q: the worker's files for Landlock: %w", ErrConfig, pl.Name, err)
	}
	cfg.Namespaces, cfg.UserNS, cfg.Mounts, cfg.Hostname = 0, false, nil, ""
	cfg.LandlockABI = min(abi, sandbox.MaxLandlockABI)
	cfg.LandlockPaths = paths
	return cfg, nil
}
