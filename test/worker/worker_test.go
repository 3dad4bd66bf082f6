package worker_test

import (
	"bufio"
	"errors"
	"fmt"
	"github.com/vatrun/vatrun/launcher/workerio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The worker is built once per test binary, into a temporary directory removed by TestMain.
var (
	buildOnce sync.Once
	buildDir  string
	workerBin string
	buildErr  error
	skipMsg   string
)

func TestMain(m *testing.M) {
	// No core dumps from crashing workers (children inherit this), so abort/SIGSEGV never wait on a
	// core_pattern handler.
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		fmt.Fprintln(os.Stderr, "setrlimit core:", err)
		os.Exit(1)
	}
	// Whatever started `go test` may have leaked fds into us without FD_CLOEXEC; os/exec would pass
	// them on to the worker and spoil probe:fds.
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		for _, e := range ents {
			if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
				syscall.CloseOnExec(fd)
			}
		}
	}
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// workerPath builds test/worker/worker.c with the same flags as the top-level Makefile, plus -Werror
// so a new warning fails the test. It skips the test when gcc is missing.
func workerPath(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		gcc, err := exec.LookPath("gcc")
		if err != nil {
			skipMsg = "gcc not found in PATH: the C test worker cannot be built (apt-get install gcc libc6-dev)"
			return
		}
		buildDir, buildErr = os.MkdirTemp("", "vatrun-testworker-")
		if buildErr != nil {
			return
		}
		workerBin = filepath.Join(buildDir, "vatrun-testworker")
		out, err := exec.Command(gcc, "-O2", "-Wall", "-Wextra", "-Werror", "-static",
			"-o", workerBin, "worker.c").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("gcc: %v\n%s", err, out)
		}
	})
	if skipMsg != "" {
		t.Skip(skipMsg)
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return workerBin
}

// worker is one running test worker with its command (fd 3) and reply (fd 4) pipes.
type worker struct {
	t      *testing.T
	cmd    *exec.Cmd
	toW    *os.File // our end of the worker's fd 3
	fromW  *os.File // our end of the worker's fd 4
	reader *bufio.Reader
	errf   *os.File // the worker's stderr (a file, so it is written directly, with no copier)
}

// stderr returns what the worker wrote to fd 2 so far.
func (w *worker) stderr() string {
	b, err := os.ReadFile(w.errf.Name())
	if err != nil {
		w.t.Fatal(err)
	}
	return string(b)
}

func start(t *testing.T, args ...string) *worker {
	t.Helper()
	bin := workerPath(t)
	p, err := workerio.New()
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{t: t, toW: p.Commands, fromW: p.Results, reader: bufio.NewReader(p.Results)}
	w.cmd = exec.Command(bin, args...)
	w.cmd.ExtraFiles = p.WorkerFiles() // fd 3, fd 4
	w.errf, err = os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	w.cmd.Stderr = w.errf
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.CloseWorkerEnds()
	t.Cleanup(func() {
		w.toW.Close()
		w.fromW.Close()
		w.errf.Close()
		if w.cmd.ProcessState == nil {
			w.cmd.Process.Kill()
			w.cmd.Wait()
		}
	})
	return w
}

func (w *worker) sendRaw(s string) {
	w.t.Helper()
	if _, err := io.WriteString(w.toW, s); err != nil {
		w.t.Fatalf("writing to the worker: %v", err)
	}
}

func (w *worker) send(cmd string) {
	w.t.Helper()
	w.sendRaw(fmt.Sprintf("%d:%s,", len(cmd), cmd))
}

// recv reads one netstring reply, failing the test after 3 s.
func (w *worker) recv() string {
	w.t.Helper()
	w.fromW.SetReadDeadline(time.Now().Add(3 * time.Second))
	lenStr, err := w.reader.ReadString(':')
	if err != nil {
		w.t.Fatalf("reading a reply length: %v (stderr %q)", err, w.stderr())
	}
	n, err := strconv.Atoi(strings.TrimSuffix(lenStr, ":"))
	if err != nil {
		w.t.Fatalf("bad reply length %q", lenStr)
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(w.reader, buf); err != nil {
		w.t.Fatalf("reading a reply: %v", err)
	}
	if buf[n] != ',' {
		w.t.Fatalf("reply %q does not end with ','", buf)
	}
	return string(buf[:n])
}

func (w *worker) call(cmd string) string {
	w.t.Helper()
	w.send(cmd)
	return w.recv()
}

func (w *worker) expect(cmd, want string) {
	w.t.Helper()
	if got := w.call(cmd); got != want {
		w.t.Errorf("%s: got %q, want %q", cmd, got, want)
	}
}

// wait waits (at most 3 s) for the worker to die and returns its wait status.
func (w *worker) wait() syscall.WaitStatus {
	w.t.Helper()
	done := make(chan error, 1)
	go func() { done <- w.cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			w.t.Fatalf("wait: %v", err)
		}
	case <-time.After(3 * time.Second):
		w.cmd.Process.Kill()
		<-done
		w.t.Fatalf("the worker did not die within 3 s")
	}
	return w.cmd.ProcessState.Sys().(syscall.WaitStatus)
}

