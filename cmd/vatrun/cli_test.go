package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/report"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// -h and --help work on every command and subcommand: usage on stdout, exit 0, nothing run.
func TestHelpEverywhere(t *testing.T) {
	for _, args := range [][]string{
		{"-h"}, {"--help"}, {"help"},
		{"run"}, {"check"}, {"kernel"}, {"report"}, {"version"},
		{"profile"}, {"profile", "list"}, {"profile", "show"}, {"profile", "validate"}, {"profile", "digest"}, {"profile", "learn"},
	} {
		for _, h := range []string{"-h", "--help"} {
			argv := append(append([]string(nil), args...), h)
			if len(args) == 1 && strings.HasPrefix(args[0], "-") || args[0] == "help" {
				argv = args
			}
			var stdout, stderr bytes.Buffer
			code := realMain(argv, &stdout, &stderr)
			if code != 0 || !strings.Contains(strings.ToLower(stdout.String()), "usage") {
				t.Errorf("vatrun %s: exit %d, stdout %q, stderr %q; want 0 and the usage on stdout", strings.Join(argv, " "), code, stdout.String(), stderr.String())
			}
		}
	}
}

// vatrun version and --version: module, commit line, libseccomp version, every built-in digest.
func TestVersion(t *testing.T) {
	for _, argv := range [][]string{{"version"}, {"--version"}} {
		var stdout, stderr bytes.Buffer
		if code := realMain(argv, &stdout, &stderr); code != 0 {
			t.Fatalf("vatrun %v: exit %d, %s", argv, code, stderr.String())
		}
		out := stdout.String()
		if !regexp.MustCompile(`(?m)^libseccomp \d+\.\d+\.\d+$`).MatchString(out) || !regexp.MustCompile(`(?m)^commit `).MatchString(out) ||
			!strings.HasPrefix(out, "vatrun ") {
			t.Errorf("vatrun %v: %q lacks the version, commit or libseccomp lines", argv, out)
		}
		for _, n := range seccompprofiles.BuiltinNames() {
			p, _ := seccompprofiles.Builtin(n)
			if !strings.Contains(out, p.Digest()) {
				t.Errorf("vatrun %v: no digest of %s (%s) in %q", argv, n, p.Digest(), out)
			}
		}
	}
	// The binary built by make has its commit (Makefile ldflags, or Go's VCS stamp).
	out, err := exec.Command(testbin.Vatrun(t), "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^commit +[0-9a-f]{40}`).Match(out) {
		t.Skipf("the binary under test has no commit (not built by make from a git tree): %s", out)
	}
}

// Usage errors exit 125 from every command, the kernel included (it used to exit 2).
func TestUsageExitEverywhere(t *testing.T) {
	for _, argv := range [][]string{{"nosuch"}, {"run", "--nosuch"}, {"check", "--nosuch"}, {"kernel", "--nosuch"}, {"kernel"}, {"report"}, {"report", "--nosuch", "x"}, {"version", "extra"}, {"profile", "nosuch"}, {"profile", "learn", "--nosuch"}} {
		var stdout, stderr bytes.Buffer
		if code := realMain(argv, &stdout, &stderr); code != exitUsage {
			t.Errorf("vatrun %v: exit %d, want %d (stderr %q)", argv, code, exitUsage, stderr.String())
		}
	}
}

// --report-file - is refused (stdout is the worker's too), and no file named "-" appears.
func TestReportFileDashRefused(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(testbin.Vatrun(t), "run", "--profile", "xsnap", "--no-cgroup", "--report-file", "-", "--", "/bin/true")
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if code, _, _ := testbin.ExitOf(err); code != exitUsage || !strings.Contains(stderr.String(), "stdout is shared with the worker") {
		t.Errorf("run --report-file -: %v, stderr %q; want %d and why", err, stderr.String(), exitUsage)
	}
	if _, err := os.Stat(filepath.Join(dir, "-")); err == nil {
		t.Error(`a file named "-" was created`)
	}
}

// openPTY returns a pseudo-terminal's master and slave.
func openPTY(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open the pty slave: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// A run without a report destination says so: its one-line report on a terminal's stderr;
// nothing on a stderr that is not a terminal (shared with a kernel) unless --log-level info.
func TestNoReportDestination(t *testing.T) {
	bin := testbin.Vatrun(t)
	m, s := openPTY(t)
	cmd := exec.Command(bin, "run", "--profile", "xsnap", "--no-cgroup", "--", "/bin/true")
	cmd.Stderr = s
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	m.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, _ := m.Read(buf)
	if got := string(buf[:n]); !strings.Contains(got, "report not written (no --report-fd or --report-file)") || !strings.Contains(got, "cause=exited") {
		t.Errorf("terminal stderr %q, want the report's one-line form and why it was not written", got)
	}

	for _, c := range []struct {
		level string
		want  bool
	}{{"warn", false}, {"info", true}} {
		cmd := exec.Command(bin, "run", "--profile", "xsnap", "--no-cgroup", "--log-level", c.level, "--", "/bin/true")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(stderr.String(), "report not written"); got != c.want {
			t.Errorf("--log-level %s, stderr a pipe: %q; want the dropped-report line: %v", c.level, stderr.String(), c.want)
		}
	}
}

// vatrun report on an empty file says why it is empty; on a report, it prints the warnings'
// text after the one line; --json prints the report itself.
func TestReportCommand(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.json")
	os.WriteFile(empty, nil, 0o644)
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"report", empty}, &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), "is empty: no report was written") || strings.Contains(stderr.String(), "EOF") {
		t.Errorf("report on an empty file: exit %d, stderr %q; want %d and why it is empty", code, stderr.String(), exitUsage)
	}

	r := report.Build(report.Evidence{SetupError: "cgroup: no such parent"})
	r.Warnings = []string{"cgroup evidence unavailable: no leaf", "second\nwarning"}
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "r.json")
	os.WriteFile(file, data, 0o644)
	stdout.Reset()
	stderr.Reset()
	if code := realMain([]string{"report", file}, &stdout, &stderr); code != 0 {
		t.Fatalf("report: exit %d, %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "warnings=2") || lines[1] != "  warning: cgroup evidence unavailable: no leaf" || lines[2] != "  warning: second warning" {
		t.Errorf("report output %q, want the line then one line per warning", stdout.String())
	}
	stdout.Reset()
	if code := realMain([]string{"report", "--json", file}, &stdout, &stderr); code != 0 {
		t.Fatalf("report --json: exit %d, %s", code, stderr.String())
	}
	var back report.Report
	if err := json.Unmarshal(stdout.Bytes(), &back); err != nil || back.Cause != r.Cause || len(back.Warnings) != 2 {
		t.Errorf("report --json %q: %v, want the report back", stdout.String(), err)
	}
}
