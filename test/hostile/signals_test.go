package hostile

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/internal/launchtest"
	"github.com/vatrun/vatrun/internal/proctree"
	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/report"
)

// TestEarlySIGTERMStillReports: a SIGTERM sent to vatrun early in its start-up is not lost to the
// Go runtime's default action: vatrun catches the stop signals from its first package init
// (earlysig), before any of its own work, and relays them to the worker once it runs, so the run
// ends with a report. Issue 13 saw 40 of 300 runs die with no report when SIGTERM came in the
// first ~5 ms. What is left is the runtime's own start (about 1-2 ms after exec on this machine,
// before any Go code can catch a signal): sent then, SIGTERM ends vatrun by SIGTERM and with no
// report (TestEarlySIGTERMWindow measures it), and nothing may have run.
//
// The SIGTERM goes out the moment vatrun has a child. On the ordinary path
// (VATRUN_PRELAUNCH=off) that is the init stage, cloned by Go after earlysig: every run must
// report. On the C-first path (a launch-cache entry, docs/launch-cache.md) the constructor forks
// before the Go runtime starts, so the signal can land in the runtime's window: then vatrun dies
// without a report, and the worker must never have run (no "ready" on fd 4: the stage was still
// at its gate) and nothing may be left.
func TestEarlySIGTERMStillReports(t *testing.T) {
	n := 300
	if testing.Short() {
		n = 60
	}
	// A copy at a path of this test's own, so that whatever is left of any run can be found.
	bin, worker := testbin.Vatrun(t), settledWorker(t)
	for _, path := range []string{"ordinary", "c-first"} {
		t.Run(path, func(t *testing.T) {
			env := append(os.Environ(), "VATRUN_CACHE_DIR="+t.TempDir())
			if path == "ordinary" {
				env = append(env, "VATRUN_PRELAUNCH=off")
			} else {
				// One run writes the entry (the worker copy is older than 2 s by now).
				prime := exec.Command(bin, "run", "--profile", "xsnap", "--no-cgroup", "--", worker, "--exit-at-start", "0")
				prime.Env = env
				if out, err := prime.CombinedOutput(); err != nil {
					t.Fatalf("priming run: %v: %s", err, out)
				}
			}
			var mu sync.Mutex
			noReport, ranUnreported := 0, 0
			causes := map[report.Cause]int{}
			launchtest.Sweep(n, 2, func(i int) {
				dir := t.TempDir()
				rf := dir + "/report.json"
				pipes := testbin.WorkerPipes(t)
				cmdW, replyR := pipes.Commands, pipes.Results
				cmd := exec.Command(bin, "run", "--profile", "xsnap", "--no-cgroup", "--report-file", rf, "--", worker, "--ready")
				cmd.ExtraFiles = pipes.WorkerFiles()
				cmd.Env = env
				if err := cmd.Start(); err != nil {
					t.Error(err)
					return
				}
				pipes.CloseWorkerEnds()
				for deadline := time.Now().Add(5 * time.Second); len(proctree.Children(cmd.Process.Pid)) == 0 && time.Now().Before(deadline); {
					time.Sleep(20 * time.Microsecond)
				}
				cmd.Process.Signal(syscall.SIGTERM)
				code, signaled, _ := testbin.ExitOf(cmd.Wait())
				cmdW.Close()
				replyR.SetReadDeadline(time.Now().Add(5 * time.Second))
				fd4, _ := io.ReadAll(replyR)
				replyR.Close()
				data, _ := os.ReadFile(rf)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case len(data) > 0:
					if r, err := report.Decode(data); err != nil {
						t.Errorf("run %d: report does not decode: %v", i, err)
					} else {
						causes[r.Cause]++
					}
				case bytes.Contains(fd4, []byte("ready")):
					ranUnreported++
					t.Errorf("run %d: the worker ran (fd 4: %q) but there is no report; vatrun exit %d (signaled %v)", i, fd4, code, signaled)
				default:
					noReport++
				}
			})
			t.Logf("%s path, %d SIGTERMs as the sandbox starts: causes %v, no report (nothing ran) %d", path, n, causes, noReport)
			if path == "ordinary" && noReport > 0 {
				t.Errorf("%d of %d runs ended without a report", noReport, n)
			}
			if left := proctree.Children(os.Getpid()); len(left) > 0 {
				t.Errorf("processes left: %v", left)
			}
			// Nothing of any run may survive vatrun: no waiting stage, no intermediate process,
			// no worker (each has this worker's path and --ready in its argv).
			left := withArg(worker, "--ready")
			for deadline := time.Now().Add(5 * time.Second); len(left) > 0 && time.Now().Before(deadline); left = withArg(worker, "--ready") {
				time.Sleep(20 * time.Millisecond)
			}
			if len(left) > 0 {
				t.Errorf("sandbox processes left after vatrun ended: %v", left)
			}
		})
	}
}

// TestRapidStopSignalsNameTheCause: TERM, INT and HUP sent to vatrun back to back: the report's
// killReason names the signal the worker actually died of (not the last one received).
func TestRapidStopSignalsNameTheCause(t *testing.T) {
	for i := range 20 {
		rf := t.TempDir() + "/r.json"
		p := startVatrun(t, procOpts{runArgs: []string{"--profile", "xsnap", "--no-cgroup", "--report-file", rf}, workerArgs: []string{"--ready"}})
		if got := p.reply(); got != "ready" {
			t.Fatalf("first reply %q", got)
		}
		for _, s := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
			p.cmd.Process.Signal(s)
		}
		p.exit()
		r := readReportFile(t, rf)
		if r == nil {
			t.Fatalf("run %d: no report", i)
		}
		if r.Cause != report.CauseStopped || r.KillReason != "vatrun received "+unix.SignalName(syscall.Signal(r.Signal)) {
			t.Fatalf("run %d: cause %s, signal %s, killReason %q: the reason must name the signal the worker died of", i, r.Cause, r.SignalName, r.KillReason)
		}
	}
}

