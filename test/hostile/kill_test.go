package hostile

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/launcher/runclient"
	"github.com/vatrun/vatrun/report"
)

// TestKillVatrunAtEveryStage SIGKILLs vatrun at each stage of a worker's life, through the
// pause hooks of bin/vatrun-hooks (VATRUN_TEST_PAUSE: cmd/vatrun/testhooks.go, and stage.c for
// in-setup, compiled only with the vatrun_testhooks tag), and checks that no
// process of the sandbox survives (by pid and start time), that fd 4 reaches EOF, and that a Go
// kernel using runclient gets a launcher-died report.
func TestKillVatrunAtEveryStage(t *testing.T) {
	for _, c := range []struct {
		stage string
		pause string // the stderr line that says vatrun (or the init stage) reached the stage
	}{
		{stage: "before-launch", pause: "vatrun-test-pause before-launch"},
		{stage: "in-setup", pause: "vatrun-test-pause in-setup"},
		{stage: "during-run"}, // no hook: the worker said "ready", vatrun waits for it
		{stage: "before-report", pause: "vatrun-test-pause before-report"},
	} {
		t.Run(c.stage, func(t *testing.T) {
			env := []string{"VATRUN_TEST_PAUSE=" + c.stage}
			p := startVatrun(t, procOpts{runArgs: []string{"--profile", "xsnap"}, workerArgs: []string{"--ready"}, env: env, hooks: true})
			vatrunID, ok := identify(p.cmd.Process.Pid)
			if !ok {
				t.Fatal("vatrun already gone")
			}
			switch c.stage {
			case "during-run":
				if got := p.reply(); got != "ready" {
					t.Fatalf("first reply %q", got)
				}
			case "before-report":
				if got := p.reply(); got != "ready" {
					t.Fatalf("first reply %q", got)
				}
				p.send("exit:3")
				p.waitLine(c.pause, 10*time.Second)
			default:
				p.waitLine(c.pause, 10*time.Second)
			}
			sandbox := descendants(p.cmd.Process.Pid)
			switch c.stage {
			case "before-launch":
				if len(sandbox) != 0 {
					t.Fatalf("vatrun has descendants %v at %s, want none", sandbox, c.stage)
				}
			case "before-report":
				// The worker is dead; the report goes out as soon as the init stage says so, and
				// the stage (which exits right after) may not be reaped yet: at most that one.
				if len(sandbox) > 1 {
					t.Fatalf("vatrun has descendants %v at %s, want at most the exiting init stage", sandbox, c.stage)
				}
			default:
				// The init stage and the worker (or the worker's side of the fork, in setup).
				if len(sandbox) != 2 {
					t.Fatalf("vatrun's descendants at %s: %v, want the init stage and the worker", c.stage, sandbox)
				}
			}
			p.cmd.Process.Kill()
			if code := p.exit(); code != 137 {
				t.Fatalf("vatrun exit %d, want 137 (SIGKILL)", code)
			}
			if left := goneWithin(append(sandbox, vatrunID), 5*time.Second); len(left) != 0 {
				t.Fatalf("still alive 5 s after vatrun was SIGKILLed at %s: %v", c.stage, left)
			}
			if err := p.fd4Closed(5 * time.Second); err != nil {
				t.Fatalf("after vatrun was SIGKILLed at %s: %v", c.stage, err)
			}
		})
	}
}

// TestKillVatrunGivesLauncherDied: the Go kernel's view of the same deaths, through runclient.
func TestKillVatrunGivesLauncherDied(t *testing.T) {
	for _, stage := range []string{"before-launch", "in-setup", "before-report"} {
		t.Run(stage, func(t *testing.T) {
			c := runclient.Command(testbin.VatrunHooks(t), []string{"--profile", "xsnap", "--log-level", "warn"}, testbin.Worker(t), "--exit-at-start", "3")
			errR, errW := pipe(t)
			c.Stderr = errW
			c.Env = append(os.Environ(), "VATRUN_TEST_PAUSE="+stage)
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			errW.Close()
			buf := make([]byte, 256)
			errR.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := errR.Read(buf)
			if err != nil || !strings.HasPrefix(string(buf[:n]), "vatrun-test-pause "+stage) {
				t.Fatalf("stderr %q, %v: want the %s pause", buf[:n], err, stage)
			}
			c.Process.Kill()
			r, err := c.Wait()
			if err != nil {
				t.Fatal(err)
			}
			if r.Cause != report.CauseLauncherDied || r.Class != report.ClassExternal {
				t.Fatalf("report %s, want launcher-died/external", r.OneLine())
			}
		})
	}
}

// TestProductionBinaryHasNoHooks: bin/vatrun ignores $VATRUN_TEST_PAUSE at every stage (a pause
// would hold the worker's first reply or the exit for 30 s and print its line), so nothing in
// the environment of a production vatrun can stall it between fork and exec or before the report.
func TestProductionBinaryHasNoHooks(t *testing.T) {
	for _, stage := range []string{"before-launch", "in-setup", "before-report"} {
		t.Run(stage, func(t *testing.T) {
			p := startVatrun(t, procOpts{runArgs: []string{"--profile", "xsnap"}, workerArgs: []string{"--ready"},
				env: []string{"VATRUN_TEST_PAUSE=" + stage}})
			if got := p.reply(); got != "ready" {
				t.Fatalf("first reply %q", got)
			}
			start := time.Now()
			p.send("exit:0")
			if code := p.exit(); code != 0 {
				t.Errorf("vatrun exited %d, want the worker's 0", code)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("vatrun took %v to exit after the worker: it paused", d)
			}
			if out := p.stderrText(); strings.Contains(out, "vatrun-test-pause") {
				t.Errorf("bin/vatrun paused at %s: %q", stage, out)
			}
		})
	}
}
