package report

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// cpuTolerance is how far below the RLIMIT_CPU hard limit a SIGKILLed worker's CPU time may be and
// still count as having reached it. Evidence.CPUSeconds comes from the worker's PROF clock (raw
// tick-sampled user+system time), read by the init stage while the worker is a zombie: the very
// clock the kernel checks RLIMIT_CPU against, so it reads the limit to the tick. (rusage and the
// SCHED clock are the precise runtime, which trailed it by 0.15–0.4 s at a load of 8 on 2 cores.)
const cpuTolerance = 0.05

// Classify turns the evidence of one worker death into a cause, a class and a one-sentence detail,
// following the classification table of DESIGN.md. It is a pure function: the same evidence gives
// the same answer on every validator.
//
// The first rule that matches wins, in this order of precedence:
//
//  1. SetupError != ""                                   → setup-failed / launcher-error
//  2. KilledBy == "vatrun" and the worker died by a signal
//     vatrun sent (StopSignals)                          → stopped / external
//  3. exit 0                                             → exited / clean
//  4. an exit code the profile maps to a metering fault  → metering-fault / deterministic
//  5. SIGKILL, cgroup evidence, memory.events oom > 0    → oom-limit / resource-exhaustion
//  6. SIGKILL, cgroup evidence, oom_kill > 0, oom == 0   → oom-host / external
//  7. SIGXCPU                                            → cpu-limit / resource-exhaustion
//  8. SIGKILL, RLIMIT_CPU hard > 0, CPU ≥ hard − 0.05 s  → cpu-limit / resource-exhaustion
//  9. cgroup evidence, pids.events max > 0, and the worker died abnormally (a non-zero exit or a
//     signal)                                            → pids-limit / resource-exhaustion
//  10. SIGSEGV or SIGBUS                                 → segv / resource-exhaustion
//  11. SIGABRT                                           → abort / resource-exhaustion
//  12. SIGSYS                                            → sandbox-violation / sandbox-violation
//  13. SIGTERM, SIGINT, SIGHUP, SIGQUIT                  → external-signal / external
//  14. SIGKILL otherwise                                 → killed / external
//  15. any other signal                                  → signal / unknown
//  16. any other non-zero exit                           → exit-code / unknown (with the profile's
//     meaning of the code in the detail; profiles give no class other than metering faults)
//
// Cgroup evidence is never guessed: with Cgroup == nil, rules 5, 6 and 9 cannot match, and a
// SIGKILL that nothing else explains is "killed", with a detail saying an OOM kill could not be
// ruled out.
func Classify(ev Evidence) (Cause, Class, string) {
	cause, class, detail := classify(ev)
	if cause != CauseStopped && cause != CauseSetupFailed && ev.KilledBy != "" {
		detail += fmt.Sprintf("; %s also sent it a stop signal (%s), which was not what ended it",
			ev.KilledBy, meaningOr(ev.KillReason, "no reason given"))
	}
	return cause, class, detail
}

