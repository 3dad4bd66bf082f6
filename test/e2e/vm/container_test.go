package vm

// The cgroup v2 nesting recipe in a real OCI container (docs/containers.md): crun, configured as
// Docker configures a container (Docker's capabilities, the recipe's seccomp profile
// contrib/docker-seccomp.json resolved for them) with /proc unmasked (Podman's unmask=/proc/*),
// a private pid, net, ipc, uts, mount and cgroup namespace, /sys/fs/cgroup mounted read-write
// (Podman's systemd mode), and a memory limit on the container's cgroup: the pod. Its entrypoint
// is contrib/containers/cgroup-nest.sh itself, which runs this test binary (TestInsideContainer)
// as the container's command. Inside: `vatrun check` sees a private, writable, delegated cgroup
// namespace; each worker gets its own leaf under /vatrun; a worker over its own memory.max is
// oom-limit; a worker that runs the pod out of memory before its own limit is oom-host.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vatrun/vatrun/internal/dockerseccomp"
	"github.com/vatrun/vatrun/report"
)

const (
	crunBin       = "/bin/crun"
	nestScript    = "/e2e/cgroup-nest.sh"      // contrib/containers/cgroup-nest.sh
	recipeSeccomp = "/e2e/docker-seccomp.json" // contrib/docker-seccomp.json
	insideEnv     = "VATRUN_E2E_IN_CONTAINER"
	podMemoryEnv  = "VATRUN_E2E_POD_MEMORY"
	// podMemory is the pod's limit (crun's linux.resources.memory.limit): above one worker's 32M
	// leaf with the test binary and two vatruns beside it, below the pod-OOM worker's 512M.
	podMemory = 160 << 20
)

// podConfig is one way to start the container.
type podConfig struct {
	cgroupRO   bool     // mount /sys/fs/cgroup read-only (Docker's and Kubernetes' default)
	hostCgroup bool     // no cgroup namespace: the container sees the VM's whole hierarchy
	noNest     bool     // no entrypoint: the command runs in the namespace's root cgroup
	args       []string // the container's command, after the entrypoint
	env        []string // more environment for it
}

// podRun is what one container run gave.
type podRun struct {
	err           error  // crun's exit
	output        string // the container's stdout and stderr, without the inside rows
	rows          []string
	podSeen       bool   // the pod cgroup appeared under the run's parent
	podMax        string // its memory.max as crun wrote it
	podRemoved    bool   // crun removed it (and the recipe's cgroups in it) when the container ended
	pod           string // its cgroup path
	took          time.Duration
	insidePassed  bool
	insideSkipped bool
}

