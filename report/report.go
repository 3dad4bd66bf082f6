// Package report turns the evidence of one worker death into vatrun's JSON death report: a cause and
// a class by the rules table in classify.go (docs/report.md's classification table, row for row).
package report

// Cause says why a worker died: see rules in classify.go and the classification table in docs/report.md.
type Cause string

const (
	CauseExited           Cause = "exited"
	CauseMeteringFault    Cause = "metering-fault"
	CauseExitCode         Cause = "exit-code"
	CauseOOMLimit         Cause = "oom-limit"
	CauseOOMHost          Cause = "oom-host"
	CauseCPULimit         Cause = "cpu-limit"
	CauseSegv             Cause = "segv"
	CauseAbort            Cause = "abort"
	CausePidsLimit        Cause = "pids-limit"
	CauseSandboxViolation Cause = "sandbox-violation"
	CauseExternalSignal   Cause = "external-signal"
	CauseKilled           Cause = "killed"
	CauseStopped          Cause = "stopped"
	CauseSetupFailed      Cause = "setup-failed"
	// CauseSignal: killed by a signal that no other row explains (SIGUSR1, SIGPIPE, SIGILL…).
	CauseSignal Cause = "signal"
	// CauseLauncherDied: the supervisor (vatrun) vanished; seen only by the Go API of a kernel
	// that spawned `vatrun run` and saw it die without a report.
	CauseLauncherDied Cause = "launcher-died"
)

// Report.KilledBy: vatrun stopped the worker, or nobody did. These and the Source constants are the
// report schema's literals, owned here: every package that writes or reads them uses these names.
const (
	KilledByVatrun = "vatrun"
	KilledByNobody = "nobody"
)

// Report.SignalSource: who sent the signal that killed the worker, as far as the evidence shows.
const (
	SourceVatrun        = KilledByVatrun
	SourceOutside       = "outside the sandbox"
	SourceOutsideOrSelf = "unknown: outside the sandbox, or the worker itself (its profile lets it signal itself)"
	SourceOOMKiller     = "kernel: the OOM killer"
	SourceRlimitCPU     = "kernel: RLIMIT_CPU"
	SourceMemoryFault   = "kernel: a memory fault"
	SourceSeccomp       = "kernel: the seccomp filter"
	SourceAbort         = "the worker itself: abort()"
	SourceUnknown       = "unknown"
)

// Class is what the kernel's crash policy keys on.
type Class string

const (
	ClassClean              Class = "clean"
	ClassDeterministic      Class = "deterministic"
	ClassResourceExhaustion Class = "resource-exhaustion"
	ClassExternal           Class = "external"
	ClassSandboxViolation   Class = "sandbox-violation"
	ClassLauncherError      Class = "launcher-error"
	ClassUnknown            Class = "unknown"
)

// ExitMeaning is what the profile says about one exit code.
type ExitMeaning struct {
	Meaning       string
	MeteringFault bool
	// Memory: the metering fault is the engine's allocation meter (xsnap 11), which a failed
	// allocation also reports; see Evidence.MemoryStandIn.
	Memory bool
}

// CgroupEvidence is read from the worker's cgroup leaf after the wait and before removal. Event
// counters are the growth over the worker's life (leaf counters start at 0).
type CgroupEvidence struct {
	OOM           uint64 `json:"oom"`           // memory.events oom
	OOMKill       uint64 `json:"oomKill"`       // memory.events oom_kill
	OOMGroupKill  uint64 `json:"oomGroupKill"`  // memory.events oom_group_kill
	MemoryPeak    uint64 `json:"memoryPeak"`    // memory.peak, bytes
	MemoryMax     int64  `json:"memoryMax"`     // memory.max as applied, -1 = max
	PidsMaxEvents uint64 `json:"pidsMaxEvents"` // pids.events max
	PidsPeak      uint64 `json:"pidsPeak"`      // pids.peak when the kernel has it, else 0
	CPUUsageUsec  uint64 `json:"cpuUsageUsec"`  // cpu.stat usage_usec
	ThrottledUsec uint64 `json:"throttledUsec"` // cpu.stat throttled_usec
	NrThrottled   uint64 `json:"nrThrottled"`   // cpu.stat nr_throttled
}

