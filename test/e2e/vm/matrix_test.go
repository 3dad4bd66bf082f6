package vm

// The death matrix: every way a worker can die, each launched as a kernel would launch it — the
// real C test worker through the real `vatrun run`, fds 3/4 as the command and reply pipes, the
// report on fd 5 — on a real cgroup v2 kernel, as root and as uid 1000 in a delegated subtree.
// After every case: the worker and the init stage are gone, vatrun held no copy of fds 3/4 past
// the launch (the reply pipe reads EOF as soon as the worker is gone), and no cgroup leaf is left.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/vatrun/vatrun/launcher/workerio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vatrun/vatrun/internal/netstring"
	"github.com/vatrun/vatrun/internal/proctree"
	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/report"
)

// matrixProfile writes a profile for the matrix: the full sandbox (pid, net, ipc, uts, mount
// namespaces), the xsnap exit codes, a permissive filter that kills on ptrace/mount/bpf, and the
// given limits (merged over a 256M/64-pid base).
func matrixProfile(t *testing.T, name string, limits map[string]any) string {
	t.Helper()
	lim := map[string]any{"memory": "256M", "pids": 64, "stack": "1M", "nofile": 64}
	for k, v := range limits {
		lim[k] = v
	}
	p := map[string]any{
		"name":       name,
		"limits":     lim,
		"namespaces": map[string]any{"pid": true, "net": true, "ipc": true, "uts": true, "mount": true, "user": "auto"},
		"seccomp": map[string]any{
			"defaultAction": "SCMP_ACT_ALLOW",
			"syscalls": []any{map[string]any{
				"names":  []string{"ptrace", "mount", "umount2", "bpf", "kexec_load", "init_module", "finit_module", "unshare", "setns"},
				"action": "SCMP_ACT_KILL_PROCESS",
			}},
		},
		"exitCodes": map[string]any{
			"11": map[string]any{"meaning": "not enough memory (XS allocation meter)", "meteringFault": true},
			"12": map[string]any{"meaning": "stack overflow (XS stack meter)", "meteringFault": true},
			"15": map[string]any{"meaning": "unhandled exception"},
			"17": map[string]any{"meaning": "too much computation (computron meter)", "meteringFault": true},
		},
	}
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name+".json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// vatrunRun is one `vatrun run` with the kernel's pipes.
type vatrunRun struct {
	t       *testing.T
	cmd     *exec.Cmd
	cmdW    *os.File
	replyR  *os.File
	replies *netstring.Reader
	reportR *os.File
	errFile string // vatrun's stderr (and the worker's, outside consensus)
	init    int
	worker  int
}

// startVatrun starts `vatrun run --profile P --report-fd 5 RUNARGS -- worker --ready` and waits
// for the worker's "ready": it is then alive, idle and its pids are known.
func startVatrun(t *testing.T, profile string, runArgs ...string) *vatrunRun {
	t.Helper()
	v := launchVatrun(t, profile, nil, runArgs...)
	if got := v.reply(); got != "ready" {
		t.Fatalf("first reply %q, want ready (stderr: %s)", got, v.stderr())
	}
	inits := proctree.Children(v.cmd.Process.Pid)
	if len(inits) != 1 {
		t.Fatalf("vatrun has children %v, want exactly the init stage", inits)
	}
	v.init = inits[0]
	workers := proctree.Children(v.init)
	if len(workers) != 1 {
		t.Fatalf("init stage has children %v, want exactly the worker", workers)
	}
	v.worker = workers[0]
	return v
}

func (v *vatrunRun) stderr() string {
	b, _ := os.ReadFile(v.errFile)
	return string(b)
}

// waitStderr waits until vatrun's stderr contains s.
func (v *vatrunRun) waitStderr(s string, within time.Duration) {
	v.t.Helper()
	for deadline := time.Now().Add(within); !strings.Contains(v.stderr(), s); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			v.t.Fatalf("vatrun's stderr does not say %q after %v: %s", s, within, v.stderr())
		}
	}
}

