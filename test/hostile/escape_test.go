package hostile

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/launcher/plan"
	"github.com/vatrun/vatrun/report"
)

// users: the test's own user, and nobody when the test runs as root (vatrun then runs as nobody,
// with a user namespace).
func users() []struct {
	name     string
	asNobody bool
} {
	u := []struct {
		name     string
		asNobody bool
	}{{fmt.Sprintf("uid %d", os.Geteuid()), false}}
	if os.Geteuid() == 0 {
		u = append(u, struct {
			name     string
			asNobody bool
		}{"nobody", true})
	}
	return u
}

// probes sends cmds, reads one reply each, and checks them against want.
func probes(t *testing.T, p *vatrunProc, want map[string]string, order []string) {
	t.Helper()
	p.send(order...)
	for _, c := range order {
		if got := p.reply(); got != want[c] {
			t.Errorf("%s: got %q, want %q", c, got, want[c])
		}
	}
}

func finishClean(t *testing.T, p *vatrunProc) {
	t.Helper()
	p.cmdW.Close()
	if code := p.exit(); code != 0 {
		t.Fatalf("vatrun exit %d, want 0; stderr:\n%s", code, p.stderrText())
	}
}

// The worker sees only fds 0-4 even when vatrun's parent leaked fds 5, 6, 7 into vatrun without
// close-on-exec (exec.Cmd.ExtraFiles are inherited that way), and the report fd 8 among them.
func TestEscapeInheritedFds(t *testing.T) {
	for _, u := range users() {
		t.Run(u.name, func(t *testing.T) {
			var extra []*os.File
			for range 3 {
				_, w := pipe(t)
				extra = append(extra, w)
			}
			repR, repW := pipe(t)
			extra = append(extra, repW)
			p := startVatrun(t, procOpts{runArgs: []string{"--profile", demoProfile(t), "--report-fd", "8"}, extra: extra, asNobody: u.asNobody})
			repW.Close()
			probes(t, p, map[string]string{"probe:fds": "fds:0,1,2,3,4"}, []string{"probe:fds"})
			p.cmdW.Close()
			rep, _ := readAllTimeout(repR, 10*time.Second)
			if code := p.exit(); code != 0 {
				t.Fatalf("vatrun exit %d; stderr:\n%s", code, p.stderrText())
			}
			r, err := report.Decode(rep)
			if err != nil || r.Cause != report.CauseExited {
				t.Fatalf("report on fd 8: %v %q", err, rep)
			}
		})
	}
}

func readAllTimeout(f *os.File, d time.Duration) ([]byte, error) {
	f.SetReadDeadline(time.Now().Add(d))
	var out []byte
	br := bufio.NewReader(f)
	for {
		b, err := br.ReadByte()
		if err != nil {
			return out, err
		}
		out = append(out, b)
	}
}

// An exec of a set-user-ID binary gains nothing: a copy of the test worker made setuid (root-owned
// when vatrun runs as nobody, nobody-owned when vatrun runs as root) runs with the worker's own
// uid and euid (vatrun's, or the dedicated id of a root vatrun's worker) and no capabilities. The control run outside vatrun shows the bit does work on this
// filesystem.
func TestEscapeSetuidExec(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a setuid binary owned by another user (the root run covers nobody)")
	}
	dir := sharedDir(t)
	data, err := os.ReadFile(testbin.Worker(t))
	if err != nil {
		t.Fatal(err)
	}
	id, err := plan.RootWorkerID()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name             string
		owner            int // of the setuid binary
		asNobody         bool
		inside, unsandbx string
	}{
		{"nobody execs a setuid-root binary", 0, true, "uid:65534 euid:65534", "uid:65534 euid:0"},
		// A root vatrun's worker runs as plan.WorkerID (docs/worker-identity.md), and stays it.
		{"root execs a setuid-nobody binary", 65534, false, fmt.Sprintf("uid:%d euid:%d", id, id), "uid:0 euid:65534"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bin := filepath.Join(dir, fmt.Sprintf("setuid-%d", c.owner))
			if err := os.WriteFile(bin, data, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(bin, c.owner, c.owner); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(bin, 0o755|os.ModeSetuid); err != nil {
				t.Fatal(err)
			}
			// Control: outside the sandbox the setuid bit takes effect (only probe:uid runs there).
			if got := unsandboxedProbe(t, bin, c.asNobody, "probe:uid"); got != c.unsandbx {
				t.Fatalf("control run outside vatrun: %q, want %q (is %s on a nosuid mount?)", got, c.unsandbx, dir)
			}
			p := startVatrunWorker(t, bin, procOpts{runArgs: []string{"--profile", demoProfile(t)}, asNobody: c.asNobody})
			probes(t, p, map[string]string{"probe:uid": c.inside, "probe:caps": "capeff:0000000000000000", "probe:nnp": "nnp:1"},
				[]string{"probe:uid", "probe:caps", "probe:nnp"})
			finishClean(t, p)
		})
	}
}

