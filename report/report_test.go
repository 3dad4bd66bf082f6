package report

import (
	"encoding/json"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// xsnapCodes is the built-in xsnap profile's exit-code table (docs/profiles.md).
var xsnapCodes = map[int]ExitMeaning{
	0:  {Meaning: "success"},
	1:  {Meaning: "bad usage"},
	2:  {Meaning: "I/O error"},
	11: {Meaning: "not enough memory", MeteringFault: true, Memory: true},
	12: {Meaning: "stack overflow", MeteringFault: true},
	15: {Meaning: "unhandled exception"},
	16: {Meaning: "no more keys"},
	17: {Meaning: "too much computation", MeteringFault: true},
}

func exited(code int) Evidence {
	return Evidence{Exited: true, ExitCode: code, ExitCodes: xsnapCodes, CPUSeconds: 0.2}
}

func signaled(sig syscall.Signal) Evidence {
	return Evidence{Signal: int(sig), ExitCodes: xsnapCodes, CPUSeconds: 0.2}
}

func withCgroup(ev Evidence, cg CgroupEvidence) Evidence {
	ev.Cgroup = &cg
	return ev
}

func with(ev Evidence, f func(*Evidence)) Evidence {
	f(&ev)
	return ev
}

func TestClassify(t *testing.T) {
	oomGrew := CgroupEvidence{OOM: 1, OOMKill: 1, MemoryPeak: 32 << 20, MemoryMax: 32 << 20}
	hostOOM := CgroupEvidence{OOM: 0, OOMKill: 1, MemoryPeak: 10 << 20, MemoryMax: 32 << 20}
	quiet := CgroupEvidence{MemoryPeak: 5 << 20, MemoryMax: 32 << 20}
	pidsHit := CgroupEvidence{PidsMaxEvents: 3, MemoryMax: -1}
	atCPULimit := func(cpu float64) func(*Evidence) {
		return func(ev *Evidence) { ev.CPUSeconds = cpu; ev.RlimitCPUHard = 3 }
	}
	byVatrun := func(ev *Evidence) {
		ev.KilledBy = KilledByVatrun
		ev.KillReason = "received SIGTERM"
		ev.StopSignals = []int{int(syscall.SIGTERM), int(syscall.SIGKILL)}
	}

	for _, tc := range []struct {
		name   string
		ev     Evidence
		cause  Cause
		class  Class
		detail string // a substring the detail must contain
	}{
		// At least one case per rule of the table (classify.go).
		{"SIGKILL the worker may have sent itself", with(signaled(syscall.SIGKILL), func(ev *Evidence) { ev.SelfSignals = true }),
			CauseSignal, ClassUnknown, "not taken as external"},
		{"SIGTERM the worker may have sent itself", with(signaled(syscall.SIGTERM), func(ev *Evidence) { ev.SelfSignals = true }),
			CauseSignal, ClassUnknown, "from outside the sandbox or from the worker itself"},
		{"OOM kill under a permissive profile stays an OOM kill", with(withCgroup(signaled(syscall.SIGKILL), oomGrew), func(ev *Evidence) { ev.SelfSignals = true }),
			CauseOOMLimit, ClassResourceExhaustion, "memory.max"},
		{"exit 0", exited(0), CauseExited, ClassClean, "exited with code 0"},
		{"metering fault 11", exited(11), CauseMeteringFault, ClassDeterministic, "code 11 (not enough memory)"},
		{"metering fault 12", exited(12), CauseMeteringFault, ClassDeterministic, "stack overflow"},
		// Under a stand-in rlimit a memory metering fault may be the rlimit's doing (issue 22).
		{"memory metering fault under RLIMIT_DATA", with(exited(11), func(ev *Evidence) { ev.MemoryStandIn = "RLIMIT_DATA" }),
			CauseMeteringFault, ClassUnknown, "RLIMIT_DATA held the memory limit in place of a cgroup"},
		{"other metering faults under RLIMIT_DATA stay deterministic", with(exited(17), func(ev *Evidence) { ev.MemoryStandIn = "RLIMIT_DATA" }),
			CauseMeteringFault, ClassDeterministic, "code 17"},
		{"memory metering fault with a cgroup", withCgroup(exited(11), quiet), CauseMeteringFault, ClassDeterministic, "code 11"},
		{"metering fault 17", exited(17), CauseMeteringFault, ClassDeterministic, "metering fault"},
		{"other exit code with a meaning", exited(2), CauseExitCode, ClassUnknown, "code 2 (I/O error)"},
		{"other exit code without a meaning", exited(99), CauseExitCode, ClassUnknown, "gives no meaning"},
		{"exit code, no profile table", with(exited(1), func(ev *Evidence) { ev.ExitCodes = nil }),
			CauseExitCode, ClassUnknown, "code 1"},
		{"oom-limit", withCgroup(signaled(syscall.SIGKILL), oomGrew), CauseOOMLimit, ClassResourceExhaustion,
			"killed by SIGKILL after the cgroup hit memory.max of 32.0MiB (peak 32.0MiB, oom 1, oom_kill 1)"},
		{"oom-host", withCgroup(signaled(syscall.SIGKILL), hostOOM), CauseOOMHost, ClassExternal,
			"host or a parent cgroup"},
		{"cpu-limit by SIGXCPU", with(signaled(syscall.SIGXCPU), atCPULimit(2)), CauseCPULimit, ClassResourceExhaustion, "SIGXCPU"},
		// A SIGXCPU the CPU time does not explain (issue 22: F_SETSIG(SIGXCPU) + O_ASYNC, or a
		// child's exit signal) proves no limit: the worker must not pick cpu-limit.
		{"SIGXCPU without RLIMIT_CPU", signaled(syscall.SIGXCPU), CauseSignal, ClassUnknown, "SIGXCPU"},
		{"SIGXCPU below the soft limit", with(signaled(syscall.SIGXCPU), atCPULimit(0.3)), CauseSignal, ClassUnknown, "SIGXCPU"},
		{"cpu-limit by SIGKILL at the hard limit", with(withCgroup(signaled(syscall.SIGKILL), quiet), atCPULimit(3.01)),
			CauseCPULimit, ClassResourceExhaustion, "hard limit of 3s"},
		{"cpu-limit by SIGKILL, no cgroup", with(signaled(syscall.SIGKILL), atCPULimit(3)),
			CauseCPULimit, ClassResourceExhaustion, "3.00s of CPU"},
		{"cpu-limit within the tolerance", with(signaled(syscall.SIGKILL), atCPULimit(2.96)),
			CauseCPULimit, ClassResourceExhaustion, "RLIMIT_CPU"},
		{"segv", signaled(syscall.SIGSEGV), CauseSegv, ClassResourceExhaustion, "killed by SIGSEGV"},
		{"bus error", signaled(syscall.SIGBUS), CauseSegv, ClassResourceExhaustion, "killed by SIGBUS"},
		{"abort", signaled(syscall.SIGABRT), CauseAbort, ClassResourceExhaustion, "SIGABRT"},
		{"abort with a core", with(signaled(syscall.SIGABRT), func(ev *Evidence) { ev.CoreDumped = true }),
			CauseAbort, ClassResourceExhaustion, "(core dumped)"},
		{"pids-limit, then abort", withCgroup(signaled(syscall.SIGABRT), pidsHit), CausePidsLimit,
			ClassResourceExhaustion, "died by SIGABRT after the cgroup refused a fork at pids.max (pids.events max 3)"},
		{"pids-limit, then exit 1", withCgroup(exited(1), pidsHit), CausePidsLimit, ClassResourceExhaustion,
			"exited with code 1 after"},
		{"pids-limit, then SIGSEGV", withCgroup(signaled(syscall.SIGSEGV), pidsHit), CausePidsLimit,
			ClassResourceExhaustion, "pids.max"},
		{"sandbox-violation", signaled(syscall.SIGSYS), CauseSandboxViolation, ClassSandboxViolation, "seccomp"},
		{"SIGTERM", signaled(syscall.SIGTERM), CauseExternalSignal, ClassExternal, "killed by SIGTERM"},
		{"SIGINT", signaled(syscall.SIGINT), CauseExternalSignal, ClassExternal, "SIGINT"},
		{"SIGHUP", signaled(syscall.SIGHUP), CauseExternalSignal, ClassExternal, "SIGHUP"},
		{"SIGQUIT", signaled(syscall.SIGQUIT), CauseExternalSignal, ClassExternal, "SIGQUIT"},
		{"SIGKILL with cgroup evidence of nothing", withCgroup(signaled(syscall.SIGKILL), quiet),
			CauseKilled, ClassExternal, "no OOM, CPU-limit or pids-limit evidence"},
		{"SIGKILL without cgroup evidence", signaled(syscall.SIGKILL), CauseKilled, ClassExternal,
			"cgroup evidence was unavailable, so an OOM kill could not be ruled out"},
		{"stopped by vatrun", with(signaled(syscall.SIGTERM), byVatrun), CauseStopped, ClassExternal,
			"vatrun stopped the worker (received SIGTERM); it died by SIGTERM"},
		{"setup-failed", Evidence{SetupError: "seccomp: load filter: EINVAL"}, CauseSetupFailed,
			ClassLauncherError, "never ran: seccomp: load filter: EINVAL"},
		{"other signal", signaled(syscall.SIGUSR1), CauseSignal, ClassUnknown, "killed by SIGUSR1"},
		{"SIGPIPE", signaled(syscall.SIGPIPE), CauseSignal, ClassUnknown, "SIGPIPE"},
		{"unnamed signal", signaled(syscall.Signal(40)), CauseSignal, ClassUnknown, "signal 40"},

		// vatrun itself died without a report (runclient): nothing of the worker is known.
		{"vatrun SIGKILLed", Evidence{Launcher: &LauncherDeath{Pid: 77, StatusKnown: true, Signal: 9, Why: "it wrote no report"}},
			CauseLauncherDied, ClassExternal, "vatrun (pid 77) was killed by SIGKILL and it wrote no report; its worker died with it"},
		{"vatrun killed by an unnamed signal", Evidence{Launcher: &LauncherDeath{Pid: 77, StatusKnown: true, Signal: 40, Why: "it wrote no report"}},
			CauseLauncherDied, ClassExternal, "was killed by signal 40 and"},
		{"vatrun exited without a report", Evidence{Launcher: &LauncherDeath{Pid: 8, StatusKnown: true, ExitCode: 125, Why: "it wrote no report"}},
			CauseLauncherDied, ClassLauncherError, "vatrun (pid 8) exited with code 125 and it wrote no report; vatrun's stderr says why"},
		{"vatrun exited 0 with a bad report", Evidence{Launcher: &LauncherDeath{Pid: 8, StatusKnown: true, Why: "its report is unreadable: EOF"}},
			CauseLauncherDied, ClassLauncherError, "exited with code 0 and its report is unreadable: EOF"},
		{"vatrun's status unknown", Evidence{Launcher: &LauncherDeath{Pid: 9, Why: "it wrote no report"}},
			CauseLauncherDied, ClassLauncherError, "vatrun (pid 9) ended and it wrote no report; the worker's own status is unknown"},

		// Precedence.
		{"a launcher death beats the worker's fields", with(withCgroup(signaled(syscall.SIGKILL), oomGrew), func(ev *Evidence) {
			ev.Launcher = &LauncherDeath{Pid: 1, StatusKnown: true, ExitCode: 123, Why: "it wrote no report"}
		}), CauseLauncherDied, ClassLauncherError, "exited with code 123"},
		{"setup error beats everything", with(withCgroup(signaled(syscall.SIGKILL), oomGrew), func(ev *Evidence) {
			ev.SetupError = "cgroup: permission denied"
			ev.KilledBy = KilledByVatrun
		}), CauseSetupFailed, ClassLauncherError, "permission denied"},
		{"vatrun stop beats an OOM", with(withCgroup(signaled(syscall.SIGKILL), oomGrew), byVatrun),
			CauseStopped, ClassExternal, "died by SIGKILL"},
		// A stop that came too late, or while the worker was dying of something else, is not the
		// cause: the worker's own death decides (issue 12: SIGTERM from xsnap's kill() on EOF).
		{"late stop after exit 17 stays a metering fault", with(exited(17), byVatrun),
			CauseMeteringFault, ClassDeterministic, "not what ended it"},
		{"late stop after exit 0 stays clean", with(exited(0), byVatrun), CauseExited, ClassClean, "code 0"},
		{"stop signal while dying of SIGXCPU", with(with(signaled(syscall.SIGXCPU), byVatrun), atCPULimit(2)), CauseCPULimit,
			ClassResourceExhaustion, "SIGXCPU"},
		{"forwarded SIGTERM, but the worker died by SIGKILL from outside",
			with(signaled(syscall.SIGKILL), func(ev *Evidence) {
				ev.KilledBy, ev.KillReason, ev.StopSignals = KilledByVatrun, "received SIGTERM", []int{int(syscall.SIGTERM)}
			}), CauseKilled, ClassExternal, "received SIGTERM), which was not what ended it"},
		{"vatrun killed it, no reason", with(signaled(syscall.SIGKILL), func(ev *Evidence) {
			ev.KilledBy, ev.StopSignals = KilledByVatrun, []int{int(syscall.SIGKILL)}
		}), CauseStopped, ClassExternal, "no reason given"},
		{"vatrun asked but sent nothing", with(signaled(syscall.SIGTERM), func(ev *Evidence) { ev.KilledBy = KilledByVatrun }),
			CauseExternalSignal, ClassExternal, "SIGTERM"},
		{"oom grew beats killed", withCgroup(signaled(syscall.SIGKILL), CgroupEvidence{OOM: 2}),
			CauseOOMLimit, ClassResourceExhaustion, "oom 2, oom_kill 0"},
		{"oom grew beats the CPU limit", with(withCgroup(signaled(syscall.SIGKILL), oomGrew), atCPULimit(3.5)),
			CauseOOMLimit, ClassResourceExhaustion, "memory.max"},
		{"oom grew beats pids", withCgroup(signaled(syscall.SIGKILL), CgroupEvidence{OOM: 1, OOMKill: 1, PidsMaxEvents: 4}),
			CauseOOMLimit, ClassResourceExhaustion, "memory.max"},
		{"oom counters ignored without SIGKILL", withCgroup(signaled(syscall.SIGSEGV), oomGrew),
			CauseSegv, ClassResourceExhaustion, "SIGSEGV"},
		{"metering fault beats pids", withCgroup(exited(17), pidsHit), CauseMeteringFault, ClassDeterministic, "code 17"},
		{"exit 0 after pids events is clean", withCgroup(exited(0), pidsHit), CauseExited, ClassClean, "code 0"},
		{"CPU below the hard limit is killed", with(withCgroup(signaled(syscall.SIGKILL), quiet), atCPULimit(2.5)),
			CauseKilled, ClassExternal, "SIGKILL"},
		{"CPU just outside the tolerance is killed", with(withCgroup(signaled(syscall.SIGKILL), quiet), atCPULimit(2.90)),
			CauseKilled, ClassExternal, "SIGKILL"},
		{"no RLIMIT_CPU means no cpu-limit", with(signaled(syscall.SIGKILL), func(ev *Evidence) { ev.CPUSeconds = 100 }),
			CauseKilled, ClassExternal, "could not be ruled out"},
		{"cpu limit beats pids", with(withCgroup(signaled(syscall.SIGKILL), pidsHit), atCPULimit(3)),
			CauseCPULimit, ClassResourceExhaustion, "RLIMIT_CPU"},
		{"SIGXCPU beats pids", with(withCgroup(signaled(syscall.SIGXCPU), pidsHit), atCPULimit(2)), CauseCPULimit, ClassResourceExhaustion, "SIGXCPU"},
		{"pids beats SIGKILL", withCgroup(signaled(syscall.SIGKILL), pidsHit), CausePidsLimit,
			ClassResourceExhaustion, "died by SIGKILL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cause, class, detail := Classify(tc.ev)
			if cause != tc.cause || class != tc.class {
				t.Errorf("Classify = %s/%s, want %s/%s (detail %q)", cause, class, tc.cause, tc.class, detail)
			}
			if !strings.Contains(detail, tc.detail) {
				t.Errorf("detail %q does not contain %q", detail, tc.detail)
			}
			if strings.ContainsAny(detail, "\n\r") {
				t.Errorf("detail %q is not one line", detail)
			}
		})
	}
}

