package hostile

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// landlockProfile writes the dev profile (every syscall but a small denylist: sockets and kill
// allowed, so only Landlock can refuse them) with "isolation" set, as a file nobody can read.
func landlockProfile(t *testing.T, dir string, iso seccompprofiles.Isolation) string {
	t.Helper()
	p, err := seccompprofiles.Load("dev")
	if err != nil {
		t.Fatal(err)
	}
	p.Name = "dev-" + string(iso)
	p.Isolation = iso
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "profile.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func landlockABI() int {
	abi, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0
	}
	return int(abi)
}

// TestNoNamespaceModeConfinesWorker: a profile with "isolation": "landlock" runs the worker with
// no namespace, confined by Landlock: it cannot read a host file it could read otherwise, cannot
// create files, cannot signal its parent or a sibling worker, cannot connect to an abstract unix
// socket of another process; its report says which layers held. The same probes under the
// namespaced dev profile (sockets and kill allowed there too) show what is reachable without
// Landlock where namespaces do not hide it, so each refusal is Landlock's. Root and nobody.
func TestNoNamespaceModeConfinesWorker(t *testing.T) {
	abi := landlockABI()
	if abi < 6 {
		t.Skipf("needs Landlock ABI 6 (signal and abstract-socket scopes); the kernel has %d", abi)
	}
	for _, u := range []struct {
		name     string
		asNobody bool
	}{{"root", false}, {"nobody", true}} {
		t.Run(u.name, func(t *testing.T) {
			dir := sharedDir(t)
			secret := filepath.Join(dir, "host-secret")
			if err := os.WriteFile(secret, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			sock := fmt.Sprintf("@vatrun-hostile-%d-%s", os.Getpid(), u.name)
			testbin.ListenUnix(t, sock)
			prof := landlockProfile(t, dir, seccompprofiles.IsolationLandlock)
			rep := filepath.Join(dir, "report.json")
			// A sibling worker under the same profile: its pid (no pid namespace: a host pid).
			sib := startVatrun(t, procOpts{runArgs: []string{"--profile", prof, "--no-cgroup"}, asNobody: u.asNobody})
			sib.send("probe:pid")
			sibPid := strings.TrimPrefix(sib.reply(), "pid:")
			p := startVatrun(t, procOpts{runArgs: []string{"--profile", prof, "--no-cgroup", "--report-file", rep}, asNobody: u.asNobody})
			for _, c := range []struct{ cmd, want string }{
				{"probe:open:" + secret, "errno:13"},
				{"probe:write:" + filepath.Join(dir, "new"), "errno:13"},
				{"probe:killppid:28", "errno:1"},
				{"probe:killpid:" + sibPid, "errno:1"},
				{"probe:connect:" + sock, "errno:1"},
				{"probe:pid", ""}, // no pid namespace: not pid 2
			} {
				p.send(c.cmd)
				got := p.reply()
				if c.cmd == "probe:pid" {
					if got == "pid:2" {
						t.Errorf("the worker is pid 2: it has a pid namespace, not the no-namespace mode")
					}
					continue
				}
				if got != c.want {
					t.Errorf("%s → %q, want %q (Landlock should refuse it)", c.cmd, got, c.want)
				}
			}
			p.cmdW.Close()
			if code := p.exit(); code != 0 {
				t.Fatalf("vatrun exit %d: %s", code, p.stderrText())
			}
			r := readReportFile(t, rep)
			if !slices.ContainsFunc(r.Isolation, func(s string) bool { return strings.HasPrefix(s, "landlock ABI ") }) ||
				slices.ContainsFunc(r.Isolation, func(s string) bool { return strings.HasPrefix(s, "namespaces") }) {
				t.Errorf("report isolation %q, want landlock and no namespaces", r.Isolation)
			}
			sib.cmdW.Close()
			sib.exit()
		})
	}
}

// TestNoNamespaceModeControl: the same probes under a profile with no namespaces and the default
// isolation (so no Landlock) all succeed: what TestNoNamespaceModeConfinesWorker sees refused is
// Landlock's doing, not the filter's or the environment's.
func TestNoNamespaceModeControl(t *testing.T) {
	dir := sharedDir(t)
	secret := filepath.Join(dir, "host-secret")
	if err := os.WriteFile(secret, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := fmt.Sprintf("@vatrun-hostile-control-%d", os.Getpid())
	testbin.ListenUnix(t, sock)
	prof, err := seccompprofiles.Load("dev")
	if err != nil {
		t.Fatal(err)
	}
	prof.Name, prof.Namespaces = "dev-no-namespaces", seccompprofiles.Namespaces{User: seccompprofiles.UserAuto}
	data, _ := json.Marshal(prof)
	path := filepath.Join(dir, "control.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// As root the worker runs as the dedicated id (docs/worker-identity.md), which alone refuses
	// it the signal to its root-owned init stage; the control is about Landlock only, so vatrun
	// runs as nobody here and the worker, its parent and its sibling share one uid.
	asNobody := os.Getuid() == 0
	if asNobody {
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sib := startVatrun(t, procOpts{runArgs: []string{"--profile", path, "--no-cgroup"}, asNobody: asNobody})
	sib.send("probe:pid")
	sibPid := strings.TrimPrefix(sib.reply(), "pid:")
	p := startVatrun(t, procOpts{runArgs: []string{"--profile", path, "--no-cgroup"}, asNobody: asNobody})
	for _, cmd := range []string{"probe:open:" + secret, "probe:write:" + filepath.Join(dir, "new"), "probe:killppid:28", "probe:killpid:" + sibPid, "probe:connect:" + sock} {
		p.send(cmd)
		if got := p.reply(); got != "ok" {
			t.Errorf("without Landlock %s → %q, want ok", cmd, got)
		}
	}
	p.cmdW.Close()
	p.exit()
	sib.cmdW.Close()
	sib.exit()
}
