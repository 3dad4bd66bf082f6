package report

import (
	"fmt"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// cpuTolerance is how far below the RLIMIT_CPU hard limit a SIGKILLed worker's CPU time may be and
// still count as having reached it. Evidence.CPUSeconds comes from the worker's PROF clock (raw
// tick-sampled user+system time), read by the init stage while the worker is a zombie: the very
// clock the kernel checks RLIMIT_CPU against, so it reads the limit to the tick. (rusage and the
// SCHED clock are the precise runtime, which trailed it by 0.15–0.4 s at a load of 8 on 2 cores.)
const cpuTolerance = 0.05

// rule maps one kind of death to a cause and a class. Classify tries the rules in order and the
// first whose match holds decides; detail builds the one-sentence explanation from the evidence.
// doc is the rule's evidence in words: docs/report.md's classification table lists every rule, in
// order, as doc, cause and class (TestREADMEClassification).
type rule struct {
	name   string
	match  func(Evidence) bool
	cause  Cause
	class  Class
	detail func(Evidence) string
	doc    string
}

// rules is the classification table: the one place that maps evidence to a cause and a class.
var rules = []rule{
	{"launcherKilled", launcherKilled, CauseLauncherDied, ClassExternal, launcherDetail,
		"vatrun itself was killed by a signal and left no usable report (`runclient` only)"},
	{"launcherGone", launcherGone, CauseLauncherDied, ClassLauncherError, launcherDetail,
		"vatrun itself exited without a usable report (`runclient` only)"},
	{"setupFailed", setupFailed, CauseSetupFailed, ClassLauncherError, setupDetail,
		"the sandbox could not be set up"},
	{"stoppedByVatrun", stoppedByVatrun, CauseStopped, ClassExternal, stoppedDetail,
		"vatrun stopped it (kernel asked, forwarded SIGTERM, timeout)"},
	{"exitedZero", exitedZero, CauseExited, ClassClean, exitedZeroDetail,
		"exit 0"},
	{"memoryStandIn", memoryStandIn, CauseMeteringFault, ClassUnknown, memoryStandInDetail,
		"an exit code the profile maps to a memory metering fault (xsnap 11) while a stand-in rlimit (RLIMIT_DATA, no memory cgroup) held the memory limit: the engine's meter or the rlimit"},
	{"meteringFault", meteringFault, CauseMeteringFault, ClassDeterministic, meteringFaultDetail,
		"an exit code the profile maps to a metering fault (xsnap 11, 12, 17)"},
	{"cgroupOOMKill", cgroupOOMKill, CauseOOMLimit, ClassResourceExhaustion, cgroupOOMKillDetail,
		"SIGKILL and the leaf's `memory.events` `oom` grew"},
	{"hostOOMKill", hostOOMKill, CauseOOMHost, ClassExternal, hostOOMKillDetail,
		"SIGKILL, `oom_kill` grew but `oom` did not (host or parent ran out)"},
	{"cpuSoftLimit", cpuSoftLimit, CauseCPULimit, ClassResourceExhaustion, cpuSoftLimitDetail,
		"SIGXCPU with CPU time ≥ the RLIMIT_CPU soft limit − 0.05 s (a SIGXCPU without it, e.g. one the worker had the kernel send it, is any other signal)"},
	{"cpuHardLimitKill", cpuHardLimitKill, CauseCPULimit, ClassResourceExhaustion, cpuHardLimitKillDetail,
		"SIGKILL with CPU time ≥ the RLIMIT_CPU hard limit − 0.05 s (by the worker's PROF clock, the one the kernel enforces, read before it is reaped)"},
	{"pidsLimit", pidsLimit, CausePidsLimit, ClassResourceExhaustion, pidsLimitDetail,
		"`pids.events` `max` grew and the worker died abnormally"},
	{"memoryFault", memoryFault, CauseSegv, ClassResourceExhaustion, memoryFaultDetail,
		"SIGSEGV / SIGBUS"},
	{"aborted", aborted, CauseAbort, ClassResourceExhaustion, abortedDetail,
		"SIGABRT"},
	{"seccompKill", seccompKill, CauseSandboxViolation, ClassSandboxViolation, seccompKillDetail,
		"SIGSYS (seccomp kill)"},
	{"selfSignalPossible", selfSignalPossible, CauseSignal, ClassUnknown, selfSignalDetail,
		"SIGTERM, SIGINT, SIGHUP, SIGQUIT or SIGKILL under a profile that lets the worker signal itself (it may have chosen its own death)"},
	{"externalSignal", externalSignal, CauseExternalSignal, ClassExternal, externalSignalDetail,
		"SIGTERM, SIGINT, SIGHUP, SIGQUIT from outside"},
	{"strayKill", strayKill, CauseKilled, ClassExternal, strayKillDetail,
		"SIGKILL with none of the evidence above"},
	{"otherSignal", otherSignal, CauseSignal, ClassUnknown, otherSignalDetail,
		"any other signal"},
	{"otherExit", otherExit, CauseExitCode, ClassUnknown, otherExitDetail,
		"any other exit code (the detail gives the profile's meaning)"},
}

// Classify turns the evidence of one worker death into a cause, a class and a one-sentence detail:
// the first rule of the table that matches decides. It is a pure function: the same evidence gives
// the same answer on every validator. Cgroup evidence is never guessed: with Cgroup == nil no
// cgroup rule matches, and a SIGKILL that nothing else explains is "killed", with a detail saying
// an OOM kill could not be ruled out.
func Classify(ev Evidence) (Cause, Class, string) {
	r := ruleFor(ev)
	detail := r.detail(ev)
	if r.cause != CauseStopped && r.cause != CauseSetupFailed && ev.KilledBy != "" {
		detail += fmt.Sprintf("; %s also sent it a stop signal (%s), which was not what ended it",
			ev.KilledBy, meaningOr(ev.KillReason, "no reason given"))
	}
	if note := deniedNote(r.cause, r.class, ev); note != "" {
		detail += note
	}
	return r.cause, r.class, detail
}

// deniedNote names, for a death that was not clean, the syscalls the seccomp filter had refused the
// worker: a worker that aborts after an EPERM it did not expect is the common case. It is detail
// only: the cause and the class stay what the rules decided.
func deniedNote(cause Cause, class Class, ev Evidence) string {
	if class == ClassClean || cause == CauseSetupFailed || len(ev.Denied) == 0 {
		return ""
	}
	var parts []string
	for i, d := range ev.Denied {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(ev.Denied)-3))
			break
		}
		parts = append(parts, fmt.Sprintf("%s (%d×, %s)", d.Name, d.Count, errnoName(d.Errno)))
	}
	lead := "; before it died, the seccomp filter refused "
	if cause == CauseAbort {
		lead = "; it aborted after the seccomp filter refused "
	}
	return lead + strings.Join(parts, ", ") + " (deniedSyscalls)"
}

