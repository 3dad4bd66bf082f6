package main

// Drop-in tests (issue 12): what a kernel that spawns `vatrun run` instead of the worker sees must
// be what it would see without vatrun: its fds at their numbers, the same wait status, the same
// errors on its pipes, and a report whose cause depends only on the worker's own death.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/internal/launchtest"
	"github.com/vatrun/vatrun/internal/proctree"
	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/report"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// socketPair is one of the kernel's pipes as Node.js (libuv) makes them: a unix stream
// socketpair. kernel is the kernel's end, worker the end handed to the worker.
func socketPair(t *testing.T) (kernel, worker *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The kernel's end is non-blocking (as libuv's is), so reads honour deadlines; the worker's
	// end is blocking, as xsnap gets it.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		t.Fatal(err)
	}
	kernel, worker = os.NewFile(uintptr(fds[0]), "kernel-end"), os.NewFile(uintptr(fds[1]), "worker-end")
	t.Cleanup(func() { kernel.Close(); worker.Close() })
	return kernel, worker
}

// xsnapRun starts `vatrun run` the way xsnap 0.15 spawns its worker: socketpairs on fds 3, 4, 7
// and 8, fds 5 and 6 closed, and the report on fd 9.
type xsnapRun struct {
	cmd                               *exec.Cmd
	cmds, replies, snapSave, snapLoad *os.File // the kernel's ends
	reportR                           *os.File
	replyIno                          uint64 // inode of the worker's end of fd 4
	stderr                            strings.Builder
}

func startXsnapLike(t *testing.T, profile string, workerArgs ...string) *xsnapRun {
	t.Helper()
	bin, worker := testbin.Vatrun(t), testbin.Worker(t)
	x := &xsnapRun{}
	var w3, w4, w7, w8 *os.File
	x.cmds, w3 = socketPair(t)
	x.replies, w4 = socketPair(t)
	var st unix.Stat_t
	if err := unix.Fstat(int(w4.Fd()), &st); err == nil {
		x.replyIno = st.Ino
	}
	x.snapSave, w7 = socketPair(t)
	x.snapLoad, w8 = socketPair(t)
	reportR, reportW := pipe(t)
	x.reportR = reportR
	args := append([]string{"run", "--profile", profile, "--no-cgroup", "--report-fd", "9", "--", worker}, workerArgs...)
	x.cmd = exec.Command(bin, args...)
	x.cmd.ExtraFiles = []*os.File{w3, w4, nil, nil, w7, w8, reportW}
	x.cmd.Stderr = &x.stderr
	if err := x.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*os.File{w3, w4, w7, w8, reportW} {
		f.Close()
	}
	t.Cleanup(func() {
		if x.cmd.ProcessState == nil {
			x.cmd.Process.Kill()
			x.cmd.Wait()
		}
	})
	return x
}

func (x *xsnapRun) send(t *testing.T, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		if _, err := fmt.Fprintf(x.cmds, "%d:%s,", len(c), c); err != nil {
			t.Fatalf("send %q: %v", c, err)
		}
	}
}

func (x *xsnapRun) await(t *testing.T) runResult {
	t.Helper()
	rep, _ := readAll(x.reportR)
	res := runResult{}
	var err error
	res.code, res.signaled, err = testbin.ExitOf(x.cmd.Wait())
	if err != nil {
		t.Fatal(err)
	}
	res.stderr = x.stderr.String()
	if len(rep) > 0 {
		r, err := report.Decode(rep)
		if err != nil {
			t.Fatalf("report on fd 9 does not decode: %v\n%s", err, rep)
		}
		res.report = &r
	}
	return res
}

// workerPid finds the worker: the only child of vatrun's only child (the init stage).
func workerPid(t *testing.T, vatrun int) (initPid, worker int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if in := proctree.Children(vatrun); len(in) == 1 {
			if w := proctree.Children(in[0]); len(w) == 1 {
				return in[0], w[0]
			}
		}
	}
	t.Fatalf("no worker under vatrun %d", vatrun)
	return 0, 0
}

