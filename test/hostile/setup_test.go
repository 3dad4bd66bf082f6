package hostile

import (
	"encoding/binary"
	"errors"
	"github.com/vatrun/vatrun/internal/proctree"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/report"
	"github.com/vatrun/vatrun/sandbox"
)

const exitSetupFailed = 122

// setupRefused checks a fail-closed start: exit code want, stderr saying msg, the worker never ran
// (it would have answered "ready" on fd 4), and, when report is set, a setup-failed report.
func setupRefused(t *testing.T, p *vatrunProc, want int, msg, reportPath string) {
	t.Helper()
	code := p.exit()
	stderr := p.stderrText()
	if code != want || !strings.Contains(stderr, msg) {
		t.Fatalf("vatrun exit %d, want %d with stderr saying %q; stderr:\n%s", code, want, msg, stderr)
	}
	if err := p.fd4Closed(time.Second); err != nil {
		t.Fatalf("the worker ran: %v", err)
	}
	if reportPath == "" {
		return
	}
	r := readReportFile(t, reportPath)
	if r == nil {
		t.Fatalf("no report in %s", reportPath)
	}
	if r.Cause != report.CauseSetupFailed || r.Class != report.ClassLauncherError || r.ExitCode != nil || r.Signal != 0 || !strings.Contains(r.SetupError, msg) {
		t.Fatalf("report %s (setupError %q), want setup-failed saying %q", r.OneLine(), r.SetupError, msg)
	}
}

func writeProfile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name+".json")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A limit the kernel refuses (RLIMIT_NOFILE hard above the caller's hard limit, without
// CAP_SYS_RESOURCE: vatrun runs as nobody) fails the setup before exec: exit 122, setup-failed.
func TestSetupRlimitRefused(t *testing.T) {
	var rl unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &rl)
	if rl.Max >= 1048576 {
		t.Skipf("RLIMIT_NOFILE hard is already %d here: nothing to refuse", rl.Max)
	}
	dir := sharedDir(t)
	prof := writeProfile(t, dir, "bignofile", `{"name": "bignofile", "limits": {"nofile": 1048576}, "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}`)
	rep := filepath.Join(dir, "report.json")
	p := startVatrun(t, procOpts{runArgs: []string{"--profile", prof, "--report-file", rep}, workerArgs: []string{"--ready"}, asNobody: true})
	setupRefused(t, p, exitSetupFailed, "setrlimit resource 7 to 1048576/1048576", rep)
}

// Namespaces without CAP_SYS_ADMIN and without a user namespace cannot be created: a profile
// that forbids the user namespace is refused up front as a configuration error (125, nothing
// started), not run without namespaces.
func TestSetupUserNamespaceForbidden(t *testing.T) {
	dir := sharedDir(t)
	prof := writeProfile(t, dir, "nouserns", `{"name": "nouserns", "namespaces": {"user": "never"}, "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}`)
	p := startVatrun(t, procOpts{runArgs: []string{"--profile", prof}, workerArgs: []string{"--ready"}, asNobody: true})
	setupRefused(t, p, 125, `forbids a user namespace ("user": "never"), but vatrun runs without CAP_SYS_ADMIN`, "")
}

// A seccomp program the kernel rejects fails the setup at the last step before exec; the worker
// binary never runs. Through sandbox.Start directly: a profile cannot produce such a program.
func TestSetupSeccompRejected(t *testing.T) {
	worker := testbin.Worker(t)
	for _, c := range []struct {
		name string
		prog []byte
	}{
		{"invalid opcode", bpf(0xffff, 0)},
		{"no return", bpf(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 0)},
		{"jump out of the program", append(bpf(unix.BPF_JMP|unix.BPF_JA, 5), bpf(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_ALLOW)...)},
	} {
		t.Run(c.name, func(t *testing.T) {
			pipes := testbin.WorkerPipes(t)
			replyR := pipes.Results
			before := len(proctree.Children(os.Getpid()))
			proc, err := sandbox.Start(sandbox.Spec{
				Config: sandbox.Config{Namespaces: unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET,
					UserNS: os.Geteuid() != 0, DropCaps: true, Hostname: "vat", BPF: c.prog},
				Path:       worker,
				Args:       []string{"worker", "--ready"},
				ExtraFiles: pipes.WorkerFiles(),
				CgroupFD:   -1,
			})
			pipes.CloseWorkerEnds()
			var se *sandbox.SetupError
			if !errors.As(err, &se) {
				if proc != nil {
					proc.Signal(syscall.SIGKILL)
					proc.Wait()
				}
				t.Fatalf("Start: %v, want a *sandbox.SetupError", err)
			}
			if !strings.Contains(se.Step, "load the seccomp filter") || se.Errno != unix.EINVAL {
				t.Fatalf("setup error %v, want the seccomp load refused with EINVAL", se)
			}
			buf := make([]byte, 16)
			replyR.SetReadDeadline(time.Now().Add(time.Second))
			if n, err := replyR.Read(buf); n != 0 || err == nil {
				t.Fatalf("the worker ran without its filter: fd 4 got %q (%v)", buf[:n], err)
			}
			if after := len(proctree.Children(os.Getpid())); after != before {
				t.Fatalf("children before %d, after %d: the failed setup left a process", before, after)
			}
		})
	}
}

func bpf(code uint16, k uint32) []byte {
	b := make([]byte, 8)
	binary.NativeEndian.PutUint16(b[0:], code)
	binary.NativeEndian.PutUint32(b[4:], k)
	return b
}

// A consensus profile on this host (no unified cgroup v2 here) refuses to run, with a fix, and
// never runs the worker with a limit silently dropped.
func TestConsensusRefusesToDegrade(t *testing.T) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == "/sys/fs/cgroup" && strings.Contains(l, " - cgroup2 ") {
			t.Skip("this host has a unified cgroup v2 mount: the refusal is tested in the e2e VM and by launcher's fake tree")
		}
	}
	rep := filepath.Join(t.TempDir(), "report.json")
	env := []string{"VATRUN_CGROUP_PARENT="}
	p := startVatrun(t, procOpts{runArgs: []string{"--profile", "consensus", "--report-file", rep}, workerArgs: []string{"--ready"}, env: env})
	setupRefused(t, p, exitSetupFailed, "fix:", rep)
	if r := readReportFile(t, rep); r.ProfileName != "consensus" || !strings.Contains(r.SetupError, "cgroup") {
		t.Fatalf("report %s: want the consensus profile named and the cgroup problem", r.OneLine())
	}
}
