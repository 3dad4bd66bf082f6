// Package testbin finds (or builds once per test process) the vatrun binary and the C test
// worker for integration tests. `make test` passes both through VATRUN_BIN and VATRUN_TESTWORKER;
// a plain `go test` builds them into a temporary directory.
package testbin

import (
	"errors"
	"github.com/vatrun/vatrun/launcher/workerio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
)

var (
	once              sync.Once
	dir               string
	vatrun, worker    string
	vatrunErr, wkrErr error

	hooksOnce sync.Once
	hooks     string
	hooksErr  error
)

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func build() {
	root := RepoRoot()
	vatrun, worker = os.Getenv("VATRUN_BIN"), os.Getenv("VATRUN_TESTWORKER")
	if vatrun != "" && worker != "" {
		return
	}
	dir, vatrunErr = os.MkdirTemp("", "vatrun-testbin-")
	if vatrunErr != nil {
		wkrErr = vatrunErr
		return
	}
	os.Chmod(dir, 0o755) // unprivileged re-runs execute from here too
	if vatrun == "" {
		vatrun = filepath.Join(dir, "vatrun")
		cmd := exec.Command("go", "build", "-o", vatrun, "./cmd/vatrun")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			vatrunErr = &buildError{what: "go build ./cmd/vatrun", out: string(out), err: err}
		}
	}
	if worker == "" {
		worker = filepath.Join(dir, "vatrun-testworker")
		cmd := exec.Command("gcc", "-O2", "-static", "-o", worker, "test/worker/worker.c")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			wkrErr = &buildError{what: "gcc test/worker/worker.c", out: string(out), err: err}
		}
	}
}

type buildError struct {
	what, out string
	err       error
}

func (e *buildError) Error() string { return e.what + ": " + e.err.Error() + "\n" + e.out }

// Vatrun returns the path of the vatrun binary, failing the test if it cannot be built.
func Vatrun(t testing.TB) string {
	t.Helper()
	once.Do(build)
	if vatrunErr != nil {
		t.Fatalf("vatrun binary: %v", vatrunErr)
	}
	return vatrun
}

// VatrunHooks returns the path of the vatrun binary built with the vatrun_testhooks tag (the
// VATRUN_TEST_PAUSE fault-injection pauses: $VATRUN_HOOKS_BIN, bin/vatrun-hooks from make), building
// it when unset, and failing the test if it cannot be built.
func VatrunHooks(t testing.TB) string {
	t.Helper()
	hooksOnce.Do(func() {
		if hooks = os.Getenv("VATRUN_HOOKS_BIN"); hooks != "" {
			return
		}
		dir, err := os.MkdirTemp("", "vatrun-testbin-hooks-")
		if err != nil {
			hooksErr = err
			return
		}
		os.Chmod(dir, 0o755)
		hooks = filepath.Join(dir, "vatrun-hooks")
		cmd := exec.Command("go", "build", "-tags", "vatrun_testhooks", "-o", hooks, "./cmd/vatrun")
		cmd.Dir = RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			hooksErr = &buildError{what: "go build -tags vatrun_testhooks ./cmd/vatrun", out: string(out), err: err}
		}
	})
	if hooksErr != nil {
		t.Fatalf("vatrun-hooks binary: %v", hooksErr)
	}
	return hooks
}

// Worker returns the path of the C test worker, failing the test if it cannot be built.
func Worker(t testing.TB) string {
	t.Helper()
	once.Do(build)
	if wkrErr != nil {
		t.Fatalf("test worker: %v", wkrErr)
	}
	return worker
}

// WorkerPipes makes a worker's fd 3/4 pipes (workerio), closed when the test ends.
func WorkerPipes(t testing.TB) *workerio.Pipes {
	t.Helper()
	p, err := workerio.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// ExitOf turns cmd.Wait's error into a shell-style status: the exit code, or 128+N with
// signaled true when the process died by signal N. Any other error is returned as is.
func ExitOf(err error) (code int, signaled bool, werr error) {
	if err == nil {
		return 0, false, nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return -1, false, err
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), true, nil
	}
	return ee.ExitCode(), false, nil
}

// ListenUnix listens on the unix socket name (an abstract one when it starts with "@"),
// accepting and closing every connection until the test ends: a peer the sandbox must not reach.
func ListenUnix(t *testing.T, name string) {
	t.Helper()
	ln, err := net.Listen("unix", name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}