// launchVatrun starts `vatrun run` with extra environment env and returns at once.
func launchVatrun(t *testing.T, profile string, env []string, runArgs ...string) *vatrunRun {
	t.Helper()
	pipes, err := workerio.New()
	if err != nil {
		t.Fatal(err)
	}
	cmdW, replyR := pipes.Commands, pipes.Results
	reportR, reportW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	v := &vatrunRun{t: t, cmdW: cmdW, replyR: replyR, replies: netstring.NewReader(replyR, 1<<20), reportR: reportR, errFile: filepath.Join(t.TempDir(), "stderr")}
	errF, err := os.Create(v.errFile)
	if err != nil {
		t.Fatal(err)
	}
	defer errF.Close()
	args := append([]string{"run", "--log-level", "warn", "--profile", profile, "--report-fd", "5"}, runArgs...)
	args = append(args, "--", "/bin/vatrun-testworker", "--ready")
	bin := vatrunBin
	for _, e := range env {
		if strings.HasPrefix(e, "VATRUN_TEST_PAUSE=") {
			bin = vatrunHooksBin // the pauses exist only in the binary built with the vatrun_testhooks tag
		}
	}
	v.cmd = exec.Command(bin, args...)
	v.cmd.ExtraFiles = append(pipes.WorkerFiles(), reportW)
	v.cmd.Stderr = errF
	v.cmd.Env = append(os.Environ(), env...)
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pipes.CloseWorkerEnds()
	reportW.Close()
	t.Cleanup(func() {
		if v.cmd.ProcessState == nil {
			v.cmd.Process.Kill()
			v.cmd.Wait()
		}
		v.cmdW.Close()
		v.replyR.Close()
		v.reportR.Close()
	})
	return v
}

func (v *vatrunRun) send(cmds ...string) {
	for _, c := range cmds {
		if err := netstring.Write(v.cmdW, []byte(c)); err != nil {
			v.t.Fatalf("send %q: %v", c, err)
		}
	}
}

// reply reads one netstring from fd 4 (10 s at most).
func (v *vatrunRun) reply() string {
	v.t.Helper()
	v.replyR.SetReadDeadline(time.Now().Add(10 * time.Second))
	msg, err := v.replies.Read()
	if err != nil {
		v.t.Fatalf("reading a reply from fd 4: %v (stderr: %s)", err, v.stderr())
	}
	return string(msg)
}

// fd4Closed reads fd 4 until it ends: true when it reached EOF (every writer is gone) within d.
func (v *vatrunRun) fd4Closed(d time.Duration) bool {
	v.replyR.SetReadDeadline(time.Now().Add(d))
	for {
		if _, err := v.replies.Read(); err != nil {
			return !errors.Is(err, os.ErrDeadlineExceeded)
		}
	}
}

// vatrunHolds lists the fds of vatrun that point at the kernel's command or reply pipe.
func (v *vatrunRun) vatrunHolds() []string {
	return proctree.Holding(v.cmd.Process.Pid, v.cmdW, v.replyR)
}

type outcome struct {
	code     int  // shell style: 128+N for death by signal N
	signaled bool // vatrun died by a signal (the worker's, mirrored)
	report   *report.Report
	stderr   string
}

// wait reads the report, waits for vatrun, and checks that nothing of the sandbox is left.
func (v *vatrunRun) wait() outcome {
	v.t.Helper()
	v.reportR.SetReadDeadline(time.Now().Add(60 * time.Second))
	var rep bytes.Buffer
	_, rerr := rep.ReadFrom(v.reportR)
	// fd 4 reads EOF once the worker is gone: nobody else (vatrun, the init stage) holds it.
	if !v.fd4Closed(10 * time.Second) {
		v.t.Errorf("fd 4 still open 10 s after the report: someone holds the reply pipe")
	}
	out := outcome{stderr: v.stderr()}
	var err error
	out.code, out.signaled, err = testbin.ExitOf(v.cmd.Wait())
	if err != nil {
		v.t.Fatal(err)
	}
	if rerr != nil && !errors.Is(rerr, os.ErrClosed) {
		v.t.Errorf("reading the report: %v", rerr)
	}
	if rep.Len() > 0 {
		r, err := report.Decode(rep.Bytes())
		if err != nil {
			v.t.Fatalf("report does not decode: %v\n%s", err, rep.String())
		}
		out.report = &r
	}
	for _, pid := range []int{v.worker, v.init} {
		if proctree.Alive(pid) {
			v.t.Errorf("pid %d (worker %d, init stage %d) still alive after vatrun exited", pid, v.worker, v.init)
		}
	}
	return out
}