func (w *worker) wantExit(code int) {
	w.t.Helper()
	ws := w.wait()
	if !ws.Exited() || ws.ExitStatus() != code {
		w.t.Errorf("wait status %v, want exit %d (stderr %q)", describe(ws), code, w.stderr())
	}
}

func (w *worker) wantSignal(sig syscall.Signal) {
	w.t.Helper()
	ws := w.wait()
	if !ws.Signaled() || ws.Signal() != sig {
		w.t.Errorf("wait status %v, want death by %v (stderr %q)", describe(ws), sig, w.stderr())
	}
}

func describe(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "signal " + unix.SignalName(ws.Signal())
	}
	return fmt.Sprintf("exit %d", ws.ExitStatus())
}

func TestPingEcho(t *testing.T) {
	w := start(t)
	w.expect("ping", "pong")
	w.expect("echo:hello", "hello")
	w.expect("echo:a:b,c", "a:b,c")
	w.expect("echo:", "")
	big := strings.Repeat("x", 200000)
	w.expect("echo:"+big, big)
	w.toW.Close()
	w.wantExit(0)
}

func TestAddGet(t *testing.T) {
	w := start(t)
	w.expect("get", "sum:0")
	w.expect("add:5", "sum:5")
	w.expect("add:-12", "sum:-7")
	w.expect("add:9223372036854775807", "sum:9223372036854775800")
	w.expect("get", "sum:9223372036854775800")
	w.expect("add:x", "error:bad argument")
	w.expect("get", "sum:9223372036854775800")
}

func TestUnknownCommand(t *testing.T) {
	w := start(t)
	for _, c := range []string{"bogus", "pingx", "ping:1", "probe:nope", ""} {
		w.expect(c, "error:unknown command")
	}
	w.expect("ping", "pong") // still alive
}

func TestExitCode(t *testing.T) {
	for _, code := range []int{0, 1, 11, 17, 255} {
		w := start(t)
		w.expect("ping", "pong")
		w.send("exit:" + strconv.Itoa(code))
		w.wantExit(code)
	}
}

func TestAbort(t *testing.T) {
	w := start(t)
	w.send("abort")
	w.wantSignal(syscall.SIGABRT)
}

func TestRecurseUnderStackLimit(t *testing.T) {
	w := start(t)
	// Only once the worker answers is its exec finished: execve rewrites RLIMIT_STACK from a copy
	// taken when it began, so a prlimit racing with the exec can be lost.
	w.expect("ping", "pong")
	lim := unix.Rlimit{Cur: 1 << 20, Max: 1 << 20}
	if err := unix.Prlimit(w.cmd.Process.Pid, unix.RLIMIT_STACK, &lim, nil); err != nil {
		t.Fatalf("prlimit stack: %v", err)
	}
	w.expect("probe:rlimit:stack", "cur:1048576 max:1048576")
	w.send("recurse")
	w.wantSignal(syscall.SIGSEGV)
}

func TestSpin(t *testing.T) {
	w := start(t)
	t0 := time.Now()
	w.expect("spin:50", "spun")
	if d := time.Since(t0); d < 50*time.Millisecond {
		t.Errorf("spin:50 took %v, want at least 50 ms", d)
	}
	var ru syscall.Rusage
	w.toW.Close()
	w.wantExit(0)
	ru = *w.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(syscall.TimevalToNsec(ru.Utime) + syscall.TimevalToNsec(ru.Stime))
	if cpu < 45*time.Millisecond {
		t.Errorf("worker used %v of CPU, want about 50 ms", cpu)
	}
}

func TestSleepAndAlloc(t *testing.T) {
	w := start(t)
	w.expect("sleep:10", "slept")
	w.expect("alloc:8388608", "allocated:8388608")
	w.expect("alloc:0", "error:bad argument")
}

