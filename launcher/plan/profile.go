package plan

// The interpretations of a profile's facts that a launch needs, read by Compile in one pass:
// the rlimits, the exit codes' meanings, whether the filter lets the worker create processes,
// signal itself or map shared memory, and whether the limits sit above the engine's own meters.
// (seccompprofiles parses, validates and digests a profile; what it means for a launch is here.)

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/report"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// Rlimit is one resource limit for the worker: Resource is a unix.RLIMIT_* number, Cur and Max
// the soft and hard limits (unix.RLIM_INFINITY for no limit).
type Rlimit struct {
	Resource int
	Name     string
	Cur, Max uint64
}

func sizeLimit(s seccompprofiles.Size) uint64 {
	if s == seccompprofiles.Unlimited {
		return unix.RLIM_INFINITY
	}
	return uint64(s)
}

// ProfileRlimits returns the rlimits p sets, in this order: RLIMIT_CPU (soft cpuSeconds, hard
// cpuSeconds+1 so SIGXCPU arrives before SIGKILL; omitted when cpuSeconds is 0), RLIMIT_STACK,
// RLIMIT_NOFILE (soft = hard; omitted when nofile is 0), RLIMIT_CORE, RLIMIT_FSIZE. The rlimits
// that stand in for a missing cgroup are not among them (Plan.Sandbox adds those).
func ProfileRlimits(p *seccompprofiles.Profile) []Rlimit {
	l := p.Limits
	var out []Rlimit
	if l.CPUSeconds > 0 {
		out = append(out, Rlimit{unix.RLIMIT_CPU, "RLIMIT_CPU", l.CPUSeconds, l.CPUSeconds + 1})
	}
	out = append(out, Rlimit{unix.RLIMIT_STACK, "RLIMIT_STACK", sizeLimit(l.Stack), sizeLimit(l.Stack)})
	if l.Nofile > 0 {
		out = append(out, Rlimit{unix.RLIMIT_NOFILE, "RLIMIT_NOFILE", l.Nofile, l.Nofile})
	}
	out = append(out,
		Rlimit{unix.RLIMIT_CORE, "RLIMIT_CORE", sizeLimit(l.Core), sizeLimit(l.Core)},
		Rlimit{unix.RLIMIT_FSIZE, "RLIMIT_FSIZE", sizeLimit(l.FileSize), sizeLimit(l.FileSize)},
	)
	return out
}

// profileExitMeanings turns the profile's exit codes into the death report's evidence, keyed by
// number. Keys that are not exit codes (Validate rejects them) are skipped.
func profileExitMeanings(p *seccompprofiles.Profile) map[int]report.ExitMeaning {
	out := make(map[int]report.ExitMeaning, len(p.ExitCodes))
	for k, v := range p.ExitCodes {
		code, err := strconv.Atoi(k)
		if err != nil || code < 0 || code > 255 {
			continue
		}
		out[code] = report.ExitMeaning{Meaning: v.Meaning, MeteringFault: v.MeteringFault, Memory: v.MeteringFault && v.Meter == seccompprofiles.MeterMemory}
	}
	return out
}

// WorkerEnv is the worker's environment under p: the profile's NAME=value entries, and for each
// bare NAME the value lookup gives (os.LookupEnv in vatrun), when it has one. Nothing else.
func WorkerEnv(p *seccompprofiles.Profile, lookup func(string) (string, bool)) []string {
	out := make([]string, 0, len(p.Env))
	for _, e := range p.Env {
		if strings.Contains(e, "=") {
			out = append(out, e)
		} else if v, ok := lookup(e); ok {
			out = append(out, e+"="+v)
		}
	}
	return out
}

// permissive says whether action a lets the syscall through.
func permissive(a specs.LinuxSeccompAction) bool {
	return a == specs.ActAllow || a == specs.ActLog
}

// allowsAny says whether the filter may let through one of names with some arguments: the
// default action lets it through, or a permissive rule names it and restricted (nil: any
// argument restriction counts) does not say its arguments rule the case out.
func allowsAny(s *seccompprofiles.Seccomp, restricted func(seccompprofiles.SeccompSyscall) bool, names ...string) bool {
	if s == nil || permissive(s.DefaultAction) {
		return true
	}
	for _, r := range s.Syscalls {
		if !permissive(r.Action) || restricted != nil && restricted(r) {
			continue
		}
		for _, n := range r.Names {
			for _, want := range names {
				if n == want {
					return true
				}
			}
		}
	}
	return false
}

// allowsProcessCreation says whether the worker may create processes or threads: false only
// when the seccomp filter refuses fork, vfork, clone and clone3 whatever their arguments.
func allowsProcessCreation(p *seccompprofiles.Profile) bool {
	return allowsAny(p.Seccomp, nil, "fork", "vfork", "clone", "clone3")
}

// workerCanSignalItself says whether the seccomp filter may let the worker send itself (or its
// init stage) an arbitrary signal, or have the kernel send one on its behalf: true unless the
// default action refuses, and every rule that allows one of the syscalls below restricts its
// arguments (the built-ins allow kill only with SIGABRT, for abort(), fcntl without
// F_SETOWN/F_SETSIG/O_ASYNC, clone only with exit signal SIGCHLD or none).
func workerCanSignalItself(p *seccompprofiles.Profile) bool {
	hasArgs := func(r seccompprofiles.SeccompSyscall) bool { return len(r.Args) > 0 }
	return allowsAny(p.Seccomp, hasArgs, "kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_send_signal",
		// The kernel sends a signal of the worker's choosing on its behalf: fcntl and ioctl
		// (F_SETOWN/FIOSETOWN + F_SETSIG + O_ASYNC/FIOASYNC, F_NOTIFY, leases), timers, a child's
		// exit signal, the parent-death signal (docs/seccomp-arguments.md).
		"fcntl", "fcntl64", "ioctl", "alarm", "setitimer", "timer_create", "clone", "prctl")
}