// leaves lists the worker leaves under parent (a cgroup path like /e2e-root).
func leaves(parent string) []string {
	l, _ := filepath.Glob(filepath.Join(cgroupRoot, parent, "vatrun-[0-9]*"))
	return l
}

type matrixCase struct {
	name    string
	profile func(t *testing.T) string
	runArgs func(t *testing.T) []string
	// act makes the worker die (send a command, signal it, signal vatrun).
	act   func(t *testing.T, v *vatrunRun)
	code  int
	cause report.Cause
	class report.Class
	// check looks at the details of the report; it returns what the table shows as observed.
	check func(t *testing.T, r *report.Report) string
}

func sendCmd(cmd string) func(*testing.T, *vatrunRun) {
	return func(_ *testing.T, v *vatrunRun) { v.send(cmd) }
}

func signalWorker(sig syscall.Signal) func(*testing.T, *vatrunRun) {
	return func(t *testing.T, v *vatrunRun) {
		if err := syscall.Kill(v.worker, sig); err != nil {
			t.Fatalf("kill worker %d: %v", v.worker, err)
		}
	}
}

func builtin(name string) func(*testing.T) string { return func(*testing.T) string { return name } }

func withLimits(name string, limits map[string]any) func(*testing.T) string {
	return func(t *testing.T) string { return matrixProfile(t, name, limits) }
}

const mib = 1 << 20

