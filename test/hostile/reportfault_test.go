package hostile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const exitReportLost = 123 // docs/cli.md: the worker ran and was reaped, but its report could not be written

// reportLost checks the documented outcome of a report that cannot be written: exit 123, the
// reason and the worker's own status on stderr, and no process of the sandbox left.
func reportLost(t *testing.T, p *vatrunProc, sandbox []procID, reason string) {
	t.Helper()
	start := time.Now()
	code := p.exit()
	stderr := p.stderrText()
	if code != exitReportLost {
		t.Fatalf("vatrun exit %d, want %d (report lost); stderr:\n%s", code, exitReportLost, stderr)
	}
	if !strings.Contains(stderr, reason) || !strings.Contains(stderr, "the worker's own status was: cause=exited") {
		t.Fatalf("stderr does not say %q and give the worker's status:\n%s", reason, stderr)
	}
	if left := goneWithin(sandbox, time.Second); len(left) != 0 {
		t.Fatalf("processes of the sandbox left after vatrun exited: %v", left)
	}
	t.Logf("vatrun exited %d %v after the worker's end; stderr: %s", code, time.Since(start).Round(time.Millisecond), strings.TrimSpace(stderr))
}

// startReady starts vatrun with the worker waiting for commands and returns the sandbox's
// processes (init stage and worker).
func startReady(t *testing.T, o procOpts) (*vatrunProc, []procID) {
	t.Helper()
	o.workerArgs = append(o.workerArgs, "--ready")
	p := startVatrun(t, o)
	if got := p.reply(); got != "ready" {
		t.Fatalf("first reply %q", got)
	}
	sandbox := descendants(p.cmd.Process.Pid)
	if len(sandbox) != 2 {
		t.Fatalf("sandbox processes %v, want the init stage and the worker", sandbox)
	}
	return p, sandbox
}

func TestReportReaderGone(t *testing.T) {
	repR, repW := pipe(t)
	p, sandbox := startReady(t, procOpts{runArgs: []string{"--profile", "xsnap", "--report-fd", "5"}, extra: []*os.File{repW}})
	repW.Close()
	repR.Close() // the kernel stopped reading before the worker died: the write gets EPIPE
	p.cmdW.Close()
	reportLost(t, p, sandbox, "write report to fd 5: write report-fd: broken pipe")
}

// fillPipe writes into w until the pipe is full and returns how much it took.
func fillPipe(t *testing.T, w *os.File) int {
	t.Helper()
	rc, err := w.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	chunk := bytes.Repeat([]byte{'x'}, 4096)
	var werr error
	rc.Write(func(fd uintptr) bool {
		for {
			n, err := unix.Write(int(fd), chunk)
			if n > 0 {
				total += n
			}
			if err != nil {
				if !errors.Is(err, unix.EAGAIN) {
					werr = err
				}
				return true // done, not "wait until writable"
			}
		}
	})
	if werr != nil || total < 4096 {
		t.Fatalf("filling the report pipe: %d bytes, %v", total, werr)
	}
	return total
}

// A report pipe that is full and never read must not make vatrun hang: it gives up after
// --report-timeout, exits 123, and the reader never sees part of a report.
func TestReportPipeFull(t *testing.T) {
	for _, blocking := range []bool{true, false} {
		name := "blocking fd"
		if !blocking {
			name = "non-blocking fd"
		}
		t.Run(name, func(t *testing.T) {
			repR, repW := pipe(t)
			filled := fillPipe(t, repW)
			if blocking {
				rc, _ := repW.SyscallConn()
				rc.Control(func(fd uintptr) { unix.SetNonblock(int(fd), false) })
			}
			p, sandbox := startReady(t, procOpts{runArgs: []string{"--profile", "xsnap", "--report-fd", "5", "--report-timeout", "300ms"}, extra: []*os.File{repW}})
			repW.Close()
			p.cmdW.Close()
			done := make(chan struct{})
			go func() {
				defer close(done)
				reportLost(t, p, sandbox, "write report to fd 5: not written after 300ms")
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("vatrun still running 10 s after the worker's end with a full report pipe")
			}
			data, _ := io.ReadAll(repR)
			if len(data) != filled || len(bytes.Trim(data, "x")) != 0 {
				t.Fatalf("the report pipe holds %d bytes (%d filler), %q beyond the filler: part of a report got in", len(data), filled, bytes.Trim(data, "x"))
			}
		})
	}
}

func TestReportFileFull(t *testing.T) {
	p, sandbox := startReady(t, procOpts{runArgs: []string{"--profile", "xsnap", "--report-file", "/dev/full"}})
	p.cmdW.Close()
	reportLost(t, p, sandbox, "write report to /dev/full: write /dev/full: no space left on device")
}

// --report-file is opened before anything starts, so a directory nobody may write to is refused
// up front (exit 125) and no worker runs. As root every directory is writable, so vatrun runs as
// nobody here.
func TestReportFileReadOnlyDir(t *testing.T) {
	dir := filepath.Join(sharedDir(t), "ro")
	if err := os.Mkdir(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	p := startVatrun(t, procOpts{runArgs: []string{"--profile", "xsnap", "--report-file", filepath.Join(dir, "report.json")}, workerArgs: []string{"--ready"}, asNobody: true})
	code := p.exit()
	stderr := p.stderrText()
	if code != 125 || !strings.Contains(stderr, "--report-file: open "+dir+"/report.json: permission denied") {
		t.Fatalf("exit %d, want 125 with the report file refused; stderr:\n%s", code, stderr)
	}
	if err := p.fd4Closed(time.Second); err != nil {
		t.Fatalf("the worker ran although its report file was refused: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "report.json")); err == nil {
		t.Fatal("report file created in a read-only directory")
	}
}