func TestDropInFdsAtTheirNumbers(t *testing.T) {
	for _, c := range []struct{ profile, want string }{
		{"xsnap", "fds:0,1,2,3,4,7,8"}, // the profile's fds: 3, 4, 7, 8; 5, 6 left closed
		{"solo", "fds:0,1,2,3,4,7,8"},
		{"two-fds", "fds:0,1,2,3,4"}, // default fds [3, 4]: 7 and 8 are not the worker's
	} {
		t.Run(c.profile, func(t *testing.T) {
			profile := c.profile
			if profile == "two-fds" {
				profile = filepath.Join(t.TempDir(), "two-fds.json")
				os.WriteFile(profile, []byte(`{"seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}`), 0o600)
			}
			x := startXsnapLike(t, profile)
			x.send(t, "probe:fds")
			if got := (&harness{t: t, replyR: x.replies}).reply(bufio.NewReader(x.replies)); got != c.want {
				t.Errorf("the worker's open fds: %q, want %q (the report fd 9 must not reach it)", got, c.want)
			}
			x.cmds.Close()
			if res := x.await(t); res.code != 0 || res.report == nil || res.report.Cause != report.CauseExited {
				t.Errorf("exit %d, report %v, stderr %s", res.code, res.report, res.stderr)
			}
		})
	}
}

func TestDropInSnapshotPipes(t *testing.T) {
	// The snapshot fds carry data both ways like the command pipes: the worker writes "snapshot
	// data" to fd 7 in xsnap; here the test worker's `probe:fds` proves they are open, and a
	// closed fd 8 (no snapshot to load) stays closed.
	bin, worker := testbin.Vatrun(t), testbin.Worker(t)
	pipes := testbin.WorkerPipes(t)
	cmdW, replyR := pipes.Commands, pipes.Results
	_, save := pipe(t)
	cmd := exec.Command(bin, "run", "--profile", "xsnap", "--no-cgroup", "--", worker)
	cmd.ExtraFiles = append(pipes.WorkerFiles(), nil, nil, save) // fd 7 open, fd 8 closed
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pipes.CloseWorkerEnds()
	fmt.Fprintf(cmdW, "9:probe:fds,")
	cmdW.Close()
	out, _ := readAll(replyR)
	cmd.Wait()
	if string(out) != "15:fds:0,1,2,3,4,7," {
		t.Errorf("reply %q, want fds 0-4 and 7 (fd 8 was closed in the parent and must stay closed)", out)
	}
}

func TestDropInReportFdCollision(t *testing.T) {
	bin, worker := testbin.Vatrun(t), testbin.Worker(t)
	_, w := pipe(t)
	cmd := exec.Command(bin, "run", "--profile", "xsnap", "--no-cgroup", "--report-fd", "7", "--", worker)
	cmd.ExtraFiles = []*os.File{nil, nil, nil, nil, w}
	out, err := cmd.CombinedOutput()
	code, _, _ := testbin.ExitOf(err)
	if code != exitUsage || !strings.Contains(string(out), "--report-fd 7: the profile passes fd 7 to the worker") {
		t.Errorf("exit %d, output %q; want 125 naming the collision", code, out)
	}
}

func TestDropInWaitStatusMirrored(t *testing.T) {
	for _, c := range []struct {
		cmd   string
		sig   syscall.Signal
		cause report.Cause
	}{
		{"abort", syscall.SIGABRT, report.CauseAbort},
		{"recurse", syscall.SIGSEGV, report.CauseSegv},
	} {
		t.Run(c.cmd, func(t *testing.T) {
			h := newHarness(t, []string{"--profile", "xsnap", "--no-cgroup"})
			h.send(c.cmd)
			res := h.await()
			if !res.signaled || res.code != 128+int(c.sig) {
				t.Errorf("vatrun ended with code %d (by signal: %v), want death by %s like the worker", res.code, res.signaled, unix.SignalName(c.sig))
			}
			if res.report == nil || res.report.Cause != c.cause || res.report.CoreDumped {
				t.Errorf("report %+v", res.report)
			}
		})
	}
	t.Run("exit code", func(t *testing.T) {
		h := newHarness(t, []string{"--profile", "xsnap", "--no-cgroup"})
		h.send("exit:17")
		if res := h.await(); res.signaled || res.code != 17 {
			t.Errorf("code %d signaled %v, want exit 17", res.code, res.signaled)
		}
	})
	t.Run("no core file of vatrun", func(t *testing.T) {
		// vatrun dies by SIGABRT with core dumps off: the core bit of its status is clear even
		// where the caller allows cores.
		h := newHarness(t, []string{"--profile", "xsnap", "--no-cgroup"})
		h.send("abort")
		h.cmdW.Close()
		readAll(h.reportR)
		err := h.cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("wait: %v", err)
		}
		if ws := ee.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.CoreDump() {
			t.Errorf("wait status %#x: want death by SIGABRT without a core", uint32(ws))
		}
	})
}