// errnoName is "EPERM" for 1, "errno N" for a number the system does not name.
func errnoName(e int) string {
	if n := unix.ErrnoName(syscall.Errno(e)); n != "" {
		return n
	}
	return fmt.Sprintf("errno %d", e)
}

// ruleFor is the first rule that matches ev.
func ruleFor(ev Evidence) rule {
	for _, r := range rules {
		if r.match(ev) {
			return r
		}
	}
	// Not reached: a death is an exit or a signal, and the last two rules take any of either.
	return rules[len(rules)-1]
}

// The rules' matches. Each says what it needs on its own; the table's order settles overlaps.

// launcherKilled: vatrun was killed by a signal before it reported; its worker died with it
// (parent-death signal, pid namespace), of nothing the worker did that is known.
func launcherKilled(ev Evidence) bool {
	return ev.Launcher != nil && ev.Launcher.StatusKnown && ev.Launcher.Signal != 0
}

// launcherGone: vatrun ended otherwise without a usable report (its stderr says why).
func launcherGone(ev Evidence) bool { return ev.Launcher != nil }

func setupFailed(ev Evidence) bool { return ev.SetupError != "" }

// stoppedByVatrun: vatrun asked the worker to stop and the worker died of exactly that. A stop
// signal that reached vatrun after the worker had exited, or while it was dying by another
// signal, does not make the death vatrun's.
func stoppedByVatrun(ev Evidence) bool {
	if ev.KilledBy != KilledByVatrun || ev.Exited {
		return false
	}
	for _, s := range ev.StopSignals {
		if s == ev.Signal {
			return true
		}
	}
	return false
}

func exitedZero(ev Evidence) bool { return ev.Exited && ev.ExitCode == 0 }

