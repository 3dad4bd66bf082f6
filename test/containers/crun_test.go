// Package containers runs vatrun inside a real OCI runtime (crun) configured the way Docker
// configures a container: Docker's default capabilities, moby's default seccomp profile resolved
// for them (contrib/seccomp/moby-default.json, internal/dockerseccomp), masked and read-only
// /proc paths, a private pid, net, ipc, uts, mount and cgroup namespace. It asserts what `vatrun
// check` says, what `vatrun run` does, and, under the shipped recipe, what the worker can reach.
//
// crun never sees this host's cgroups: it runs in a private mount namespace (unshare -m) where
// /sys/fs/cgroup is an empty tmpfs, with --cgroup-manager=disabled, and the container mounts no
// cgroup filesystem.
package containers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/hostfacts"
	"github.com/vatrun/vatrun/internal/dockerseccomp"
	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/launcher/plan"
	"github.com/vatrun/vatrun/sandbox"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// setup is one container configuration.
type setup struct {
	name    string
	seccomp string // Docker-format profile under the repository root
	masked  bool   // Docker's masked and read-only /proc paths (no systempaths=unconfined)
}

var (
	dockerDefault = setup{"docker-default", "contrib/seccomp/moby-default.json", true}
	recipeMasked  = setup{"recipe, /proc masked", "contrib/docker-seccomp.json", true}
	recipe        = setup{"recipe + systempaths=unconfined", "contrib/docker-seccomp.json", false}
)

func needCrun(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: crun runs a root container (Docker's default) here")
	}
	for _, tool := range []string{"crun", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (apt-get install crun; .ci/run installs it): %v", tool, err)
		}
	}
	if runtime.GOARCH != "amd64" {
		t.Skipf("the Docker profile is resolved for amd64 only here, not %s", runtime.GOARCH)
	}
}

// container is one bundle: a rootfs of empty mount points and the host's /usr read-only, the
// static vatrun and test worker at /vatrun, and a host directory at /io for files in and out.
type container struct {
	t      *testing.T
	bundle string
	io     string
	setup  setup
}