// TestDropInPipeErrors: when the worker dies, a write to fd 3 fails with EPIPE and fd 4 reads EOF
// at once, as without vatrun, even while the init stage has not reaped it yet. Before the fix
// the init stage held its own copies of the worker's fds: a write then succeeded and the kernel
// later got ECONNRESET, which SwingSet records in consensus state.
func TestDropInPipeErrors(t *testing.T) {
	x := startXsnapLike(t, "xsnap", "--ready")
	if got := (&harness{t: t}).reply(bufio.NewReader(x.replies)); got != "ready" {
		t.Fatalf("first reply %q", got)
	}
	initPid, worker := workerPid(t, x.cmd.Process.Pid)
	// Once the worker has exec'd, only it may hold its ends of the kernel's pipes: the init stage
	// and vatrun drop their copies right after the exec (microseconds later).
	onlyWorker := fmt.Sprintf("%d ", worker)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		h := socketHolders(x.replyIno)
		if len(h) == 1 && strings.HasPrefix(h[0], onlyWorker) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 s after the worker started, its end of fd 4 is held by %v, want the worker (%d) alone", h, worker)
		}
	}
	if err := unix.Kill(initPid, unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer unix.Kill(initPid, unix.SIGCONT)
	unix.Kill(worker, unix.SIGKILL)
	// The worker is a zombie now (its parent is stopped and cannot reap it): its fds are closed.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", worker)); strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the worker did not become a zombie")
		}
	}
	x.replies.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := x.replies.Read(make([]byte, 16)); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("fd 4 read: %d bytes, %v; want EOF while the worker is dead and the init stage not yet done (holders of the worker's end: %v)", n, err, socketHolders(x.replyIno))
	}
	_, err := x.cmds.Write([]byte("4:ping,"))
	if !errors.Is(err, syscall.EPIPE) {
		t.Errorf("write to fd 3 after the worker died: %v, want EPIPE (as with plain spawn)", err)
	}
	unix.Kill(initPid, unix.SIGCONT)
	res := x.await(t)
	if res.report == nil || res.report.Cause != report.CauseKilled || !res.signaled || res.code != 137 {
		t.Errorf("code %d signaled %v report %v", res.code, res.signaled, res.report)
	}
	// Nothing was queued to the dead worker: the kernel's socket has no pending error.
	if v, err := unix.GetsockoptInt(int(x.cmds.Fd()), unix.SOL_SOCKET, unix.SO_ERROR); err != nil || v == int(syscall.ECONNRESET) {
		t.Errorf("fd 3 SO_ERROR %v (%v): want no ECONNRESET", v, err)
	}
}

// TestDropInLateStopNeverStopped: xsnap's library sends SIGTERM to its child (vatrun) the moment
// it reads EOF on fd 4. The worker has then already died of its own cause, which the report must
// keep: a metering fault must not become "stopped" on some validators only.
func TestDropInLateStopNeverStopped(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 100
	}
	for _, c := range []struct {
		name  string
		act   func(x *xsnapRun, worker int)
		cause report.Cause
	}{
		{"exit 17", func(x *xsnapRun, _ int) { fmt.Fprintf(x.cmds, "7:exit:17,") }, report.CauseMeteringFault},
		{"SIGKILL", func(_ *xsnapRun, worker int) { unix.Kill(worker, unix.SIGKILL) }, report.CauseKilled},
	} {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			counts := map[report.Cause]int{}
			launchtest.Sweep(n, 2, func(int) {
				cause := lateStopOnce(t, c.act)
				mu.Lock()
				counts[cause]++
				mu.Unlock()
			})
			t.Logf("%d deaths with SIGTERM to vatrun at EOF on fd 4: %v", n, counts)
			if counts[c.cause] != n {
				t.Errorf("causes %v, want %s every time (zero stopped)", counts, c.cause)
			}
		})
	}
}

func lateStopOnce(t *testing.T, act func(x *xsnapRun, worker int)) report.Cause {
	x := startXsnapLike(t, "xsnap", "--ready")
	r := bufio.NewReader(x.replies)
	if got := (&harness{t: t}).reply(r); got != "ready" {
		t.Errorf("first reply %q", got)
		return ""
	}
	_, worker := workerPid(t, x.cmd.Process.Pid)
	act(x, worker)
	if _, err := r.ReadByte(); err == nil {
		t.Errorf("fd 4 gave data, want EOF")
	}
	x.cmd.Process.Signal(syscall.SIGTERM) // what xsnap's runToIdle does on EOF
	res := x.await(t)
	x.cmds.Close()
	x.replies.Close()
	if res.report == nil {
		t.Errorf("no report (exit %d, stderr %s)", res.code, res.stderr)
		return ""
	}
	return res.report.Cause
}

