package sandbox

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vatrun/vatrun/internal/testbin"
)

// netstringClient speaks the test worker's protocol: one netstring command on fd 3, one
// netstring reply on fd 4.
type netstringClient struct {
	t  *testing.T
	w  *os.File
	rd *bufio.Reader
}

func (c netstringClient) ask(cmd string) string {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.w, "%d:%s,", len(cmd), cmd); err != nil {
		c.t.Fatalf("send %q: %v", cmd, err)
	}
	n, err := c.rd.ReadString(':')
	if err != nil {
		c.t.Fatalf("reply to %q: %v", cmd, err)
	}
	size, err := strconv.Atoi(strings.TrimSuffix(n, ":"))
	if err != nil {
		c.t.Fatalf("reply to %q: length %q", cmd, n)
	}
	buf := make([]byte, size+1)
	if _, err := readFull(c.rd, buf); err != nil {
		c.t.Fatalf("reply to %q: %v", cmd, err)
	}
	return string(buf[:size])
}

func readFull(r *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// landlockWorker starts the test worker with no namespaces, confined by Landlock at abi (0: off)
// to the paths of its minimal root.
func landlockWorker(t *testing.T, abi int) (netstringClient, *Process) {
	t.Helper()
	worker := testbin.Worker(t)
	paths, err := LandlockPathsFor(worker)
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{
		Config:   Config{DropCaps: true, LandlockABI: abi, LandlockPaths: paths},
		Path:     worker,
		Args:     []string{"vatrun-testworker"},
		CgroupFD: -1,
	}
	cmdW, replyR := withPipes(t, &spec)
	p := start(t, spec)
	spec.ExtraFiles[0].Close()
	spec.ExtraFiles[1].Close()
	t.Cleanup(func() { cmdW.Close(); p.Wait() })
	return netstringClient{t, cmdW, bufio.NewReader(replyR)}, p
}

// TestLandlockConfinesWorkerWithoutNamespaces: with no namespace at all, Landlock limits the
// worker to reading its own files: a host file it could read before is refused (EACCES), its
// own executable is readable, nothing can be created; with ABI 6 scopes it cannot signal its
// parent (the init stage, outside its domain) nor connect to an abstract unix socket of the test
// (outside its domain). Each expectation is checked against the same worker without Landlock,
// so the test fails if the confinement is not what makes the difference, and at older ABIs the
// kernel still accepts (1, 3, 5: no scopes, so the signal and the socket go through).
func TestLandlockConfinesWorkerWithoutNamespaces(t *testing.T) {
	abi := LandlockABI()
	if abi == 0 {
		t.Skip("the kernel has no Landlock (or it is disabled at boot: lsm= without landlock)")
	}
	abi = min(abi, MaxLandlockABI)
	t.Logf("kernel Landlock ABI %d, used at %d", LandlockABI(), abi)
	secret := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(secret, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Dir(secret), 0o755)
	name := fmt.Sprintf("@vatrun-landlock-test-%d", os.Getpid())
	testbin.ListenUnix(t, name)
	worker := testbin.Worker(t)
	// minABI: the first ABI at which the row is refused (0: never).
	type row struct {
		cmd    string
		minABI int
	}
	rows := []row{
		{"probe:open:" + secret, 1},
		{"probe:open:" + worker, 0},
		{"probe:write:" + filepath.Join(filepath.Dir(secret), "new"), 1},
		// SIGWINCH: the init stage relays it to the worker (which ignores it) when it arrives.
		{"probe:killppid:28", 6},
		{"probe:connect:" + name, 6},
	}
	// Off, then each older ABI this kernel also accepts, then its own: the ruleset degrades as
	// the report's isolation says (scopes only from ABI 6).
	for _, mode := range []int{0, 1, 3, 5, 6, abi} {
		if mode > abi {
			continue
		}
		c, _ := landlockWorker(t, mode)
		for _, r := range rows {
			want := "ok"
			if mode > 0 && r.minABI > 0 && mode >= r.minABI {
				want = map[int]string{1: "errno:13", 6: "errno:1"}[r.minABI]
			}
			if got := c.ask(r.cmd); got != want {
				t.Errorf("landlock ABI %d: %s → %q, want %q", mode, r.cmd, got, want)
			}
		}
	}
}
