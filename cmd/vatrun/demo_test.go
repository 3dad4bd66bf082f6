package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vatrun/vatrun/internal/testbin"
)

// make demo (scripts/demo.sh) reads like a story: no bash job-control notices for the deaths it
// shows (vatrun mirrors each worker's death by signal), and the text of every warning a report
// counts (warnings=N) is printed.
func TestDemoReadsLikeAStory(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the demo runs about 2 s")
	}
	for _, tool := range []string{"bash", "pgrep", "mkfifo"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	cmd := exec.Command(filepath.Join(testbin.RepoRoot(), "scripts/demo.sh"))
	cmd.Env = append(cmd.Environ(), "VATRUN="+testbin.Vatrun(t), "WORKER="+testbin.Worker(t))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	text := string(out)
	noise := regexp.MustCompile(`(?m)line \d+: +\d+ |Segmentation fault|CPU time limit exceeded|Bad system call|^.*\bAborted\b|\bKilled\b|\bTerminated\b`)
	if m := noise.FindString(text); m != "" {
		t.Errorf("demo output has a job-control notice %q:\n%s", m, text)
	}
	if !strings.Contains(text, "cause=sandbox-violation") || !strings.Contains(text, "cause=cpu-limit") {
		t.Errorf("demo output lacks its cases:\n%s", text)
	}
	// Sections 1-3 (vatrun run): a report with warnings has its warning text printed.
	runPart, _, _ := strings.Cut(text, "4. The reference kernel")
	if strings.Contains(runPart, "warnings=") && !strings.Contains(runPart, "      warning: ") {
		t.Errorf("reports count warnings but the demo never prints one:\n%s", runPart)
	}
}
