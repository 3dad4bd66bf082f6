package launchtest

import (
	"context"
	"github.com/vatrun/vatrun/launcher/workerio"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/launcher"
	"github.com/vatrun/vatrun/report"
	"github.com/vatrun/vatrun/seccompprofiles"
)

func launch(t *testing.T, args ...string) (*launcher.Worker, *os.File) {
	t.Helper()
	p, err := seccompprofiles.Load("xsnap")
	if err != nil {
		t.Fatal(err)
	}
	pipes, err := workerio.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pipes.Close)
	w, err := launcher.Launch(context.Background(), launcher.Spec{Profile: p, Path: testbin.Worker(t),
		Args: append([]string{"worker"}, args...), ExtraFiles: pipes.WorkerFiles(), Cgroup: launcher.CgroupOptions{Disable: true}})
	pipes.CloseWorkerEnds()
	if err != nil {
		t.Skipf("needs namespaces (root or unprivileged user namespaces): %v", err)
	}
	return w, pipes.Commands
}

func TestOneReport(t *testing.T) {
	w, _ := launch(t, "--exit-at-start", "11")
	r, err := OneReport(w, 10*time.Second)
	if err != nil || r.Cause != report.CauseMeteringFault {
		t.Fatalf("OneReport: %s, %v; want metering-fault", r.OneLine(), err)
	}
}

// A worker that never dies: OneReport stops it and says so.
func TestOneReportTimesOut(t *testing.T) {
	w, _ := launch(t) // waits on fd 3, which stays open
	_, err := OneReport(w, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "no report") {
		t.Fatalf("OneReport on a live worker: %v, want a timeout error", err)
	}
	select {
	case <-w.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the worker was not stopped after the timeout")
	}
	if r := w.Wait(); r.Cause != report.CauseStopped {
		t.Errorf("after the timeout: %s, want stopped", r.OneLine())
	}
}
