package sandbox

import (
	"bufio"
	"errors"
	"github.com/vatrun/vatrun/launcher/workerio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const allNS = syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWNET

// baseSpec runs sh -c script in every namespace vatrun uses, with a user namespace when the test
// is not root (unprivileged namespaces need one).
func baseSpec(t *testing.T, script string) Spec {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("needs /bin/sh")
	}
	return Spec{
		Config: Config{Namespaces: allNS, UserNS: os.Geteuid() != 0, DropCaps: true, Hostname: "vat",
			Mounts: hostBins(t)},
		Path:     "/bin/sh",
		Args:     []string{"sh", "-c", script},
		Env:      []string{"PATH=/usr/bin:/bin"},
		CgroupFD: -1,
	}
}

// hostBins makes the host's /bin and /usr/bin visible in the minimal root (read-only), as they are
// on the host (a symlink or a directory), for the shell scripts these tests run as workers.
func hostBins(t *testing.T) []Mount {
	t.Helper()
	var ms []Mount
	for _, d := range []string{"/bin", "/usr/bin"} {
		st, err := os.Lstat(d)
		switch {
		case err != nil:
		case st.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(d)
			ms = append(ms, Mount{MountSymlink, target, d})
		default:
			ms = append(ms, Mount{MountRO, d, d})
		}
	}
	return ms
}

func start(t *testing.T, spec Spec) *Process {
	t.Helper()
	p, err := Start(spec)
	if err != nil {
		if errors.Is(err, syscall.EPERM) {
			t.Skipf("needs namespaces (root, or unprivileged user namespaces): %v", err)
		}
		t.Fatalf("Start: %v", err)
	}
	return p
}

func wait(t *testing.T, p *Process) Exit {
	t.Helper()
	ex, err := p.Wait()
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if !ex.Reported {
		t.Fatalf("init stage did not report the worker's status (stage status %v)", ex.Status)
	}
	return ex
}

// withPipes gives the worker a command pipe on fd 3 and a reply pipe on fd 4.
func withPipes(t *testing.T, spec *Spec) (cmdW *os.File, replyR *os.File) {
	t.Helper()
	p, err := workerio.New()
	if err != nil {
		t.Fatal(err)
	}
	spec.ExtraFiles = p.WorkerFiles()
	t.Cleanup(p.Close)
	return p.Commands, p.Results
}

func TestExitCodePassesThrough(t *testing.T) {
	ex := wait(t, start(t, baseSpec(t, "exit 42")))
	if !ex.Status.Exited() || ex.Status.ExitStatus() != 42 {
		t.Fatalf("status %v, want exit 42", ex.Status)
	}
}

