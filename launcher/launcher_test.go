package launcher

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/vatrun/vatrun/launcher/workerio"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/report"
	"github.com/vatrun/vatrun/seccompprofiles"
)

func profile(t *testing.T, name string) *seccompprofiles.Profile {
	t.Helper()
	p, err := seccompprofiles.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type conn struct {
	cmdW   *os.File
	replyR *bufio.Reader
}

func (c *conn) call(t *testing.T, cmd string) string {
	t.Helper()
	if _, err := fmt.Fprintf(c.cmdW, "%d:%s,", len(cmd), cmd); err != nil {
		t.Fatalf("send %q: %v", cmd, err)
	}
	var n int
	if _, err := fmt.Fscanf(c.replyR, "%d:", &n); err != nil {
		t.Fatalf("reply to %q: %v", cmd, err)
	}
	buf := make([]byte, n+1)
	if _, err := c.replyR.Read(buf); err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

// launchWorker launches the C test worker under profile with fd 3/4 pipes.
func launchWorker(t *testing.T, ctx context.Context, p *seccompprofiles.Profile, args ...string) (*Worker, *conn) {
	t.Helper()
	pipes, err := workerio.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pipes.Close)
	cmdW, replyR := pipes.Commands, pipes.Results
	w, err := Launch(ctx, Spec{
		Profile:    p,
		Path:       testbin.Worker(t),
		Args:       append([]string{"worker"}, args...),
		ExtraFiles: pipes.WorkerFiles(),
		Cgroup:     CgroupOptions{Disable: true},
	})
	pipes.CloseWorkerEnds()
	if err != nil {
		if errors.Is(err, syscall.EPERM) {
			t.Skipf("needs namespaces (root or unprivileged user namespaces): %v", err)
		}
		t.Fatalf("Launch: %v", err)
	}
	t.Cleanup(func() { w.Stop("test cleanup"); w.Wait() })
	return w, &conn{cmdW: cmdW, replyR: bufio.NewReader(replyR)}
}

func TestLaunchAndCleanExit(t *testing.T) {
	w, c := launchWorker(t, context.Background(), profile(t, "xsnap"))
	if got := c.call(t, "add:7"); got != "sum:7" {
		t.Fatalf("reply %q", got)
	}
	w.SetPhase("idle")
	c.cmdW.Close()
	r := w.Wait()
	if r.Cause != report.CauseExited || r.ExitCode == nil || *r.ExitCode != 0 {
		t.Fatalf("report %s", r.OneLine())
	}
	if r.Phase != "idle" || r.KilledBy != report.KilledByNobody || r.CgroupEvidence || r.Pid != w.Pid() {
		t.Fatalf("report fields: phase %q killedBy %q cgroupEvidence %v pid %d (worker %d)", r.Phase, r.KilledBy, r.CgroupEvidence, r.Pid, w.Pid())
	}
	if len(r.Warnings) == 0 || !strings.Contains(r.Warnings[0], "cgroup evidence unavailable") {
		t.Fatalf("warnings %q, want the missing cgroup evidence explained", r.Warnings)
	}
	if ExitStatus(r) != 0 {
		t.Fatalf("ExitStatus %d", ExitStatus(r))
	}
}

func TestStopIsClassifiedStopped(t *testing.T) {
	w, c := launchWorker(t, context.Background(), profile(t, "xsnap"))
	if got := c.call(t, "ping"); got != "pong" {
		t.Fatal(got)
	}
	w.SetPhase("in-delivery")
	w.Stop("kernel asked")
	r := w.Wait()
	if r.Cause != report.CauseStopped || r.Class != report.ClassExternal || r.KilledBy != report.KilledByVatrun || r.KillReason != "kernel asked" || r.Phase != "in-delivery" {
		t.Fatalf("report %s (phase %q)", r.OneLine(), r.Phase)
	}
	if ExitStatus(r) != 128+int(syscall.SIGKILL) {
		t.Fatalf("ExitStatus %d, want 137", ExitStatus(r))
	}
}

func TestContextCancelStopsWorker(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	w, c := launchWorker(t, ctx, profile(t, "xsnap"))
	c.call(t, "ping")
	cancel()
	select {
	case <-w.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("worker not dead 5 s after its context was cancelled")
	}
	if r := w.Wait(); r.Cause != report.CauseStopped || !strings.Contains(r.KillReason, "context canceled") {
		t.Fatalf("report %s", r.OneLine())
	}
}

func TestForwardRecordsVatrunAsKiller(t *testing.T) {
	w, c := launchWorker(t, context.Background(), profile(t, "xsnap"))
	c.call(t, "ping")
	if err := w.Forward(syscall.SIGTERM, "operator asked"); err != nil {
		t.Fatal(err)
	}
	r := w.Wait()
	if r.Cause != report.CauseStopped || r.Signal != int(syscall.SIGTERM) || r.KillReason != "operator asked" {
		t.Fatalf("report %s", r.OneLine())
	}
}

func TestSignalIsNotVatrunsDoing(t *testing.T) {
	w, c := launchWorker(t, context.Background(), profile(t, "xsnap"))
	c.call(t, "ping")
	if err := w.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if r := w.Wait(); r.Cause != report.CauseExternalSignal || r.KilledBy != report.KilledByNobody {
		t.Fatalf("report %s", r.OneLine())
	}
}

func TestConcurrentLaunchesEachGetOneReport(t *testing.T) {
	const n = 20
	p := profile(t, "xsnap")
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, c := launchWorker(t, context.Background(), p)
			c.call(t, "ping")
			fmt.Fprintf(c.cmdW, "%d:exit:%d,", len(fmt.Sprintf("exit:%d", i+1)), i+1)
			codes[i] = ExitStatus(w.Wait())
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != i+1 {
			t.Errorf("worker %d exited %d, want %d", i, c, i+1)
		}
	}
}

