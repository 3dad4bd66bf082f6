package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/vatrun/vatrun/internal/proctree"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/report"
)

// These are host integration tests of `vatrun run` as a whole process, with the real C test
// worker: they need namespaces (root, or unprivileged user namespaces) and seccomp.

type runResult struct {
	code     int  // shell style: 128+N for death by signal N
	signaled bool // vatrun itself died by a signal
	stderr   string
	report   *report.Report
}

// vatrunCmd prepares `vatrun run ARGS... -- worker WORKERARGS...` with fd 3 (commands), fd 4
// (replies) and fd 5 (report) as a kernel would pass them.
type harness struct {
	t       *testing.T
	cmd     *exec.Cmd
	cmdW    *os.File
	replyR  *os.File
	reportR *os.File
	stderr  strings.Builder
}

func newHarness(t *testing.T, runArgs []string, workerArgs ...string) *harness {
	t.Helper()
	bin, worker := testbin.Vatrun(t), testbin.Worker(t)
	pipes := testbin.WorkerPipes(t)
	cmdW, replyR := pipes.Commands, pipes.Results
	reportR, reportW := pipe(t)
	args := append([]string{"run", "--log-level", "warn", "--report-fd", "5"}, runArgs...)
	args = append(args, "--", worker)
	args = append(args, workerArgs...)
	h := &harness{t: t, cmdW: cmdW, replyR: replyR, reportR: reportR}
	h.cmd = exec.Command(bin, args...)
	h.cmd.ExtraFiles = append(pipes.WorkerFiles(), reportW)
	h.cmd.Stderr = &h.stderr
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pipes.CloseWorkerEnds()
	reportW.Close()
	t.Cleanup(func() {
		if h.cmd.ProcessState == nil {
			h.cmd.Process.Kill()
			h.cmd.Wait()
		}
	})
	return h
}

func pipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

func (h *harness) send(cmds ...string) {
	for _, c := range cmds {
		if _, err := fmt.Fprintf(h.cmdW, "%d:%s,", len(c), c); err != nil {
			h.t.Fatalf("send %q: %v", c, err)
		}
	}
}

// reply reads one netstring reply from fd 4.
func (h *harness) reply(r *bufio.Reader) string {
	h.t.Helper()
	lenStr, err := r.ReadString(':')
	if err != nil {
		h.t.Fatalf("reading a reply from fd 4: %v (stderr: %s)", err, h.stderr.String())
	}
	n, err := strconv.Atoi(strings.TrimSuffix(lenStr, ":"))
	if err != nil {
		h.t.Fatalf("bad netstring length %q", lenStr)
	}
	buf := make([]byte, n+1)
	if _, err := r.Read(buf); err != nil {
		h.t.Fatal(err)
	}
	return string(buf[:n])
}

// finish closes fd 3 (EOF: the worker exits 0 if still alive) and waits for vatrun.
func (h *harness) finish() runResult {
	h.t.Helper()
	h.cmdW.Close()
	return h.await()
}

// await waits for vatrun and its report, leaving fd 3 open (so only the death under test can end
// the worker).
func (h *harness) await() runResult {
	h.t.Helper()
	rep, _ := readAll(h.reportR)
	h.cmdW.Close()
	res := runResult{stderr: h.stderr.String()}
	var err error
	res.code, res.signaled, err = testbin.ExitOf(h.cmd.Wait())
	if err != nil {
		h.t.Fatal(err)
	}
	res.stderr = h.stderr.String()
	if len(rep) > 0 {
		r, err := report.Decode(rep)
		if err != nil {
			h.t.Fatalf("report on fd 5 does not decode: %v\n%s", err, rep)
		}
		res.report = &r
	}
	return res
}

func readAll(f *os.File) ([]byte, error) {
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := f.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out, err
		}
	}
}

// run sends cmds, closes fd 3 and waits.
func run(t *testing.T, profile string, cmds ...string) runResult {
	h := newHarness(t, []string{"--profile", profile})
	h.send(cmds...)
	return h.finish()
}

