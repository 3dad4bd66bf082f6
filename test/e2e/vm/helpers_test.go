package vm

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const cgroupRoot = "/sys/fs/cgroup"

// helpers are the modes this test binary can be re-executed in (startHelper).
// A helper gets its arguments and returns the process exit code.
var helpers = map[string]func(args []string) int{
	"alloc": helperAlloc,
}

const helperEnv = "VATRUN_E2E_HELPER"

func TestMain(m *testing.M) {
	if name := os.Getenv(helperEnv); name != "" {
		h, ok := helpers[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown helper %q\n", name)
			os.Exit(2)
		}
		os.Exit(h(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// inVM reports whether this process runs under the e2e VM's init: the
// environment says so and pid 1 is /init. Both, so that a stray
// VATRUN_IN_VM=1 on a host cannot make these tests touch the host's cgroups.
func inVM() bool {
	if os.Getenv("VATRUN_IN_VM") != "1" {
		return false
	}
	cmdline, err := os.ReadFile("/proc/1/cmdline")
	return err == nil && string(cmdline) == "/init\x00"
}

// strict is set by the host when VATRUN_E2E=1: missing pieces fail, not skip.
func strict() bool { return os.Getenv("VATRUN_E2E_STRICT") == "1" }

// vmTest skips t outside the VM, and in the run that is not its own: tests
// named TestUnpriv* run as uid 1000, the others as root.
func vmTest(t *testing.T) {
	t.Helper()
	if !inVM() {
		t.Skip("not in the e2e VM: these tests run there via `go test ./test/e2e`")
	}
	unpriv := strings.HasPrefix(t.Name(), "TestUnpriv")
	switch root := os.Getuid() == 0; {
	case unpriv && root:
		t.Skip("unprivileged test: runs in the uid-1000 run")
	case !unpriv && !root:
		t.Skip("root test: runs in the root run")
	}
}

// needBinary skips (or, in strict runs, fails) when path is not in the VM.
func needBinary(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if strict() {
			t.Fatalf("%s is missing in the VM (set VATRUN_BIN / VATRUN_TESTWORKER on the host): %v", path, err)
		}
		t.Skipf("%s is not in the VM: %v", path, err)
	}
}

// row prints one line of the host's result table.
func row(t *testing.T, name, expected, observed string, d time.Duration) {
	t.Helper()
	clean := func(s string) string { return strings.NewReplacer("|", "/", "\n", " ").Replace(s) }
	fmt.Printf("E2E-ROW %s|%s|%s|%.3f\n", clean(name), clean(expected), clean(observed), d.Seconds())
}

// cgroupParent is the directory of the cgroup the run may create children
// in: delegated to this uid, with memory, cpu and pids enabled for its
// children, holding no process. The run itself sits in its child
// vatrun-supervisor, so vatrun's default parent is this one.
func cgroupParent(t *testing.T) string {
	t.Helper()
	return filepath.Join(cgroupRoot, cgroupParentPath(t))
}

// cgroupParentPath is the same as a cgroup path ("/e2e-u1000"), the form
// vatrun's --cgroup-parent and VATRUN_CGROUP_PARENT take.
func cgroupParentPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("VATRUN_E2E_CGROUP_PARENT")
	if p == "" {
		t.Fatal("VATRUN_E2E_CGROUP_PARENT is not set by the VM init")
	}
	return p
}

// ownCgroup returns this process's cgroup v2 path (relative to the root).
func ownCgroup(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatalf("read /proc/self/cgroup: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			return rest
		}
	}
	t.Fatalf("no cgroup v2 line in /proc/self/cgroup: %q", b)
	return ""
}

var cgroupSeq atomic.Int64

// newCgroup creates a child of the run's cgroup parent, writes settings
// ("file", "value" pairs, in order) and removes it at cleanup after killing
// what is left in it.
func newCgroup(t *testing.T, settings ...string) string {
	t.Helper()
	if len(settings)%2 != 0 {
		t.Fatal("newCgroup: settings must be file/value pairs")
	}
	name := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_")
	dir := filepath.Join(cgroupParent(t), fmt.Sprintf("%s-%d", name, cgroupSeq.Add(1)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	t.Cleanup(func() { removeCgroup(t, dir) })
	for i := 0; i < len(settings); i += 2 {
		writeFile(t, filepath.Join(dir, settings[i]), settings[i+1])
	}
	return dir
}

func removeCgroup(t *testing.T, dir string) {
	t.Helper()
	_ = os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	var err error
	for i := 0; i < 100; i++ {
		if err = os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("remove cgroup %s: %v", dir, err)
}

func writeFile(t *testing.T, path, value string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(value), 0); err != nil {
		t.Fatalf("write %q to %s: %v", value, path, err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return strings.TrimSpace(string(b))
}

// readKeyed parses a flat-keyed cgroup file such as memory.events.
func readKeyed(t *testing.T, path string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(readFile(t, path)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			t.Fatalf("%s: %q: %v", path, sc.Text(), err)
		}
		out[f[0]] = n
	}
	return out
}

func readInt(t *testing.T, path string) int64 {
	t.Helper()
	s := readFile(t, path)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%s: %q: %v", path, s, err)
	}
	return n
}

// startHelper re-executes this test binary in helper mode name; with cgroup
// set, the child is created directly in that cgroup (CLONE_INTO_CGROUP).
func startHelper(t *testing.T, cgroup, name string, args ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("os.Executable: %v", err)
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+name)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if cgroup != "" {
		fd, err := os.Open(cgroup)
		if err != nil {
			t.Fatalf("open cgroup: %v", err)
		}
		defer fd.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper %s in %s: %v", name, cgroup, err)
	}
	return cmd
}

// waitSignal waits for cmd and returns the signal that killed it (0 if it exited).
func waitSignal(t *testing.T, cmd *exec.Cmd) (syscall.Signal, int) {
	t.Helper()
	err := cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("wait: %v", err)
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return ws.Signal(), -1
	}
	return 0, ws.ExitStatus()
}

// parseSize understands 123, 64K, 64M, 1G.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad size %q: %w", s, err)
	}
	return n * mult, nil
}

// helperAlloc allocates and touches args[0] bytes (e.g. 64M), then exits 0.
// Under a smaller memory.max it should be OOM-killed before that.
func helperAlloc(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "alloc: want one size argument")
		return 2
	}
	n, err := parseSize(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "alloc:", err)
		return 2
	}
	const chunk = 1 << 20
	var keep [][]byte
	for done := int64(0); done < n; done += chunk {
		b := make([]byte, chunk)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		keep = append(keep, b)
	}
	fmt.Printf("alloc: touched %d bytes in %d chunks without being killed\n", n, len(keep))
	return 0
}
