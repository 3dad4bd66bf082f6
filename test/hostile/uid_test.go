package hostile

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/launcher/plan"
)

// leaseProfile is dev (every syscall allowed but a small denylist) with a private /tmp, and with
// any fcntl rule removed, so that only the worker's identity, never the filter, stands between a
// worker and a write lease.
func leaseProfile(t *testing.T) string {
	t.Helper()
	return derivedProfile(t, "dev", func(p map[string]any) {
		p["name"] = "dev-lease"
		p["tmp"] = 1 << 20
		sc := p["seccomp"].(map[string]any)
		rules, _ := sc["syscalls"].([]any)
		var kept []any
		for _, r := range rules {
			if names, _ := r.(map[string]any)["names"].([]any); !containsAny(names, "fcntl", "fcntl64") {
				kept = append(kept, r)
			}
		}
		sc["syscalls"] = kept
	})
}

func containsAny(list []any, names ...string) bool {
	for _, v := range list {
		for _, n := range names {
			if v == n {
				return true
			}
		}
	}
	return false
}

// boundFiles are host files the minimal root binds in for every worker (those this host has),
// plus the worker executable itself.
func boundFiles(worker string) []string {
	files := []string{worker}
	for _, p := range []string{"/etc/ld.so.cache", "/lib", "/lib64", "/usr/lib", "/usr/lib64", "/dev/null", "/dev/zero", "/dev/urandom"} {
		if _, err := os.Stat(p); err == nil {
			files = append(files, p)
		}
	}
	return files
}

// statusIDs parses "Uid:\tR\tE\tS\tFS" into its four ids, failing unless all four are equal.
func statusIDs(t *testing.T, line, field string) int {
	t.Helper()
	fields := strings.Fields(strings.TrimPrefix(line, field+":"))
	if len(fields) != 4 {
		t.Fatalf("%s line %q", field, line)
	}
	for _, f := range fields[1:] {
		if f != fields[0] {
			t.Fatalf("%s: real, effective, saved and fs ids differ: %q", field, line)
		}
	}
	id, err := strconv.Atoi(fields[0])
	if err != nil {
		t.Fatalf("%s line %q", field, line)
	}
	return id
}

