// Package launchtest holds checks that tests of the Go API share: the storms on the host
// (test/hostile) and in the e2e VM (test/e2e/vm) wait for a worker's report, and for the process
// to come back to its baseline, the same way.
package launchtest

import (
	"fmt"
	"os"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/vatrun/vatrun/internal/proctree"
	"github.com/vatrun/vatrun/launcher"
	"github.com/vatrun/vatrun/report"
)

// OneReport waits at most within for w's report and checks that it is the only one: a second
// Wait returns the same report. A worker still alive after within is stopped, and that is an
// error.
func OneReport(w *launcher.Worker, within time.Duration) (report.Report, error) {
	var r report.Report
	select {
	case <-w.Done():
		r = w.Wait()
	case <-time.After(within):
		w.Stop("test: no report in time")
		return r, fmt.Errorf("no report %v after launch", within)
	}
	if again := w.Wait(); !reflect.DeepEqual(again, r) {
		return r, fmt.Errorf("a second Wait gave another report: %s, then %s", r.OneLine(), again.OneLine())
	}
	return r, nil
}

// Baseline is what a storm must come back to: this process's open fds and goroutines. Take it
// after one launch: the spawner thread's goroutine lives as long as the process.
type Baseline struct{ FDs, Goroutines int }

// Measure reads the current Baseline.
func Measure(t testing.TB) Baseline {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return Baseline{FDs: len(ents), Goroutines: runtime.NumGoroutine()}
}

// BackToBaseline waits at most within (reaper goroutines finish just after Done) until fds and
// goroutines are back at base, this process has no child, and left, when not nil, lists nothing
// (cgroup leaves, say). Otherwise it fails t with every goroutine's stack. It returns what it
// saw, for a result table.
func BackToBaseline(t testing.TB, base Baseline, within time.Duration, left func() []string) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		now := Measure(t)
		kids := proctree.Children(os.Getpid())
		var rest []string
		if left != nil {
			rest = left()
		}
		if now.FDs <= base.FDs && now.Goroutines <= base.Goroutines && len(kids) == 0 && len(rest) == 0 {
			return fmt.Sprintf("fds %d/%d, goroutines %d/%d, children 0, nothing left", now.FDs, base.FDs, now.Goroutines, base.Goroutines)
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("after the storm: %d fds (baseline %d), %d goroutines (baseline %d), children %v, left %v\n%s",
				now.FDs, base.FDs, now.Goroutines, base.Goroutines, kids, rest, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Sweep runs f(0) … f(n-1) on `workers` goroutines at once (the storms and sweeps of many short
// vatrun runs: two at a time keeps both CPUs of a small machine busy) and returns when all are done.
func Sweep(n, workers int, f func(i int)) {
	jobs := make(chan int)
	done := make(chan struct{})
	for range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range jobs {
				f(i)
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	for range workers {
		<-done
	}
}
