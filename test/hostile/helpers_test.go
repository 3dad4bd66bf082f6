package hostile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/vatrun/vatrun/internal/proctree"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/report"
)

// vatrunProc is one `vatrun run` process with the worker's fd 3 (commands) and fd 4 (replies),
// and vatrun's stderr streamed line by line.
type vatrunProc struct {
	t       *testing.T
	cmd     *exec.Cmd
	cmdW    *os.File
	replies *bufio.Reader
	replyR  *os.File

	mu     sync.Mutex
	stderr bytes.Buffer
	lines  chan string
	done   chan struct{} // closed when stderr reached EOF
}

type procOpts struct {
	runArgs    []string // before "--"
	workerArgs []string
	env        []string // added to the test's environment
	// extra become vatrun's fds 5, 6, … (after fd 3 and 4), without close-on-exec.
	extra []*os.File
	// asNobody runs vatrun as uid/gid 65534 when the test runs as root.
	asNobody bool
	// worker replaces the C test worker's path.
	worker string
	// hooks runs bin/vatrun-hooks (the VATRUN_TEST_PAUSE pauses compiled in) instead of bin/vatrun.
	hooks bool
}

func startVatrun(t *testing.T, o procOpts) *vatrunProc {
	t.Helper()
	bin, worker := testbin.Vatrun(t), testbin.Worker(t)
	if o.hooks {
		bin = testbin.VatrunHooks(t)
	}
	if o.worker != "" {
		worker = o.worker
	}
	pipes := testbin.WorkerPipes(t)
	cmdW, replyR := pipes.Commands, pipes.Results
	errR, errW := pipe(t)
	args := append([]string{"run", "--log-level", "warn"}, o.runArgs...)
	args = append(args, "--", worker)
	args = append(args, o.workerArgs...)
	p := &vatrunProc{t: t, cmdW: cmdW, replyR: replyR, replies: bufio.NewReader(replyR), lines: make(chan string, 100), done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.ExtraFiles = append(pipes.WorkerFiles(), o.extra...)
	p.cmd.Stderr = errW
	p.cmd.Env = append(os.Environ(), o.env...)
	if o.asNobody {
		nobody(p.cmd)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pipes.CloseWorkerEnds()
	errW.Close()
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(errR)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	return p
}

// nobody makes cmd run as uid/gid 65534 when the test is root (else as the test's own user).
func nobody(cmd *exec.Cmd) {
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
}

func (p *vatrunProc) stderrText() string {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// waitLine waits for a stderr line starting with prefix.
func (p *vatrunProc) waitLine(prefix string, within time.Duration) string {
	p.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case l := <-p.lines:
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-p.done:
			p.t.Fatalf("vatrun's stderr closed before a line %q:\n%s", prefix, p.stderrText())
		case <-deadline:
			p.t.Fatalf("no stderr line %q within %v", prefix, within)
		}
	}
}

func (p *vatrunProc) send(cmds ...string) {
	for _, c := range cmds {
		if _, err := fmt.Fprintf(p.cmdW, "%d:%s,", len(c), c); err != nil {
			p.t.Fatalf("send %q: %v", c, err)
		}
	}
}

// reply reads one netstring reply from fd 4, failing the test after 10 s.
func (p *vatrunProc) reply() string {
	p.t.Helper()
	s, err := readNetstring(p.replies, p.replyR, 10*time.Second)
	if err != nil {
		p.t.Fatalf("reading a reply on fd 4: %v (vatrun stderr so far: %s)", err, p.stderr.String())
	}
	return s
}

func readNetstring(br *bufio.Reader, f *os.File, within time.Duration) (string, error) {
	f.SetReadDeadline(time.Now().Add(within))
	defer f.SetReadDeadline(time.Time{})
	lenStr, err := br.ReadString(':')
	if err != nil {
		return "", err
	}
	n, err := strconv.Atoi(strings.TrimSuffix(lenStr, ":"))
	if err != nil {
		return "", fmt.Errorf("bad netstring length %q", lenStr)
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(br, buf); err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// fd4Closed says whether fd 4 reaches EOF (every writer, i.e. the worker, is gone) within d,
// with no data before it.
func (p *vatrunProc) fd4Closed(within time.Duration) error {
	p.replyR.SetReadDeadline(time.Now().Add(within))
	defer p.replyR.SetReadDeadline(time.Time{})
	b, err := p.replies.ReadByte()
	switch {
	case err == nil:
		return fmt.Errorf("fd 4 delivered data (%q…)", b)
	case errors.Is(err, io.EOF):
		return nil
	}
	return fmt.Errorf("fd 4: %v", err)
}

// exit waits for vatrun and returns its exit code (128+N for a signal).
func (p *vatrunProc) exit() int {
	p.t.Helper()
	err := p.cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	p.t.Fatal(err)
	return -1
}

func pipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// alive says whether pid exists and is not a zombie. Pids are checked with their start time
// (field 22 of /proc/PID/stat) so a reused pid does not count.
type procID struct {
	pid   int
	start string
}

func identify(pid int) (procID, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procID{}, false
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(f) < 20 || f[0] == "Z" {
		return procID{}, false
	}
	return procID{pid: pid, start: f[19]}, true
}

func (id procID) alive() bool {
	now, ok := identify(id.pid)
	return ok && now.start == id.start
}

// goneWithin waits until none of ids is alive.
func goneWithin(ids []procID, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		var left []int
		for _, id := range ids {
			if id.alive() {
				left = append(left, id.pid)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// descendants identifies every live descendant of pid.
func descendants(pid int) []procID {
	var out []procID
	for _, c := range proctree.Children(pid) {
		if id, ok := identify(c); ok {
			out = append(out, id)
		}
		out = append(out, descendants(c)...)
	}
	return out
}

func readReportFile(t *testing.T, path string) *report.Report {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		return nil
	}
	r, err := report.Decode(data)
	if err != nil {
		t.Fatalf("report %s does not decode: %v\n%s", path, err, data)
	}
	return &r
}

func demoProfile(t *testing.T) string {
	t.Helper()
	return filepath.Join(testbin.RepoRoot(), "examples", "profiles", "demo.json")
}

// sharedDir makes a temporary directory that nobody (uid 65534) can use too.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vatrun-hostile-") // t.TempDir's parent is 0700
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// derivedProfile writes, in a directory every user can read, a profile file that is the built-in
// base (as `vatrun profile show` prints it) changed by edit, and returns its path.
func derivedProfile(t *testing.T, base string, edit func(p map[string]any)) string {
	t.Helper()
	out, err := exec.Command(testbin.Vatrun(t), "profile", "show", base).Output()
	if err != nil {
		t.Fatalf("vatrun profile show %s: %v", base, err)
	}
	var shown struct{ Profile map[string]any }
	if err := json.Unmarshal(out, &shown); err != nil {
		t.Fatal(err)
	}
	edit(shown.Profile)
	data, err := json.Marshal(shown.Profile)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(sharedDir(t), base+"-derived.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