// TestEscapeWorkerIdentity: the worker runs as a host uid and gid that own none of the host files
// bound into its root, even when vatrun runs as root, so it cannot take a write lease on
// /etc/ld.so.cache or its own executable (F_SETLEASE F_WRLCK needs the file's owner or CAP_LEASE;
// a lease stalls every open of the file on the host for lease-break-time, 45 s by default). The
// profile lets fcntl through: only the identity holds. A control lease on a file the worker made
// in its private /tmp must work (else leases are off on this host, and the test says so). As root
// the worker's id is neither 0 nor vatrun's; as nobody it is vatrun's own, the only id an
// unprivileged user namespace can map (docs/worker-identity.md). Fails on a vatrun whose root
// worker runs as uid 0, which owns those files.
func TestEscapeWorkerIdentity(t *testing.T) {
	for _, u := range users() {
		t.Run(u.name, func(t *testing.T) {
			worker := testbin.Worker(t)
			repPath := filepath.Join(sharedDir(t), "report.json")
			p := startVatrun(t, procOpts{runArgs: []string{"--profile", leaseProfile(t), "--no-cgroup", "--report-file", repPath}, asNobody: u.asNobody})
			vatrunUID, vatrunGID := os.Geteuid(), os.Getegid()
			if u.asNobody {
				vatrunUID, vatrunGID = 65534, 65534
			}

			p.send("probe:status:Uid", "probe:status:Gid", "probe:status:Groups")
			uid := statusIDs(t, p.reply(), "Uid")
			gid := statusIDs(t, p.reply(), "Gid")
			if groups := p.reply(); strings.TrimSpace(strings.TrimPrefix(groups, "Groups:")) != "" && vatrunUID == 0 {
				t.Errorf("a root vatrun's worker keeps supplementary groups: %q", groups)
			}
			if vatrunUID == 0 {
				want, err := plan.RootWorkerID() // plan.WorkerID, unless this host's namespace lacks it
				if err != nil {
					t.Fatal(err)
				}
				if uid == 0 || gid == 0 || uid != int(want) || gid != int(want) {
					t.Errorf("a root vatrun's worker runs as uid %d gid %d, want %d", uid, gid, want)
				}
			} else if uid != vatrunUID || gid != vatrunGID {
				t.Errorf("an unprivileged vatrun (uid %d gid %d)'s worker runs as uid %d gid %d, want its own", vatrunUID, vatrunGID, uid, gid)
			}

			for _, f := range boundFiles(worker) {
				p.send("probe:owner:" + f)
				got := p.reply()
				var fu, fg int
				if _, err := fmt.Sscanf(got, "uid:%d gid:%d", &fu, &fg); err != nil {
					t.Errorf("stat %s in the worker's root: %q", f, got)
					continue
				}
				if fu == uid && vatrunUID == 0 {
					t.Errorf("the worker (uid %d) owns %s, bound from the host", uid, f)
				}
				if fg == gid && vatrunUID == 0 {
					t.Errorf("the worker (gid %d) is the group of %s, bound from the host", gid, f)
				}
			}

			p.send("probe:lease:/tmp/mine")
			if got := p.reply(); got != "ok" {
				if got == fmt.Sprintf("errno:%d", 22) {
					t.Skipf("leases are off on this host (fs.leases-enable=0): %q", got)
				}
				t.Fatalf("control: a write lease on the worker's own file in its /tmp: %q, want ok", got)
			}
			targets := []string{worker}
			if _, err := os.Stat("/etc/ld.so.cache"); err == nil {
				targets = append(targets, "/etc/ld.so.cache")
			}
			for _, f := range targets {
				if owner, _ := ownerOf(f); owner == vatrunUID && vatrunUID != 0 {
					continue // an unprivileged caller's own file: see docs/worker-identity.md
				}
				p.send("probe:lease:" + f)
				if got := p.reply(); got != "errno:13" && got != "errno:1" {
					t.Errorf("write lease on %s (bound read-only from the host): %q, want errno:13 (EACCES) or errno:1 (EPERM)", f, got)
				}
			}
			finishClean(t, p)
			r := readReportFile(t, repPath)
			if r == nil || r.WorkerUID == nil || r.WorkerGID == nil || *r.WorkerUID != uid || *r.WorkerGID != gid {
				t.Errorf("report's workerUid/workerGid do not say %d/%d: %+v", uid, gid, r)
			}
		})
	}
}

func ownerOf(path string) (int, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return -1, err
	}
	return int(st.Uid), nil
}

// TestWorkerBinaryUnreadable: a root vatrun whose worker executable only root may execute (mode
// 0700) fails at once with exit 126 and a message naming the file and the fix, instead of running
// the worker as root. Fails on a vatrun that runs a root vatrun's worker as root (exit 0).
func TestWorkerBinaryUnreadable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: an unprivileged vatrun's worker runs as vatrun's own uid, which may execute what it owns")
	}
	data, err := os.ReadFile(testbin.Worker(t))
	if err != nil {
		t.Fatal(err)
	}
	private := filepath.Join(sharedDir(t), "private-worker")
	if err := os.WriteFile(private, data, 0o700); err != nil {
		t.Fatal(err)
	}
	p := startVatrun(t, procOpts{runArgs: []string{"--profile", "xsnap", "--no-cgroup"}, worker: private, workerArgs: []string{"--exit-at-start", "0"}})
	code := p.exit()
	<-p.done
	stderr := p.stderrText()
	if code != 126 {
		t.Fatalf("vatrun exit %d, want 126; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, private) || !strings.Contains(stderr, "chmod o+rx") || !strings.Contains(stderr, "uid ") {
		t.Errorf("stderr does not name the file, the uid and the fix:\n%s", stderr)
	}
}