// startVatrunWorker is startVatrun with another worker binary.
func startVatrunWorker(t *testing.T, worker string, o procOpts) *vatrunProc {
	t.Helper()
	o.worker = worker
	return startVatrun(t, o)
}

func unsandboxedProbe(t *testing.T, bin string, asNobody bool, probe string) string {
	t.Helper()
	pipes := testbin.WorkerPipes(t)
	cmdW, replyR := pipes.Commands, pipes.Results
	cmd := exec.Command(bin)
	cmd.ExtraFiles = pipes.WorkerFiles()
	if asNobody {
		nobody(cmd)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pipes.CloseWorkerEnds()
	fmt.Fprintf(cmdW, "%d:%s,", len(probe), probe)
	cmdW.Close()
	got, err := readNetstring(bufio.NewReader(replyR), replyR, 5*time.Second)
	cmd.Wait()
	if err != nil {
		t.Fatalf("control probe: %v", err)
	}
	return got
}

// The rest of the worker's view, as an unprivileged vatrun (a user namespace): no other
// processes, no network, no raising its limits, no privileges, a read-only root. As root the same
// probes run in cmd/vatrun's TestRunWorkerSeesOnlyItsSandbox.
func TestEscapeUnprivilegedView(t *testing.T) {
	p := startVatrun(t, procOpts{runArgs: []string{"--profile", demoProfile(t)}, asNobody: true})
	want := map[string]string{
		"probe:procs":                            "procs:2",
		"probe:pid":                              "pid:2",
		"probe:net":                              fmt.Sprintf("errno:%d", syscall.ENETUNREACH),
		"probe:rlimit-raise":                     fmt.Sprintf("errno:%d", syscall.EPERM),
		"probe:rlimit:cpu":                       "cur:1 max:2",
		"probe:nnp":                              "nnp:1",
		"probe:caps":                             "capeff:0000000000000000",
		"probe:fds":                              "fds:0,1,2,3,4",
		"probe:hostname":                         "hostname:vat",
		"probe:uid":                              "uid:65534 euid:65534",
		"probe:write:/tmp/vatrun-hostile-escape": fmt.Sprintf("errno:%d", syscall.ENOENT), // no /tmp in the minimal root
		"probe:write:/vatrun-hostile-escape":     fmt.Sprintf("errno:%d", syscall.EROFS),  // a read-only root
	}
	if strings.HasPrefix(testbin.Worker(t), "/tmp/") { // /tmp then exists in the minimal root, read-only
		want["probe:write:/tmp/vatrun-hostile-escape"] = fmt.Sprintf("errno:%d", syscall.EROFS)
	}
	if os.Geteuid() != 0 {
		want["probe:uid"] = fmt.Sprintf("uid:%d euid:%d", os.Getuid(), os.Geteuid())
	}
	var order []string
	for k := range want {
		order = append(order, k)
	}
	probes(t, p, want, order)
	finishClean(t, p)
	if _, err := os.Stat("/tmp/vatrun-hostile-escape"); err == nil {
		os.Remove("/tmp/vatrun-hostile-escape")
		t.Fatal("the worker wrote /tmp/vatrun-hostile-escape on the host")
	}
}
