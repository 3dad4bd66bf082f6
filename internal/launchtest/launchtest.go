// Package launchtest holds checks that tests of the Go API share: the storms on the host
// (test/hostile) and in the e2e VM (test/e2e/vm) wait for a worker's report the same way.
package launchtest

import (
	"fmt"
	"reflect"
	"time"

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