// runPod runs one crun container, configured as Docker configures one (Docker's capabilities, the
// recipe's seccomp profile resolved for them) with /proc unmasked, a private pid, net, ipc, uts,
// mount and (unless hostCgroup) cgroup namespace, a fresh cgroup2 at /sys/fs/cgroup, and a
// memory limit of podMemory on its cgroup, <parent>/ctr-pod: the pod. Its entrypoint is
// contrib/containers/cgroup-nest.sh.
func runPod(t *testing.T, pc podConfig) podRun {
	t.Helper()
	start := time.Now()
	bundle := t.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	for _, d := range []string{"proc", "dev", "sys", "tmp", "root"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cgroupMode := "rw"
	if pc.cgroupRO {
		cgroupMode = "ro"
	}
	mounts := []map[string]any{
		{"destination": "/proc", "type": "proc", "source": "proc"},
		{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": []string{"nosuid", "noexec", "nodev", "ro"}},
		// Docker and Kubernetes mount it read-only for an unprivileged container; the recipe
		// needs it read-write, as Podman's systemd mode, LXC and nspawn mount it. With the
		// cgroup namespace, crun mounts a fresh cgroup2 whose root is the container's cgroup.
		{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": []string{"nosuid", "noexec", "nodev", "relatime", cgroupMode}},
		{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev"}},
	}
	// The VM's programs and their libraries, read-only (the image's /bin, /lib, /lib64, /e2e, /etc).
	for _, d := range []string{"/bin", "/lib", "/lib64", "/usr", "/e2e", "/etc"} {
		if _, err := os.Stat(d); err != nil {
			continue
		}
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
		mounts = append(mounts, map[string]any{"destination": d, "type": "bind", "source": d, "options": []string{"rbind", "ro"}})
	}
	data, err := os.ReadFile(recipeSeccomp)
	if err != nil {
		t.Fatal(err)
	}
	prof, err := dockerseccomp.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var rel []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		rel = append(rel, byte(c))
	}
	sc, err := dockerseccomp.Resolve(prof, dockerseccomp.DockerCaps, runtime.GOARCH, string(rel))
	if err != nil {
		t.Fatal(err)
	}
	r := podRun{pod: filepath.Join(cgroupParentPath(t), "ctr-pod")}
	podDir := filepath.Join(cgroupRoot, r.pod)
	t.Cleanup(func() {
		if _, err := os.Stat(podDir); err == nil {
			// crun removes it when the container ends; this is for a crun that did not.
			removeTree(t, podDir)
		}
	})
	namespaces := []map[string]string{{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}}
	if !pc.hostCgroup {
		namespaces = append(namespaces, map[string]string{"type": "cgroup"})
	}
	args := append([]string{nestScript}, pc.args...)
	if pc.noNest {
		args = pc.args
	}
	caps := dockerseccomp.DockerCaps
	env := append([]string{"PATH=/bin", "HOME=/root", "TMPDIR=/tmp", "container=oci"}, pc.env...)
	cfg := map[string]any{
		"ociVersion": "1.0.2",
		"root":       map[string]any{"path": "rootfs"},
		"hostname":   "pod",
		"process": map[string]any{
			"user": map[string]int{"uid": 0, "gid": 0}, "cwd": "/",
			// The recipe's entrypoint, then the container's command.
			"args":         args,
			"env":          env,
			"capabilities": map[string][]string{"bounding": caps, "effective": caps, "permitted": caps},
		},
		"mounts": mounts,
		"linux": map[string]any{
			"namespaces":  namespaces,
			"seccomp":     sc,
			"cgroupsPath": r.pod,
			// memory+swap = memory: no swap for the pod.
			"resources": map[string]any{"memory": map[string]any{"limit": podMemory, "swap": podMemory}},
		},
	}
	b, err := json.MarshalIndent(cfg, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, crunBin, "--root", t.TempDir(), "--cgroup-manager=cgroupfs", "run", "--bundle", bundle, "vatrun-e2e-pod")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start crun: %v", err)
	}
	// The pod as the VM sees it: crun makes it under this run's parent, then writes the limit.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m, err := os.ReadFile(filepath.Join(podDir, "memory.max")); err == nil {
			r.podMax, r.podSeen = strings.TrimSpace(string(m)), true
			if r.podMax != "max" {
				break
			}
		}
	}
	r.err = cmd.Wait()
	r.took = time.Since(start)
	_, statErr := os.Stat(podDir)
	r.podRemoved = errors.Is(statErr, os.ErrNotExist)
	// The inside test's rows go to the host's table, the rest to this test's log.
	var rest strings.Builder
	lines := bufio.NewScanner(&out)
	for lines.Scan() {
		if l := lines.Text(); strings.HasPrefix(l, "E2E-ROW ") {
			fmt.Println(l)
			r.rows = append(r.rows, l)
		} else {
			rest.WriteString(l + "\n")
		}
	}
	r.output = rest.String()
	r.insidePassed = strings.Contains(r.output, "--- PASS: TestInsideContainer") && !strings.Contains(r.output, "--- FAIL")
	r.insideSkipped = strings.Contains(r.output, "--- SKIP: TestInsideContainer")
	t.Logf("crun run (%v, %.2fs):\n%s", r.err, r.took.Seconds(), r.output)
	return r
}

func needContainer(t *testing.T) {
	t.Helper()
	for _, p := range []string{crunBin, "/bin/sh", "/bin/grep", nestScript, recipeSeccomp, vatrunBin, "/bin/vatrun-testworker"} {
		needBinary(t, p)
	}
}

