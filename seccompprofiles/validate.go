package seccompprofiles

import (
	"errors"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vatrun/vatrun/hostfacts/factnames"
)

// Limits enforced by Validate.
const (
	// MinMemory: below this a worker cannot even start (exec, dynamic loader, libc).
	MinMemory Size = 4 << 20
	// MinStack is the smallest RLIMIT_STACK accepted.
	MinStack Size = 64 << 10
	// MinNofile: the worker needs fds 0-4 (stdio and the two protocol pipes) and a few spare.
	MinNofile uint64 = 8
	// MaxNofile is the kernel's default fs.nr_open; setrlimit above it fails.
	MaxNofile uint64 = 1 << 20
	// MaxFd bounds the fds a profile may pass through ("fds"): 3..MaxFd-1.
	MaxFd = 64
	// MaxErrno is the largest errno a seccomp ERRNO action can return.
	MaxErrno uint = 4095
	// cpu.max bounds (kernel/sched/core.c): period 1 ms..1 s, quota at least 1 ms and at most
	// 2^44-1 µs (MAX_BW).
	minCPUPeriod = 1000
	maxCPUPeriod = 1000000
	minCPUQuota  = 1000
	maxCPUQuota  = 1<<44 - 1
)

// Validate checks a resolved profile for impossible or unsupported settings and returns every
// problem found, each naming the field and the fix. Parse calls it; call it again after
// changing a Profile in code. It checks the seccomp section's names and shape but does not
// compile it: what only libseccomp knows is reported by seccompprofiles/filter.Compile.
func (p *Profile) Validate() error {
	return p.validate("profile " + p.Label())
}

// Label names the profile in messages: its source, else its name.
func (p *Profile) Label() string {
	switch {
	case p.Source != "":
		return p.Source
	case p.Name != "":
		return p.Name
	}
	return "(unnamed)"
}

