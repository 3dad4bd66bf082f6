package vm

// TestBenchSpawn is the VM part of `make bench`: spawn latency with real cgroup v2 leaves, which
// the host cannot give. It runs only when asked for by name (VATRUN_E2E_RUN matching TestBench;
// scripts/bench.sh does), never in `make e2e`. It is a benchmark: it checks that every launch
// ends as expected, never how long it took, and prints one E2E-BENCH line per launcher:
//
//	E2E-BENCH name|median ns|p99 ns|samples|command
//
// The worker is the static C test worker told to exit 0 at once; the launchers are sampled in
// turn (round-robin) so drift inside the emulated machine hits all of them alike.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/vatrun/vatrun/launcher"
	"github.com/vatrun/vatrun/report"
	"github.com/vatrun/vatrun/seccompprofiles"
)

type benchLauncher struct {
	name, cmd string
	run       func() error
	samples   []time.Duration
}

func TestBenchSpawn(t *testing.T) {
	vmTest(t)
	needBinary(t, vatrunBin)
	needBinary(t, "/bin/vatrun-testworker")
	const runs = 200
	worker := []string{"/bin/vatrun-testworker", "--exit-at-start", "0"}
	xsnap, err := seccompprofiles.Load("xsnap")
	if err != nil {
		t.Fatal(err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	goAPI := func(opts launcher.CgroupOptions, wantEvidence bool) func() error {
		return func() error {
			w, err := launcher.Launch(context.Background(), launcher.Spec{Profile: xsnap, Path: worker[0], Args: worker, Cgroup: opts})
			if err != nil {
				return err
			}
			r := w.Wait()
			<-w.Cleaned()
			if r.Cause != report.CauseExited || r.CgroupEvidence != wantEvidence {
				return fmt.Errorf("report %s, want exited with cgroupEvidence=%v", r.OneLine(), wantEvidence)
			}
			return nil
		}
	}
	vatrunRun := func(extra ...string) func() error {
		args := append([]string{"run", "--log-level", "warn", "--profile", "xsnap"}, extra...)
		args = append(append(args, "--"), worker...)
		return func() error {
			cmd := exec.Command(vatrunBin, args...)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
			return cmd.Run()
		}
	}
	ls := []*benchLauncher{
		{name: "plain fork/exec", cmd: "WORKER", run: func() error {
			cmd := exec.Command(worker[0], worker[1:]...)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
			return cmd.Run()
		}},
		{name: "Go API, no cgroup", cmd: "launcher.Launch(xsnap, Cgroup.Disable)", run: goAPI(launcher.CgroupOptions{Disable: true}, false)},
		{name: "Go API, cgroup leaf", cmd: "launcher.Launch(xsnap): leaf with limits written and read back, CLONE_INTO_CGROUP, evidence, removal", run: goAPI(launcher.CgroupOptions{}, true)},
		{name: "vatrun run, no cgroup", cmd: "vatrun run --profile xsnap --no-cgroup -- WORKER", run: vatrunRun("--no-cgroup")},
		{name: "vatrun run, cgroup leaf", cmd: "vatrun run --profile xsnap -- WORKER", run: vatrunRun()},
	}
	for i := -5; i < runs; i++ { // 5 warm-up rounds
		for _, l := range ls {
			start := time.Now()
			if err := l.run(); err != nil {
				t.Fatalf("%s: %v", l.name, err)
			}
			if i >= 0 {
				l.samples = append(l.samples, time.Since(start))
			}
		}
	}
	if l := leaves(cgroupParentPath(t)); len(l) > 0 {
		t.Errorf("leaves left after the benchmark: %v", l)
	}
	for _, l := range ls {
		s := slices.Clone(l.samples)
		slices.Sort(s)
		med, p99 := s[len(s)/2], s[min(len(s)-1, (len(s)*99+99)/100-1)]
		fmt.Printf("E2E-BENCH %s|%d|%d|%d|%s\n", l.name, med.Nanoseconds(), p99.Nanoseconds(), len(s), l.cmd)
		t.Logf("%-24s median %v p99 %v", l.name, med, p99)
	}
}