func TestBuildSignal(t *testing.T) {
	ev := withCgroup(signaled(syscall.SIGKILL), CgroupEvidence{OOM: 1, OOMKill: 1, MemoryPeak: 1 << 25,
		MemoryMax: 1 << 25, PidsMaxEvents: 0, CPUUsageUsec: 410000})
	ev.CPUSeconds = 0.41
	ev.CoreDumped = false
	r := Build(ev)
	if r.Version != 1 || r.Cause != CauseOOMLimit || r.Class != ClassResourceExhaustion {
		t.Fatalf("Build: version %d cause %s class %s", r.Version, r.Cause, r.Class)
	}
	if r.ExitCode != nil || r.Signal != 9 || r.SignalName != "SIGKILL" || r.ExitMeaning != "" {
		t.Errorf("exit/signal fields: exitCode %v signal %d %q meaning %q", r.ExitCode, r.Signal, r.SignalName, r.ExitMeaning)
	}
	if !r.CgroupEvidence || r.Cgroup == nil || *r.Cgroup != *ev.Cgroup {
		t.Errorf("cgroup: evidence %v %+v", r.CgroupEvidence, r.Cgroup)
	}
	if r.Cgroup == ev.Cgroup {
		t.Error("Build aliases the evidence's cgroup struct")
	}
	if r.OOMKills == nil || *r.OOMKills != 1 || r.OOMEvents == nil || *r.OOMEvents != 1 ||
		r.PeakMemory == nil || *r.PeakMemory != 1<<25 || r.PidsMax == nil || *r.PidsMax != 0 {
		t.Errorf("headline pointers: %v %v %v %v", r.OOMKills, r.OOMEvents, r.PeakMemory, r.PidsMax)
	}
	if r.CPUSeconds != 0.41 || r.KilledBy != KilledByNobody || r.KillReason != "" || r.SetupError != "" {
		t.Errorf("cpu %v killedBy %q reason %q setup %q", r.CPUSeconds, r.KilledBy, r.KillReason, r.SetupError)
	}
}

