package runclient

import (
	"bufio"
	"encoding/json"
	"github.com/vatrun/vatrun/launcher/workerio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/report"
)

// start runs the real vatrun with the C test worker (--ready) and returns the command pipe's
// write end and the reply pipe's reader, once the worker said "ready".
func start(t *testing.T, c *Cmd) (*os.File, *bufio.Reader) {
	t.Helper()
	pipes, err := workerio.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pipes.Close)
	cmdW, replyR := pipes.Commands, pipes.Results
	c.ExtraFiles = pipes.WorkerFiles()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	pipes.CloseWorkerEnds()
	t.Cleanup(func() { c.Process.Kill() })
	br := bufio.NewReader(replyR)
	if line, err := br.ReadString(','); err != nil || line != "5:ready," {
		t.Fatalf("first reply %q, %v", line, err)
	}
	return cmdW, br
}

func TestReportComesThrough(t *testing.T) {
	c := Command(testbin.Vatrun(t), []string{"--profile", "xsnap", "--log-level", "warn"}, testbin.Worker(t), "--ready")
	cmdW, _ := start(t, c)
	if c.ReportFD() != 5 {
		t.Fatalf("report fd %d, want 5 (after fds 3 and 4)", c.ReportFD())
	}
	cmdW.WriteString("6:exit:3,")
	r, err := c.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if r.Cause != report.CauseExitCode || r.ExitCode == nil || *r.ExitCode != 3 || c.ProcessState.ExitCode() != 3 {
		t.Fatalf("report %s, vatrun exit %d", r.OneLine(), c.ProcessState.ExitCode())
	}
}

func TestSIGKILLedVatrunIsLauncherDied(t *testing.T) {
	c := Command(testbin.Vatrun(t), []string{"--profile", "xsnap", "--log-level", "warn"}, testbin.Worker(t), "--ready")
	_, replies := start(t, c)
	c.Process.Kill()
	r, err := c.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if r.Cause != report.CauseLauncherDied || r.Class != report.ClassExternal || !strings.Contains(r.Detail, "killed by SIGKILL") {
		t.Fatalf("report %s", r.OneLine())
	}
	// The kernel's other signal: the worker's fd 4 reaches EOF because the worker died.
	done := make(chan error, 1)
	go func() { _, err := replies.ReadByte(); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("fd 4 still delivers data after vatrun was SIGKILLed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("fd 4 still open 5 s after vatrun was SIGKILLed: the worker survived")
	}
	checkValid(t, r)
}

func fakeVatrun(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vatrun")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNoOrBadReport(t *testing.T) {
	for _, c := range []struct {
		name, script, want string
	}{
		{"exits without a report", "exit 125", "exited with code 125 and it wrote no report"},
		{"half a report", `printf '{"version":1,"cau' >&5; exit 0`, "its report is unreadable"},
		{"not JSON", `echo hello >&5; exit 0`, "its report is unreadable"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := Command(fakeVatrun(t, c.script), []string{"--profile", "xsnap"}, "/bin/true")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if cmd.ReportFD() != 5 {
				t.Fatalf("report fd %d, want 5 (fds 3 and 4 closed)", cmd.ReportFD())
			}
			r, err := cmd.Wait()
			if err != nil {
				t.Fatal(err)
			}
			if r.Cause != report.CauseLauncherDied || r.Class != report.ClassLauncherError || !strings.Contains(r.Detail, c.want) {
				t.Fatalf("report %s, want launcher-died/launcher-error saying %q", r.OneLine(), c.want)
			}
			checkValid(t, r)
		})
	}
}

// TestLauncherDiedStatus: how vatrun ended decides the class, and the detail says it.
func TestLauncherDiedStatus(t *testing.T) {
	ended := func(script string) *os.ProcessState {
		c := exec.Command("/bin/sh", "-c", script)
		c.Run()
		return c.ProcessState
	}
	for _, c := range []struct {
		name  string
		state *os.ProcessState
		class report.Class
		want  string
	}{
		{"SIGTERM", ended("kill -TERM $$"), report.ClassExternal, "vatrun (pid 42) was killed by SIGTERM and it wrote no report; its worker died with it"},
		{"unnamed signal", ended("kill -40 $$"), report.ClassExternal, "was killed by signal 40 and"},
		{"exit 123", ended("exit 123"), report.ClassLauncherError, "vatrun (pid 42) exited with code 123 and it wrote no report; vatrun's stderr says why"},
		{"never waited for", nil, report.ClassLauncherError, "vatrun (pid 42) ended and it wrote no report; the worker's own status is unknown"},
	} {
		r := LauncherDied(42, c.state, "it wrote no report")
		if r.Cause != report.CauseLauncherDied || r.Class != c.class || r.KilledBy != report.KilledByNobody || !strings.Contains(r.Detail, c.want) {
			t.Errorf("%s: report %s, want launcher-died/%s saying %q", c.name, r.OneLine(), c.class, c.want)
		}
		checkValid(t, r)
	}
}

func TestArgs(t *testing.T) {
	c := Command("/x/vatrun", []string{"--profile", "p"}, "w", "a")
	c.ExtraFiles = []*os.File{nil, nil, nil}
	c.Path = "/bin/true" // Start must still build vatrun's argv around the report fd
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	c.Wait()
	if got, want := strings.Join(c.Args[1:], " "), "run --profile p --report-fd 6 -- w a"; got != want {
		t.Fatalf("args %q, want %q", got, want)
	}
	if len(c.ExtraFiles) != 3 {
		t.Fatalf("ExtraFiles changed: %d entries", len(c.ExtraFiles))
	}
}

// checkValid: a synthesized report is a valid schema-1 report.
func checkValid(t *testing.T, r report.Report) {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := report.Decode(b); err != nil {
		t.Fatalf("synthesized report does not decode: %v\n%s", err, b)
	}
}