func newContainer(t *testing.T, s setup) *container {
	t.Helper()
	needCrun(t)
	vatrun, worker := testbin.Vatrun(t), testbin.Worker(t)
	bundle := t.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	for _, d := range []string{"proc", "dev", "sys", "usr", "tmp", "io", "vatrun", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []string{"bin", "lib", "lib64", "sbin"} {
		if err := os.Symlink("usr/"+l, filepath.Join(rootfs, l)); err != nil {
			t.Fatal(err)
		}
	}
	// Docker creates /.dockerenv; a file of the container that the worker must not see.
	for name, content := range map[string]string{".dockerenv": "", "etc/secret": "container secret\n"} {
		if err := os.WriteFile(filepath.Join(rootfs, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := &container{t: t, bundle: bundle, io: filepath.Join(bundle, "io"), setup: s}
	if err := os.Mkdir(c.io, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(testbin.RepoRoot(), s.seccomp))
	if err != nil {
		t.Fatal(err)
	}
	prof, err := dockerseccomp.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	sc, err := dockerseccomp.Resolve(prof, dockerseccomp.DockerCaps, runtime.GOARCH, unix.ByteSliceToString(u.Release[:]))
	if err != nil {
		t.Fatal(err)
	}
	caps := dockerseccomp.DockerCaps
	linux := map[string]any{
		"namespaces": []map[string]string{{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}},
		"seccomp":    sc,
	}
	if s.masked {
		linux["maskedPaths"] = dockerseccomp.DockerMaskedPaths
		linux["readonlyPaths"] = dockerseccomp.DockerReadonlyPaths
	}
	bind := func(src, dst, mode string) map[string]any {
		return map[string]any{"destination": dst, "type": "bind", "source": src, "options": []string{"rbind", mode}}
	}
	cfg := map[string]any{
		"ociVersion": "1.0.2",
		"root":       map[string]any{"path": "rootfs"},
		"hostname":   "ctr",
		"process": map[string]any{
			"user": map[string]int{"uid": 0, "gid": 0}, "cwd": "/", "args": []string{"/bin/true"},
			"env":          []string{"PATH=/usr/bin:/bin", "HOME=/root"},
			"capabilities": map[string][]string{"bounding": caps, "effective": caps, "permitted": caps},
		},
		"mounts": []map[string]any{
			{"destination": "/proc", "type": "proc", "source": "proc"},
			{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": []string{"nosuid", "noexec", "nodev", "ro"}},
			{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev"}},
			bind("/usr", "/usr", "ro"),
			bind(vatrun, "/vatrun/vatrun", "ro"),
			bind(worker, "/vatrun/worker", "ro"),
			bind(c.io, "/io", "rw"),
		},
		"linux": linux,
	}
	c.write(cfg)
	return c
}

func (c *container) write(cfg map[string]any) {
	b, err := json.MarshalIndent(cfg, "", " ")
	if err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.bundle, "config.json"), b, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// run runs args in a fresh container of this bundle and returns its output and exit status.
// runWorker runs `vatrun run --profile profile` in the container with the test worker fed cmds on
// fd 3 (report in /io/report.json), requires vatrun to exit 0, and returns the worker's fd 4.
func (c *container) runWorker(profile string, cmds ...string) []byte {
	c.t.Helper()
	if err := os.WriteFile(filepath.Join(c.io, "cmds"), []byte(netstrings(cmds...)), 0o644); err != nil {
		c.t.Fatal(err)
	}
	script := `/vatrun/vatrun run --profile ` + profile + ` --report-file /io/report.json -- /vatrun/worker 3</io/cmds 4>/io/replies; echo "vatrun exit $?"`
	out, errs, code := c.run("/bin/sh", "-c", script)
	if code != 0 || !strings.Contains(out, "vatrun exit 0") {
		c.t.Fatalf("container exit %d, stdout %q, stderr %q", code, out, errs)
	}
	replies, err := os.ReadFile(filepath.Join(c.io, "replies"))
	if err != nil {
		c.t.Fatal(err)
	}
	return replies
}

func (c *container) run(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	data, err := os.ReadFile(filepath.Join(c.bundle, "config.json"))
	if err != nil {
		c.t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		c.t.Fatal(err)
	}
	cfg["process"].(map[string]any)["args"] = args
	c.write(cfg)
	state := c.t.TempDir()
	id := fmt.Sprintf("vatrun-test-%d", os.Getpid())
	// A private mount namespace whose /sys/fs/cgroup is an empty tmpfs: crun (told not to manage
	// cgroups at all) cannot reach this host's cgroups even by mistake.
	script := `mount -t tmpfs -o size=4k,mode=0555 vatrun-no-cgroups /sys/fs/cgroup && exec crun --cgroup-manager=disabled --root "$1" run --bundle "$2" "$3"`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", state, c.bundle, id)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	code = 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			c.t.Fatalf("crun: %v", err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errb.String(), code
}

// check runs `vatrun check --json` for profile in the container.
func (c *container) check(profile string) (res struct {
	CanRun   bool                `json:"canRun"`
	Problems []string            `json:"problems"`
	Where    hostfacts.Where     `json:"where"`
	Refusals []hostfacts.Refusal `json:"refusals"`
	Launch   struct {
		UserNS     bool   `json:"userNS"`
		Namespaces string `json:"namespaces"`
		Refused    string `json:"refused"`
	} `json:"launch"`
}, table string) {
	c.t.Helper()
	out, errs, code := c.run("/vatrun/vatrun", "check", "--profile", profile, "--json")
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		c.t.Fatalf("%s: check --json (exit %d): %v\nstdout %s\nstderr %s", c.setup.name, code, err, out, errs)
	}
	if (code == 0) != res.CanRun {
		c.t.Errorf("%s: check exit %d with canRun %v", c.setup.name, code, res.CanRun)
	}
	table, _, _ = c.run("/vatrun/vatrun", "check", "--profile", profile)
	for _, line := range strings.Split(table, "\n") {
		// Long causes and fixes are wrapped below the table, which stays narrow.
		if n := len([]rune(line)); n > 110 {
			c.t.Errorf("%s: check line of %d columns: %q", c.setup.name, n, line)
		}
	}
	return res, table
}

// TestDockerDefaultRefusesWithTheRealCause: under Docker's defaults, check blames the container's
// seccomp filter (not the sysctls, which allow user namespaces), names the Docker fix, and says
// run refuses; run exits 122 naming the same cause.
func TestDockerDefaultRefusesWithTheRealCause(t *testing.T) {
	c := newContainer(t, dockerDefault)
	res, table := c.check("xsnap")
	if res.CanRun || len(res.Refusals) != 2 || res.Refusals[0].Cause != hostfacts.CauseSeccomp || res.Refusals[1].Cause != hostfacts.CauseMaskedProc {
		t.Fatalf("check: canRun %v refusals %+v, want the seccomp filter, then the masked /proc\n%s", res.CanRun, res.Refusals, table)
	}
	w := res.Where
	if !w.InContainer || w.Runtime != hostfacts.RuntimeDocker || w.Seccomp != 2 || w.SeccompFilters < 1 || hostfacts.HasCap(w.CapEff, "SYS_ADMIN") || len(w.CapEff) != len(dockerseccomp.DockerCaps) {
		t.Errorf("where: %+v, want a Docker container with a seccomp filter and Docker's %d capabilities", w, len(dockerseccomp.DockerCaps))
	}
	if len(w.MaskedProc) == 0 || len(w.ReadOnlyProc) == 0 {
		t.Errorf("masked %v read-only %v: want Docker's masked and read-only /proc paths seen", w.MaskedProc, w.ReadOnlyProc)
	}
	if !strings.Contains(table, "--security-opt seccomp="+hostfacts.RecipeSeccomp) || strings.Contains(table, "unprivileged_userns_clone = 0") {
		t.Errorf("check's table does not give the Docker fix, or blames the sysctl:\n%s", table)
	}
	_, errs, code := c.run("/vatrun/vatrun", "run", "--profile", "xsnap", "--report-file", "/io/report.json", "--", "/bin/true")
	if code != 122 || !strings.Contains(errs, "cause ("+hostfacts.CauseSeccomp+")") || !strings.Contains(errs, "--security-opt seccomp=") {
		t.Errorf("run: exit %d, stderr %q; want 122 naming the seccomp filter and its fix", code, errs)
	}
}

// TestRecipeWithMaskedProc: with the recipe's seccomp profile but Docker's masked /proc, the user
// namespace is created, and the fresh /proc of the worker's pid namespace is refused: check
// names the mask and the systempaths fix, run exits 122 with the same.
func TestRecipeWithMaskedProc(t *testing.T) {
	c := newContainer(t, recipeMasked)
	res, table := c.check("xsnap")
	if res.CanRun || len(res.Refusals) != 1 || res.Refusals[0].Cause != hostfacts.CauseMaskedProc {
		t.Fatalf("check: canRun %v refusals %+v, want only the masked /proc\n%s", res.CanRun, res.Refusals, table)
	}
	if !strings.Contains(table, "systempaths=unconfined") {
		t.Errorf("no Docker fix for the masked /proc:\n%s", table)
	}
	_, errs, code := c.run("/vatrun/vatrun", "run", "--profile", "xsnap", "--report-file", "/io/report.json", "--", "/bin/true")
	if code != 122 || !strings.Contains(errs, "mount a fresh /proc") || !strings.Contains(errs, "cause ("+hostfacts.CauseMaskedProc+")") {
		t.Errorf("run: exit %d, stderr %q; want 122 at the fresh /proc, naming the mask", code, errs)
	}
}

// netstrings encodes worker commands.
func netstrings(cmds ...string) string {
	var b strings.Builder
	for _, c := range cmds {
		fmt.Fprintf(&b, "%d:%s,", len(c), c)
	}
	return b.String()
}

// TestRecipeRunsWithFullIsolation: with the recipe (seccomp profile and systempaths=unconfined)
// check says the profile can run, with a user namespace, and the worker runs in its own user,
// pid, uts and net namespaces, in the minimal root (no container file visible), with the
// profile's filter.
func TestRecipeRunsWithFullIsolation(t *testing.T) {
	c := newContainer(t, recipe)
	res, table := c.check("xsnap")
	if !res.CanRun || len(res.Refusals) != 0 || !res.Launch.UserNS || !strings.Contains(res.Launch.Namespaces, "pid net ipc uts mount user") {
		t.Fatalf("check: canRun %v refusals %+v launch %+v, want full isolation\n%s", res.CanRun, res.Refusals, res.Launch, table)
	}
	replies := c.runWorker("xsnap", "probe:uid", "probe:hostname", "probe:pid", "probe:net", "probe:open:/etc/secret", "probe:seccomp")
	// The container's root is vatrun's uid; as root, vatrun runs the worker as the dedicated id,
	// which its user namespace maps (docs/worker-identity.md).
	id := strconv.Itoa(plan.WorkerID)
	want := netstrings("uid:"+id+" euid:"+id, "hostname:vat", "pid:2", "errno:1", "errno:2", "seccomp:2")
	if string(replies) != want {
		t.Errorf("worker replies %q, want %q (user ns, the dedicated worker id, uts ns, pid ns, no socket, no container file, filtered)", replies, want)
	}
	rep, err := os.ReadFile(filepath.Join(c.io, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Cause    string `json:"cause"`
		ExitCode *int   `json:"exitCode"`
	}
	if err := json.Unmarshal(rep, &r); err != nil || r.Cause != "exited" || r.ExitCode == nil || *r.ExitCode != 0 {
		t.Errorf("report %s (%v), want a clean exit", rep, err)
	}
}

// TestDockerDefaultNoNamespaceMode: under Docker's defaults, a profile that accepts the
// no-namespace mode ("isolation": "namespaces-or-landlock") runs: check says so (the namespaces
// refused, and why), and the worker runs confined by Landlock: it cannot read a container file
// nor signal its parent; its report's isolation names Landlock.
func TestDockerDefaultNoNamespaceMode(t *testing.T) {
	c := newContainer(t, dockerDefault)
	if sandbox.LandlockABI() < 6 {
		t.Skipf("needs Landlock ABI 6 (signal scope); the kernel has %d", sandbox.LandlockABI())
	}
	p, err := seccompprofiles.Load("dev")
	if err != nil {
		t.Fatal(err)
	}
	p.Name, p.Isolation = "dev-or-landlock", seccompprofiles.IsolationNamespacesOrLandlock
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.io, "profile.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	res, table := c.check("/io/profile.json")
	if !res.CanRun || len(res.Refusals) == 0 || res.Refusals[0].Cause != hostfacts.CauseSeccomp || !strings.Contains(table, "no-namespace mode") {
		t.Fatalf("check: canRun %v refusals %+v, want can run in the no-namespace mode, the seccomp filter named\n%s", res.CanRun, res.Refusals, table)
	}
	replies := c.runWorker("/io/profile.json", "probe:open:/etc/secret", "probe:killppid:28", "probe:pid")
	if !strings.HasPrefix(string(replies), netstrings("errno:13", "errno:1")) || strings.Contains(string(replies), "pid:2,") {
		t.Errorf("worker replies %q: want the container file and the parent refused, and no pid namespace", replies)
	}
	rep, err := os.ReadFile(filepath.Join(c.io, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Isolation []string `json:"isolation"`
	}
	if err := json.Unmarshal(rep, &r); err != nil || len(r.Isolation) == 0 || !strings.HasPrefix(r.Isolation[0], "landlock ABI") {
		t.Errorf("report isolation %q (%v), want Landlock first", r.Isolation, err)
	}
}