func wantDeath(t *testing.T, res runResult, code int, cause report.Cause, class report.Class) {
	t.Helper()
	if res.code != code {
		t.Errorf("vatrun exit code %d, want %d (stderr: %s)", res.code, code, res.stderr)
	}
	if res.report == nil {
		t.Fatalf("no report on fd 5 (stderr: %s)", res.stderr)
	}
	if res.report.Cause != cause || res.report.Class != class {
		t.Errorf("report cause/class %s/%s, want %s/%s: %s", res.report.Cause, res.report.Class, cause, class, res.report.OneLine())
	}
	if got := exitStatusOf(*res.report); got != res.code {
		t.Errorf("vatrun exited %d but its report says the worker's status maps to %d", res.code, got)
	}
	// The wait status is mirrored exactly: death by the worker's signal, not exit 128+N.
	if wantSig := res.report.Signal > 0; res.signaled != wantSig {
		t.Errorf("vatrun died by a signal: %v, want %v (report: %s)", res.signaled, wantSig, res.report.OneLine())
	}
}

func exitStatusOf(r report.Report) int {
	if r.ExitCode != nil {
		return *r.ExitCode
	}
	return 128 + r.Signal
}

func demoProfile(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../../examples/profiles/demo.json")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunRoundTripsFds3And4(t *testing.T) {
	h := newHarness(t, []string{"--profile", "xsnap"})
	h.send("ping", "add:40", "add:2", "probe:pid")
	r := bufio.NewReader(h.replyR)
	got := []string{h.reply(r), h.reply(r), h.reply(r), h.reply(r)}
	want := []string{"pong", "sum:40", "sum:42", "pid:2"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("replies %q, want %q", got, want)
	}
	// vatrun handed fds 3 and 4 to the worker and kept no copy: fd 4 closes when the worker dies.
	// It closes its copies right after the launch returns; allow for scheduling.
	held := proctree.Holding(h.cmd.Process.Pid, h.cmdW, h.replyR)
	for deadline := time.Now().Add(2 * time.Second); len(held) > 0 && time.Now().Before(deadline); held = proctree.Holding(h.cmd.Process.Pid, h.cmdW, h.replyR) {
		time.Sleep(5 * time.Millisecond)
	}
	if len(held) > 0 {
		t.Errorf("vatrun holds %v, the kernel's pipes, 2 s after the launch", held)
	}
	res := h.finish()
	wantDeath(t, res, 0, report.CauseExited, report.ClassClean)
	if res.report.ProfileName != "xsnap" || !strings.HasPrefix(res.report.ProfileDigest, "sha256:") {
		t.Errorf("report profile %q digest %q", res.report.ProfileName, res.report.ProfileDigest)
	}
}

// The probes list directories and call prctl, which the xsnap allowlist forbids; the demo profile
// has the same namespaces and privilege drop, RLIMIT_CPU 1 s, and a permissive filter.
func TestRunWorkerSeesOnlyItsSandbox(t *testing.T) {
	h := newHarness(t, []string{"--profile", demoProfile(t)})
	h.send("probe:fds", "probe:pid", "probe:procs", "probe:nnp", "probe:caps", "probe:net", "probe:rlimit-raise", "probe:hostname",
		"probe:write:/tmp/vatrun-escape", "probe:write:/vatrun-escape")
	r := bufio.NewReader(h.replyR)
	var got []string
	for range 10 {
		got = append(got, h.reply(r))
	}
	// The minimal root has no /tmp (ENOENT) and is read-only (EROFS).
	want := []string{"fds:0,1,2,3,4", "pid:2", "procs:2", "nnp:1", "capeff:0000000000000000",
		fmt.Sprintf("errno:%d", syscall.ENETUNREACH), fmt.Sprintf("errno:%d", syscall.EPERM), "hostname:vat",
		fmt.Sprintf("errno:%d", syscall.ENOENT), fmt.Sprintf("errno:%d", syscall.EROFS)}
	// /tmp exists (read-only) in the minimal root when the worker itself lives below /tmp.
	if strings.HasPrefix(testbin.Worker(t), "/tmp/") {
		want[8] = fmt.Sprintf("errno:%d", syscall.EROFS)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("probe %d: got %q, want %q", i, got[i], want[i])
		}
	}
	wantDeath(t, h.finish(), 0, report.CauseExited, report.ClassClean)
}