func matrixCases() []matrixCase {
	sig := func(s syscall.Signal) int { return 128 + int(s) }
	return []matrixCase{
		// probe:fds lists /proc/self/fd, which the consensus allowlist forbids: the permissive matrix profile.
		{name: "clean-exit", profile: withLimits("clean", nil),
			act: func(t *testing.T, v *vatrunRun) {
				v.send("ping", "probe:fds")
				if got := v.reply(); got != "pong" {
					t.Errorf("ping -> %q", got)
				}
				if got := v.reply(); got != "fds:0,1,2,3,4" {
					t.Errorf("the worker's fds: %q, want fds:0,1,2,3,4", got)
				}
				// vatrun closes its copies right after the launch returns; allow for scheduling.
				held := v.vatrunHolds()
				for deadline := time.Now().Add(2 * time.Second); len(held) > 0 && time.Now().Before(deadline); held = v.vatrunHolds() {
					time.Sleep(10 * time.Millisecond)
				}
				if len(held) > 0 {
					t.Errorf("vatrun still holds the kernel's pipes 2 s after the launch: %v", held)
				}
				v.cmdW.Close() // EOF on fd 3: the worker exits 0
			},
			code: 0, cause: report.CauseExited, class: report.ClassClean},
		{name: "metering-fault", profile: builtin("consensus"), act: sendCmd("exit:17"),
			code: 17, cause: report.CauseMeteringFault, class: report.ClassDeterministic,
			check: func(t *testing.T, r *report.Report) string {
				if !strings.Contains(r.ExitMeaning, "computron") {
					t.Errorf("exitMeaning %q, want the profile's computron meter", r.ExitMeaning)
				}
				return r.ExitMeaning
			}},
		{name: "other-exit-code", profile: builtin("consensus"), act: sendCmd("exit:15"),
			code: 15, cause: report.CauseExitCode, class: report.ClassUnknown,
			check: func(t *testing.T, r *report.Report) string {
				if r.ExitMeaning != "unhandled exception" {
					t.Errorf("exitMeaning %q, want unhandled exception", r.ExitMeaning)
				}
				return r.ExitMeaning
			}},
		{name: "oom-limit", profile: withLimits("oom", map[string]any{"memory": "32M"}), act: sendCmd("alloc:134217728"),
			code: sig(syscall.SIGKILL), cause: report.CauseOOMLimit, class: report.ClassResourceExhaustion,
			check: func(t *testing.T, r *report.Report) string {
				if r.OOMEvents == nil || *r.OOMEvents < 1 || r.OOMKills == nil || *r.OOMKills < 1 {
					t.Errorf("oomEvents %v oomKills %v, want both >= 1", r.OOMEvents, r.OOMKills)
				}
				if r.PeakMemory == nil || *r.PeakMemory < 28*mib || *r.PeakMemory > 33*mib {
					t.Errorf("peakMemory %v, want near the 32M limit (28M..33M)", r.PeakMemory)
				}
				return fmt.Sprintf("oom=%d peak=%.1fM", deref(r.OOMEvents), float64(deref(r.PeakMemory))/mib)
			}},
		{name: "sigxcpu", profile: withLimits("cpu", map[string]any{"cpuSeconds": 1}), act: sendCmd("spin"),
			code: sig(syscall.SIGXCPU), cause: report.CauseCPULimit, class: report.ClassResourceExhaustion,
			check: func(t *testing.T, r *report.Report) string {
				if r.CPUSeconds < 0.9 || r.CPUSeconds > 1.5 {
					t.Errorf("cpuSeconds %.2f, want about the 1 s limit", r.CPUSeconds)
				}
				return fmt.Sprintf("cpu=%.2fs", r.CPUSeconds)
			}},
		{name: "cpu-hard-limit", profile: withLimits("cpu", map[string]any{"cpuSeconds": 1}), act: sendCmd("spin-ignore-xcpu"),
			code: sig(syscall.SIGKILL), cause: report.CauseCPULimit, class: report.ClassResourceExhaustion,
			check: func(t *testing.T, r *report.Report) string {
				if r.CPUSeconds < 1.5 {
					t.Errorf("cpuSeconds %.2f, want about the 2 s hard limit", r.CPUSeconds)
				}
				return fmt.Sprintf("cpu=%.2fs", r.CPUSeconds)
			}},
		{name: "cpu-max-throttled", profile: withLimits("throttle", map[string]any{"cpuMax": "20000 100000"}),
			act: func(t *testing.T, v *vatrunRun) {
				v.send("spin:300")
				if got := v.reply(); got != "spun" {
					t.Errorf("spin:300 -> %q", got)
				}
				v.cmdW.Close()
			},
			code: 0, cause: report.CauseExited, class: report.ClassClean,
			check: func(t *testing.T, r *report.Report) string {
				if r.Cgroup == nil || r.Cgroup.NrThrottled == 0 || r.Cgroup.ThrottledUsec == 0 {
					t.Errorf("cgroup evidence %+v: want nr_throttled and throttled_usec > 0", r.Cgroup)
					return "no throttling"
				}
				// 20% of a CPU: 0.3 s of CPU take at least ~1.5 s of wall time.
				if r.WallTime < 1.2 {
					t.Errorf("wallTime %.2f s for 0.3 s of CPU at 20%%: not throttled", r.WallTime)
				}
				return fmt.Sprintf("throttled %d times, %.2fs; wall %.2fs", r.Cgroup.NrThrottled, float64(r.Cgroup.ThrottledUsec)/1e6, r.WallTime)
			}},
		{name: "pids-limit", profile: withLimits("pids", map[string]any{"pids": 8}), act: sendCmd("forkbomb-die"),
			code: sig(syscall.SIGABRT), cause: report.CausePidsLimit, class: report.ClassResourceExhaustion,
			check: func(t *testing.T, r *report.Report) string {
				if r.PidsMax == nil || *r.PidsMax < 1 {
					t.Errorf("pidsMax %v, want >= 1", r.PidsMax)
				}
				return fmt.Sprintf("pids.events max=%d", deref(r.PidsMax))
			}},
		{name: "segv", profile: withLimits("stack", nil), act: sendCmd("recurse"),
			code: sig(syscall.SIGSEGV), cause: report.CauseSegv, class: report.ClassResourceExhaustion},
		{name: "abort", profile: builtin("consensus"), act: sendCmd("abort"),
			code: sig(syscall.SIGABRT), cause: report.CauseAbort, class: report.ClassResourceExhaustion},
		{name: "sandbox-violation", profile: builtin("consensus"), act: sendCmd("syscall:ptrace"),
			code: sig(syscall.SIGSYS), cause: report.CauseSandboxViolation, class: report.ClassSandboxViolation},
		{name: "sigterm-worker", profile: builtin("consensus"), act: signalWorker(syscall.SIGTERM),
			code: sig(syscall.SIGTERM), cause: report.CauseExternalSignal, class: report.ClassExternal},
		{name: "sigint-worker", profile: builtin("consensus"), act: signalWorker(syscall.SIGINT),
			code: sig(syscall.SIGINT), cause: report.CauseExternalSignal, class: report.ClassExternal},
		{name: "sighup-worker", profile: builtin("consensus"), act: signalWorker(syscall.SIGHUP),
			code: sig(syscall.SIGHUP), cause: report.CauseExternalSignal, class: report.ClassExternal},
		{name: "sigkill-worker", profile: builtin("consensus"), act: signalWorker(syscall.SIGKILL),
			code: sig(syscall.SIGKILL), cause: report.CauseKilled, class: report.ClassExternal,
			check: func(t *testing.T, r *report.Report) string {
				if !r.CgroupEvidence || deref(r.OOMKills) != 0 {
					t.Errorf("cgroupEvidence %v oomKills %v: want evidence and no OOM kill", r.CgroupEvidence, r.OOMKills)
				}
				return "no OOM/CPU/pids evidence"
			}},
		{name: "sigterm-vatrun", profile: builtin("consensus"),
			act:  func(t *testing.T, v *vatrunRun) { v.cmd.Process.Signal(syscall.SIGTERM) },
			code: sig(syscall.SIGTERM), cause: report.CauseStopped, class: report.ClassExternal,
			check: func(t *testing.T, r *report.Report) string {
				if r.KilledBy != report.KilledByVatrun || r.KillReason != "vatrun received SIGTERM" {
					t.Errorf("killedBy %q killReason %q, want vatrun / vatrun received SIGTERM", r.KilledBy, r.KillReason)
				}
				return "killedBy=" + r.KilledBy
			}},
		{name: "oom-host", profile: withLimits("hostoom", map[string]any{"memory": "256M"}),
			runArgs: func(t *testing.T) []string {
				// A parent that runs out before the worker's own limit: the host (or the parent
				// slice) is short of memory, not the vat.
				dir := newCgroup(t, "memory.max", "48M", "memory.swap.max", "0", "cgroup.subtree_control", "+memory +pids +cpu")
				return []string{"--cgroup-parent", strings.TrimPrefix(dir, cgroupRoot)}
			},
			act:  sendCmd("alloc:134217728"),
			code: sig(syscall.SIGKILL), cause: report.CauseOOMHost, class: report.ClassExternal,
			check: func(t *testing.T, r *report.Report) string {
				if deref(r.OOMKills) < 1 || deref(r.OOMEvents) != 0 {
					t.Errorf("oomKills %v oomEvents %v: want an OOM kill without the leaf's own limit hit", r.OOMKills, r.OOMEvents)
				}
				return fmt.Sprintf("oom_kill=%d oom=%d", deref(r.OOMKills), deref(r.OOMEvents))
			}},
	}
}

