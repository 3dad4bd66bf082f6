package vm

// A launch storm through the Go API (package launcher, as a Go kernel uses it) on a real cgroup v2
// kernel: every worker gets its own leaf, dies one of several ways — among them its leaf's memory
// and pids limits — and gets exactly one report with the right cause; afterwards this process's
// fds, goroutines and children, and the leaves under the run's parent, are back to the baseline.

import (
	"context"
	"fmt"
	"github.com/vatrun/vatrun/launcher/workerio"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vatrun/vatrun/internal/launchtest"
	"github.com/vatrun/vatrun/launcher"
	"github.com/vatrun/vatrun/report"
	"github.com/vatrun/vatrun/seccompprofiles"
)

type stormDeath struct {
	name string
	args []string // worker flags
	// cmd, when set, is sent on fd 3; close closes fd 3 (EOF: a clean exit); stop calls Stop.
	cmd         string
	close, stop bool
	cause       report.Cause
	class       report.Class
	code        int
}

var stormDeaths = []stormDeath{
	{name: "clean EOF", close: true, cause: report.CauseExited, class: report.ClassClean, code: 0},
	{name: "metering exit code", args: []string{"--exit-at-start", "11"}, cause: report.CauseMeteringFault, class: report.ClassDeterministic, code: 11},
	{name: "abort", args: []string{"--abort-at-start"}, cause: report.CauseAbort, class: report.ClassResourceExhaustion, code: 128 + int(syscall.SIGABRT)},
	{name: "Stop (cgroup.kill)", stop: true, cause: report.CauseStopped, class: report.ClassExternal, code: 128 + int(syscall.SIGKILL)},
	{name: "oom-limit", cmd: "alloc:67108864", cause: report.CauseOOMLimit, class: report.ClassResourceExhaustion, code: 128 + int(syscall.SIGKILL)},
	{name: "pids-limit", cmd: "forkbomb-die", cause: report.CausePidsLimit, class: report.ClassResourceExhaustion, code: 128 + int(syscall.SIGABRT)},
}

func stormProfile(t *testing.T) *seccompprofiles.Profile {
	t.Helper()
	p, err := seccompprofiles.Load(matrixProfile(t, "storm", map[string]any{"memory": "32M", "pids": 8}))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func stormCycle(p *seccompprofiles.Profile, i int) error {
	d := stormDeaths[i%len(stormDeaths)]
	pipes, err := workerio.New()
	if err != nil {
		return err
	}
	defer pipes.Close()
	cmdW := pipes.Commands
	w, err := launcher.Launch(context.Background(), launcher.Spec{
		Profile:    p,
		Path:       "/bin/vatrun-testworker",
		Args:       append([]string{"vatrun-testworker"}, d.args...),
		ExtraFiles: pipes.WorkerFiles(),
		Name:       fmt.Sprintf("storm-%d", i),
	})
	pipes.CloseWorkerEnds()
	if err != nil {
		return fmt.Errorf("cycle %d (%s): Launch: %w", i, d.name, err)
	}
	switch {
	case d.cmd != "":
		fmt.Fprintf(cmdW, "%d:%s,", len(d.cmd), d.cmd)
	case d.close:
		cmdW.Close()
	case d.stop:
		w.Stop("storm")
	}
	r, err := launchtest.OneReport(w, 60*time.Second)
	if err != nil {
		return fmt.Errorf("cycle %d (%s): %w", i, d.name, err)
	}
	if r.Cause != d.cause || r.Class != d.class || launcher.ExitStatus(r) != d.code || !r.CgroupEvidence {
		return fmt.Errorf("cycle %d (%s): report %s, want %s/%s status %d with cgroup evidence", i, d.name, r.OneLine(), d.cause, d.class, d.code)
	}
	select {
	case <-w.Cleaned():
	case <-time.After(30 * time.Second):
		return fmt.Errorf("cycle %d (%s): sandbox not cleaned up 30 s after the report", i, d.name)
	}
	return nil
}

func launchStorm(t *testing.T, who string, nSeq, nConc int) {
	needBinary(t, "/bin/vatrun-testworker")
	parent := cgroupParentPath(t)
	p := stormProfile(t)
	// Warm up: the first launch starts the spawner thread's goroutine, which lives as long as the
	// process, and compiles the filter once.
	if err := stormCycle(p, 0); err != nil {
		t.Fatal(err)
	}
	base := launchtest.Measure(t)
	start := time.Now()
	for i := range nSeq {
		if err := stormCycle(p, i); err != nil {
			t.Fatal(err)
		}
	}
	seq := time.Since(start)
	leftLeaves := func() []string { return leaves(parent) }
	launchtest.BackToBaseline(t, base, 10*time.Second, leftLeaves)
	cstart := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, nConc)
	for i := range nConc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := stormCycle(p, i); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		failed++
		t.Error(err)
	}
	conc := time.Since(cstart)
	after := launchtest.BackToBaseline(t, base, 10*time.Second, leftLeaves)
	observed := fmt.Sprintf("%d seq in %.1fs, %d concurrent in %.1fs, %d bad; %s", nSeq, seq.Seconds(), nConc, conc.Seconds(), failed, after)
	row(t, "storm-"+who, fmt.Sprintf("%d+%d launches, one right report each, back to baseline", nSeq, nConc), observed, time.Since(start))
}

// TestLaunchStorm runs as root.
func TestLaunchStorm(t *testing.T) {
	vmTest(t)
	launchStorm(t, "root", 300, 40)
}

// TestUnprivLaunchStorm runs as uid 1000 (user namespace path, delegated subtree).
func TestUnprivLaunchStorm(t *testing.T) {
	vmTest(t)
	launchStorm(t, "uid1000", 60, 20)
}