// mapShared is MAP_SHARED, the flag bit (mmap's argument 3) that RLIMIT_DATA does not count
// (MAP_SHARED_VALIDATE, 0x3, has it too).
const mapShared = 0x1

// sharedMemoryPossible says whether the filter may let the worker hold memory that RLIMIT_DATA
// does not count: a shared anonymous mapping (mmap or mmap2 with MAP_SHARED), System V shared
// memory, or a memfd it writes into. An mmap rule counts as private-only when its conditions on
// the flags (argument 3) require the MAP_SHARED bit clear: SCMP_CMP_MASKED_EQ with value (the
// mask) holding the bit and valueTwo (the result) not, as libseccomp and runc order them, or
// SCMP_CMP_EQ with a value without it. Conditions on one argument listed more than once are
// alternatives (seccompprofiles/filter adds them as separate rules), so each must require it.
//
// On 32-bit x86 "mmap" is old_mmap, which takes its arguments in memory a filter cannot read:
// a profile that adds SCMP_ARCH_X86 and allows mmap at all allows shared mappings there.
func sharedMemoryPossible(p *seccompprofiles.Profile) bool {
	if p.Seccomp != nil && slices.Contains(p.Seccomp.Architectures, specs.ArchX86) && allowsAny(p.Seccomp, nil, "mmap") {
		return true
	}
	return allowsAny(p.Seccomp, privateOnly, "mmap", "mmap2") ||
		allowsAny(p.Seccomp, nil, "shmget", "shmat", "memfd_create", "memfd_secret")
}

// privateOnly: the rule's conditions refuse MAP_SHARED in mmap's flags.
func privateOnly(r seccompprofiles.SeccompSyscall) bool {
	clears := func(a seccompprofiles.SeccompArg) bool {
		switch {
		case a.Index != 3:
			return false
		case a.Op == specs.OpMaskedEqual:
			return a.Value&mapShared != 0 && a.ValueTwo&mapShared == 0
		case a.Op == specs.OpEqualTo:
			return a.Value&mapShared == 0
		}
		return false
	}
	perIndex := map[uint]int{}
	for _, a := range r.Args {
		perIndex[a.Index]++
	}
	alternatives := false
	for _, n := range perIndex {
		alternatives = alternatives || n > 1
	}
	if alternatives { // each condition is a rule of its own: every one must clear the bit
		for _, a := range r.Args {
			if !clears(a) {
				return false
			}
		}
		return len(r.Args) > 0
	}
	for _, a := range r.Args { // all conditions hold together: one that clears the bit suffices
		if clears(a) {
			return true
		}
	}
	return false
}

// limitOrder checks that none of the profile's own limits can fire before the engine's
// deterministic meters (docs/limits.md): memory (cgroup memory.max or RLIMIT_DATA) must hold the
// engine's allocation limit plus its overhead plus /tmp; the stack must be finite and above the
// engine's native-stack margin; RLIMIT_FSIZE must let a snapshot of a full heap be written. A
// consensus profile with any of these wrong is refused (the returned problems are errors);
// otherwise they are warnings. A consensus profile that states no engine caps gets a warning.
func limitOrder(p *seccompprofiles.Profile) []string {
	e, l := p.Engine, p.Limits
	if e == nil {
		if p.Consensus {
			return []string{"the profile states no engine caps (\"engine\"), so vatrun cannot check that its limits fire only after the engine's own meters (docs/limits.md)"}
		}
		return nil
	}
	var out []string
	if e.AllocationLimit != seccompprofiles.Unlimited {
		need := e.AllocationLimit + e.Overhead + max(p.Tmp, 0)
		if l.Memory != seccompprofiles.Unlimited && l.Memory < need {
			out = append(out, fmt.Sprintf("limits.memory %s could fire before the engine's allocation meter: the meter trips at engine.allocationLimit %s, when the worker may hold %s (allocationLimit + engine.overhead %s%s); raise limits.memory to at least %s",
				l.Memory, e.AllocationLimit, need, e.Overhead, tmpNote(p.Tmp), need))
		}
		if l.FileSize != seccompprofiles.Unlimited && l.FileSize < need {
			out = append(out, fmt.Sprintf("limits.fileSize %s could fire before the engine's allocation meter: a snapshot of a heap at engine.allocationLimit %s can be up to %s; raise limits.fileSize to at least %s or write \"max\"",
				l.FileSize, e.AllocationLimit, need, need))
		}
	}
	if e.StackMargin > 0 {
		switch {
		case l.Stack == seccompprofiles.Unlimited:
			out = append(out, fmt.Sprintf("limits.stack \"max\" leaves the depth of the engine's native-stack meter (engine.stackMargin %s below the stack's end) to each host's memory layout; give a size such as \"8M\"", e.StackMargin))
		case l.Stack <= e.StackMargin:
			out = append(out, fmt.Sprintf("limits.stack %s could fire before the engine's native-stack meter, which trips engine.stackMargin %s below the end of the stack; raise limits.stack well above %s (8M is usual)", l.Stack, e.StackMargin, e.StackMargin))
		}
	}
	return out
}

func tmpNote(tmp seccompprofiles.Size) string {
	if tmp > 0 {
		return fmt.Sprintf(" + tmp %s", tmp)
	}
	return ""
}