func classify(ev Evidence) (Cause, Class, string) {
	if ev.SetupError != "" {
		return CauseSetupFailed, ClassLauncherError,
			fmt.Sprintf("the sandbox could not be set up, so the worker never ran: %s", ev.SetupError)
	}
	death := describeDeath(ev)
	if stoppedByVatrun(ev) {
		why := ev.KillReason
		if why == "" {
			why = "no reason given"
		}
		return CauseStopped, ClassExternal, fmt.Sprintf("vatrun stopped the worker (%s); it %s", why, death)
	}
	if ev.Exited {
		if ev.ExitCode == 0 {
			return CauseExited, ClassClean, "the worker exited with code 0"
		}
		if m, ok := ev.ExitCodes[ev.ExitCode]; ok && m.MeteringFault {
			return CauseMeteringFault, ClassDeterministic,
				fmt.Sprintf("the worker exited with code %d (%s), which the profile maps to a metering fault",
					ev.ExitCode, meaningOr(m.Meaning, "no meaning given"))
		}
	}

	sig := syscall.Signal(ev.Signal)
	signaled := !ev.Exited
	cg := ev.Cgroup
	if signaled && sig == syscall.SIGKILL && cg != nil {
		if cg.OOM > 0 {
			return CauseOOMLimit, ClassResourceExhaustion,
				fmt.Sprintf("killed by SIGKILL after the cgroup hit memory.max%s (%soom %d, oom_kill %d)",
					limitNote(cg), peakNote(cg), cg.OOM, cg.OOMKill)
		}
		if cg.OOMKill > 0 {
			return CauseOOMHost, ClassExternal,
				fmt.Sprintf("killed by SIGKILL by the kernel's OOM killer while the cgroup never hit its own memory.max (oom 0, oom_kill %d): the host or a parent cgroup ran out of memory", cg.OOMKill)
		}
	}
	if signaled && sig == syscall.SIGXCPU {
		return CauseCPULimit, ClassResourceExhaustion,
			fmt.Sprintf("killed by SIGXCPU: the worker used up its RLIMIT_CPU soft limit (%.2fs of CPU)%s",
				ev.CPUSeconds, coreNote(ev))
	}
	if signaled && sig == syscall.SIGKILL && ev.RlimitCPUHard > 0 &&
		ev.CPUSeconds >= float64(ev.RlimitCPUHard)-cpuTolerance {
		return CauseCPULimit, ClassResourceExhaustion,
			fmt.Sprintf("killed by SIGKILL after %.2fs of CPU, at its RLIMIT_CPU hard limit of %ds",
				ev.CPUSeconds, ev.RlimitCPUHard)
	}
	if cg != nil && cg.PidsMaxEvents > 0 && (signaled || ev.ExitCode != 0) {
		return CausePidsLimit, ClassResourceExhaustion,
			fmt.Sprintf("the worker %s after the cgroup refused a fork at pids.max (pids.events max %d)",
				death, cg.PidsMaxEvents)
	}
	if signaled {
		switch sig {
		case syscall.SIGSEGV, syscall.SIGBUS:
			return CauseSegv, ClassResourceExhaustion,
				fmt.Sprintf("killed by %s: a stack overflow past RLIMIT_STACK, or a bug in the engine%s",
					signalName(ev.Signal), coreNote(ev))
		case syscall.SIGABRT:
			return CauseAbort, ClassResourceExhaustion,
				"killed by SIGABRT: the worker aborted (an allocation failure or a failed assertion)" + coreNote(ev)
		case syscall.SIGSYS:
			return CauseSandboxViolation, ClassSandboxViolation,
				"killed by SIGSYS: the worker made a system call that the seccomp profile forbids" + coreNote(ev)
		case syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT:
			return CauseExternalSignal, ClassExternal,
				fmt.Sprintf("killed by %s, sent from outside vatrun%s", signalName(ev.Signal), coreNote(ev))
		case syscall.SIGKILL:
			if cg == nil {
				return CauseKilled, ClassExternal,
					"killed by SIGKILL from outside vatrun; cgroup evidence was unavailable, so an OOM kill could not be ruled out"
			}
			return CauseKilled, ClassExternal,
				"killed by SIGKILL from outside vatrun, with no OOM, CPU-limit or pids-limit evidence"
		}
		return CauseSignal, ClassUnknown,
			fmt.Sprintf("killed by %s, which no limit explains%s", signalName(ev.Signal), coreNote(ev))
	}
	return CauseExitCode, ClassUnknown,
		fmt.Sprintf("the worker exited with code %d (%s)", ev.ExitCode,
			meaningOr(ev.ExitCodes[ev.ExitCode].Meaning, "the profile gives no meaning for it"))
}

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

// Build classifies ev and fills every report field the evidence gives. The launcher fills the rest
// (Phase, ProfileName, ProfileDigest, WallTime, Pid, Warnings). For a setup failure the exit status
// and signal fields stay empty: whatever died was not the worker.
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
	if ev.SetupError == "" {
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
		if ev.SelfSignals {
			return SourceOutsideOrSelf
		}
		return SourceOutside
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
