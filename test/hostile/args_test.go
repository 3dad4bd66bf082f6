package hostile

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/report"
)

// Syscall arguments that let a worker make the Linux kernel signal, block or charge someone on
// its behalf (issue 22, docs/seccomp-arguments.md). Each test fails if the attack works.

// refusingProfile is a built-in and how it refuses a syscall its filter forbids: EPERM (xsnap,
// solo: the default action; dev: a denylist rule), or the worker's death by SIGSYS (consensus),
// reported sandbox-violation.
type refusingProfile struct {
	name    string // for subtest names
	profile string // what --profile gets
	kills   bool
}

// builtinsRefusing lists the four built-ins. consensus is run as a file with its very seccomp
// section but "consensus": false, since a consensus profile refuses to run without a cgroup v2
// leaf, which these tests do not have.
func builtinsRefusing(t *testing.T) []refusingProfile {
	t.Helper()
	cons := derivedProfile(t, "consensus", func(p map[string]any) { p["consensus"] = false })
	return []refusingProfile{{"xsnap", "xsnap", false}, {"consensus", cons, true}, {"solo", "solo", false}, {"dev", "dev", false}}
}

// argsRun is one worker under profile with a report file.
type argsRun struct {
	*vatrunProc
	reportPath string
}

func startArgs(t *testing.T, profile string, extra ...string) *argsRun {
	t.Helper()
	rf := filepath.Join(t.TempDir(), "report.json")
	args := append([]string{"--profile", profile, "--no-cgroup", "--report-file", rf}, extra...)
	return &argsRun{startVatrun(t, procOpts{runArgs: args}), rf}
}

// tryReply is one reply, or "" when the worker died (EOF) or gave none within d.
func (a *argsRun) tryReply(d time.Duration) string {
	s, err := readNetstring(a.replies, a.replyR, d)
	if err != nil {
		return ""
	}
	return s
}

// finish ends the worker (EOF on fd 3: it exits 0 if still alive) and returns the report.
func (a *argsRun) finish(t *testing.T) *report.Report {
	t.Helper()
	a.cmdW.Close()
	a.exit()
	r := readReportFile(t, a.reportPath)
	if r == nil {
		t.Fatalf("no report (vatrun stderr: %s)", a.stderrText())
	}
	return r
}

// refused checks one command's outcome under a profile that must refuse it: the reply is
// wantErrno (EPERM from the filter, not the kernel's own EACCES/EAGAIN/EINVAL), or under
// consensus no reply and a sandbox-violation report.
func refused(t *testing.T, profile string, kills bool, cmd, wantReply string) {
	t.Helper()
	a := startArgs(t, profile)
	a.send(cmd)
	got := a.tryReply(10 * time.Second)
	r := a.finish(t)
	if kills {
		if got != "" || r.Cause != report.CauseSandboxViolation {
			t.Errorf("%s under %s: reply %q, report %s; want no reply and sandbox-violation (the filter kills)", cmd, profile, got, r.OneLine())
		}
		return
	}
	if got != wantReply {
		t.Errorf("%s under %s: reply %q, want %q (refused by the seccomp filter); report %s", cmd, profile, got, wantReply, r.OneLine())
	}
	if r.Cause != report.CauseExited || r.ExitCode == nil || *r.ExitCode != 0 {
		t.Errorf("%s under %s: report %s, want a clean exit", cmd, profile, r.OneLine())
	}
}

var eperm = "errno:" + strconv.Itoa(int(unix.EPERM))

// TestArgsAsyncSignalNotExternal: F_SETOWN(self) + F_SETSIG(SIGKILL, SIGTERM, SIGXCPU) + O_ASYNC
// on fd 3 or fd 4 makes the kernel signal the worker the next time the SwingSet kernel writes a
// command or reads a reply: it would pass for a kill from outside (killed/external,
// external-signal) or for a CPU limit that is not set. Every built-in refuses the fcntl calls,
// and the report is never external or cpu-limit.
func TestArgsAsyncSignalNotExternal(t *testing.T) {
	for _, b := range builtinsRefusing(t) {
		for _, fd := range []int{3, 4} {
			for _, sig := range []unix.Signal{unix.SIGKILL, unix.SIGTERM, unix.SIGXCPU, 0} {
				cmd := fmt.Sprintf("args:fasync:%d:%d", fd, sig)
				t.Run(b.name+"/"+cmd, func(t *testing.T) {
					a := startArgs(t, b.profile)
					a.send(cmd)
					got := a.tryReply(10 * time.Second)
					if got != "" {
						// The next command (fd 3) and the reading of its reply (fd 4) are the
						// I/O that signals an armed worker.
						a.send("ping")
						a.tryReply(2 * time.Second)
						a.send("ping")
						a.tryReply(2 * time.Second)
					}
					r := a.finish(t)
					t.Logf("reply %q; report %s", got, r.OneLine())
					if r.Class == report.ClassExternal || r.Cause == report.CauseExternalSignal || r.Cause == report.CauseKilled || r.Cause == report.CauseCPULimit {
						t.Errorf("the worker chose its death: %s", r.OneLine())
					}
					if b.kills {
						if r.Cause != report.CauseSandboxViolation {
							t.Errorf("under consensus the fcntl must kill the worker (sandbox-violation): reply %q, %s", got, r.OneLine())
						}
						return
					}
					if got != "refused:setown:"+eperm {
						t.Errorf("reply %q, want F_SETOWN refused with EPERM by the filter", got)
					}
				})
			}
		}
	}
}