func deref(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

func deathMatrix(t *testing.T, who string) {
	needBinary(t, vatrunBin)
	needBinary(t, "/bin/vatrun-testworker")
	parent := cgroupParentPath(t)
	for _, c := range matrixCases() {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			var runArgs []string
			if c.runArgs != nil {
				runArgs = c.runArgs(t)
			}
			v := startVatrun(t, c.profile(t), runArgs...)
			c.act(t, v)
			out := v.wait()
			took := time.Since(start)
			expected := fmt.Sprintf("exit %d, %s/%s", c.code, c.cause, c.class)
			observed := fmt.Sprintf("exit %d, no report", out.code)
			if out.report != nil {
				observed = fmt.Sprintf("exit %d, %s/%s", out.code, out.report.Cause, out.report.Class)
				if c.check != nil && out.report.Cause == c.cause {
					observed += ", " + c.check(t, out.report)
				}
			}
			row(t, "run-"+c.name+"-"+who, expected, observed, took)
			if out.code != c.code {
				t.Errorf("vatrun exit code %d, want %d (stderr: %s)", out.code, c.code, out.stderr)
			}
			if wantSig := c.code > 128; out.signaled != wantSig {
				t.Errorf("vatrun died by a signal: %v, want %v (the worker's wait status mirrored)", out.signaled, wantSig)
			}
			if out.report == nil {
				t.Fatalf("no report (stderr: %s)", out.stderr)
			}
			r := out.report
			t.Logf("report: %s", r.OneLine())
			if r.Cause != c.cause || r.Class != c.class {
				t.Errorf("report %s/%s, want %s/%s: %s", r.Cause, r.Class, c.cause, c.class, r.OneLine())
			}
			if !r.CgroupEvidence || r.Cgroup == nil {
				t.Errorf("no cgroup evidence on a cgroup v2 kernel: warnings %q", r.Warnings)
			}
			if l := leaves(parent); len(l) > 0 {
				t.Errorf("cgroup leaves left after vatrun exited: %v", l)
			}
		})
	}
	for _, stage := range killStages {
		t.Run("sigkill-vatrun-"+stage, func(t *testing.T) { sigkillVatrun(t, who, stage) })
	}
}