func TestBuildExit(t *testing.T) {
	ev := exited(11)
	r := Build(ev)
	if r.ExitCode == nil || *r.ExitCode != 11 || r.ExitMeaning != "not enough memory" {
		t.Errorf("exit fields: %v %q", r.ExitCode, r.ExitMeaning)
	}
	if r.Signal != 0 || r.SignalName != "" || r.CoreDumped {
		t.Errorf("signal fields set on an exit: %d %q %v", r.Signal, r.SignalName, r.CoreDumped)
	}
	if r.CgroupEvidence || r.Cgroup != nil || r.OOMKills != nil || r.OOMEvents != nil || r.PeakMemory != nil || r.PidsMax != nil {
		t.Errorf("cgroup fields set without evidence: %+v", r)
	}
	zero := Build(exited(0))
	if zero.ExitCode == nil || *zero.ExitCode != 0 {
		t.Errorf("exit 0 must still carry exitCode 0, got %v", zero.ExitCode)
	}
	b, _ := json.Marshal(zero)
	if !strings.Contains(string(b), `"exitCode":0`) || !strings.Contains(string(b), `"cgroupEvidence":false`) {
		t.Errorf("JSON %s lacks exitCode 0 or cgroupEvidence false", b)
	}
}

func TestBuildStoppedAndSetup(t *testing.T) {
	r := Build(with(signaled(syscall.SIGTERM), func(ev *Evidence) {
		ev.KilledBy, ev.KillReason, ev.StopSignals = KilledByVatrun, "kernel asked", []int{int(syscall.SIGTERM)}
	}))
	if r.Cause != CauseStopped || r.KilledBy != KilledByVatrun || r.KillReason != "kernel asked" || r.SignalName != "SIGTERM" {
		t.Errorf("stopped: %+v", r)
	}
	r = Build(Evidence{SetupError: "no cgroup v2", Exited: true, ExitCode: 1})
	if r.Cause != CauseSetupFailed || r.SetupError != "no cgroup v2" || r.ExitCode != nil || r.Signal != 0 {
		t.Errorf("setup-failed: %+v", r)
	}
	if r.KilledBy != KilledByNobody {
		t.Errorf("killedBy %q, want nobody", r.KilledBy)
	}
	r = Build(with(exited(17), func(ev *Evidence) {
		ev.KilledBy, ev.KillReason, ev.StopSignals = KilledByVatrun, "vatrun received SIGTERM", []int{int(syscall.SIGTERM)}
	}))
	if r.Cause != CauseMeteringFault || r.KilledBy != KilledByNobody || r.KillReason != "" {
		t.Errorf("late stop after exit 17: cause %s killedBy %q reason %q", r.Cause, r.KilledBy, r.KillReason)
	}
}