// leaseTarget is a regular host file bound read-only into the worker's root and owned by root
// (a root-started worker ran as host uid 0 and owned it): /etc/ld.so.cache when the sandbox shows
// it (every dynamically linked start on the host opens it), else the worker binary (which its
// own exec keeps open, so the kernel would refuse a write lease on it with EAGAIN anyway).
func leaseTarget(t *testing.T) string {
	t.Helper()
	const cache = "/etc/ld.so.cache"
	if st, err := os.Stat(cache); err == nil && st.Mode().IsRegular() {
		a := startArgs(t, "xsnap")
		a.send("probe:open:" + cache)
		got := a.tryReply(10 * time.Second)
		a.finish(t)
		if got == "ok" {
			return cache
		}
		t.Logf("%s cannot be opened in the sandbox (%q): using the worker binary", cache, got)
	}
	return testbin.Worker(t)
}

// TestArgsLeaseRefused: a write lease on a host file bound read-only into the root stalls every
// open of it on the host for the lease-break time. The filter refuses F_SETLEASE (EPERM: the
// kernel itself would say EACCES for a file the worker does not own, EAGAIN for one open
// elsewhere).
func TestArgsLeaseRefused(t *testing.T) {
	target := leaseTarget(t)
	for _, b := range builtinsRefusing(t) {
		t.Run(b.name, func(t *testing.T) {
			refused(t, b.profile, b.kills, "args:lease:"+target, eperm)
		})
	}
}

// TestArgsNotifyPipeLocksRefused: dnotify (signals on directory changes), pipe resizing (the
// per-user pipe-buffer budget is shared with the host) and file locks on shared read-only files
// (a read lock blocks every host writer that locks) are refused by every built-in.
func TestArgsNotifyPipeLocksRefused(t *testing.T) {
	target := leaseTarget(t)
	for _, b := range builtinsRefusing(t) {
		for _, cmd := range []string{"args:notify", "args:pipesz", "args:lock:setlk:" + target, "args:lock:setlkw:" + target, "args:lock:ofd:" + target} {
			t.Run(b.name+"/"+strings.SplitN(strings.TrimPrefix(cmd, "args:"), ":/", 2)[0], func(t *testing.T) {
				refused(t, b.profile, b.kills, cmd, eperm)
			})
		}
	}
}

// TestArgsSharedMemoryRefused: MAP_SHARED memory (anonymous, or /dev/zero) is shmem, which
// RLIMIT_DATA does not count: without a memory cgroup a worker could hold any amount of it.
// xsnap, consensus and solo refuse MAP_SHARED (arg 3 & 0x1 must be 0; MAP_SHARED_VALIDATE has
// the bit too). dev allows it (no memory limit there anyway).
func TestArgsSharedMemoryRefused(t *testing.T) {
	for _, b := range builtinsRefusing(t) {
		if b.name == "dev" {
			continue
		}
		for _, cmd := range []string{"args:mmap-shared-anon", "args:mmap-devzero"} {
			t.Run(b.name+"/"+cmd, func(t *testing.T) {
				if cmd == "args:mmap-devzero" {
					a := startArgs(t, b.profile)
					a.send("probe:open:/dev/zero")
					got := a.tryReply(10 * time.Second)
					a.finish(t)
					if got != "ok" {
						t.Skipf("/dev/zero cannot be opened in the sandbox (%q): nothing to map", got)
					}
				}
				refused(t, b.profile, b.kills, cmd, eperm)
			})
		}
	}
	// The allowed shape still works (the engine's own private mappings).
	a := startArgs(t, "xsnap")
	a.send("alloc:1048576")
	if got := a.tryReply(10 * time.Second); got != "allocated:1048576" {
		t.Errorf("a private anonymous mapping under xsnap: %q, want allocated:1048576", got)
	}
	a.finish(t)
}

// int80Works says whether this kernel runs i386 syscalls (int $0x80) at all: the test worker,
// started directly, without a sandbox, makes getpid that way.
func int80Works(t *testing.T) bool {
	t.Helper()
	pipes := testbin.WorkerPipes(t)
	cmd := exec.Command(testbin.Worker(t))
	cmd.ExtraFiles = pipes.WorkerFiles()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pipes.CloseWorkerEnds()
	fmt.Fprintf(pipes.Commands, "%d:%s,", len("args:int80:20"), "args:int80:20")
	pipes.Commands.Close()
	out := make([]byte, 128)
	pipes.Results.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _ := pipes.Results.Read(out)
	cmd.Wait()
	want := fmt.Sprintf("ret:%d", cmd.Process.Pid)
	return strings.Contains(string(out[:n]), want)
}