// killStages are the points at which vatrun is SIGKILLed: nothing forked yet (before-launch),
// the worker's side of the fork between clone and exec (in-setup, paused by the init stage),
// the worker running (during-run), and the worker dead and reaped but the report not yet written
// (before-report). The pauses are VATRUN_TEST_PAUSE hooks, compiled only into /bin/vatrun-hooks
// (build tag vatrun_testhooks).
var killStages = []string{"before-launch", "in-setup", "during-run", "before-report"}

// sigkillVatrun: SIGKILL to vatrun at stage takes the worker and the init stage with it at once
// and closes fd 4; a leaf nobody was left to remove is removed by the next vatrun to start.
func sigkillVatrun(t *testing.T, who, stage string) {
	start := time.Now()
	parent := cgroupParentPath(t)
	// Not the consensus profile: its worker's stderr, where the in-setup pause says so, is /dev/null.
	profile := matrixProfile(t, "kill", nil)
	var v *vatrunRun
	if stage == "during-run" {
		v = startVatrun(t, profile)
	} else {
		v = launchVatrun(t, profile, []string{"VATRUN_TEST_PAUSE=" + stage})
		if stage == "before-report" {
			if got := v.reply(); got != "ready" {
				t.Fatalf("first reply %q", got)
			}
			v.send("exit:3")
		}
		v.waitStderr("vatrun-test-pause "+stage, 20*time.Second)
	}
	sandbox := proctree.Children(v.cmd.Process.Pid)
	sandbox = append(sandbox, proctree.Grandchildren(v.cmd.Process.Pid)...)
	own := leaves(parent)
	v.cmd.Process.Kill()
	v.cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	anyAlive := func() []int {
		var left []int
		for _, pid := range sandbox {
			if proctree.Alive(pid) {
				left = append(left, pid)
			}
		}
		return left
	}
	for len(anyAlive()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	left := anyAlive()
	fd4Closed := v.fd4Closed(5 * time.Second)
	// The next vatrun cleans the dead one's leaf (if any) before it creates its own.
	next := startVatrun(t, "consensus")
	var stale []string
	for _, l := range leaves(parent) {
		for _, o := range own {
			if l == o {
				stale = append(stale, l)
			}
		}
	}
	next.cmdW.Close()
	nextOut := next.wait()
	observed := fmt.Sprintf("%d sandbox procs, %d alive after; fd 4 closed=%v; %d leaf, %d left after next start", len(sandbox), len(left), fd4Closed, len(own), len(stale))
	row(t, "run-sigkill-vatrun-"+stage+"-"+who, "nothing alive, fd 4 closed, leaf gone at next start", observed, time.Since(start))
	if len(left) > 0 {
		t.Errorf("still alive 5 s after vatrun was SIGKILLed at %s: %v (sandbox was %v)", stage, left, sandbox)
	}
	// Before the launch nothing exists yet; before the report the worker is already reaped (and
	// its init stage exiting), so only the middle stages must show the sandbox.
	if (stage == "in-setup" || stage == "during-run") && len(sandbox) != 2 {
		t.Errorf("vatrun's sandbox at %s: %v, want the init stage and the worker", stage, sandbox)
	}
	if !fd4Closed {
		t.Errorf("fd 4 not closed after vatrun was SIGKILLed at %s", stage)
	}
	if len(stale) > 0 {
		t.Errorf("the dead vatrun's leaf is still there after the next start: %v", stale)
	}
	if nextOut.code != 0 || nextOut.report == nil || nextOut.report.Cause != report.CauseExited {
		t.Errorf("the next vatrun: exit %d, report %v (stderr %s)", nextOut.code, nextOut.report, nextOut.stderr)
	}
	if l := leaves(parent); len(l) > 0 {
		t.Errorf("cgroup leaves left: %v", l)
	}
}

// TestDeathMatrix runs as root.
func TestDeathMatrix(t *testing.T) {
	vmTest(t)
	deathMatrix(t, "root")
}

// TestUnprivDeathMatrix runs as uid 1000 in its delegated subtree.
func TestUnprivDeathMatrix(t *testing.T) {
	vmTest(t)
	deathMatrix(t, "uid1000")
}