func TestBuildLauncherDied(t *testing.T) {
	r := Build(Evidence{Launcher: &LauncherDeath{Pid: 5, StatusKnown: true, Signal: 9, Why: "it wrote no report"}})
	if r.Cause != CauseLauncherDied || r.Class != ClassExternal || r.KilledBy != KilledByNobody {
		t.Errorf("cause %s class %s killedBy %q", r.Cause, r.Class, r.KilledBy)
	}
	// vatrun's own status is in the detail only: exitCode/signal are the worker's fields.
	if r.ExitCode != nil || r.Signal != 0 || r.SignalName != "" || r.SignalSource != "" || r.CgroupEvidence {
		t.Errorf("worker fields set from vatrun's death: %+v", r)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(b); err != nil {
		t.Errorf("launcher-died report does not decode: %v\n%s", err, b)
	}
}

// TestKilledByOnTheWire pins the schema's killedBy values: the Node.js adapter, the interop tests
// and operators' tooling read these strings, so the constants may not drift.
func TestKilledByOnTheWire(t *testing.T) {
	stopped := Build(with(signaled(syscall.SIGTERM), func(ev *Evidence) {
		ev.KilledBy, ev.StopSignals = KilledByVatrun, []int{int(syscall.SIGTERM)}
	}))
	for _, c := range []struct {
		r    Report
		want string
	}{{stopped, `"killedBy":"vatrun"`}, {Build(signaled(syscall.SIGTERM)), `"killedBy":"nobody"`}} {
		b, err := json.Marshal(c.r)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), c.want) {
			t.Errorf("%s does not contain %s", b, c.want)
		}
	}
}