func TestRunExitCodes(t *testing.T) {
	for _, c := range []struct {
		name  string
		cmd   string
		code  int
		cause report.Cause
		class report.Class
	}{
		{"stack meter", "exit:12", 12, report.CauseMeteringFault, report.ClassDeterministic},
		{"compute meter", "exit:17", 17, report.CauseMeteringFault, report.ClassDeterministic},
		{"other exit code", "exit:15", 15, report.CauseExitCode, report.ClassUnknown},
		{"abort", "abort", 128 + 6, report.CauseAbort, report.ClassResourceExhaustion},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantDeath(t, run(t, "xsnap", c.cmd), c.code, c.cause, c.class)
		})
	}
	// Without a cgroup RLIMIT_DATA holds memory, so a memory metering fault may be the rlimit's
	// (docs/limits.md): unknown, and the detail says so.
	t.Run("memory meter under RLIMIT_DATA", func(t *testing.T) {
		h := newHarness(t, []string{"--profile", "xsnap", "--no-cgroup"})
		h.send("exit:11")
		res := h.finish()
		wantDeath(t, res, 11, report.CauseMeteringFault, report.ClassUnknown)
		if res.report != nil && !strings.Contains(res.report.Detail, "RLIMIT_DATA") {
			t.Errorf("detail %q does not name RLIMIT_DATA", res.report.Detail)
		}
	})
}

func TestRunForbiddenSyscall(t *testing.T) {
	t.Run("errno under xsnap", func(t *testing.T) {
		h := newHarness(t, []string{"--profile", "xsnap"})
		h.send("syscall:socket", "syscall:ptrace", "syscall:fork")
		r := bufio.NewReader(h.replyR)
		got := []string{h.reply(r), h.reply(r), h.reply(r)}
		eperm := fmt.Sprintf("errno:%d", syscall.EPERM)
		for i, g := range got {
			if g != eperm {
				t.Errorf("forbidden syscall %d replied %q, want %q", i, g, eperm)
			}
		}
		wantDeath(t, h.finish(), 0, report.CauseExited, report.ClassClean)
	})
	t.Run("SIGSYS under a kill action", func(t *testing.T) {
		wantDeath(t, run(t, demoProfile(t), "syscall:ptrace"), 128+int(syscall.SIGSYS), report.CauseSandboxViolation, report.ClassSandboxViolation)
	})
}

func TestRunResourceSignals(t *testing.T) {
	t.Run("SIGXCPU from RLIMIT_CPU", func(t *testing.T) {
		res := run(t, demoProfile(t), "spin")
		wantDeath(t, res, 128+int(syscall.SIGXCPU), report.CauseCPULimit, report.ClassResourceExhaustion)
		if res.report.CPUSeconds < 0.95 || res.report.CPUSeconds > 1.2 { // the enforced process CPU clock
			t.Errorf("cpuSeconds %.3f, want the 1 s limit give or take a tick (0.95..1.2)", res.report.CPUSeconds)
		}
	})
	t.Run("SIGKILL at the RLIMIT_CPU hard limit", func(t *testing.T) {
		wantDeath(t, run(t, demoProfile(t), "spin-ignore-xcpu"), 128+int(syscall.SIGKILL), report.CauseCPULimit, report.ClassResourceExhaustion)
	})
	t.Run("SIGSEGV from recursion under RLIMIT_STACK", func(t *testing.T) {
		wantDeath(t, run(t, demoProfile(t), "recurse"), 128+int(syscall.SIGSEGV), report.CauseSegv, report.ClassResourceExhaustion)
	})
}