// memoryStandIn: a memory metering fault under a stand-in rlimit. The rlimit counts mappings,
// not the engine's allocations, so an allocation it refused looks the same as the engine's meter
// (xsnap exits 11 either way); which one fired depends on the host's allocator, not on the vat.
func memoryStandIn(ev Evidence) bool {
	m := ev.ExitCodes[ev.ExitCode]
	return ev.Exited && m.MeteringFault && m.Memory && ev.MemoryStandIn != ""
}

func meteringFault(ev Evidence) bool { return ev.Exited && ev.ExitCodes[ev.ExitCode].MeteringFault }

func cgroupOOMKill(ev Evidence) bool {
	return diedBy(ev, syscall.SIGKILL) && ev.Cgroup != nil && ev.Cgroup.OOM > 0
}

func hostOOMKill(ev Evidence) bool {
	return diedBy(ev, syscall.SIGKILL) && ev.Cgroup != nil && ev.Cgroup.OOM == 0 && ev.Cgroup.OOMKill > 0
}

// cpuSoftLimit: SIGXCPU from the RLIMIT_CPU soft limit (the hard limit − 1), proven by the CPU
// time the worker used. A SIGXCPU without that evidence (no RLIMIT_CPU, or too little CPU) came
// from somewhere else, e.g. a signal the worker had the kernel send it, and proves nothing.
func cpuSoftLimit(ev Evidence) bool {
	return diedBy(ev, syscall.SIGXCPU) && ev.RlimitCPUHard > 1 &&
		ev.CPUSeconds >= float64(ev.RlimitCPUHard-1)-cpuTolerance
}

func cpuHardLimitKill(ev Evidence) bool {
	return diedBy(ev, syscall.SIGKILL) && ev.RlimitCPUHard > 0 &&
		ev.CPUSeconds >= float64(ev.RlimitCPUHard)-cpuTolerance
}

func pidsLimit(ev Evidence) bool {
	return ev.Cgroup != nil && ev.Cgroup.PidsMaxEvents > 0 && (!ev.Exited || ev.ExitCode != 0)
}

func memoryFault(ev Evidence) bool { return diedBy(ev, syscall.SIGSEGV, syscall.SIGBUS) }

func aborted(ev Evidence) bool { return diedBy(ev, syscall.SIGABRT) }

func seccompKill(ev Evidence) bool { return diedBy(ev, syscall.SIGSYS) }

// selfSignalPossible: a death the worker could have dealt itself, so that it would pass for an
// external one (a kernel halts or gives a vat unlimited restarts on those): under a profile that
// lets it signal itself, it is unknown, never external.
func selfSignalPossible(ev Evidence) bool {
	return ev.SelfSignals && diedBy(ev, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGKILL)
}

