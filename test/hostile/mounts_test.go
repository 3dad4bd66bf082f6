package hostile

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vatrun/vatrun/internal/testbin"
)

// TestProfileMounts: a profile declares what more the worker sees (targets, read-only or
// read-write, a private /tmp); the host sources come at run time. The worker sees exactly that:
// it reads the read-only path and cannot write it, writes the writable one (the host sees the
// file), has a /tmp of its own, and still sees nothing else.
func TestProfileMounts(t *testing.T) {
	bin := testbin.Vatrun(t)
	profile := derivedProfile(t, "xsnap", func(p map[string]any) {
		p["name"] = "xsnap-mounts"
		p["mounts"] = []map[string]any{{"target": "/data"}, {"target": "/out", "writable": true}}
		p["tmp"] = "1M"
	})

	dataDir, outDir := sharedDir(t), sharedDir(t)
	os.WriteFile(filepath.Join(dataDir, "input"), []byte("x"), 0o644)
	for _, asNobody := range []bool{false, true} {
		t.Run(fmt.Sprintf("nobody=%v", asNobody), func(t *testing.T) {
			v := startVatrun(t, procOpts{asNobody: asNobody, runArgs: []string{"--profile", profile, "--no-cgroup",
				"--mount", "/data=" + dataDir, "--mount", "/out=" + outDir}})
			want := map[string]string{
				"probe:open:/data/input":                       "ok",
				"probe:write:/data/new":                        fmt.Sprintf("errno:%d", syscall.EROFS),
				"probe:write:/out/new-" + fmt.Sprint(asNobody): "ok", // xsnap cannot unlink: a name per run
				"probe:write:/tmp/scratch":                     "ok",
				"probe:open:" + dataDir:                        fmt.Sprintf("errno:%d", syscall.ENOENT),
				"probe:write:/vatrun-escape2":                  fmt.Sprintf("errno:%d", syscall.EROFS),
			}
			var order []string
			for k := range want {
				order = append(order, k)
			}
			probes(t, v, want, order)
			finishClean(t, v)
			if _, err := os.Stat(filepath.Join(outDir, "new-"+fmt.Sprint(asNobody))); err != nil {
				t.Errorf("the worker's file in the writable mount is not on the host: %v", err)
			}
		})
	}
	// Bad input: a declared mount without a source, a source for an undeclared target.
	worker := testbin.Worker(t)
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--mount", "/data=" + dataDir}, "declares the mount /out: give its host source (vatrun run --mount /out=/host/path)"},
		{[]string{"--mount", "/data=" + dataDir, "--mount", "/out=" + outDir, "--mount", "/etc=/etc"}, "profile \"xsnap-mounts\" declares no mount at /etc"},
		{[]string{"--mount", "/data=relative", "--mount", "/out=" + outDir}, "the source must be an absolute path"},
	} {
		cmd := exec.Command(bin, append(append([]string{"run", "--profile", profile, "--no-cgroup"}, c.args...), "--", worker)...)
		out, err := cmd.CombinedOutput()
		code, _, _ := testbin.ExitOf(err)
		if code != 125 || !strings.Contains(string(out), c.msg) {
			t.Errorf("%v: exit %d, %q; want 125 saying %q", c.args, code, out, c.msg)
		}
	}
}

// TestProfileMountFromRestrictedSource: an unprivileged vatrun binds a source whose mount is
// noexec, nosuid, nodev (a common /tmp or /dev/shm): in the worker's user namespace those flags
// are locked, so the stage keeps them when it makes the bind nosuid (without that the remount
// was refused and the sandbox could not be set up).
func TestProfileMountFromRestrictedSource(t *testing.T) {
	unshare, err := exec.LookPath("unshare")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and unshare (util-linux) to mount a noexec tmpfs in a private mount namespace")
	}
	bin, worker := testbin.Vatrun(t), testbin.Worker(t)
	profile := derivedProfile(t, "xsnap", func(p map[string]any) {
		p["name"] = "restricted-source"
		p["mounts"] = []map[string]any{{"target": "/out", "writable": true}}
	})
	src := filepath.Join(sharedDir(t), "mnt")
	os.Mkdir(src, 0o777)
	script := `set -e
mount -t tmpfs -o noexec,nosuid,nodev,size=1m vatrun-test "$1"
chmod 777 "$1"
exec setpriv --reuid 65534 --regid 65534 --clear-groups "$2" run --profile "$3" --no-cgroup --mount /out="$1" -- "$4"`
	cmd := exec.Command(unshare, "-m", "--propagation", "private", "sh", "-c", script, "sh", src, bin, profile, worker)
	cmdR, cmdW := pipe(t)
	r, w := pipe(t)
	cmd.ExtraFiles = []*os.File{cmdR, w} // fd 3: the command, fd 4: the worker's reply
	fmt.Fprintf(cmdW, "18:probe:write:/out/x,")
	cmdW.Close()
	out, err := cmd.CombinedOutput()
	cmdR.Close()
	w.Close()
	reply, _ := io.ReadAll(r)
	if err != nil || string(reply) != "2:ok," {
		t.Fatalf("unprivileged run with a noexec,nosuid,nodev source: %v, reply %q, output %s", err, reply, out)
	}
}