// startIdle starts a worker that is alive and idle (it answered "ready"), and returns the
// harness and the worker's host pid.
func startIdle(t *testing.T, profile string) (*harness, int) {
	t.Helper()
	h := newHarness(t, []string{"--profile", profile}, "--ready")
	if got := h.reply(bufio.NewReader(h.replyR)); got != "ready" {
		t.Fatalf("first reply %q, want ready", got)
	}
	init := proctree.Children(h.cmd.Process.Pid)
	if len(init) != 1 {
		t.Fatalf("vatrun has children %v, want exactly the init stage", init)
	}
	worker := proctree.Children(init[0])
	if len(worker) != 1 {
		t.Fatalf("init stage has children %v, want exactly the worker", worker)
	}
	return h, worker[0]
}

// gone waits until pid no longer exists (or is a zombie about to be reaped).
func gone(pid int, within time.Duration) bool {
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if !proctree.Alive(pid) {
			return true
		}
	}
	return false
}

func TestRunSignals(t *testing.T) {
	t.Run("SIGTERM to the worker is external", func(t *testing.T) {
		h, worker := startIdle(t, "xsnap")
		unix.Kill(worker, unix.SIGTERM)
		wantDeath(t, h.await(), 128+int(syscall.SIGTERM), report.CauseExternalSignal, report.ClassExternal)
	})
	t.Run("stray SIGKILL to the worker is killed", func(t *testing.T) {
		h, worker := startIdle(t, "xsnap")
		unix.Kill(worker, unix.SIGKILL)
		wantDeath(t, h.await(), 128+int(syscall.SIGKILL), report.CauseKilled, report.ClassExternal)
	})
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		t.Run(unix.SignalName(sig)+" to vatrun is forwarded and recorded", func(t *testing.T) {
			h, _ := startIdle(t, "xsnap")
			h.cmd.Process.Signal(sig)
			res := h.await()
			wantDeath(t, res, 128+int(sig), report.CauseStopped, report.ClassExternal)
			if res.report.KilledBy != report.KilledByVatrun || res.report.KillReason != "vatrun received "+unix.SignalName(sig) || res.report.Signal != int(sig) {
				t.Errorf("report %s", res.report.OneLine())
			}
		})
	}
	t.Run("SIGKILL to vatrun leaves no worker", func(t *testing.T) {
		h, worker := startIdle(t, "xsnap")
		initPid := proctree.Children(h.cmd.Process.Pid)[0]
		h.cmd.Process.Kill()
		h.cmd.Wait()
		if !gone(worker, 5*time.Second) {
			t.Fatalf("worker %d still alive 5 s after vatrun was SIGKILLed", worker)
		}
		if !gone(initPid, 5*time.Second) {
			t.Fatalf("init stage %d still alive after vatrun was SIGKILLed", initPid)
		}
		// fd 4 closes with the worker: the kernel notices.
		if _, err := bufio.NewReader(h.replyR).ReadByte(); err == nil {
			t.Fatal("fd 4 still open after the worker died")
		}
	})
}