// Evidence is everything vatrun knows about one worker death. Classify is a pure function of it.
type Evidence struct {
	// SetupError is non-empty when the sandbox could not be set up; the worker never ran.
	SetupError string
	// Exited is true for a normal exit (ExitCode valid); false for death by Signal.
	Exited     bool
	ExitCode   int
	Signal     int // signal number when !Exited
	CoreDumped bool
	// CPUSeconds is the worker's CPU time: its PROF clock read while it was a zombie (the clock
	// RLIMIT_CPU is enforced against) when known, else rusage user+system.
	CPUSeconds float64
	// RlimitCPUHard is the RLIMIT_CPU hard limit in seconds (0 = none).
	RlimitCPUHard uint64
	// Cgroup is nil when cgroup evidence is unavailable (no cgroup v2 here): never guessed.
	Cgroup *CgroupEvidence
	// ExitCodes is the profile's meaning of exit codes.
	ExitCodes map[int]ExitMeaning
	// KilledBy is KilledByVatrun when vatrun itself sent the worker a signal on someone's behalf (it
	// forwarded a stop signal it received, or killed the worker), "" otherwise; KillReason says why
	// ("received SIGTERM", "kernel asked", "timeout"). StopSignals are the signals vatrun sent.
	// The death counts as "stopped" only when the worker died by one of them: a worker that had
	// already exited, or was already dying of something else, keeps the cause of its own death.
	KilledBy    string
	KillReason  string
	StopSignals []int
	// MemoryStandIn names the rlimit that held the memory limit in place of a cgroup
	// ("RLIMIT_DATA"), "" when there was none. It counts mappings, not what the engine's meter
	// counts, so it can fail an allocation first: a memory metering fault is then not
	// deterministic.
	MemoryStandIn string
	// SelfSignals: the profile may let the worker signal itself with more than SIGABRT (a
	// permissive filter such as dev), so a signal death cannot be said to come from outside.
	SelfSignals bool
	// Denied lists the syscalls the seccomp filter refused with an errno (the worker saw the
	// errno and went on); DeniedOverflow counts refused calls beyond the recorded ones. Evidence
	// for the detail only: they never change the cause or the class.
	Denied         []DeniedSyscall
	DeniedOverflow uint64
	// Launcher is set only by a Go kernel that ran `vatrun run` as its own process (runclient)
	// and saw it end without a usable report: then nothing of the worker's own death is known and
	// the fields above are empty.
	Launcher *LauncherDeath
}

// LauncherDeath is how a `vatrun run` process ended, as the process that spawned it saw it.
type LauncherDeath struct {
	Pid int
	// StatusKnown: vatrun was waited for, and Signal (the signal that killed it) or else ExitCode
	// says how it ended.
	StatusKnown bool
	Signal      int
	ExitCode    int
	// Why says what was wrong with its report: "it wrote no report", "its report is unreadable: …".
	Why string
}

// DeniedSyscall is one syscall the seccomp filter refused with an errno, as the init stage
// recorded it (docs/report.md, "Refused syscalls").
type DeniedSyscall struct {
	Name  string `json:"name"`           // libseccomp's name for Nr on Arch
	Nr    int    `json:"nr"`             // the syscall number
	Arch  string `json:"arch,omitempty"` // SCMP_ARCH_* of the call, when not the native one
	Errno int    `json:"errno"`          // what the worker got (EPERM = 1, or the rule's errnoRet)
	Count uint64 `json:"count"`          // how many times
	// Args are the six argument registers of the first refused call, in hex (0x…: exact in
	// JavaScript too).
	Args []string `json:"args"`
}