// TestEarlySIGTERMWindow measures (it asserts only that every run ends, by SIGTERM, leaving
// nothing) how often a SIGTERM 0-4 ms after vatrun's exec comes before vatrun can catch it.
func TestEarlySIGTERMWindow(t *testing.T) {
	bin, worker := testbin.Vatrun(t), testbin.Worker(t)
	byDelay := map[time.Duration][2]int{}
	marker := fmt.Sprintf("%d", 1+os.Getpid()%1000) // --sleep-at-start MS: names this test's workers
	for i := range 100 {
		d := time.Duration(i%5) * time.Millisecond
		rf := t.TempDir() + "/r.json"
		pipes := testbin.WorkerPipes(t)
		cmdW, replyR := pipes.Commands, pipes.Results
		cmd := exec.Command(bin, "run", "--profile", "xsnap", "--no-cgroup", "--report-file", rf, "--", worker, "--sleep-at-start", marker)
		cmd.ExtraFiles = pipes.WorkerFiles()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pipes.CloseWorkerEnds()
		time.Sleep(d)
		cmd.Process.Signal(syscall.SIGTERM)
		code, signaled, _ := testbin.ExitOf(cmd.Wait())
		cmdW.Close()
		replyR.Close()
		if !signaled || code != 128+int(syscall.SIGTERM) {
			t.Errorf("SIGTERM after %v: vatrun ended with %d (signaled %v), want death by SIGTERM", d, code, signaled)
		}
		c := byDelay[d]
		if data, _ := os.ReadFile(rf); len(data) > 0 {
			c[0]++
		} else {
			c[1]++
		}
		byDelay[d] = c
	}
	for d := time.Duration(0); d < 5*time.Millisecond; d += time.Millisecond {
		t.Logf("SIGTERM %v after exec: %d with a report, %d without", d, byDelay[d][0], byDelay[d][1])
	}
	if left := withArg(worker, marker); len(left) > 0 {
		t.Errorf("sandbox processes left: %v", left)
	}
}

// TestForgedSenderNotRelayed: rt_sigqueueinfo lets a sender write si_pid, so a worker (under dev,
// which allows it) can queue SIGTERM to the init stage claiming si_pid 0, "from outside the pid
// namespace". The init stage trusts the sender only for SI_USER signals (kill), whose si_pid the
// kernel fills in: the forged one is not relayed, and the worker lives on.
//
// A root vatrun's worker runs as another uid than the init stage (docs/worker-identity.md), so the
// kernel refuses the signal (EPERM) before the stage sees it; as nobody, worker and stage share the
// uid, the signal arrives, and only the stage's check stands.
func TestForgedSenderNotRelayed(t *testing.T) {
	for _, u := range users() {
		t.Run(u.name, func(t *testing.T) {
			p := startVatrun(t, procOpts{runArgs: []string{"--profile", "dev", "--no-cgroup"}, asNobody: u.asNobody})
			p.send("sigqueueinit:15", "ping")
			got := p.reply()
			if got == "errno:1" && os.Geteuid() == 0 && !u.asNobody {
				t.Logf("rt_sigqueueinfo(1, SIGTERM) from a root vatrun's worker: EPERM (it is not the init stage's uid)")
			} else if got != "ok" {
				t.Fatalf("rt_sigqueueinfo(1, SIGTERM) under dev: %q, want ok (the syscall is allowed)", got)
			}
			if got := p.reply(); got != "pong" {
				t.Fatalf("after a forged SIGTERM to the init stage: %q, want pong (it must not be relayed)", got)
			}
			finishClean(t, p)
		})
	}
}

// TestSelfSignalIsNotExternal: under a profile that lets the worker signal itself (dev, and the
// default-allow demo profile), a worker that kills itself with SIGKILL, SIGTERM or tgkill tries
// to pass for a death from outside (external: a solo kernel restarts it, then halts after its
// budget). Its report must say signal/unknown instead, and name both possible senders.
func TestSelfSignalIsNotExternal(t *testing.T) {
	for _, profile := range []string{"dev", demoProfile(t)} {
		for _, cmd := range []string{"selfkill:9", "selfkill:15", "tgkill:9"} {
			t.Run(filepath.Base(profile)+"/"+cmd, func(t *testing.T) {
				rf := filepath.Join(t.TempDir(), "report.json")
				p := startVatrun(t, procOpts{runArgs: []string{"--profile", profile, "--no-cgroup", "--report-file", rf}})
				p.send(cmd)
				p.exit()
				r := readReportFile(t, rf)
				if r.Class == report.ClassExternal || r.Cause != report.CauseSignal || r.Class != report.ClassUnknown {
					t.Errorf("a worker that signalled itself (%s) got %s/%s, want signal/unknown: %s", cmd, r.Cause, r.Class, r.OneLine())
				}
				if r.SignalSource != report.SourceOutsideOrSelf {
					t.Errorf("signalSource %q, want %q", r.SignalSource, report.SourceOutsideOrSelf)
				}
			})
		}
	}
}
