package hostile

import (
	"context"
	"fmt"
	"github.com/vatrun/vatrun/internal/launchtest"
	"github.com/vatrun/vatrun/internal/proctree"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/launcher"
	"github.com/vatrun/vatrun/report"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// death is one way a storm worker dies, and the report it must get.
type death struct {
	name  string
	args  []string // worker flags
	pipes bool     // the worker needs fds 3 and 4 (it waits for commands)
	// act ends a live worker (nil: it dies on its own).
	act   func(w *launcher.Worker, cmdW *os.File)
	cause report.Cause
	class report.Class
	code  int // launcher.ExitStatus of the report
}

var deaths = []death{
	{name: "clean EOF", pipes: true, act: func(_ *launcher.Worker, cmdW *os.File) { cmdW.Close() },
		cause: report.CauseExited, class: report.ClassClean, code: 0},
	{name: "metering exit code", args: []string{"--exit-at-start", "17"}, // not 11: without a cgroup a memory metering fault is unknown (docs/limits.md)
		cause: report.CauseMeteringFault, class: report.ClassDeterministic, code: 17},
	{name: "other exit code", args: []string{"--exit-at-start", "15"},
		cause: report.CauseExitCode, class: report.ClassUnknown, code: 15},
	{name: "abort", args: []string{"--abort-at-start"},
		cause: report.CauseAbort, class: report.ClassResourceExhaustion, code: 128 + int(syscall.SIGABRT)},
	{name: "Stop (SIGKILL)", pipes: true, act: func(w *launcher.Worker, _ *os.File) { w.Stop("storm") },
		cause: report.CauseStopped, class: report.ClassExternal, code: 128 + int(syscall.SIGKILL)},
	{name: "Signal SIGTERM", pipes: true, act: func(w *launcher.Worker, _ *os.File) { w.Signal(syscall.SIGTERM) },
		cause: report.CauseExternalSignal, class: report.ClassExternal, code: 128 + int(syscall.SIGTERM)},
}

// cycle launches one worker that dies the i-th way and checks its one report.
func cycle(t *testing.T, p *seccompprofiles.Profile, worker string, i int) error {
	d := deaths[i%len(deaths)]
	spec := launcher.Spec{
		Profile: p,
		Path:    worker,
		Args:    append([]string{"worker"}, d.args...),
		Cgroup:  launcher.CgroupOptions{Disable: true},
		Name:    fmt.Sprintf("storm-%d", i),
	}
	var cmdW *os.File
	if d.pipes {
		cmdR, w, err := os.Pipe()
		if err != nil {
			return err
		}
		replyR, replyW, err := os.Pipe()
		if err != nil {
			cmdR.Close()
			w.Close()
			return err
		}
		defer replyR.Close()
		defer w.Close()
		cmdW = w
		spec.ExtraFiles = []*os.File{cmdR, replyW}
		defer cmdR.Close()
		defer replyW.Close()
	}
	w, err := launcher.Launch(context.Background(), spec)
	if err != nil {
		return fmt.Errorf("cycle %d (%s): Launch: %w", i, d.name, err)
	}
	if spec.ExtraFiles != nil {
		spec.ExtraFiles[0].Close()
		spec.ExtraFiles[1].Close()
	}
	if d.act != nil {
		d.act(w, cmdW)
	}
	r, err := launchtest.OneReport(w, 20*time.Second)
	if err != nil {
		return fmt.Errorf("cycle %d (%s): %w", i, d.name, err)
	}
	if r.Cause != d.cause || r.Class != d.class || launcher.ExitStatus(r) != d.code || r.Pid != w.Pid() {
		return fmt.Errorf("cycle %d (%s): report %s (pid %d, worker %d), want %s/%s status %d", i, d.name, r.OneLine(), r.Pid, w.Pid(), d.cause, d.class, d.code)
	}
	return nil
}

// TestLaunchStorm: 1,000 sequential and 100 concurrent launch/death cycles through the Go API,
// with every death cause in turn: each worker gets exactly one report with the expected cause, and
// afterwards fds, goroutines and child processes are back to the baseline.
func TestLaunchStorm(t *testing.T) {
	p, err := seccompprofiles.Load("xsnap")
	if err != nil {
		t.Fatal(err)
	}
	worker := testbin.Worker(t)
	// Warm up: the first launch starts the spawner thread's goroutine (it lives as long as the
	// process, by design) and compiles the profile's filter once.
	if err := cycle(t, p, worker, 0); err != nil {
		t.Fatal(err)
	}
	// Wait returns the report as soon as the worker's death is known; the init stages exit and
	// are reaped right after, so give earlier tests' stages a moment.
	for deadline := time.Now().Add(5 * time.Second); len(proctree.Children(os.Getpid())) != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("children left before the storm: %v", proctree.Children(os.Getpid()))
		}
	}
	base := launchtest.Measure(t)

	// The unprivileged re-run (TestUnprivileged) does a smaller storm through the user-namespace path.
	nSeq, nConc := 1000, 100
	if os.Getenv("VATRUN_UNPRIV_CHILD") != "" {
		nSeq, nConc = 100, 20
	}
	t.Run("sequential", func(t *testing.T) {
		n := nSeq
		start := time.Now()
		for i := range n {
			if err := cycle(t, p, worker, i); err != nil {
				t.Fatal(err)
			}
		}
		el := time.Since(start)
		t.Logf("%d sequential cycles in %v (%v per cycle)", n, el.Round(time.Millisecond), (el / time.Duration(n)).Round(10*time.Microsecond))
	})
	// Checked here, not in the subtest, whose own goroutine would count.
	launchtest.BackToBaseline(t, base, 5*time.Second, nil)

	t.Run("concurrent", func(t *testing.T) {
		n := nConc
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := cycle(t, p, worker, i); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		t.Logf("%d concurrent cycles in %v", n, time.Since(start).Round(time.Millisecond))
	})
	launchtest.BackToBaseline(t, base, 5*time.Second, nil)
}