// TestDropInLongLivedWorkerSurvives: a worker that lives across many deliveries may use more CPU
// in total than any lifetime limit a built-in profile could set; it must not be killed for it.
func TestDropInLongLivedWorkerSurvives(t *testing.T) {
	const deliveries, ms = 30, 50 // 1.5 s of CPU in 50 ms deliveries
	for _, name := range seccompprofiles.BuiltinNames() {
		p, _ := seccompprofiles.Builtin(name)
		if p.Consensus {
			continue // refuses --no-cgroup; the VM runs it
		}
		if p.Limits.CPUSeconds != 0 && p.Limits.CPUSeconds*1000 >= deliveries*ms {
			t.Fatalf("%s: cpuSeconds %d is above what this test burns; burn more", name, p.Limits.CPUSeconds)
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, []string{"--profile", name, "--no-cgroup"})
			r := bufio.NewReader(h.replyR)
			for i := range deliveries {
				h.send(fmt.Sprintf("spin:%d", ms))
				if got := h.reply(r); got != "spun" {
					t.Fatalf("delivery %d: reply %q", i, got)
				}
			}
			res := h.finish()
			if res.code != 0 || res.report == nil || res.report.Cause != report.CauseExited {
				t.Fatalf("exit %d report %v", res.code, res.report)
			}
			if res.report.CPUSeconds < 1.2 {
				t.Errorf("cpuSeconds %.2f: the worker did not burn the CPU this test is about", res.report.CPUSeconds)
			}
		})
	}
}

func TestDropInQuietByDefault(t *testing.T) {
	x := startXsnapLike(t, "xsnap") // no --log-level: the default
	x.send(t, "ping")
	x.cmds.Close()
	res := x.await(t)
	if res.code != 0 || res.stderr != "" {
		t.Errorf("exit %d, stderr %q: a normal launch and death must print nothing", res.code, res.stderr)
	}
}

func TestDropInLogFile(t *testing.T) {
	logPath := t.TempDir() + "/vatrun.log"
	h := newHarness(t, []string{"--profile", "xsnap", "--no-cgroup", "--log-level", "info", "--log-file", logPath})
	h.send("ping")
	res := h.finish()
	data, _ := os.ReadFile(logPath)
	if res.stderr != "" || !strings.Contains(string(data), "worker launched") || !strings.Contains(string(data), "worker died") {
		t.Errorf("stderr %q, log file %q: want the two info lines in the file only", res.stderr, data)
	}
}

// TestRunNoCapabilitiesNoTerminal: capabilities given to vatrun's caller through the inheritable
// and ambient sets (systemd AmbientCapabilities=, setpriv --inh-caps) never reach the worker, and
// the worker runs in a session of its own (no controlling terminal to push input into).
func TestRunNoCapabilitiesNoTerminal(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and setpriv (util-linux) to hand vatrun inheritable and ambient capabilities")
	}
	bin, worker := testbin.Vatrun(t), testbin.Worker(t)
	for _, profile := range []string{"xsnap", "dev"} {
		t.Run(profile, func(t *testing.T) {
			pipes := testbin.WorkerPipes(t)
			cmdW, replyR := pipes.Commands, pipes.Results
			cmd := exec.Command(setpriv, "--inh-caps", "+net_admin,+sys_admin,+sys_ptrace", "--ambient-caps", "+net_admin,+sys_admin,+sys_ptrace",
				bin, "run", "--profile", profile, "--no-cgroup", "--", worker)
			cmd.ExtraFiles = pipes.WorkerFiles()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pipes.CloseWorkerEnds()
			probes := []string{"probe:capinh", "probe:capamb", "probe:caps"}
			want := []string{"capinh:0000000000000000", "capamb:0000000000000000", "capeff:0000000000000000"}
			if profile == "dev" { // getsid is outside the xsnap allowlist
				probes = append(probes, "probe:session")
				want = append(want, "sid:2 pid:2")
			}
			for _, p := range probes {
				fmt.Fprintf(cmdW, "%d:%s,", len(p), p)
			}
			cmdW.Close()
			r := bufio.NewReader(replyR)
			for i := range probes {
				if got := (&harness{t: t}).reply(r); got != want[i] {
					t.Errorf("%s: %q, want %q", probes[i], got, want[i])
				}
			}
			cmd.Wait()
		})
	}
}