// Report is the one JSON object written per worker death (schema documented in docs/report.md).
type Report struct {
	// Version of the schema.
	Version int `json:"version"`
	// Cause and Class come from Classify; Detail is a human sentence.
	Cause  Cause  `json:"cause"`
	Class  Class  `json:"class"`
	Detail string `json:"detail,omitempty"`
	// ExitCode is set when the worker exited; Signal/SignalName when a signal killed it.
	ExitCode   *int   `json:"exitCode,omitempty"`
	Signal     int    `json:"signal,omitempty"`
	SignalName string `json:"signalName,omitempty"`
	// SignalSource says who sent the fatal signal, where that can be known: "kernel: …" (a
	// fault, a seccomp kill, an rlimit, the OOM killer), "vatrun", "outside the sandbox", "the
	// worker itself: abort()", or "unknown: …".
	SignalSource string `json:"signalSource,omitempty"`
	CoreDumped   bool   `json:"coreDumped"`
	ExitMeaning  string `json:"exitMeaning,omitempty"`
	// Cgroup evidence; CgroupEvidence false means the counters below are unavailable, not zero.
	CgroupEvidence bool            `json:"cgroupEvidence"`
	Cgroup         *CgroupEvidence `json:"cgroup,omitempty"`
	// Headline copies of the cgroup counters, out of Cgroup (nil when unavailable).
	OOMKills   *uint64 `json:"oomKills,omitempty"`
	OOMEvents  *uint64 `json:"oomEvents,omitempty"`
	PeakMemory *uint64 `json:"peakMemory,omitempty"`
	PidsMax    *uint64 `json:"pidsMax,omitempty"`
	CPUSeconds float64 `json:"cpuSeconds"`
	// Phase is "startup", "in-delivery" or "idle" when the kernel tells vatrun; "" otherwise.
	Phase         string `json:"phase,omitempty"`
	ProfileName   string `json:"profile"`
	ProfileDigest string `json:"profileDigest"`

	// WorkerDigest is what the worker is: its executable, interpreter and shared libraries
	// (hostfacts.WorkerDigest); HostFactsDigest is the digest of the host facts that can change a
	// worker's outcome (hostfacts.Facts.Digest). Absent when unknown (e.g. no worker to hash).
	WorkerDigest    string `json:"workerDigest,omitempty"`
	HostFactsDigest string `json:"hostFactsDigest,omitempty"`

	WallTime float64 `json:"wallTime"` // seconds from launch to death
	// KilledBy is KilledByVatrun (with KillReason) or KilledByNobody.
	KilledBy   string `json:"killedBy"`
	KillReason string `json:"killReason,omitempty"`
	// Pid is the worker's pid as vatrun's namespace sees it (the init stage's pid when the worker
	// is in its own pid namespace: that is the process vatrun waited for).
	Pid int `json:"pid"`
	// WorkerUID and WorkerGID are the ids the worker ran as on the host: vatrun's own when it runs
	// unprivileged, a dedicated id that owns nothing when it runs as root
	// (docs/worker-identity.md). Absent when no worker was started.
	WorkerUID *int `json:"workerUid,omitempty"`
	WorkerGID *int `json:"workerGid,omitempty"`
	// SetupError is the reason the sandbox could not be set up (cause setup-failed).
	SetupError string `json:"setupError,omitempty"`
	// LimitsEnforced says, for each of the profile's limits (memory, pids, cpuMax, cpuSeconds),
	// what enforced it for this worker ("cgroup memory.max", "RLIMIT_DATA", "seccomp: no process
	// creation", "none: …"), so a degraded sandbox is visible in the report.
	LimitsEnforced map[string]string `json:"limitsEnforced,omitempty"`
	// Isolation lists the layers that confined this worker: "namespaces: pid net … user" (with
	// "minimal root") or "landlock ABI N: …" in the no-namespace mode, then the seccomp filter,
	// rlimits, no_new_privs, the new session and the parent-death signal.
	Isolation []string `json:"isolation,omitempty"`
	// DeniedSyscalls lists the syscalls the seccomp filter refused with an errno, the one refused
	// last first, at most 32; DeniedOverflow counts the refused calls of further syscalls. Absent when
	// nothing was refused or the refusals could not be recorded (a warning says why).
	DeniedSyscalls []DeniedSyscall `json:"deniedSyscalls,omitempty"`
	DeniedOverflow uint64          `json:"deniedOverflow,omitempty"`
	// Warnings lists anything degraded (e.g. cgroup evidence unavailable and why).
	Warnings []string `json:"warnings,omitempty"`
}