func externalSignal(ev Evidence) bool {
	return diedBy(ev, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
}

func strayKill(ev Evidence) bool { return diedBy(ev, syscall.SIGKILL) }

func otherSignal(ev Evidence) bool { return !ev.Exited }

func otherExit(ev Evidence) bool { return ev.Exited }

// diedBy: the worker was killed by one of sigs.
func diedBy(ev Evidence, sigs ...syscall.Signal) bool {
	if ev.Exited {
		return false
	}
	for _, s := range sigs {
		if syscall.Signal(ev.Signal) == s {
			return true
		}
	}
	return false
}

// The rules' details: one human sentence each, from the evidence.

func launcherDetail(ev Evidence) string {
	d := ev.Launcher
	status, worker := "ended", "the worker's own status is unknown"
	switch {
	case !d.StatusKnown:
	case d.Signal != 0:
		status = "was killed by " + signalName(d.Signal)
		worker = "its worker died with it (parent-death signal, pid namespace); the worker's own status is unknown"
	default:
		status = fmt.Sprintf("exited with code %d", d.ExitCode)
		worker = "vatrun's stderr says why (and the worker's status, if it ran)"
	}
	return fmt.Sprintf("vatrun (pid %d) %s and %s; %s", d.Pid, status, d.Why, worker)
}

func setupDetail(ev Evidence) string {
	return "the sandbox could not be set up, so the worker never ran: " + ev.SetupError
}

func stoppedDetail(ev Evidence) string {
	return fmt.Sprintf("vatrun stopped the worker (%s); it %s",
		meaningOr(ev.KillReason, "no reason given"), describeDeath(ev))
}

func exitedZeroDetail(Evidence) string { return "the worker exited with code 0" }

func meteringFaultDetail(ev Evidence) string {
	return fmt.Sprintf("the worker exited with code %d (%s), which the profile maps to a metering fault",
		ev.ExitCode, meaningOr(ev.ExitCodes[ev.ExitCode].Meaning, "no meaning given"))
}

func memoryStandInDetail(ev Evidence) string {
	return fmt.Sprintf("the worker exited with code %d (%s), which the profile maps to a memory metering fault, but %s held the memory limit in place of a cgroup: the engine's allocation meter or %s refusing an allocation may have caused it, so it is not taken as deterministic",
		ev.ExitCode, meaningOr(ev.ExitCodes[ev.ExitCode].Meaning, "no meaning given"), ev.MemoryStandIn, ev.MemoryStandIn)
}

func cgroupOOMKillDetail(ev Evidence) string {
	cg := ev.Cgroup
	return fmt.Sprintf("killed by SIGKILL after the cgroup hit memory.max%s (%soom %d, oom_kill %d)",
		limitNote(cg), peakNote(cg), cg.OOM, cg.OOMKill)
}

func hostOOMKillDetail(ev Evidence) string {
	return fmt.Sprintf("killed by SIGKILL by the kernel's OOM killer while the cgroup never hit its own memory.max (oom 0, oom_kill %d): the host or a parent cgroup ran out of memory", ev.Cgroup.OOMKill)
}

func cpuSoftLimitDetail(ev Evidence) string {
	return fmt.Sprintf("killed by SIGXCPU: the worker used up its RLIMIT_CPU soft limit (%.2fs of CPU)%s",
		ev.CPUSeconds, coreNote(ev))
}

func cpuHardLimitKillDetail(ev Evidence) string {
	return fmt.Sprintf("killed by SIGKILL after %.2fs of CPU, at its RLIMIT_CPU hard limit of %ds",
		ev.CPUSeconds, ev.RlimitCPUHard)
}

func pidsLimitDetail(ev Evidence) string {
	return fmt.Sprintf("the worker %s after the cgroup refused a fork at pids.max (pids.events max %d)",
		describeDeath(ev), ev.Cgroup.PidsMaxEvents)
}

func memoryFaultDetail(ev Evidence) string {
	return fmt.Sprintf("killed by %s: a stack overflow past RLIMIT_STACK, or a bug in the engine%s",
		signalName(ev.Signal), coreNote(ev))
}

func abortedDetail(ev Evidence) string {
	return "killed by SIGABRT: the worker aborted (an allocation failure or a failed assertion)" + coreNote(ev)
}

func seccompKillDetail(ev Evidence) string {
	return "killed by SIGSYS: the worker made a system call that the seccomp profile forbids" + coreNote(ev)
}

func externalSignalDetail(ev Evidence) string {
	return fmt.Sprintf("killed by %s, sent from outside vatrun%s", signalName(ev.Signal), coreNote(ev))
}

func strayKillDetail(ev Evidence) string {
	if ev.Cgroup == nil {
		return "killed by SIGKILL from outside vatrun; cgroup evidence was unavailable, so an OOM kill could not be ruled out"
	}
	return "killed by SIGKILL from outside vatrun, with no OOM, CPU-limit or pids-limit evidence"
}

func selfSignalDetail(ev Evidence) string {
	return fmt.Sprintf("killed by %s%s, from outside the sandbox or from the worker itself: its profile lets it signal itself, so the death is not taken as external",
		signalName(ev.Signal), coreNote(ev))
}

func otherSignalDetail(ev Evidence) string {
	return fmt.Sprintf("killed by %s, which no limit explains%s", signalName(ev.Signal), coreNote(ev))
}

func otherExitDetail(ev Evidence) string {
	return fmt.Sprintf("the worker exited with code %d (%s)", ev.ExitCode,
		meaningOr(ev.ExitCodes[ev.ExitCode].Meaning, "the profile gives no meaning for it"))
}

// Build classifies ev and fills every report field the evidence gives. The launcher fills the rest
// (Phase, ProfileName, ProfileDigest, WallTime, Pid, Warnings). For a setup failure, or a vatrun
// that died without a report, the exit status and signal fields stay empty: they are not the worker's.
func Build(ev Evidence) Report {
	cause, class, detail := Classify(ev)
	r := Report{
		Version:    1,
		Cause:      cause,
		Class:      class,
		Detail:     detail,
		CPUSeconds: ev.CPUSeconds,
		KilledBy:   ev.KilledBy,
		KillReason: ev.KillReason,
		SetupError: ev.SetupError,
	}
	if cause != CauseStopped {
		r.KilledBy, r.KillReason = "", ""
	}
	if r.KilledBy == "" {
		r.KilledBy = KilledByNobody
	}
	if ev.SetupError == "" && ev.Launcher == nil {
		if ev.Exited {
			code := ev.ExitCode
			r.ExitCode = &code
			r.ExitMeaning = ev.ExitCodes[code].Meaning
		} else {
			r.Signal = ev.Signal
			r.SignalName = unix.SignalName(syscall.Signal(ev.Signal))
			r.CoreDumped = ev.CoreDumped
			r.SignalSource = signalSource(cause, ev)
		}
	}
	if len(ev.Denied) > 0 {
		r.DeniedSyscalls = append([]DeniedSyscall(nil), ev.Denied...)
	}
	r.DeniedOverflow = ev.DeniedOverflow
	if ev.Cgroup != nil {
		cg := *ev.Cgroup
		r.CgroupEvidence = true
		r.Cgroup = &cg
		r.OOMKills = &cg.OOMKill
		r.OOMEvents = &cg.OOM
		r.PeakMemory = &cg.MemoryPeak
		r.PidsMax = &cg.PidsMaxEvents
	}
	return r
}

// signalSource says who sent the signal that killed the worker, as far as the cause shows it.
// The init stage relays only signals from outside the sandbox, and the built-in filters let the
// worker signal itself only with SIGABRT, so a SIGTERM or a stray SIGKILL came from outside
// unless the profile lets the worker signal itself (ev.SelfSignals).
func signalSource(cause Cause, ev Evidence) string {
	switch cause {
	case CauseStopped:
		return SourceVatrun
	case CauseOOMLimit, CauseOOMHost:
		return SourceOOMKiller
	case CauseCPULimit:
		return SourceRlimitCPU
	case CauseSegv:
		return SourceMemoryFault
	case CauseSandboxViolation:
		return SourceSeccomp
	case CauseAbort:
		return SourceAbort
	case CauseExternalSignal, CauseKilled:
		return SourceOutside
	case CauseSignal:
		if selfSignalPossible(ev) {
			return SourceOutsideOrSelf
		}
	}
	return SourceUnknown
}

// describeDeath says how the worker died, as a verb phrase ("exited with code 3", "died by SIGKILL").
func describeDeath(ev Evidence) string {
	if ev.Exited {
		return fmt.Sprintf("exited with code %d", ev.ExitCode)
	}
	return "died by " + signalName(ev.Signal) + coreNote(ev)
}

// signalName is "SIGKILL" for a known signal and "signal N" otherwise.
func signalName(sig int) string {
	if name := unix.SignalName(syscall.Signal(sig)); name != "" {
		return name
	}
	return fmt.Sprintf("signal %d", sig)
}

func coreNote(ev Evidence) string {
	if ev.CoreDumped {
		return " (core dumped)"
	}
	return ""
}

// limitNote is " of 32.0MiB" when memory.max is known, "" otherwise.
func limitNote(cg *CgroupEvidence) string {
	if cg.MemoryMax > 0 {
		return " of " + formatBytes(uint64(cg.MemoryMax))
	}
	return ""
}

// peakNote is "peak 32.0MiB, " when memory.peak is known, "" otherwise.
func peakNote(cg *CgroupEvidence) string {
	if cg.MemoryPeak > 0 {
		return "peak " + formatBytes(cg.MemoryPeak) + ", "
	}
	return ""
}

func meaningOr(meaning, fallback string) string {
	if meaning == "" {
		return fallback
	}
	return meaning
}

// formatBytes prints n in binary units with one decimal: "512B", "1.5KiB", "32.0MiB".
func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	v := float64(n) / unit
	for _, suffix := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		if v < unit {
			return fmt.Sprintf("%.1f%s", v, suffix)
		}
		v /= unit
	}
	return fmt.Sprintf("%.1fEiB", v)
}
