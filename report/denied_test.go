package report

import (
	"strings"
	"syscall"
	"testing"
)

// The refused syscalls are detail and evidence only: for every kind of death the cause and the class
// are the same with and without them, and only a death that was not clean mentions them.
func TestDeniedIsDetailOnly(t *testing.T) {
	denied := []DeniedSyscall{{Name: "socket", Nr: 41, Errno: 1, Count: 3}, {Name: "clone3", Nr: 435, Errno: 38, Count: 1},
		{Name: "mount", Nr: 165, Errno: 1, Count: 1}, {Name: "ptrace", Nr: 101, Errno: 1, Count: 1}}
	deaths := map[string]Evidence{
		"exit 0":  {Exited: true},
		"exit 3":  {Exited: true, ExitCode: 3},
		"metered": {Exited: true, ExitCode: 11, ExitCodes: map[int]ExitMeaning{11: {Meaning: "out of memory", MeteringFault: true}}},
		"abort":   {Signal: int(syscall.SIGABRT)},
		"sigsys":  {Signal: int(syscall.SIGSYS)},
		"segv":    {Signal: int(syscall.SIGSEGV)},
		"kill":    {Signal: int(syscall.SIGKILL)},
		"stopped": {Signal: int(syscall.SIGTERM), KilledBy: KilledByVatrun, KillReason: "received SIGTERM", StopSignals: []int{int(syscall.SIGTERM)}},
		"setup":   {SetupError: "sandbox setup: x"},
	}
	for name, ev := range deaths {
		cause, class, detail := Classify(ev)
		with := ev
		with.Denied = denied
		cause2, class2, detail2 := Classify(with)
		if cause != cause2 || class != class2 {
			t.Errorf("%s: %s/%s without the record, %s/%s with it", name, cause, class, cause2, class2)
		}
		mentions := strings.Contains(detail2, "socket (3×, EPERM), clone3 (1×, ENOSYS), mount (1×, EPERM), and 1 more")
		switch {
		case class == ClassClean || cause == CauseSetupFailed:
			if detail2 != detail {
				t.Errorf("%s: detail changed to %q", name, detail2)
			}
		case !mentions:
			t.Errorf("%s: detail %q does not name the refused syscalls", name, detail2)
		}
		if cause == CauseAbort && !strings.Contains(detail2, "it aborted after the seccomp filter refused socket") {
			t.Errorf("abort: detail %q", detail2)
		}
		if r := Build(with); len(r.DeniedSyscalls) != len(denied) {
			t.Errorf("%s: report lists %d refused syscalls, want %d", name, len(r.DeniedSyscalls), len(denied))
		}
	}
}