func (p *Profile) validate(prefix string) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", prefix, field, fmt.Sprintf(format, args...)))
	}
	l := &p.Limits
	checkSize := func(field string, s Size) bool {
		if s < 0 && s != Unlimited {
			bad(field, "negative size %d; use a byte count, a size such as \"64M\", or \"max\"", int64(s))
			return false
		}
		return true
	}
	if checkSize("limits.memory", l.Memory) && l.Memory != Unlimited && l.Memory < MinMemory {
		bad("limits.memory", "%s is below the minimum %s (the worker cannot even start); raise it, or write \"max\" for no limit", l.Memory, MinMemory)
	}
	checkSize("limits.swap", l.Swap)
	checkSize("limits.core", l.Core)
	checkSize("limits.fileSize", l.FileSize)
	if checkSize("limits.stack", l.Stack) {
		switch {
		case l.Stack != Unlimited && l.Stack < MinStack:
			bad("limits.stack", "%s is below the minimum %s; raise it (8M is the usual default)", l.Stack, MinStack)
		case l.Memory != Unlimited && (l.Stack == Unlimited || l.Stack > l.Memory):
			bad("limits.stack", "%s is above limits.memory %s, so the stack could never reach it; lower the stack (8M is usual) or raise memory", l.Stack, l.Memory)
		}
	}
	if err := checkCPUMax(l.CPUMax); err != nil {
		bad("limits.cpuMax", "%v", err)
	}
	if l.CPUSeconds > math.MaxUint32 {
		bad("limits.cpuSeconds", "%d is too large (the hard limit is cpuSeconds+1); use 0 for no limit", l.CPUSeconds)
	}
	if l.Pids < 0 {
		bad("limits.pids", "negative value %d; use 0 for no limit", l.Pids)
	}
	if l.Nofile != 0 && l.Nofile < MinNofile {
		bad("limits.nofile", "%d is below %d: the worker needs fds 0-4 (stdio, fd 3 commands, fd 4 results) plus a few; use at least %d, or 0 to inherit", l.Nofile, MinNofile, MinNofile)
	}
	if l.Nofile > MaxNofile {
		bad("limits.nofile", "%d is above %d (the kernel's default fs.nr_open), so setrlimit would fail; lower it", l.Nofile, MaxNofile)
	}
	for i, fd := range p.Fds {
		switch {
		case fd < 3 || fd >= MaxFd:
			bad("fds", "fd %d is outside 3..%d (0-2 are stdio and always passed)", fd, MaxFd-1)
		case i > 0 && p.Fds[i-1] == fd:
			bad("fds", "fd %d is listed twice", fd)
		}
	}
	if n := len(p.Fds); n > 0 && l.Nofile != 0 && l.Nofile <= uint64(p.Fds[n-1]) {
		bad("limits.nofile", "%d does not cover fd %d of \"fds\"; raise nofile above the highest fd the worker uses", l.Nofile, p.Fds[n-1])
	}
	seenEnv := map[string]bool{}
	for i, e := range p.Env {
		name, _, _ := strings.Cut(e, "=")
		if !isEnvName(name) {
			bad(fmt.Sprintf("env[%d]", i), "%q: want NAME=value or NAME (letters, digits, _; not starting with a digit)", e)
		} else if seenEnv[name] {
			bad(fmt.Sprintf("env[%d]", i), "%s is given twice", name)
		}
		seenEnv[name] = true
	}
	seenMount := map[string]bool{}
	for i, m := range p.Mounts {
		field := fmt.Sprintf("mounts[%d].target", i)
		switch {
		case !strings.HasPrefix(m.Target, "/") || path.Clean(m.Target) != m.Target || m.Target == "/":
			bad(field, "%q: want a clean absolute path below / (e.g. \"/data\")", m.Target)
		case m.Target == "/dev" || strings.HasPrefix(m.Target, "/dev/") || m.Target == "/proc" || strings.HasPrefix(m.Target, "/proc/"):
			bad(field, "%s is the sandbox's own (private /dev, fresh /proc); choose another path", m.Target)
		case m.Target == "/tmp" && p.Tmp > 0:
			bad(field, "/tmp is the profile's private tmpfs (\"tmp\"); choose another path or set tmp to 0")
		case seenMount[m.Target]:
			bad(field, "%s is given twice", m.Target)
		}
		seenMount[m.Target] = true
	}
	if p.Tmp < 0 {
		bad("tmp", "%s: give a size such as \"16M\", or 0 for no /tmp", p.Tmp)
	} else if p.Tmp > 0 && l.Memory != Unlimited && p.Tmp > l.Memory {
		bad("tmp", "%s is above limits.memory %s: its pages count against the memory limit", p.Tmp, l.Memory)
	}
	switch p.Isolation {
	case "", IsolationNamespaces:
	case IsolationLandlock, IsolationNamespacesOrLandlock:
		if p.Isolation == IsolationNamespacesOrLandlock && p.Consensus {
			bad("isolation", "%q lets two validators run different isolation; a consensus profile chooses one: \"namespaces\" or \"landlock\"", p.Isolation)
		}
		if len(p.Mounts) > 0 || p.Tmp > 0 {
			bad("isolation", "%q: the no-namespace mode has no mount namespace for mounts or tmp", p.Isolation)
		}
	default:
		bad("isolation", "unknown value %q; use \"namespaces\", \"landlock\" or \"namespaces-or-landlock\"", p.Isolation)
	}
	switch p.Namespaces.User {
	case UserAuto, UserAlways, UserNever:
	default:
		bad("namespaces.user", "unknown value %q; use \"auto\", \"always\" or \"never\"", p.Namespaces.User)
	}
	for _, k := range sortedKeys(p.ExitCodes) {
		field := fmt.Sprintf("exitCodes.%s", k)
		code, err := strconv.Atoi(k)
		switch {
		case err != nil || strconv.Itoa(code) != k || code < 0 || code > 255:
			bad(field, "key %q is not an exit code; keys are decimal exit codes 0..255 (0 only as a clean exit) written without sign or leading zeros (\"11\")", k)
		case code == 0 && p.ExitCodes[k].MeteringFault:
			bad(field, "exit code 0 is a clean exit and cannot be a metering fault; remove meteringFault")
		case p.ExitCodes[k].Meaning == "":
			bad(field+".meaning", "empty; say what the worker means by exiting with %d", code)
		}
		switch m := p.ExitCodes[k].Meter; {
		case m == "":
		case m != MeterMemory && m != MeterStack && m != MeterComputation && m != MeterKeys:
			bad(field+".meter", "unknown meter %q; use %q, %q, %q or %q", m, MeterMemory, MeterStack, MeterComputation, MeterKeys)
		case !p.ExitCodes[k].MeteringFault:
			bad(field+".meter", "only a metering fault names a meter; set meteringFault or remove meter")
		}
	}
	if e := p.Engine; e != nil {
		if checkSize("engine.allocationLimit", e.AllocationLimit) && e.AllocationLimit == 0 {
			bad("engine.allocationLimit", "missing or 0; give the engine's allocation meter (xsnap: \"2G\"), or \"max\" if it has none")
		}
		checkSize("engine.overhead", e.Overhead)
		if e.Overhead == Unlimited {
			bad("engine.overhead", "\"max\" is not an overhead; give the measured size (docs/limits.md)")
		}
		checkSize("engine.stackMargin", e.StackMargin)
		if e.StackMargin == Unlimited {
			bad("engine.stackMargin", "\"max\" is not a margin; give the engine's (xsnap: \"128K\"), or 0 if it has no native-stack meter")
		}
	}
	if p.Pins != nil {
		validatePins(p.Pins, bad)
	}
	if p.Seccomp != nil {
		p.validateSeccomp(bad)
	}
	if p.Consensus {
		var missing []string
		if l.Memory == Unlimited {
			missing = append(missing, "limits.memory must not be \"max\"")
		}
		if l.Pids <= 0 {
			missing = append(missing, "limits.pids must be > 0")
		}
		if p.Seccomp == nil {
			missing = append(missing, "a seccomp section is required")
		}
		if !p.Namespaces.Pid {
			missing = append(missing, "namespaces.pid must be true")
		}
		if !p.Namespaces.Net {
			missing = append(missing, "namespaces.net must be true")
		}
		if len(missing) > 0 {
			bad("consensus", "a consensus profile bounds every resource identically on every validator: %s; fix these or set \"consensus\": false", strings.Join(missing, "; "))
		}
	}
	return errors.Join(errs...)
}