func TestMalformed(t *testing.T) {
	for name, raw := range map[string]string{
		"non-digit":     "x:ping,",
		"too long":      "1048577:",
		"missing comma": "4:ping;",
		"empty length":  ":ping,",
	} {
		t.Run(name, func(t *testing.T) {
			w := start(t)
			w.sendRaw(raw)
			w.wantExit(2)
			if !strings.Contains(w.stderr(), "malformed netstring") {
				t.Errorf("stderr %q does not explain the error", w.stderr())
			}
		})
	}
}

func TestTruncatedIsMalformed(t *testing.T) {
	w := start(t)
	w.sendRaw("10:abc")
	w.toW.Close()
	w.wantExit(2)
}

func TestEOF(t *testing.T) {
	w := start(t)
	w.toW.Close()
	w.wantExit(0)
}

func TestFds(t *testing.T) {
	w := start(t)
	w.expect("probe:fds", "fds:0,1,2,3,4")
}

func TestProbes(t *testing.T) {
	w := start(t)
	w.expect("ping", "pong") // exec done; see TestRecurseUnderStackLimit
	w.expect("probe:pid", fmt.Sprintf("pid:%d", w.cmd.Process.Pid))
	w.expect("probe:ppid", fmt.Sprintf("ppid:%d", os.Getpid()))
	w.expect("probe:uid", fmt.Sprintf("uid:%d euid:%d", os.Getuid(), os.Geteuid()))
	host, _ := os.Hostname()
	w.expect("probe:hostname", "hostname:"+host)
	if got := w.call("probe:procs"); !strings.HasPrefix(got, "procs:") || got == "procs:0" {
		t.Errorf("probe:procs = %q", got)
	}
	if got := w.call("probe:caps"); !strings.HasPrefix(got, "capeff:") {
		t.Errorf("probe:caps = %q", got)
	}
	if got := w.call("probe:seccomp"); !strings.HasPrefix(got, "seccomp:") {
		t.Errorf("probe:seccomp = %q", got)
	}
	if got := w.call("probe:nnp"); got != "nnp:0" && got != "nnp:1" {
		t.Errorf("probe:nnp = %q", got)
	}
	if err := unix.Prlimit(w.cmd.Process.Pid, unix.RLIMIT_CPU, &unix.Rlimit{Cur: 5, Max: 6}, nil); err != nil {
		t.Fatal(err)
	}
	w.expect("probe:rlimit:cpu", "cur:5 max:6")
	w.expect("probe:rlimit:bogus", "error:unknown rlimit")
	// An unprivileged worker cannot raise a hard limit; root can.
	if os.Geteuid() != 0 {
		w.expect("probe:rlimit-raise", fmt.Sprintf("errno:%d", int(unix.EPERM)))
	}
	dir := t.TempDir()
	w.expect("probe:write:"+filepath.Join(dir, "f"), "ok")
	if _, err := os.Stat(filepath.Join(dir, "f")); !os.IsNotExist(err) {
		t.Errorf("probe:write left its file behind (%v)", err)
	}
	w.expect("probe:write:/nonexistent-dir/f", fmt.Sprintf("errno:%d", int(unix.ENOENT)))
	w.expect("syscall:fork", "ok")
	w.expect("syscall:bogus", "error:unknown syscall")
	w.expect("stderr:to-stderr", "written")
	if !strings.Contains(w.stderr(), "to-stderr\n") {
		t.Errorf("stderr %q lacks the written text", w.stderr())
	}
}

func TestStartupFlags(t *testing.T) {
	w := start(t, "--ready")
	if got := w.recv(); got != "ready" {
		t.Errorf("--ready: first reply %q", got)
	}
	w.expect("ping", "pong")

	w = start(t, "--exit-at-start", "7")
	w.wantExit(7)

	w = start(t, "--sleep-at-start", "20", "--abort-at-start")
	w.wantSignal(syscall.SIGABRT)

	w = start(t, "--bogus")
	w.wantExit(2)
}

func TestMissingFds(t *testing.T) {
	cmd := exec.Command(workerPath(t))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("without fd 3: %v, want exit 2", err)
	}
	if !strings.Contains(string(out), "fd 3") {
		t.Errorf("message %q does not name fd 3", out)
	}
}

func TestForkbombCapped(t *testing.T) {
	w := start(t)
	w.expect("forkbomb:3", "forks:3 errno:0")
	w.expect("ping", "pong")
}