func TestFds3And4RoundTripAndWorkerIsNotPid1(t *testing.T) {
	spec := baseSpec(t, `read x <&3; echo "got:$x pid:$$ host:$(cat /proc/sys/kernel/hostname)" >&4`)
	cmdW, replyR := withPipes(t, &spec)
	p := start(t, spec)
	spec.ExtraFiles[0].Close()
	spec.ExtraFiles[1].Close()
	if _, err := cmdW.WriteString("hello\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(replyR).ReadString('\n')
	if err != nil {
		t.Fatalf("reading reply on fd 4: %v", err)
	}
	if got, want := strings.TrimSpace(line), "got:hello pid:2 host:vat"; got != want {
		t.Fatalf("reply %q, want %q", got, want)
	}
	if p.WorkerPid != 2 {
		t.Fatalf("worker pid as the stage sees it = %d, want 2", p.WorkerPid)
	}
	if ex := wait(t, p); ex.Status.ExitStatus() != 0 {
		t.Fatalf("status %v", ex.Status)
	}
}

func TestOtherFdsAreClosed(t *testing.T) {
	// An fd inherited without close-on-exec (as from a Node.js parent) must not reach the worker.
	fd, err := unix.Open("/dev/null", unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	spec := baseSpec(t, `ls /proc/self/fd | sort -n | tr '\n' ' ' >&4`)
	_, replyR := withPipes(t, &spec)
	p := start(t, spec)
	spec.ExtraFiles[1].Close()
	buf := make([]byte, 100)
	n, _ := replyR.Read(buf)
	wait(t, p)
	// ls itself opens one fd to read the directory, so 0-4 plus that one.
	fields := strings.Fields(string(buf[:n]))
	if len(fields) != 6 || strings.Join(fields[:5], " ") != "0 1 2 3 4" {
		t.Fatalf("worker's fds: %q, want 0 1 2 3 4 and ls's own directory fd", fields)
	}
}

func TestReadOnlyRootAndPrivatePids(t *testing.T) {
	spec := baseSpec(t, `if touch /tmp/vatrun-ro-probe 2>/dev/null; then echo writable >&4; else echo ro >&4; fi; ls /proc | grep -c '^[0-9]' >&4`)
	_, replyR := withPipes(t, &spec)
	p := start(t, spec)
	spec.ExtraFiles[1].Close()
	r := bufio.NewReader(replyR)
	l1, _ := r.ReadString('\n')
	l2, _ := r.ReadString('\n')
	wait(t, p)
	if strings.TrimSpace(l1) != "ro" {
		t.Errorf("root is %q inside the sandbox, want read-only", strings.TrimSpace(l1))
	}
	// init stage, sh, and the subshell running ls/grep: a handful, never the host's hundreds.
	if n := strings.TrimSpace(l2); n == "" || len(n) > 1 {
		t.Errorf("worker sees %q processes in /proc, want a handful (its own pid namespace)", n)
	}
}

func TestRlimitCPUGivesSIGXCPU(t *testing.T) {
	spec := baseSpec(t, "while :; do :; done")
	spec.Config.Rlimits = []Rlimit{{Resource: unix.RLIMIT_CPU, Cur: 1, Max: 2}}
	ex := wait(t, start(t, spec))
	if !ex.Status.Signaled() || ex.Status.Signal() != unix.SIGXCPU {
		t.Fatalf("status %v, want SIGXCPU", ex.Status)
	}
	// The stage reads the worker's PROF clock, the one RLIMIT_CPU is enforced against,
	// so it says 1 s exactly (give or take a tick), whatever the load; rusage can differ by tenths.
	if cpu := ex.CPU; cpu < 950*time.Millisecond || cpu > 1200*time.Millisecond {
		t.Fatalf("worker used %v of CPU by its process clock, want 0.95s..1.2s: the limit give or take a tick (rusage said %v)", cpu, ex.Utime+ex.Stime)
	}
}

func TestMissingWorkerIsASetupError(t *testing.T) {
	spec := baseSpec(t, "")
	spec.Path = "/nonexistent/worker"
	_, err := Start(spec)
	var se *SetupError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want *SetupError", err)
	}
	if se.Errno != syscall.ENOENT || !strings.Contains(se.Step, "execve /nonexistent/worker") {
		t.Fatalf("SetupError = %+v, want execve ENOENT", se)
	}
}

func TestForwardedSignalReachesWorker(t *testing.T) {
	spec := baseSpec(t, `echo up >&4; exec sleep 30`)
	_, replyR := withPipes(t, &spec)
	p := start(t, spec)
	spec.ExtraFiles[1].Close()
	if _, err := bufio.NewReader(replyR).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ex := wait(t, p)
	if !ex.Status.Signaled() || ex.Status.Signal() != unix.SIGTERM {
		t.Fatalf("status %v, want the worker killed by the forwarded SIGTERM", ex.Status)
	}
}

func TestKillingStageKillsWorker(t *testing.T) {
	spec := baseSpec(t, `sleep 30 & echo $! >&4; wait`)
	_, replyR := withPipes(t, &spec)
	p := start(t, spec)
	spec.ExtraFiles[1].Close()
	if _, err := bufio.NewReader(replyR).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ex, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if ex.Reported || !ex.Status.Signaled() || ex.Status.Signal() != unix.SIGKILL {
		t.Fatalf("exit %+v, want the stage's own SIGKILL", ex)
	}
}

func TestWorkerHasNoPrivileges(t *testing.T) {
	spec := baseSpec(t, `grep -E '^(CapEff|CapPrm|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status | tr -s '\t ' ' ' >&4`)
	_, replyR := withPipes(t, &spec)
	p := start(t, spec)
	spec.ExtraFiles[1].Close()
	var lines []string
	sc := bufio.NewScanner(replyR)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	wait(t, p)
	want := []string{"CapPrm: 0000000000000000", "CapEff: 0000000000000000", "CapBnd: 0000000000000000", "CapAmb: 0000000000000000", "NoNewPrivs: 1"}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Fatalf("worker privileges:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// TestUnprivileged re-runs this package's tests as an unprivileged user (nobody) when the suite
// runs as root, so the user-namespace path is exercised in CI too.
func TestUnprivileged(t *testing.T) {
	if os.Getenv("VATRUN_UNPRIV_CHILD") != "" {
		t.Skip("already the unprivileged re-run")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to the nobody user (the tests above already ran unprivileged)")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "vatrun-unpriv-") // t.TempDir's parent is not traversable by nobody
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyPath := dir + "/sandbox.test"
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(copyPath, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(copyPath, "-test.v", "-test.run", "^Test[^U]")
	cmd.Dir = dir
	cmd.Env = []string{"VATRUN_UNPRIV_CHILD=1", "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("unprivileged run failed: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "--- SKIP") || !strings.Contains(string(out), "--- PASS: TestWorkerHasNoPrivileges") {
		t.Fatalf("unprivileged run skipped tests or missed some:\n%s", out)
	}
}

// WorkerRoot is cached per version of the executable: a rewritten worker gets a fresh list, and a
// caller's changes to its copy do not reach the next caller.
func TestWorkerRootCachedPerVersion(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("needs /bin/sh")
	}
	p := filepath.Join(t.TempDir(), "worker")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	has := func(ms []Mount, target string) bool {
		for _, m := range ms {
			if m.Target == target {
				return true
			}
		}
		return false
	}
	shell := func(ms []Mount) bool {
		for _, m := range ms {
			if m.Source == "/bin/sh" {
				return true
			}
		}
		return false
	}
	first, err := WorkerRoot(p)
	if err != nil {
		t.Fatal(err)
	}
	if !shell(first) {
		t.Fatalf("a #!/bin/sh worker's root lacks the shell: %+v", first)
	}
	first[0].Target = "/changed"
	again, _ := WorkerRoot(p)
	if has(again, "/changed") {
		t.Error("a caller's change to its list reached the cache")
	}
	// A new version (another size and mtime): no interpreter any more.
	if err := os.WriteFile(p, []byte("plain text, no interpreter at all\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if later, _ := WorkerRoot(p); shell(later) {
		t.Errorf("the rewritten worker (no #! any more) still gets the shell: the cache ignored the new version: %+v", later)
	}
}

// TestUIDSwitch (root only: only root may switch ids; named so that TestUnprivileged's re-run
// leaves it out): with SetIDs the worker runs as UID and GID with no supplementary groups, with
// and without a user namespace, and reaches its executable even when vatrun's umask is 077 (the
// minimal root's directories are made 0755 whatever the umask).
func TestUIDSwitch(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root may switch the worker to another uid")
	}
	const id = 1986098176
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	for _, userns := range []bool{false, true} {
		spec := baseSpec(t, `grep -E '^(Uid|Gid|Groups):' /proc/self/status | tr -s '\t ' ' ' >&4`)
		spec.Config.UserNS = userns
		spec.Config.SetIDs, spec.Config.UID, spec.Config.GID = true, id, id
		_, replyR := withPipes(t, &spec)
		p := start(t, spec)
		spec.ExtraFiles[1].Close()
		var lines []string
		sc := bufio.NewScanner(replyR)
		for sc.Scan() {
			lines = append(lines, strings.TrimSpace(sc.Text()))
		}
		if ex := wait(t, p); !ex.Status.Exited() || ex.Status.ExitStatus() != 0 {
			t.Errorf("userns %v: worker status %v", userns, ex.Status)
		}
		want := []string{"Uid: 1986098176 1986098176 1986098176 1986098176", "Gid: 1986098176 1986098176 1986098176 1986098176", "Groups:"}
		if strings.Join(lines, "|") != strings.Join(want, "|") {
			t.Errorf("userns %v: worker ids:\n%s\nwant:\n%s", userns, strings.Join(lines, "\n"), strings.Join(want, "\n"))
		}
	}
}