// TestContainerCgroupNest starts the container with the recipe and relays what
// TestInsideContainer found in it.
func TestContainerCgroupNest(t *testing.T) {
	vmTest(t)
	needContainer(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := []string{insideEnv + "=1", podMemoryEnv + "=" + strconv.Itoa(podMemory)}
	if strict() {
		env = append(env, "VATRUN_E2E_STRICT=1")
	}
	r := runPod(t, podConfig{args: []string{self, "-test.run", "^TestInsideContainer$", "-test.v", "-test.count=1", "-test.timeout=5m"}, env: env})
	row(t, "container-crun", fmt.Sprintf("crun exit 0, pod %s memory.max %d, inside PASS", r.pod, podMemory),
		fmt.Sprintf("crun %v, pod seen %v memory.max %s, inside passed %v, %d rows; pod removed after %v", r.err, r.podSeen, r.podMax, r.insidePassed, len(r.rows), r.podRemoved), r.took)
	if !r.podSeen || r.podMax != strconv.Itoa(podMemory) {
		t.Errorf("pod cgroup %s: seen %v, memory.max %q; want crun to make it with %d", r.pod, r.podSeen, r.podMax, podMemory)
	}
	if r.err != nil || !r.insidePassed {
		t.Errorf("the container (cgroup-nest.sh, then TestInsideContainer) failed: %v; output above", r.err)
	}
	if r.insideSkipped || len(r.rows) < 4 {
		t.Errorf("TestInsideContainer did not run its cases in the container (%d rows)", len(r.rows))
	}
}

// TestContainerWithoutNest: the same container without the recipe's entrypoint. Its processes sit
// in the namespace's root, which is the pod and not the host's root: check says the profile cannot
// run and why (the nesting recipe), and run refuses the same way (TestInsideContainerBare).
func TestContainerWithoutNest(t *testing.T) {
	vmTest(t)
	needContainer(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := runPod(t, podConfig{noNest: true, args: []string{self, "-test.run", "^TestInsideContainerBare$", "-test.v", "-test.count=1", "-test.timeout=2m"}, env: []string{insideEnv + "=1"}})
	row(t, "container-without-nest-crun", "crun exit 0, inside PASS", fmt.Sprintf("crun %v, inside passed %v, %d rows", r.err, r.insidePassed, len(r.rows)), r.took)
	if r.err != nil || !r.insidePassed || strings.Contains(r.output, "--- SKIP: TestInsideContainerBare") || len(r.rows) < 1 {
		t.Errorf("the container without the recipe (TestInsideContainerBare) failed: %v; output above", r.err)
	}
}

// TestContainerCgroupNestRefuses: the recipe's entrypoint refuses, with its message, the two
// containers it cannot nest in: a read-only /sys/fs/cgroup (Docker's and Kubernetes' default)
// and no private cgroup namespace.
func TestContainerCgroupNestRefuses(t *testing.T) {
	vmTest(t)
	needContainer(t)
	for _, c := range []struct {
		name string
		pc   podConfig
		want string
	}{
		{"cgroup-ro", podConfig{cgroupRO: true, args: []string{"/bin/true"}}, "cgroup-nest: /sys/fs/cgroup is read-only"},
		{"host-cgroupns", podConfig{hostCgroup: true, args: []string{"/bin/true"}}, "cgroup-nest: not at the root of a private cgroup namespace (0::/e2e-root/ctr-pod)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := runPod(t, c.pc)
			code := -1
			var ee *exec.ExitError
			if errors.As(r.err, &ee) {
				code = ee.ExitCode()
			}
			msg, _, _ := strings.Cut(strings.TrimSpace(r.output), "\n")
			row(t, "container-nest-refuses-"+c.name, "exit 1: "+c.want, fmt.Sprintf("exit %d: %s", code, msg), r.took)
			if code != 1 || !strings.Contains(r.output, c.want) {
				t.Errorf("crun exit %v, output %q; want exit 1 with %q", r.err, r.output, c.want)
			}
		})
	}
}

// removeTree kills and removes a cgroup and its children, deepest first.
func removeTree(t *testing.T, dir string) {
	var dirs []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	slices.Reverse(dirs)
	for _, d := range dirs {
		removeCgroup(t, d)
	}
}

// insideCheck is the part of `vatrun check --json` the container case looks at.
type insideCheck struct {
	CanRun   bool     `json:"canRun"`
	Problems []string `json:"problems"`
	Cgroup   struct {
		Parent      string
		Self        string
		Controllers []string
		Writable    bool
		Problem     string
	} `json:"cgroup"`
	Where struct {
		InContainer bool   `json:"inContainer"`
		Runtime     string `json:"runtime"`
		CgroupView  struct {
			Mounted        bool     `json:"mounted"`
			PrivateNS      bool     `json:"privateNS"`
			ReadOnly       bool     `json:"readOnly"`
			Self           string   `json:"self"`
			SubtreeControl []string `json:"subtreeControl"`
		} `json:"cgroupView"`
	} `json:"where"`
	Launch struct {
		Cgroup string `json:"cgroup"`
		UserNS bool   `json:"userNS"`
	} `json:"launch"`
}

// TestInsideContainer is the container's command (after cgroup-nest.sh); anywhere else it skips.
func TestInsideContainer(t *testing.T) {
	if os.Getenv(insideEnv) != "1" || os.Getpid() != 1 {
		t.Skip("runs only as the container's pid 1, started by TestContainerCgroupNest")
	}
	podMem, err := strconv.ParseInt(os.Getenv(podMemoryEnv), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", podMemoryEnv, err)
	}
	const parent = "/vatrun"
	want := []string{"cpu", "memory", "pids"}
	hasAll := func(got []string) bool {
		for _, c := range want {
			if !slices.Contains(got, c) {
				return false
			}
		}
		return true
	}

	t.Run("nest", func(t *testing.T) {
		// What cgroup-nest.sh did: this process moved from the namespace's root to /init, the
		// root holds no process and delegates, /vatrun delegates, the parent is exported; the
		// namespace's root is the pod, with crun's limit.
		self := readFile(t, "/proc/self/cgroup")
		rootCtl := strings.Fields(readFile(t, cgroupRoot+"/cgroup.subtree_control"))
		vatrunCtl := strings.Fields(readFile(t, cgroupRoot+parent+"/cgroup.subtree_control"))
		rootProcs := readFile(t, cgroupRoot+"/cgroup.procs")
		max := readFile(t, cgroupRoot+"/memory.max")
		row(t, "container-nest", "0::/init, / and /vatrun delegate cpu memory pids, / empty, memory.max "+strconv.FormatInt(podMem, 10),
			fmt.Sprintf("%s, / %v, /vatrun %v, / procs %q, memory.max %s, VATRUN_CGROUP_PARENT=%s", self, rootCtl, vatrunCtl, rootProcs, max, os.Getenv("VATRUN_CGROUP_PARENT")), 0)
		if self != "0::/init" {
			t.Errorf("/proc/self/cgroup %q, want 0::/init (cgroup-nest.sh moves the container's processes there)", self)
		}
		if !hasAll(rootCtl) || !hasAll(vatrunCtl) {
			t.Errorf("subtree_control: / %v, /vatrun %v; want %v in both", rootCtl, vatrunCtl, want)
		}
		if rootProcs != "" {
			t.Errorf("the namespace's root still holds processes %q", rootProcs)
		}
		if max != strconv.FormatInt(podMem, 10) {
			t.Errorf("the cgroup namespace's root has memory.max %s, want the pod's %d: the root is not the pod", max, podMem)
		}
		if p := os.Getenv("VATRUN_CGROUP_PARENT"); p != parent {
			t.Errorf("VATRUN_CGROUP_PARENT=%q, want %s", p, parent)
		}
	})

	t.Run("check", func(t *testing.T) {
		start := time.Now()
		cmd := exec.Command(vatrunBin, "check", "--profile", "consensus", "--json")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var c insideCheck
		if jerr := json.Unmarshal(stdout.Bytes(), &c); jerr != nil {
			t.Fatalf("vatrun check --json (%v): not JSON: %v\n%s%s", err, jerr, stdout.String(), stderr.String())
		}
		v := c.Where.CgroupView
		observed := fmt.Sprintf("canRun=%v container=%v runtime=%s privateNS=%v readOnly=%v self=%s parent=%s writable=%v controllers=%v launch=%q userNS=%v",
			c.CanRun, c.Where.InContainer, c.Where.Runtime, v.PrivateNS, v.ReadOnly, v.Self, c.Cgroup.Parent, c.Cgroup.Writable, c.Cgroup.Controllers, c.Launch.Cgroup, c.Launch.UserNS)
		row(t, "container-check", "canRun, container oci, private writable cgroupns, parent /vatrun writable with cpu memory pids", observed, time.Since(start))
		if err != nil || !c.CanRun {
			t.Errorf("vatrun check: %v canRun=%v problems %q cgroup problem %q\n%s", err, c.CanRun, c.Problems, c.Cgroup.Problem, stderr.String())
		}
		if !c.Where.InContainer || c.Where.Runtime != "oci" {
			t.Errorf("where: in container %v, runtime %q; want the OCI container (container=oci)", c.Where.InContainer, c.Where.Runtime)
		}
		if !v.Mounted || !v.PrivateNS || v.ReadOnly || v.Self != "/init" {
			t.Errorf("cgroupView %+v: want a private, writable cgroup namespace with vatrun in /init", v)
		}
		if c.Cgroup.Parent != parent || !c.Cgroup.Writable || c.Cgroup.Problem != "" || !hasAll(c.Cgroup.Controllers) {
			t.Errorf("cgroup %+v: want parent %s, writable, delegated %v", c.Cgroup, parent, want)
		}
		if !strings.Contains(c.Launch.Cgroup, parent) {
			t.Errorf("launch.cgroup %q, want a leaf under %s", c.Launch.Cgroup, parent)
		}
	})

	t.Run("leaves-and-oom-limit", func(t *testing.T) {
		start := time.Now()
		hog := startVatrun(t, matrixProfile(t, "leaf-oom", map[string]any{"memory": "32M"}))
		idle := startVatrun(t, matrixProfile(t, "leaf-idle", nil))
		ls := leaves(parent)
		leafOf := func(pid int) string {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
			return strings.TrimPrefix(strings.TrimSpace(string(b)), "0::")
		}
		hogLeaf, idleLeaf := leafOf(hog.worker), leafOf(idle.worker)
		observedLeaves := fmt.Sprintf("%d leaves; workers in %s and %s", len(ls), hogLeaf, idleLeaf)
		if len(ls) != 2 || hogLeaf == idleLeaf || !strings.HasPrefix(hogLeaf, parent+"/vatrun-") || !strings.HasPrefix(idleLeaf, parent+"/vatrun-") {
			t.Errorf("%s (leaves %v): want two workers, each in its own leaf under %s", observedLeaves, ls, parent)
		}
		for _, l := range []string{hogLeaf, idleLeaf} {
			if !slices.Contains(ls, filepath.Join(cgroupRoot, l)) {
				t.Errorf("worker's cgroup %s is not one of the leaves %v", l, ls)
			}
		}
		if got := readFile(t, filepath.Join(cgroupRoot, hogLeaf, "memory.max")); got != strconv.Itoa(32<<20) {
			t.Errorf("the 32M worker's leaf has memory.max %s", got)
		}
		hog.send("alloc:134217728")
		hog.cmdW.Close() // a worker that survives the allocation exits 0 at EOF instead of waiting
		out := hog.wait()
		idle.cmdW.Close()
		idleOut := idle.wait()
		observed := observedLeaves
		if r := out.report; r != nil {
			observed += fmt.Sprintf("; hog exit %d %s/%s oom=%d oom_kill=%d peak=%.1fM", out.code, r.Cause, r.Class, deref(r.OOMEvents), deref(r.OOMKills), float64(deref(r.PeakMemory))/mib)
		}
		if r := idleOut.report; r != nil {
			observed += fmt.Sprintf("; idle %s/%s", r.Cause, r.Class)
		}
		row(t, "container-leaves-oom-limit", "2 leaves under /vatrun; 32M worker oom-limit/resource-exhaustion; other exited/clean", observed, time.Since(start))
		if out.report == nil || idleOut.report == nil {
			t.Fatalf("no report: hog %s, idle %s", out.stderr, idleOut.stderr)
		}
		r := out.report
		t.Logf("hog: %s", r.OneLine())
		if out.code != 128+int(syscall.SIGKILL) || r.Cause != report.CauseOOMLimit || r.Class != report.ClassResourceExhaustion {
			t.Errorf("the worker over its own 32M: exit %d, %s/%s; want 137, %s/%s", out.code, r.Cause, r.Class, report.CauseOOMLimit, report.ClassResourceExhaustion)
		}
		if deref(r.OOMEvents) < 1 || deref(r.OOMKills) < 1 || r.PeakMemory == nil || *r.PeakMemory < 28*mib || *r.PeakMemory > 33*mib {
			t.Errorf("oomEvents %d oomKills %d peakMemory %d: want both >= 1 and the peak near 32M", deref(r.OOMEvents), deref(r.OOMKills), deref(r.PeakMemory))
		}
		if ir := idleOut.report; ir.Cause != report.CauseExited || ir.Class != report.ClassClean || !ir.CgroupEvidence {
			t.Errorf("the other worker: %s", ir.OneLine())
		}
		if l := leaves(parent); len(l) > 0 {
			t.Errorf("leaves left: %v", l)
		}
	})

	t.Run("pod-oom", func(t *testing.T) {
		start := time.Now()
		// The pod's own limit shows in its memory.events.local oom (the leaf OOM case above
		// raised only the hierarchical count); the kill, in a descendant, in memory.events.
		local, events := cgroupRoot+"/memory.events.local", cgroupRoot+"/memory.events"
		beforeLocal, before := readKeyed(t, local), readKeyed(t, events)
		// The worker's own limit (512M) is above the pod's: the pod runs out first.
		v := startVatrun(t, matrixProfile(t, "pod-oom", map[string]any{"memory": "512M"}))
		if ls := leaves(parent); len(ls) != 1 {
			t.Errorf("leaves %v, want the worker's one", ls)
		}
		v.send("alloc:" + strconv.FormatInt(2*podMem, 10))
		v.cmdW.Close()
		out := v.wait()
		podOOM, podKill := readKeyed(t, local)["oom"]-beforeLocal["oom"], readKeyed(t, events)["oom_kill"]-before["oom_kill"]
		observed := fmt.Sprintf("exit %d, no report", out.code)
		if r := out.report; r != nil {
			observed = fmt.Sprintf("exit %d %s/%s leaf oom=%d oom_kill=%d; pod oom.local +%d oom_kill +%d", out.code, r.Cause, r.Class, deref(r.OOMEvents), deref(r.OOMKills), podOOM, podKill)
		}
		row(t, "container-pod-oom", "exit 137 oom-host/external, leaf oom_kill>=1 oom=0, pod's own oom and oom_kill grew", observed, time.Since(start))
		if out.report == nil {
			t.Fatalf("no report: %s", out.stderr)
		}
		r := out.report
		t.Logf("report: %s", r.OneLine())
		if out.code != 128+int(syscall.SIGKILL) || r.Cause != report.CauseOOMHost || r.Class != report.ClassExternal {
			t.Errorf("the worker that ran the pod out: exit %d, %s/%s; want 137, %s/%s", out.code, r.Cause, r.Class, report.CauseOOMHost, report.ClassExternal)
		}
		if deref(r.OOMKills) < 1 || deref(r.OOMEvents) != 0 {
			t.Errorf("leaf oomKills %d oomEvents %d: want an OOM kill without the leaf's own limit hit", deref(r.OOMKills), deref(r.OOMEvents))
		}
		if podOOM < 1 || podKill < 1 {
			t.Errorf("the pod's own oom (memory.events.local) grew by %d, its oom_kill by %d: want both >= 1", podOOM, podKill)
		}
		if l := leaves(parent); len(l) > 0 {
			t.Errorf("leaves left: %v", l)
		}
	})
}

// TestInsideContainerBare is the command of the container without the recipe's entrypoint: check
// and run agree that the namespace's root, holding the container's processes, cannot be the parent.
func TestInsideContainerBare(t *testing.T) {
	if os.Getenv(insideEnv) != "1" || os.Getpid() != 1 {
		t.Skip("runs only as the container's pid 1, started by TestContainerWithoutNest")
	}
	const why = "cgroup parent / is the root of a cgroup namespace"
	start := time.Now()
	if self := readFile(t, "/proc/self/cgroup"); self != "0::/" {
		t.Fatalf("/proc/self/cgroup %q, want 0::/ (no cgroup-nest.sh here)", self)
	}
	cmd := exec.Command(vatrunBin, "check", "--profile", "consensus", "--json")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	checkErr := cmd.Run()
	var c insideCheck
	if err := json.Unmarshal(stdout.Bytes(), &c); err != nil {
		t.Fatalf("vatrun check --json (%v): not JSON: %v\n%s", checkErr, err, stdout.String())
	}
	var stderr bytes.Buffer
	run := exec.Command(vatrunBin, "run", "--profile", "consensus", "--", "/bin/vatrun-testworker")
	run.Stderr = &stderr
	runErr := run.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(runErr, &ee) {
		code = ee.ExitCode()
	}
	msg, _, _ := strings.Cut(stderr.String(), "\n")
	row(t, "container-without-nest", "check canRun=false parent / ("+why+"); run exit 122 or 125, the same",
		fmt.Sprintf("check canRun=%v privateNS=%v parent=%s problem %q; run exit %d: %s", c.CanRun, c.Where.CgroupView.PrivateNS, c.Cgroup.Parent, c.Cgroup.Problem, code, msg), time.Since(start))
	if c.CanRun || checkErr == nil || c.Cgroup.Parent != "/" || !strings.Contains(c.Cgroup.Problem, why) || !c.Where.CgroupView.PrivateNS {
		t.Errorf("check: exit %v canRun %v cgroup %+v privateNS %v; want it to refuse / as the parent: %q", checkErr, c.CanRun, c.Cgroup, c.Where.CgroupView.PrivateNS, why)
	}
	if code != 122 && code != 125 || !strings.Contains(stderr.String(), why) {
		t.Errorf("run: %v, stderr %q; want exit 122 or 125 naming %q, as check does", runErr, stderr.String(), why)
	}
}
