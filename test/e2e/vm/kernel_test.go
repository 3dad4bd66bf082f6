package vm

// The reference kernel's reaction to the three crash timings of the seed issue (agoric-sdk
// #2958): a worker killed (1) in the middle of a long delivery, (2) while idle between
// deliveries, (3) during startup / its first delivery — in consensus mode (halt without
// committing; a restarted kernel resumes from the last commit) and in solo mode (restart and
// replay; terminate after the retry budget). Real cgroup v2 leaves, the consensus profile.

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/vatrun/vatrun/internal/proctree"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

type kernelRun struct {
	out  string
	code int
	took time.Duration
}

// kernelArgs are the common flags: the consensus profile pinned to its own digest, real cgroups.
func kernelArgs(t *testing.T, db, mode string) []string {
	t.Helper()
	digest, err := exec.Command(vatrunBin, "profile", "digest", "consensus").Output()
	if err != nil {
		t.Fatalf("vatrun profile digest consensus: %v", err)
	}
	return []string{"kernel", "--db", db, "--mode", mode, "--profile", "consensus",
		"--pin-digest", strings.TrimSpace(string(digest)), "--worker", "/bin/vatrun-testworker",
		"--backoff-base", "50ms"}
}

// runKernel runs `vatrun kernel` with steps; if killAfter > 0 it SIGKILLs the vat's worker
// (found through the process tree: kernel → init stage → worker) that long after the start.
func runKernel(t *testing.T, args []string, killAfter time.Duration, steps ...string) kernelRun {
	t.Helper()
	for _, s := range steps {
		args = append(args, "--step", s)
	}
	var out bytes.Buffer
	cmd := exec.Command(vatrunBin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if killAfter > 0 {
		go func() {
			time.Sleep(killAfter)
			for _, init := range proctree.Children(cmd.Process.Pid) {
				for _, w := range proctree.Children(init) {
					syscall.Kill(w, syscall.SIGKILL)
				}
			}
		}()
	}
	err := cmd.Wait()
	r := kernelRun{out: out.String(), took: time.Since(start)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("vatrun %s\n%s", strings.Join(args, " "), r.out)
	return r
}

// noLeaves fails if a worker leaf is left under this run's cgroup parent.
func noLeaves(t *testing.T) {
	t.Helper()
	if l := leaves(cgroupParentPath(t)); len(l) > 0 {
		t.Errorf("worker cgroup leaves left behind: %v", l)
	}
}

func kernelTimings(t *testing.T, who string) {
	needBinary(t, vatrunBin)
	needBinary(t, "/bin/vatrun-testworker")
	cases := []struct {
		name, timing string
		kill         time.Duration
		steps        []string
	}{
		{"mid-delivery", "killed during a 3 s delivery", 700 * time.Millisecond, []string{"v1:add:5", "v1:sleep:3000"}},
		{"idle", "killed while idle", 700 * time.Millisecond, []string{"v1:add:5", "idle:3s"}},
		{"startup", "first delivery aborts", 0, []string{"v1:add:5", "v2:abort"}},
	}
	for _, c := range cases {
		t.Run("consensus-"+c.name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "k.db")
			args := kernelArgs(t, db, "consensus")
			r := runKernel(t, args, c.kill, c.steps...)
			halted := r.code == 3 && strings.Contains(r.out, "kernel HALTED")
			committed := strings.Count(r.out, "(committed)")
			// Restart: the kernel resumes from the last commit (crank 1: v1's add:5).
			r2 := runKernel(t, args, 0, "v1:get")
			resumed := r2.code == 0 && strings.Contains(r2.out, "resuming at crank 1") && strings.Contains(r2.out, `"get" -> "sum:5"`)
			observed := fmt.Sprintf("exit %d, %d commit(s), resumed=%v", r.code, committed, resumed)
			row(t, fmt.Sprintf("kernel-consensus-%s-%s", c.name, who), c.timing+": halt, 1 commit, resume at crank 1", observed, r.took)
			if !halted || committed != 1 || !resumed {
				t.Errorf("consensus %s: halted=%v commits=%d resumed=%v", c.name, halted, committed, resumed)
			}
			noLeaves(t)
		})
		t.Run("solo-"+c.name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "k.db")
			args := kernelArgs(t, db, "solo")
			r := runKernel(t, args, c.kill, append(c.steps, "v1:get")...)
			var ok bool
			var expected string
			switch c.name {
			case "startup":
				// abort is resource exhaustion: one retry after backoff, then v2 is terminated; v1 is untouched.
				expected = "retry once, terminate v2, v1 intact"
				ok = r.code == 0 && strings.Count(r.out, "restart-worker") == 1 && strings.Contains(r.out, "vat v2 terminated (committed)") && strings.Contains(r.out, `"get" -> "sum:5"`)
			default:
				// An external kill: restart, replay, redeliver; the vat keeps its state.
				expected = "restart, replay, state kept"
				ok = r.code == 0 && strings.Contains(r.out, "cause=killed") && strings.Contains(r.out, "restart-worker") && strings.Contains(r.out, `"get" -> "sum:5"`)
			}
			row(t, fmt.Sprintf("kernel-solo-%s-%s", c.name, who), c.timing+": "+expected, fmt.Sprintf("exit %d, ok=%v", r.code, ok), r.took)
			if !ok {
				t.Errorf("solo %s: unexpected reaction", c.name)
			}
			noLeaves(t)
		})
	}
}

// TestKernelCrashTimings runs as root.
func TestKernelCrashTimings(t *testing.T) {
	vmTest(t)
	kernelTimings(t, "root")
}

// TestUnprivKernelCrashTimings runs as uid 1000 in its delegated subtree.
func TestUnprivKernelCrashTimings(t *testing.T) {
	vmTest(t)
	kernelTimings(t, "uid1000")
}