func TestRunBadInput(t *testing.T) {
	bin, worker := testbin.Vatrun(t), testbin.Worker(t)
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-executable")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	badProfile := filepath.Join(dir, "bad.json")
	os.WriteFile(badProfile, []byte(`{"name":"bad","limits":{"memroy":"1G"}}`), 0o644)
	nullProfile := filepath.Join(dir, "null.json") // `null` is a valid JSON document: all defaults, and no filter
	os.WriteFile(nullProfile, []byte("null\n"), 0o644)
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	noShebang := filepath.Join(dir, "no-shebang")
	os.WriteFile(noShebang, []byte("echo hello\n"), 0o755)
	badELF := filepath.Join(dir, "bad-elf")
	os.WriteFile(badELF, []byte("\x7fELF\x02\x01\x01garbage-garbage-garbage-garbage-garbage"), 0o755)
	missingInterp := filepath.Join(dir, "missing-interp")
	os.WriteFile(missingInterp, []byte("#!/no/such/interpreter\n"), 0o755)
	noExecve := filepath.Join(dir, "no-execve.json")
	os.WriteFile(noExecve, []byte(`{"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]}}`), 0o644)
	for _, c := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"missing worker", []string{"run", "--profile", "xsnap", "--", filepath.Join(dir, "nope")}, exitNotFound, "does not exist"},
		{"worker not executable", []string{"run", "--profile", "xsnap", "--", notExec}, exitNotExecutable, "no execute permission"},
		{"bad profile", []string{"run", "--profile", badProfile, "--", worker}, exitUsage, "memroy"},
		{"unknown profile", []string{"run", "--profile", "nosuch", "--", worker}, exitUsage, "nosuch"},
		{"unknown flag", []string{"run", "--profle", "xsnap", "--", worker}, exitUsage, "flag provided but not defined: -profle"},
		{"report fd not open", []string{"run", "--profile", "xsnap", "--report-fd", "9", "--", worker}, exitUsage, "--report-fd 9 is not open"},
		{"no worker", []string{"run", "--profile", "xsnap"}, exitUsage, "no worker given"},
		{"no profile", []string{"run", "--", worker}, exitUsage, "--profile is required"},
		{"consensus without cgroups", []string{"run", "--profile", "consensus", "--no-cgroup", "--", worker}, exitUsage, "consensus profile"},
		{"profile is /dev/zero", []string{"run", "--profile", "/dev/zero", "--", worker}, exitUsage, "not a regular file"},
		{"profile is a FIFO with no writer", []string{"run", "--profile", fifo, "--", worker}, exitUsage, "not a regular file"},
		{"report file is a FIFO with no reader", []string{"run", "--profile", "xsnap", "--no-cgroup", "--report-file", fifo, "--", worker}, exitUsage, "a FIFO that nobody reads"},
		{"negative kill grace", []string{"run", "--profile", "xsnap", "--kill-grace", "-1s", "--", worker}, exitUsage, "--kill-grace -1s: negative"},
		{"report fd -1", []string{"run", "--profile", "xsnap", "--report-fd", "-1", "--", worker}, exitUsage, "--report-fd -1: not a file descriptor"},
		{"script without #!", []string{"run", "--profile", "xsnap", "--no-cgroup", "--", noShebang}, exitNotExecutable, "exec format error"},
		{"bad ELF", []string{"run", "--profile", "xsnap", "--no-cgroup", "--", badELF}, exitNotExecutable, "execve"},
		{"missing interpreter", []string{"run", "--profile", "xsnap", "--no-cgroup", "--", missingInterp}, exitNotFound, "worker " + missingInterp + " exists, but its #! interpreter /no/such/interpreter does not exist"},
		{"allowlist without execve", []string{"run", "--profile", noExecve, "--no-cgroup", "--", worker}, exitSetupFailed, "the profile's seccomp filter does not allow execve"},
		{"profile without seccomp", []string{"run", "--profile", nullProfile, "--no-cgroup", "--", worker}, exitUsage, "has no seccomp section, so the worker would run with no system call filter"},
		{"report file in a missing dir", []string{"run", "--profile", "xsnap", "--report-file", filepath.Join(dir, "no/such/dir/r.json"), "--", worker}, exitUsage, "--report-file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(bin, c.args...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != c.code {
				t.Fatalf("exit %v, want code %d (stderr: %s)", err, c.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.msg) {
				t.Fatalf("stderr %q does not say %q", stderr.String(), c.msg)
			}
			if kids := proctree.Children(os.Getpid()); len(kids) != 0 {
				t.Fatalf("processes left behind: %v", kids)
			}
		})
	}
}

func TestRunReportIsOneJSONObject(t *testing.T) {
	h := newHarness(t, []string{"--profile", "xsnap"})
	h.cmdW.Close()
	rep, _ := readAll(h.reportR)
	h.cmd.Wait()
	dec := json.NewDecoder(strings.NewReader(string(rep)))
	var first map[string]any
	if err := dec.Decode(&first); err != nil {
		t.Fatalf("report %q: %v", rep, err)
	}
	if dec.More() {
		t.Fatalf("more than one JSON value on the report fd: %q", rep)
	}
	for _, k := range []string{"cause", "class", "exitCode", "coreDumped", "cpuSeconds", "profileDigest", "wallTime", "killedBy", "cgroupEvidence"} {
		if _, ok := first[k]; !ok {
			t.Errorf("report lacks %q: %s", k, rep)
		}
	}
}
