package hostile

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vatrun/vatrun/internal/launchtest"
	"github.com/vatrun/vatrun/internal/testbin"
)

// TestNoOrphanAtAnyMoment SIGKILLs vatrun at times swept across its start-up (0 to 15 ms after
// the exec, where the init stage is cloned, sets up the sandbox and forks the worker) and then
// looks through all of /proc for anything of the sandbox that survived: the worker is started
// with a marker argument, which the init stage carries in its argv too. Issue 13 found 11 of
// 400 such kills leaving the init stage and the worker running with ppid 1.
func TestNoOrphanAtAnyMoment(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 200
	}
	bin, worker := testbin.Vatrun(t), testbin.Worker(t)
	marker := fmt.Sprintf("%d", 600000+os.Getpid()%1000) // --sleep-at-start MS, unique to this test process
	launchtest.Sweep(n, 2, func(i int) {
		cmd := exec.Command(bin, "run", "--profile", "xsnap", "--no-cgroup", "--", worker, "--sleep-at-start", marker)
		if err := cmd.Start(); err != nil {
			t.Error(err)
			return
		}
		time.Sleep(time.Duration(i%60) * 250 * time.Microsecond)
		cmd.Process.Kill()
		cmd.Wait()
	})
	var left []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		left = withArg(worker, marker)
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) > 0 {
		t.Fatalf("%d SIGKILLs of vatrun swept over 0-15 ms left sandbox processes alive 5 s later: %v", n, left)
	}
}

// withArg lists the live (not zombie) processes whose argv holds both path and arg.
func withArg(path, arg string) []string {
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmdline, err := os.ReadFile(d + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		hasPath, hasArg := false, false
		for _, a := range args {
			hasPath = hasPath || a == path
			hasArg = hasArg || a == arg
		}
		if !hasPath || !hasArg {
			continue
		}
		if st, _ := os.ReadFile(d + "/stat"); strings.Contains(string(st), ") Z ") {
			continue
		}
		out = append(out, filepath.Base(d)+" "+strings.Join(args, " "))
	}
	return out
}