// TestRunWorkerCannotChooseItsClassification: a worker that tries to make its own death look
// external (SIGKILL or SIGTERM to itself, SIGTERM to the init stage for it to relay) or like a CPU
// limit (SIGXCPU to itself, lowering its own RLIMIT_CPU) is refused by the built-in allowlists
// (EPERM, and it goes on: the next command is answered), and the init stage relays no signal
// whose sender is inside the sandbox, even where the profile allows kill (dev).
func TestRunWorkerCannotChooseItsClassification(t *testing.T) {
	refused := []string{"selfkill:9", "selfkill:15", "tgkill:9", "tgkill:24", "killinit:15", "setrlimit-cpu:0"}
	for _, profile := range []string{"xsnap", "solo"} {
		for _, c := range refused {
			t.Run(profile+"/"+c, func(t *testing.T) {
				h := newHarness(t, []string{"--profile", profile, "--no-cgroup"})
				h.send(c, "ping")
				r := bufio.NewReader(h.replyR)
				if got := h.reply(r); got != "errno:1" {
					t.Errorf("%s: %q, want errno:1 (EPERM)", c, got)
				}
				if got := h.reply(r); got != "pong" {
					t.Errorf("after %s: %q, want pong (the worker lives on)", c, got)
				}
				wantDeath(t, h.finish(), 0, report.CauseExited, report.ClassClean)
			})
		}
	}
	t.Run("dev/killinit:15 is not relayed", func(t *testing.T) {
		h := newHarness(t, []string{"--profile", "dev", "--no-cgroup"})
		h.send("killinit:15", "ping")
		r := bufio.NewReader(h.replyR)
		// A root vatrun's worker is not the init stage's uid (docs/worker-identity.md): the kernel
		// refuses it first. Unprivileged, the two share a uid and the stage's own check holds.
		if got := h.reply(r); got != "ok" && (got != "errno:1" || os.Geteuid() != 0) {
			t.Fatalf("kill(1, SIGTERM) under dev: %q, want ok (allowed by dev), or errno:1 from a root vatrun's worker", got)
		}
		if got := h.reply(r); got != "pong" {
			t.Errorf("after kill(1, SIGTERM): %q, want pong: the init stage must not relay a signal from inside", got)
		}
		wantDeath(t, h.finish(), 0, report.CauseExited, report.ClassClean)
	})
	// Where the profile lets the worker signal itself (dev), a death it could have dealt itself is
	// not taken as external (which a solo kernel restarts, and halts on after a budget): unknown.
	for _, c := range []struct {
		cmd string
		sig syscall.Signal
	}{{"selfkill:9", syscall.SIGKILL}, {"selfkill:15", syscall.SIGTERM}} {
		t.Run("dev/"+c.cmd+" is not external", func(t *testing.T) {
			h := newHarness(t, []string{"--profile", "dev", "--no-cgroup"})
			h.send(c.cmd)
			res := h.await()
			wantDeath(t, res, 128+int(c.sig), report.CauseSignal, report.ClassUnknown)
			if res.report != nil && !strings.Contains(res.report.SignalSource, "the worker itself") {
				t.Errorf("signalSource %q, want it to say the worker itself may have sent it", res.report.SignalSource)
			}
		})
	}
	t.Run("xsnap/abort still works", func(t *testing.T) {
		h := newHarness(t, []string{"--profile", "xsnap", "--no-cgroup"})
		h.send("abort")
		wantDeath(t, h.await(), 128+int(syscall.SIGABRT), report.CauseAbort, report.ClassResourceExhaustion)
	})
}

// socketHolders lists "pid comm fd" for every process with an fd on the socket inode ino.
func socketHolders(ino uint64) []string {
	var out []string
	want := fmt.Sprintf("socket:[%d]", ino)
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		fds, _ := os.ReadDir("/proc/" + p.Name() + "/fd")
		for _, fd := range fds {
			if l, _ := os.Readlink("/proc/" + p.Name() + "/fd/" + fd.Name()); l == want {
				comm, _ := os.ReadFile("/proc/" + p.Name() + "/comm")
				out = append(out, p.Name()+" "+strings.TrimSpace(string(comm))+" fd "+fd.Name())
			}
		}
	}
	return out
}