func TestLaunchErrors(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "w")
	os.WriteFile(notExec, []byte("x"), 0o644)
	cases := []struct {
		name string
		spec Spec
		want error
	}{
		{"no profile", Spec{Path: "/bin/true"}, ErrConfig},
		{"missing", Spec{Profile: profile(t, "xsnap"), Path: filepath.Join(dir, "nope")}, ErrNotFound},
		{"not in PATH", Spec{Profile: profile(t, "xsnap"), Path: "vatrun-no-such-worker"}, ErrNotFound},
		{"not executable", Spec{Profile: profile(t, "xsnap"), Path: notExec}, ErrNotExecutable},
		{"directory", Spec{Profile: profile(t, "xsnap"), Path: dir}, ErrNotExecutable},
		{"consensus without cgroups", Spec{Profile: profile(t, "consensus"), Path: "/bin/true", Cgroup: CgroupOptions{Disable: true}}, ErrConfig},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Launch(context.Background(), c.spec)
			if !errors.Is(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
		})
	}
}

// A consensus profile on a host without unified cgroup v2 must refuse, never run degraded.
func TestConsensusRefusesWithoutCgroupV2(t *testing.T) {
	fake := t.TempDir() // not a cgroup2 tree at all
	_, err := Launch(context.Background(), Spec{Profile: profile(t, "consensus"), Path: "/bin/true", Cgroup: CgroupOptions{Root: fake}})
	if !errors.Is(err, ErrSetup) {
		t.Fatalf("err %v, want ErrSetup", err)
	}
	if !strings.Contains(err.Error(), "fix:") {
		t.Fatalf("refusal %q does not say how to fix it", err)
	}
}

// A worker given as an absolute symbolic link (xsnap-worker linked into /usr/local/bin) runs: the
// minimal root binds the file the link names, not a link that would point into the new root.
func TestResolvePathFollowsLinks(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "worker-link")
	target, err := filepath.Abs(testbin.Worker(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	got, err := ResolvePath(link)
	if err != nil || got != target {
		t.Fatalf("ResolvePath(%s) = %q, %v; want %q", link, got, err, target)
	}
	pipes, err := workerio.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pipes.Close)
	w, err := Launch(context.Background(), Spec{
		Profile: profile(t, "xsnap"), Path: link, Args: []string{"worker"},
		ExtraFiles: pipes.WorkerFiles(), Cgroup: CgroupOptions{Disable: true},
	})
	pipes.CloseWorkerEnds()
	if errors.Is(err, syscall.EPERM) {
		t.Skipf("needs namespaces (root or unprivileged user namespaces): %v", err)
	}
	if err != nil {
		t.Fatalf("Launch through %s → %s: %v", link, target, err)
	}
	c := &conn{cmdW: pipes.Commands, replyR: bufio.NewReader(pipes.Results)}
	if got := c.call(t, "ping"); got != "pong" {
		t.Fatalf("reply %q", got)
	}
	pipes.Commands.Close()
	if r := w.Wait(); r.Cause != report.CauseExited {
		t.Fatalf("report %s", r.OneLine())
	}
}