// TestArgsForeignArchFollowsDefault: a syscall of an architecture the profile does not list
// (i386 via int $0x80, x32 numbers on x86_64) gets the profile's default action. Under an EPERM
// profile it used to kill the worker with SIGSYS (libseccomp's KILL_THREAD): a worker could pick
// a sandbox-violation death. Under dev (default allow) it is EPERM too: a foreign architecture
// would otherwise bypass dev's whole denylist. consensus kills, as for any forbidden syscall.
func TestArgsForeignArchFollowsDefault(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("x86_64 only")
	}
	i386 := int80Works(t)
	wantRet := "ret:" + strconv.Itoa(-int(syscall.EPERM))
	for _, b := range builtinsRefusing(t) {
		// x32 getpid (39) and i386 getpid (20).
		cmds := []string{"args:x32:39"}
		if i386 {
			cmds = append(cmds, "args:int80:20")
		} else {
			t.Log("this kernel does not run i386 syscalls (int $0x80 faults without a filter): only x32 is probed")
		}
		for _, cmd := range cmds {
			t.Run(b.name+"/"+cmd, func(t *testing.T) {
				refused(t, b.profile, b.kills, cmd, wantRet)
			})
		}
	}
}

// TestArgsCloneExitSignal: under solo (the one built-in that creates processes) a child created
// with clone and an exit signal of the worker's choosing (SIGKILL, SIGXCPU) would make the
// kernel send that signal to the worker when the child exits. solo allows clone only with exit
// signal SIGCHLD or none; the others allow no clone at all. Plain fork still works.
func TestArgsCloneExitSignal(t *testing.T) {
	for _, sig := range []unix.Signal{unix.SIGKILL, unix.SIGXCPU, unix.SIGTERM} {
		t.Run(unix.SignalName(sig), func(t *testing.T) {
			a := startArgs(t, "solo")
			a.send(fmt.Sprintf("args:clonesig:%d", sig))
			got := a.tryReply(10 * time.Second)
			a.send("ping")
			a.tryReply(2 * time.Second)
			r := a.finish(t)
			if r.Class == report.ClassExternal || r.Cause == report.CauseExternalSignal || r.Cause == report.CauseKilled || r.Cause == report.CauseCPULimit {
				t.Errorf("the worker chose its death: %s", r.OneLine())
			}
			if got != eperm {
				t.Errorf("clone with exit signal %s under solo: %q, want %q; report %s", unix.SignalName(sig), got, eperm, r.OneLine())
			}
		})
	}
	a := startArgs(t, "solo")
	a.send(fmt.Sprintf("args:clonesig:%d", unix.SIGCHLD))
	if got := a.tryReply(10 * time.Second); got != "ok" {
		t.Errorf("clone with exit signal SIGCHLD (fork) under solo: %q, want ok", got)
	}
	a.finish(t)
}

// TestAsyncSignalUnderPermissiveFcntl: the classification holds on its own when a profile lets
// the F_SETOWN + F_SETSIG + O_ASYNC request through (dev with its fcntl rules removed): the
// kernel's signal must not pass for a kill from outside or for a CPU limit that was never set or
// reached (issue 22: a SIGXCPU with no RLIMIT_CPU was reported cpu-limit).
func TestAsyncSignalUnderPermissiveFcntl(t *testing.T) {
	profile := leaseProfile(t)
	for _, sig := range []unix.Signal{unix.SIGKILL, unix.SIGTERM, unix.SIGXCPU} {
		cmd := fmt.Sprintf("args:fasync:4:%d", sig)
		t.Run(unix.SignalName(sig), func(t *testing.T) {
			a := startArgs(t, profile)
			a.send(cmd)
			got := a.tryReply(10 * time.Second)
			if got != "armed" {
				t.Fatalf("reply %q, want the request armed (the profile lets fcntl through)", got)
			}
			for i := 0; i < 3; i++ { // the I/O on fd 3 and fd 4 that signals the armed worker
				if _, err := a.cmdW.Write([]byte("4:ping,")); err != nil {
					break // already dead: the reply's own write signalled it
				}
				a.tryReply(2 * time.Second)
			}
			r := a.finish(t)
			t.Logf("report %s", r.OneLine())
			if r.Signal != int(sig) {
				t.Fatalf("report %s: want death by %s (the attack must have worked for this test to mean anything)", r.OneLine(), unix.SignalName(sig))
			}
			if r.Class != report.ClassUnknown || r.Cause != report.CauseSignal {
				t.Errorf("the worker chose its death: %s, want signal/unknown", r.OneLine())
			}
		})
	}
}