// launcherFields fills what the launcher adds after Build.
func launcherFields(r Report) Report {
	r.Phase = "in-delivery"
	r.ProfileName = "xsnap"
	r.ProfileDigest = "sha256:0123abcd"
	r.WallTime = 1.2
	r.Pid = 4242
	r.Warnings = []string{"cgroup evidence unavailable: no cgroup v2"}
	return r
}

func TestRoundTrip(t *testing.T) {
	evs := []Evidence{
		exited(0), exited(11), exited(2), signaled(syscall.SIGSEGV), signaled(syscall.Signal(40)),
		withCgroup(signaled(syscall.SIGKILL), CgroupEvidence{OOM: 1, OOMKill: 1, OOMGroupKill: 1, MemoryPeak: 3 << 20,
			MemoryMax: -1, PidsMaxEvents: 2, PidsPeak: 7, CPUUsageUsec: 1, ThrottledUsec: 2, NrThrottled: 3}),
		with(signaled(syscall.SIGTERM), func(ev *Evidence) {
			ev.KilledBy, ev.KillReason, ev.StopSignals = KilledByVatrun, "timeout", []int{int(syscall.SIGTERM)}
		}),
		{SetupError: "seccomp: unknown syscall \"frob\"\nsecond line"},
	}
	for _, ev := range evs {
		for _, r := range []Report{Build(ev), launcherFields(Build(ev))} {
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode(%s): %v", b, err)
			}
			if !reflect.DeepEqual(got, r) {
				t.Errorf("round trip changed the report:\n got %+v\nwant %+v", got, r)
			}
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	good := `{"version":1,"cause":"killed","class":"external","signal":9,"signalName":"SIGKILL","coreDumped":false,` +
		`"cgroupEvidence":false,"cpuSeconds":0.5,"profile":"xsnap","profileDigest":"d","wallTime":1,"killedBy":"nobody","pid":7}`
	if _, err := Decode([]byte(good)); err != nil {
		t.Fatalf("the base report does not decode: %v", err)
	}
	if _, err := Decode([]byte("\n " + good + "\n")); err != nil {
		t.Errorf("white space around the report: %v", err)
	}
	if r, err := Decode([]byte(strings.Replace(good, `"pid":7`, `"pid":7,"workerUid":1986098176,"workerGid":0`, 1))); err != nil || r.WorkerUID == nil || *r.WorkerUID != 1986098176 || r.WorkerGID == nil || *r.WorkerGID != 0 {
		t.Errorf("workerUid and workerGid: %+v %v", r, err)
	}
	edit := func(old, new string) string {
		if !strings.Contains(good, old) {
			t.Fatalf("test bug: %q not in the base report", old)
		}
		return strings.Replace(good, old, new, 1)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "EOF"},
		{"not JSON", "cause=killed", "invalid"},
		{"not an object", "[1]", "not a JSON object"},
		{"null", "null", "not a JSON object"},
		{"unknown field", edit(`"pid":7`, `"pid":7,"extra":1`), `unknown field "extra"`},
		{"uid in the wrong case", edit(`"pid":7`, `"pid":7,"workerUID":1`), `unknown field "workerUID"`},
		{"uid as a string", edit(`"pid":7`, `"pid":7,"workerUid":"1"`), "workerUid"},
		{"field in the wrong case", edit(`"cause"`, `"Cause"`), `unknown field "Cause"`},
		{"repeated field", edit(`"pid":7`, `"pid":7,"pid":8`), `"pid" appears twice`},
		{"unknown cgroup field", edit(`"cgroupEvidence":false`, `"cgroupEvidence":true,"cgroup":{"oom":1,"bogus":2}`), `unknown field "bogus"`},
		{"version 2", edit(`"version":1`, `"version":2`), "unsupported version 2"},
		{"no version", edit(`"version":1,`, ``), "unsupported version 0"},
		{"unknown cause", edit(`"cause":"killed"`, `"cause":"murdered"`), `unknown cause "murdered"`},
		{"no cause", edit(`"cause":"killed",`, ``), `unknown cause ""`},
		{"unknown class", edit(`"class":"external"`, `"class":"bad"`), `unknown class "bad"`},
		{"wrong type", edit(`"pid":7`, `"pid":"7"`), "pid"},
		{"trailing data", good + "{}", "data after the report"},
		{"two reports", good + good, "data after the report"},
		{"exit code and signal", edit(`"signal":9`, `"exitCode":0,"signal":9`), "both an exit code and a signal"},
		{"negative signal", edit(`"signal":9`, `"signal":-1`), "negative signal"},
		{"counters without evidence", edit(`"cgroupEvidence":false`, `"cgroupEvidence":false,"oomKills":1`), "cgroupEvidence is false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.in))
			if err == nil {
				t.Fatalf("Decode(%s) succeeded", tc.in)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestDecodeEmptyWarnings(t *testing.T) {
	r, err := Decode([]byte(`{"version":1,"cause":"exited","class":"clean","exitCode":0,"warnings":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Warnings != nil || r.ExitCode == nil || *r.ExitCode != 0 {
		t.Errorf("got warnings %#v exitCode %v", r.Warnings, r.ExitCode)
	}
}

func TestOneLine(t *testing.T) {
	ev := withCgroup(signaled(syscall.SIGKILL), CgroupEvidence{OOM: 1, OOMKill: 1, MemoryPeak: 32 << 20, MemoryMax: 32 << 20})
	ev.CPUSeconds = 0.41
	r := Build(ev)
	r.WallTime = 1.2
	want := "cause=oom-limit class=resource-exhaustion signal=SIGKILL peak=32.0MiB oomKills=1 cpu=0.41s wall=1.20s " +
		"killedBy=nobody — killed by SIGKILL after the cgroup hit memory.max of 32.0MiB (peak 32.0MiB, oom 1, oom_kill 1)"
	if got := r.OneLine(); got != want {
		t.Errorf("OneLine:\n got %s\nwant %s", got, want)
	}

	r = Build(with(signaled(syscall.SIGKILL), func(ev *Evidence) {
		ev.KilledBy, ev.KillReason, ev.StopSignals = KilledByVatrun, "kernel asked", []int{int(syscall.SIGKILL)}
	}))
	r.Phase = "idle"
	want = `cause=stopped class=external signal=SIGKILL phase=idle cgroup=none cpu=0.20s wall=0.00s killedBy=vatrun reason="kernel asked"` +
		` — vatrun stopped the worker (kernel asked); it died by SIGKILL`
	if got := r.OneLine(); got != want {
		t.Errorf("OneLine:\n got %s\nwant %s", got, want)
	}

	r = Build(Evidence{SetupError: "line one\nline two"})
	r.Warnings = []string{"a", "b"}
	got := r.OneLine()
	if strings.ContainsAny(got, "\n\r") || !strings.Contains(got, "line one line two") || !strings.Contains(got, "warnings=2") {
		t.Errorf("OneLine of a setup failure: %q", got)
	}
	r.Detail = ""
	got = r.OneLine()
	if strings.ContainsAny(got, "\n\r") || !strings.Contains(got, "— setup error: line one line two") {
		t.Errorf("OneLine of a setup failure without a detail: %q", got)
	}

	if got := (Report{Cause: CauseSegv, Class: ClassResourceExhaustion, Signal: 11, CoreDumped: true}).OneLine(); !strings.Contains(got, "signal=11 core=dumped") || !strings.Contains(got, "killedBy=nobody") {
		t.Errorf("OneLine without a signal name: %q", got)
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0B", 1023: "1023B", 1024: "1.0KiB", 1536: "1.5KiB",
		32 << 20: "32.0MiB", 3 << 30: "3.0GiB", 1 << 62: "4.0EiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"version":1,"cause":"exited","class":"clean","exitCode":0,"cgroupEvidence":false}`))
	f.Add([]byte(`{"version":1,"cause":"oom-limit","class":"resource-exhaustion","signal":9,"cgroupEvidence":true,"cgroup":{"oom":1},"warnings":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Decode(data)
		if err != nil {
			return
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", r, err)
		}
		r2, err := Decode(b)
		if err != nil {
			t.Fatalf("re-encoded report %s does not decode: %v", b, err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("re-encoding changed the report:\n%+v\n%+v", r, r2)
		}
	})
}

func TestSignalSource(t *testing.T) {
	oom := CgroupEvidence{OOM: 1, OOMKill: 1}
	self := func(ev *Evidence) { ev.SelfSignals = true }
	stop := func(ev *Evidence) {
		ev.KilledBy, ev.KillReason, ev.StopSignals = KilledByVatrun, "received SIGTERM", []int{int(syscall.SIGTERM)}
	}
	for _, c := range []struct {
		name string
		ev   Evidence
		want string
	}{
		{"segv", signaled(syscall.SIGSEGV), "kernel: a memory fault"},
		{"sigsys", signaled(syscall.SIGSYS), "kernel: the seccomp filter"},
		{"sigxcpu at the soft limit", with(signaled(syscall.SIGXCPU), func(ev *Evidence) { ev.CPUSeconds, ev.RlimitCPUHard = 2, 3 }), "kernel: RLIMIT_CPU"},
		{"sigxcpu no limit explains", signaled(syscall.SIGXCPU), "unknown"},
		{"oom", withCgroup(signaled(syscall.SIGKILL), oom), "kernel: the OOM killer"},
		{"abort", signaled(syscall.SIGABRT), "the worker itself: abort()"},
		{"stopped", with(signaled(syscall.SIGTERM), stop), "vatrun"},
		{"stray SIGKILL, built-in filter", signaled(syscall.SIGKILL), "outside the sandbox"},
		{"SIGTERM, built-in filter", signaled(syscall.SIGTERM), "outside the sandbox"},
		{"stray SIGKILL, permissive filter", with(signaled(syscall.SIGKILL), self), "unknown: outside the sandbox, or the worker itself (its profile lets it signal itself)"},
		{"other signal", signaled(syscall.SIGUSR1), "unknown"},
		{"exit code: no signal", exited(17), ""},
	} {
		if got := Build(c.ev).SignalSource; got != c.want {
			t.Errorf("%s: signalSource %q, want %q", c.name, got, c.want)
		}
	}
}
