package seccompprofiles

import (
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Rlimit is one resource limit for the worker: Resource is a unix.RLIMIT_* number, Cur and Max
// the soft and hard limits (unix.RLIM_INFINITY for no limit).
type Rlimit struct {
	Resource int
	Name     string
	Cur, Max uint64
}

// RlimInfinity is RLIM_INFINITY.
const RlimInfinity = unix.RLIM_INFINITY

func sizeLimit(s Size) uint64 {
	if s == Unlimited {
		return RlimInfinity
	}
	return uint64(s)
}

// Rlimits returns the rlimits the profile sets, in this order: RLIMIT_CPU (soft cpuSeconds,
// hard cpuSeconds+1 so SIGXCPU arrives before SIGKILL; omitted when cpuSeconds is 0),
// RLIMIT_STACK, RLIMIT_NOFILE (soft = hard; omitted when nofile is 0), RLIMIT_CORE, RLIMIT_FSIZE.
func (p *Profile) Rlimits() []Rlimit {
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

// ExitMeanings returns the profile's exit codes keyed by number (the launcher turns them into
// the death report's evidence). Keys that are not exit codes (Validate rejects them) are skipped.
func (p *Profile) ExitMeanings() map[int]ExitCode {
	out := make(map[int]ExitCode, len(p.ExitCodes))
	for k, v := range p.ExitCodes {
		code, err := strconv.Atoi(k)
		if err != nil || code < 0 || code > 255 {
			continue
		}
		out[code] = v
	}
	return out
}

// WorkerEnv is the worker's environment: the profile's NAME=value entries, and for each bare NAME
// the value lookup gives (os.LookupEnv in vatrun), when it has one. Nothing else.
func (p *Profile) WorkerEnv(lookup func(string) (string, bool)) []string {
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

// AllowsProcessCreation says whether the worker may create processes or threads: false only
// when the seccomp filter refuses fork, vfork, clone and clone3 whatever their arguments
// (a default action other than allow, and no rule allowing any of them).
func (p *Profile) AllowsProcessCreation() bool {
	s := p.Seccomp
	if s == nil || permissive(s.DefaultAction) {
		return true
	}
	for _, r := range s.Syscalls {
		if !permissive(r.Action) {
			continue
		}
		for _, n := range r.Names {
			switch n {
			case "fork", "vfork", "clone", "clone3":
				return true
			}
		}
	}
	return false
}

// WorkerCanSignalItself says whether the seccomp filter may let the worker send itself (or its
// init stage) an arbitrary signal, or have the kernel send one on its behalf: true unless the
// default action refuses, and every rule that allows kill, tkill, tgkill, rt_sigqueueinfo,
// rt_tgsigqueueinfo, pidfd_send_signal, fcntl, ioctl, alarm, setitimer, timer_create, clone or
// prctl restricts its arguments (the built-ins allow kill only with SIGABRT, for abort(), fcntl
// without F_SETOWN/F_SETSIG/O_ASYNC, clone only with exit signal SIGCHLD or none:
// docs/seccomp-arguments.md).
func (p *Profile) WorkerCanSignalItself() bool {
	s := p.Seccomp
	if s == nil || permissive(s.DefaultAction) {
		return true
	}
	for _, r := range s.Syscalls {
		if !permissive(r.Action) || len(r.Args) > 0 {
			continue
		}
		for _, n := range r.Names {
			switch n {
			case "kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_send_signal",
				// The kernel sends a signal of the worker's choosing on its behalf: fcntl and
				// ioctl (F_SETOWN/FIOSETOWN + F_SETSIG + O_ASYNC/FIOASYNC, F_NOTIFY, leases),
				// timers, a child's exit signal, the parent-death signal.
				"fcntl", "fcntl64", "ioctl", "alarm", "setitimer", "timer_create", "clone", "prctl":
				return true
			}
		}
	}
	return false
}
