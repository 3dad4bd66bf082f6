package vm

// The SwingSet run (a boot of its own, see ../swingset_test.go): Node.js and
// test/swingset's node_modules come from the host's root file system, which
// init mounts read-only over virtio-9p at $VATRUN_E2E_HOSTROOT with the VM's
// /proc, /sys (and cgroup2), /dev and /tmp bound over it. Node runs chrooted
// there, as root, in this run's cgroup (<parent>/vatrun-supervisor); it spawns
// every xsnap worker through `vatrun run --profile consensus --cgroup-parent
// <parent>`, so each worker gets a real cgroup v2 leaf under <parent>.

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type swingSetEnv struct {
	hostRoot, repo, node, vatrun string
}

func needSwingSet(t *testing.T) swingSetEnv {
	t.Helper()
	e := swingSetEnv{
		hostRoot: os.Getenv("VATRUN_E2E_HOSTROOT"),
		repo:     os.Getenv("VATRUN_E2E_REPO"),
		node:     os.Getenv("VATRUN_E2E_NODE"),
		vatrun:   os.Getenv("VATRUN_E2E_HOST_VATRUN"),
	}
	if e.hostRoot == "" || e.repo == "" || e.node == "" || e.vatrun == "" {
		if strict() {
			t.Fatalf("not in the SwingSet boot (VATRUN_E2E_HOSTROOT=%q VATRUN_E2E_REPO=%q VATRUN_E2E_NODE=%q VATRUN_E2E_HOST_VATRUN=%q)", e.hostRoot, e.repo, e.node, e.vatrun)
		}
		t.Skip("not in the SwingSet boot: no host root")
	}
	for _, p := range []string{e.node, e.vatrun, filepath.Join(e.repo, "test/swingset/node_modules")} {
		if _, err := os.Stat(filepath.Join(e.hostRoot, p)); err != nil {
			t.Fatalf("the host's %s is not visible in the VM: %v (run `bash test/swingset/setup.sh`)", p, err)
		}
	}
	return e
}

// nodeResult is what one chrooted Node.js run did.
type nodeResult struct {
	out      []byte
	err      error
	elapsed  time.Duration
	leaves   []string // worker cgroup leaves seen under the run's parent while it ran
	leftOver []string // leaves still there after it ended
}