// The syntax checks below are written out rather than as regexps: compiling three regexps at
// package init cost every `vatrun run` about 1 ms and 300 allocations before main.

// isEnvName: [A-Za-z_][A-Za-z0-9_]*.
func isEnvName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return s != ""
}

// isDigest: "sha256:" and 64 lowercase hex digits.
func isDigest(s string) bool {
	hex, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	for i := 0; i < len(hex); i++ {
		if c := hex[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// isVersion: two or three dot-separated decimal numbers ("6.1", "5.15.0").
func isVersion(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return false
	}
	for _, p := range parts {
		if p == "" {
			return false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return false
			}
		}
	}
	return true
}

func validatePins(pins *Pins, bad func(field, format string, args ...any)) {
	if pins.WorkerDigest != "" && !isDigest(pins.WorkerDigest) {
		bad("pins.workerDigest", "%q: want \"sha256:\" and 64 lowercase hex digits, as `vatrun check --worker PATH` prints it", pins.WorkerDigest)
	}
	if pins.KernelMin != "" && !isVersion(pins.KernelMin) {
		bad("pins.kernelMin", "%q: want a kernel version such as \"6.1\" or \"5.15.0\"", pins.KernelMin)
	}
	for _, k := range sortedKeys(pins.Facts) {
		switch {
		case !factnames.Known(k):
			bad("pins.facts."+k, "unknown host fact; known: %s", strings.Join(factnames.Names(), ", "))
		case pins.Facts[k] == "":
			bad("pins.facts."+k, "empty value; give the value `vatrun check` shows, or remove the pin")
		}
	}
}

func checkCPUMax(s string) error {
	const syntax = `write "QUOTA PERIOD" or "max PERIOD" in microseconds, e.g. "50000 100000" (half a CPU) or "max 100000"`
	f := strings.Fields(s)
	if len(f) != 2 {
		return fmt.Errorf("%q is not cpu.max syntax; %s", s, syntax)
	}
	period, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || period < minCPUPeriod || period > maxCPUPeriod {
		return fmt.Errorf("%q: period %q must be an integer %d..%d µs; %s", s, f[1], minCPUPeriod, maxCPUPeriod, syntax)
	}
	if f[0] == "max" {
		return nil
	}
	quota, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || quota < minCPUQuota || quota > maxCPUQuota {
		return fmt.Errorf("%q: quota %q must be \"max\" or an integer %d..%d µs; %s", s, f[0], minCPUQuota, int64(maxCPUQuota), syntax)
	}
	return nil
}

func checkAction(name specs.LinuxSeccompAction, errnoRet *uint) string {
	if why, ok := unsupportedActions[name]; ok {
		return fmt.Sprintf("%s is not supported: it %s; use SCMP_ACT_ERRNO or SCMP_ACT_KILL_PROCESS", name, why)
	}
	if !knownAction(name) {
		return fmt.Sprintf("unknown action %q; supported: %s", name, joinNames(Actions))
	}
	if errnoRet != nil {
		if name != specs.ActErrno {
			return fmt.Sprintf("an errno is set but the action is %s; errno values only go with SCMP_ACT_ERRNO, so remove it", name)
		}
		if *errnoRet > MaxErrno {
			return fmt.Sprintf("errno %d is above %d; use an errno such as 1 (EPERM) or 38 (ENOSYS)", *errnoRet, MaxErrno)
		}
	}
	return ""
}

func (p *Profile) validateSeccomp(bad func(field, format string, args ...any)) {
	s := p.Seccomp
	if s.DefaultAction == "" {
		bad("seccomp.defaultAction", "missing; set it, e.g. \"SCMP_ACT_ERRNO\" (deny with EPERM) or \"SCMP_ACT_KILL_PROCESS\"")
	} else if msg := checkAction(s.DefaultAction, s.DefaultErrnoRet); msg != "" {
		bad("seccomp.defaultAction", "%s", msg)
	}
	for i, a := range s.Architectures {
		if !knownArch(a) {
			bad(fmt.Sprintf("seccomp.architectures[%d]", i), "unknown architecture %q; known: %s", a, joinNames(Architectures))
		}
	}
	type firstUse struct {
		rule   int
		action specs.LinuxSeccompAction
	}
	seen := map[string]firstUse{}
	for i, r := range s.Syscalls {
		field := fmt.Sprintf("seccomp.syscalls[%d]", i)
		// libseccomp's result for one syscall with two different actions depends on the order
		// of the rules; vatrun's digest sorts rules, so such profiles are refused.
		act := CanonicalAction(r.Action)
		if r.ErrnoRet != nil {
			act += specs.LinuxSeccompAction(fmt.Sprintf("(errno %d)", *r.ErrnoRet))
		}
		for _, n := range r.Names {
			if u, ok := seen[n]; ok && u.action != act {
				bad(field, "syscall %q has action %s here but %s in seccomp.syscalls[%d]; one syscall's rules must share an action (libseccomp's result would depend on rule order): keep one of them", n, act, u.action, u.rule)
			} else if !ok {
				seen[n] = firstUse{i, act}
			}
		}
		if len(r.Names) == 0 {
			bad(field+".names", "empty; list at least one syscall name, or remove the rule")
		}
		for j, n := range r.Names {
			if n == "" {
				bad(fmt.Sprintf("%s.names[%d]", field, j), "empty syscall name; remove it")
			}
		}
		if r.Action == "" {
			bad(field+".action", "missing; set e.g. \"SCMP_ACT_ALLOW\"")
		} else if msg := checkAction(r.Action, r.ErrnoRet); msg != "" {
			bad(field+".action", "%s", msg)
		}
		for j, a := range r.Args {
			af := fmt.Sprintf("%s.args[%d]", field, j)
			if a.Index > 5 {
				bad(af+".index", "%d is out of range; syscall arguments are numbered 0..5", a.Index)
			}
			if !knownOperator(a.Op) {
				bad(af+".op", "unknown operator %q; supported: %s", a.Op, joinNames(Operators))
			} else if a.ValueTwo != 0 && a.Op != specs.OpMaskedEqual {
				bad(af+".valueTwo", "only SCMP_CMP_MASKED_EQ uses valueTwo (op is %s); remove it", a.Op)
			}
		}
	}
}