// runHostNode runs the host's node with args, chrooted into the host's root,
// in dir (a host path), with env added to a minimal environment. It polls the
// run's cgroup parent for the leaves vatrun creates.
func runHostNode(t *testing.T, e swingSetEnv, dir string, timeout time.Duration, env []string, args ...string) nodeResult {
	t.Helper()
	parent := cgroupParent(t)
	own := filepath.Base(ownCgroup(t))
	cmd := exec.Command(e.node, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=" + scratchDir(),
		"TMPDIR=" + scratchDir(),
		"LANG=C.UTF-8",
		"NODE_OPTIONS=--max-old-space-size=1024",
		"VATRUN_BIN=" + e.vatrun,
		"VATRUN_SWINGSET_PROFILES=consensus",
		"VATRUN_SWINGSET_VATRUN_ARGS=--cgroup-parent " + cgroupParentPath(t),
	}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: e.hostRoot, Setpgid: true}

	seen := map[string]bool{}
	var mu sync.Mutex
	scan := func() []string {
		ents, _ := os.ReadDir(parent)
		var names []string
		for _, d := range ents {
			if d.IsDir() && d.Name() != own {
				names = append(names, d.Name())
			}
		}
		return names
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, n := range scan() {
				mu.Lock()
				seen[n] = true
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	start := time.Now()
	err := cmd.Start()
	if err == nil {
		timer := time.AfterFunc(timeout, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
		err = cmd.Wait()
		if !timer.Stop() {
			err = fmt.Errorf("killed after %s: %w", timeout, err)
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	res := nodeResult{out: out.Bytes(), err: err, elapsed: time.Since(start)}
	close(stop)
	wg.Wait()
	for n := range seen {
		res.leaves = append(res.leaves, n)
	}
	sort.Strings(res.leaves)
	// vatrun removes a leaf right after the worker's death; give it a moment.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if res.leftOver = scan(); len(res.leftOver) == 0 || time.Now().After(deadline) {
			break
		}
	}
	return res
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// scratchDir is the writable directory of the chrooted run: the VM's /tmp, bound where the host
// side chose (VATRUN_E2E_SCRATCH; /tmp unless the repository lives below it).
func scratchDir() string {
	return envOr("VATRUN_E2E_SCRATCH", "/tmp")
}

func swingSetTimeout() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("VATRUN_E2E_SWINGSET_TIMEOUT")); err == nil && d > 0 {
		return d
	}
	return 15 * time.Minute
}

// leavesRow reports the cgroup leaves a Node.js run made and left.
func leavesRow(t *testing.T, name string, r nodeResult, want int) {
	t.Helper()
	obs := fmt.Sprintf("%d leaves, %d left", len(r.leaves), len(r.leftOver))
	row(t, name, fmt.Sprintf(">= %d leaves under the parent, none left", want), obs, r.elapsed)
	if len(r.leaves) < want {
		t.Errorf("%s: saw %d worker cgroup leaves under %s, want >= %d: %v", name, len(r.leaves), cgroupParent(t), want, r.leaves)
	}
	if len(r.leftOver) > 0 {
		t.Errorf("%s: leaves left under %s after the run: %v", name, cgroupParent(t), r.leftOver)
	}
}

// TestSwingSetSmoke runs one xsnap worker from test/swingset's node_modules
// through makeVatrunSpawn and `vatrun run --profile consensus` with a real
// cgroup leaf (test/e2e/swingset-smoke.mjs): evaluate, snapshot, clean
// exit, cgroupEvidence true.
func TestSwingSetSmoke(t *testing.T) {
	vmTest(t)
	e := needSwingSet(t)
	r := runHostNode(t, e, e.repo, 5*time.Minute, nil, filepath.Join(e.repo, "test/e2e/swingset-smoke.mjs"))
	t.Logf("node test/e2e/swingset-smoke.mjs (%.1fs):\n%s", r.elapsed.Seconds(), r.out)
	rows := 0
	for _, l := range strings.Split(string(r.out), "\n") {
		rest, ok := strings.CutPrefix(l, "SMOKE ")
		if !ok {
			continue
		}
		f := strings.Split(rest, "|")
		if len(f) != 4 {
			continue
		}
		s, _ := strconv.ParseFloat(f[3], 64)
		row(t, "swingset-smoke "+f[0], f[1], f[2], time.Duration(s*float64(time.Second)))
		rows++
	}
	if r.err != nil {
		t.Errorf("swingset-smoke.mjs: %v", r.err)
	}
	if rows < 3 {
		t.Errorf("swingset-smoke.mjs printed %d SMOKE lines, want 3", rows)
	}
	leavesRow(t, "swingset-smoke leaves", r, 1)
}

var tapLine = regexp.MustCompile(`^(\s*)(ok|not ok) \d+ - (.*?)(?: # (SKIP|TODO).*)?$`)
var tapDuration = regexp.MustCompile(`^\s*duration_ms: ([0-9.]+)`)

// TestSwingSetKernel runs test/swingset's node:test files (the SwingSet
// kernel with xsnap workers, compared with plain spawn) with
// VATRUN_SWINGSET_PROFILES=consensus and real cgroup leaves, and reports each
// of its tests as a row.
func TestSwingSetKernel(t *testing.T) {
	vmTest(t)
	e := needSwingSet(t)
	dir := os.Getenv("VATRUN_E2E_SWINGSET_DIR")
	if dir == "" {
		dir = filepath.Join(e.repo, "test/swingset")
	}
	var files []string
	for _, pat := range strings.Split(envOr("VATRUN_E2E_SWINGSET_FILES", "*.test.mjs"), ",") {
		m, _ := filepath.Glob(filepath.Join(e.hostRoot, dir, pat))
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatalf("no %s/*.test.mjs in the host's root", dir)
	}
	args := []string{"--test", "--test-reporter=tap", "--test-concurrency=1"}
	for _, f := range files {
		args = append(args, strings.TrimPrefix(f, e.hostRoot))
	}
	// Under TCG the kernel runs ~10x slower than on the host: by default the snapshot baseline
	// (plain vs consensus, fewer deliveries) and one kill case; the host's `make swingset` runs
	// them all. Stores go to the VM's tmpfs (the repository is read-only here); the bundles the
	// host built are read from its state/ (building them under TCG takes ~5 minutes).
	env := []string{
		"VATRUN_SWINGSET_ONLY=" + envOr("VATRUN_E2E_SWINGSET_ONLY", "baseline,in-delivery"),
		"VATRUN_SWINGSET_DELIVERIES=" + envOr("VATRUN_E2E_SWINGSET_DELIVERIES", "6,3"),
		"VATRUN_SWINGSET_TIMEOUT_MS=1200000",
		"VATRUN_SWINGSET_STATE=" + scratchDir() + "/vatrun-swingset",
		"VATRUN_SWINGSET_BUNDLES=" + filepath.Join(dir, "state"),
	}
	r := runHostNode(t, e, dir, swingSetTimeout(), env, args...)
	t.Logf("node %s (%.1fs):\n%s", strings.Join(args, " "), r.elapsed.Seconds(), r.out)

	// One row per test (top level and subtests), from the TAP report.
	type tapTest struct {
		name, result string
		ms           float64
	}
	var tests []*tapTest
	var last *tapTest
	sc := bufio.NewScanner(bytes.NewReader(r.out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if m := tapLine.FindStringSubmatch(l); m != nil {
			result := map[string]string{"ok": "ok", "not ok": "not ok"}[m[2]]
			if m[4] != "" {
				result = strings.ToLower(m[4])
			}
			name := m[3]
			if depth := len(m[1]) / 4; depth > 0 {
				name = strings.Repeat("  ", depth) + name
			}
			last = &tapTest{name: name, result: result}
			tests = append(tests, last)
			continue
		}
		if m := tapDuration.FindStringSubmatch(l); m != nil && last != nil && last.ms == 0 {
			last.ms, _ = strconv.ParseFloat(m[1], 64)
		}
	}
	failed := 0
	var notRun []string
	for _, tt := range tests {
		if tt.result == "skip" { // not selected for the VM (VATRUN_SWINGSET_ONLY): no row claims it
			notRun = append(notRun, strings.TrimSpace(tt.name))
			continue
		}
		row(t, "swingset "+tt.name, "ok", tt.result, time.Duration(tt.ms*float64(time.Millisecond)))
		if tt.result == "not ok" {
			failed++
		}
	}
	if len(notRun) > 0 {
		t.Logf("not run in the VM (VATRUN_SWINGSET_ONLY; the host's make swingset runs them): %s", strings.Join(notRun, "; "))
	}
	if r.err != nil {
		t.Errorf("node --test: %v (%d failed tests)", r.err, failed)
	}
	if len(tests) == 0 {
		t.Errorf("node --test reported no test")
	}
	leavesRow(t, "swingset leaves", r, 1)
}
