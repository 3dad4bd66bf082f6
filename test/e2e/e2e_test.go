package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Environment (all optional):
//
//	VATRUN_E2E=1            missing qemu/kernel/binaries fail instead of skipping (CI); =0 skips
//	VATRUN_E2E_KERNEL       kernel image (default .cache/vmlinuz, made by setup.sh)
//	VATRUN_E2E_QEMU         qemu binary (default qemu-system-x86_64 from PATH)
//	VATRUN_E2E_MACHINE      q35 (default) or microvm
//	VATRUN_E2E_CPU          -cpu model (default max)
//	VATRUN_E2E_MEM          memory (default 512M)
//	VATRUN_E2E_SMP          vCPUs (default 2)
//	VATRUN_E2E_INITRD       gzip (default) or none: initramfs compression
//	VATRUN_E2E_RUN          regexp: only VM tests whose name matches (TestBench* run only when it is set)
//	VATRUN_E2E_TIMEOUT      whole-VM limit (default 20m); each run gets the same
//	VATRUN_E2E_OUT          where console.log, results.log, table.txt go (default .cache/last)
//	VATRUN_E2E_VERBOSE=1    stream the VM console into the test log
//	VATRUN_E2E_APPEND       extra kernel command line arguments
//	VATRUN_BIN              vatrun binary, put at /bin/vatrun (default ../../bin/vatrun if present)
//	VATRUN_HOOKS_BIN        vatrun built with -tags vatrun_testhooks, put at /bin/vatrun-hooks (default ../../bin/vatrun-hooks if present)
//	VATRUN_TESTWORKER       test worker, put at /bin/vatrun-testworker (default ../../bin/vatrun-testworker if present)
//
// The SwingSet boot (TestSwingSet* VM tests, see swingset.go):
//
//	VATRUN_E2E_SWINGSET=0       leave it out (with VATRUN_E2E=1 it is required otherwise)
//	VATRUN_E2E_KERNEL_9P        kernel with 9p modules (default .cache/vmlinuz-9p, made by setup.sh)
//	VATRUN_E2E_MODULES_9P       its lib/modules/<version> (default .cache/vmlinuz-9p.modules)
//	VATRUN_E2E_SWINGSET_MEM     the SwingSet VM's memory (default 2G; 4G with VATRUN_E2E_XSNAP_LIMITS=1)
//	VATRUN_E2E_XSNAP_LIMITS=1   also run the heavy real-xsnap limit tests (vm/xsnaplimits_test.go: many minutes under TCG)
//	VATRUN_E2E_NODE             Node.js on the host, run in the VM from the host's root (default node from PATH)
//	VATRUN_E2E_SWINGSET_ONLY    passed to the SwingSet test as VATRUN_SWINGSET_ONLY (comma-separated case names)

type config struct {
	strict     bool
	goBin      string
	qemu       string
	kernel     string
	machine    string
	cpu        string
	mem        string
	smp        string
	gzip       bool
	filter     *regexp.Regexp
	timeout    time.Duration
	out        string
	verbose    bool
	appendArgs string
	extraBin   map[string]string // VM path -> host path
}

// The runs init makes: the same test binary as root and as uid 1000. A test
// whose name starts with TestUnpriv goes to the uid-1000 run. Each run starts
// in <parent>/vatrun-supervisor, the layout vatrun expects under systemd's
// Delegate=yes: its default cgroup parent is then <parent>, which is owned by
// the run's uid, has memory, cpu and pids enabled for children, and holds no
// process.
//
// The SwingSet run is a boot of its own (boot "swingset"): another kernel (with
// 9p), more memory, and the host's root file system over virtio-9p; see swingset.go.
type runSpec struct {
	name, parent, cgroup string
	uid                  int
	prefix               string // the VM tests of this run: names starting with prefix ("" = every test no other run claims)
	boot                 string // "" for the main boot
}

var runSpecs = []runSpec{
	{name: "root", uid: 0, parent: "/e2e-root", cgroup: "/e2e-root/vatrun-supervisor"},
	{name: "uid1000", uid: 1000, parent: "/e2e-u1000", cgroup: "/e2e-u1000/vatrun-supervisor", prefix: "TestUnpriv"},
	{name: "swingset", uid: 0, parent: "/e2e-swingset", cgroup: "/e2e-swingset/vatrun-supervisor", prefix: "TestSwingSet", boot: bootSwingSet},
}

// runOf is the run a VM test belongs to.
func runOf(test string) string {
	for _, rs := range runSpecs {
		if rs.prefix != "" && strings.HasPrefix(test, rs.prefix) {
			return rs.name
		}
	}
	return runSpecs[0].name
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// loadConfig skips the test when the VM cannot run here, unless VATRUN_E2E=1.
func loadConfig(t *testing.T) *config {
	t.Helper()
	c := &config{
		strict:     os.Getenv("VATRUN_E2E") == "1",
		machine:    env("VATRUN_E2E_MACHINE", "q35"),
		cpu:        env("VATRUN_E2E_CPU", "max"),
		mem:        env("VATRUN_E2E_MEM", "512M"),
		smp:        env("VATRUN_E2E_SMP", "2"),
		gzip:       env("VATRUN_E2E_INITRD", "gzip") != "none",
		verbose:    os.Getenv("VATRUN_E2E_VERBOSE") == "1",
		appendArgs: os.Getenv("VATRUN_E2E_APPEND"),
	}
	unavailable := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if c.strict {
			t.Fatalf("VATRUN_E2E=1 but %s", msg)
		}
		t.Skipf("skipping the VM tests: %s (run `bash test/e2e/setup.sh`; set VATRUN_E2E=1 to make this a failure)", msg)
	}
	if os.Getenv("VATRUN_E2E") == "0" {
		t.Skip("skipping the VM tests: VATRUN_E2E=0")
	}
	if testing.Short() && !c.strict {
		t.Skip("skipping the VM tests in -short mode")
	}
	var err error
	// go test puts $GOROOT/bin first in the test's PATH.
	if c.goBin, err = exec.LookPath("go"); err != nil {
		unavailable("no go command in PATH: %v", err)
	}
	if c.qemu, err = exec.LookPath(env("VATRUN_E2E_QEMU", "qemu-system-x86_64")); err != nil {
		unavailable("qemu is missing: %v", err)
	}
	c.kernel = env("VATRUN_E2E_KERNEL", filepath.Join(".cache", "vmlinuz"))
	if _, err := os.Stat(c.kernel); err != nil {
		unavailable("no kernel image: %v", err)
	}
	if c.kernel, err = filepath.Abs(c.kernel); err != nil {
		t.Fatalf("kernel path: %v", err)
	}
	if f := os.Getenv("VATRUN_E2E_RUN"); f != "" {
		if c.filter, err = regexp.Compile(f); err != nil {
			t.Fatalf("VATRUN_E2E_RUN: %v", err)
		}
	}
	if c.timeout, err = time.ParseDuration(env("VATRUN_E2E_TIMEOUT", "20m")); err != nil {
		t.Fatalf("VATRUN_E2E_TIMEOUT: %v", err)
	}
	c.out = env("VATRUN_E2E_OUT", filepath.Join(".cache", "last"))
	c.extraBin = map[string]string{}
	for _, b := range []struct{ envName, def, vmPath string }{
		{"VATRUN_BIN", "../../bin/vatrun", "/bin/vatrun"},
		{"VATRUN_HOOKS_BIN", "../../bin/vatrun-hooks", "/bin/vatrun-hooks"},
		{"VATRUN_TESTWORKER", "../../bin/vatrun-testworker", "/bin/vatrun-testworker"},
	} {
		p := os.Getenv(b.envName)
		if p == "" {
			if _, err := os.Stat(b.def); err != nil {
				t.Logf("%s not set and %s absent: the VM has no %s", b.envName, b.def, b.vmPath)
				continue
			}
			p = b.def
		}
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", b.envName, p, err)
		}
		c.extraBin[b.vmPath] = p
	}
	return c
}

// TestVM builds the payload, boots the VM (once for the root and uid-1000
// runs, once more for the SwingSet run) and turns what the VM-side tests
// (package ./vm) reported into subtests: TestVM/<run>/<VM test>.
func TestVM(t *testing.T) {
	c := loadConfig(t)
	total := time.Now()
	work := t.TempDir()
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		t.Fatalf("output dir: %v", err)
	}

	start := time.Now()
	p, err := buildPayload(c, work)
	if err != nil {
		t.Fatal(err)
	}
	tests, err := listTests(p.vmTest)
	if err != nil {
		t.Fatal(err)
	}
	runs := planRuns(c, tests)
	t.Logf("payload built in %.1fs: %d VM tests", time.Since(start).Seconds(), len(tests))

	var rows []tableRow
	outcomes := map[string]string{}
	var walls []string
	for _, bootName := range []string{bootMain, bootSwingSet} {
		var bootRuns []plannedRun
		for _, r := range runs {
			if r.spec.boot == bootName {
				bootRuns = append(bootRuns, r)
			}
		}
		if len(bootRuns) == 0 {
			continue
		}
		b := &bootConfig{name: bootName, kernel: c.kernel, mem: c.mem}
		if bootName == bootSwingSet {
			var skip string
			if b, skip = swingSetBoot(t, c, work); b == nil {
				for _, rs := range bootRuns {
					t.Run(rs.spec.name, func(t *testing.T) { t.Skip(skip) })
				}
				continue
			}
		}
		res, consoleTail, wall := bootVM(t, c, p, b, bootRuns, work)
		walls = append(walls, fmt.Sprintf("%s %.1fs", b.label(), wall.Seconds()))
		for _, rs := range bootRuns {
			t.Run(rs.spec.name, func(t *testing.T) {
				rr := res.Runs[rs.spec.name]
				if rr == nil {
					t.Fatalf("run %s never started in the VM; console tail:\n%s", rs.spec.name, consoleTail)
				}
				vr, err := decodeRun(c.goBin, rs.spec.name, rr.Output)
				if err != nil {
					t.Fatal(err)
				}
				rows = append(rows, vr.Rows...)
				reportRun(t, rs, rr, vr, consoleTail, outcomes)
			})
		}
	}

	table := formatTable(rows, func(run, test string) string {
		if o := outcomes[run+"/"+test]; o != "" {
			return o
		}
		return "-"
	})
	_ = os.WriteFile(filepath.Join(c.out, "table.txt"), []byte(table), 0o644)
	t.Logf("results (%s, total %.1fs, VM wall: %s):\n%s", c.machine, time.Since(total).Seconds(), strings.Join(walls, ", "), table)
}

const (
	bootMain     = ""
	bootSwingSet = "swingset"
)

// bootConfig is what differs between the boots.
type bootConfig struct {
	name        string
	kernel, mem string
	virtfs      bool              // export the host's / read-only over virtio-9p (tag hostroot)
	files       map[string]string // extra initramfs files: VM path -> host path
	directives  []string          // extra manifest lines (module=, hostroot=)
	env         []string          // extra environment of every run (K=V, no blanks)
}

// label names the boot in logs and artifact file names ("" for the main boot).
func (b *bootConfig) label() string {
	if b.name == bootMain {
		return "main"
	}
	return b.name
}

// artifact is name for the main boot, name-<boot> (before the extension) for the others.
func (b *bootConfig) artifact(name string) string {
	if b.name == bootMain {
		return name
	}
	ext := filepath.Ext(name)
	return strings.TrimSuffix(name, ext) + "-" + b.name + ext
}

// bootVM writes the boot's initramfs, boots it and parses what init reported.
func bootVM(t *testing.T, c *config, p *payload, b *bootConfig, runs []plannedRun, work string) (*vmResults, string, time.Duration) {
	t.Helper()
	manifest := makeManifest(c, b, runs)
	initrd := filepath.Join(work, b.artifact("initrd"))
	bp := *p
	bp.files = b.files
	size, err := writeInitramfs(initrd, &bp, manifest, c.gzip)
	if err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(c.out, b.artifact("manifest")), []byte(manifest), 0o644)
	t.Logf("boot %s: initramfs %.1f MB (gzip=%v)", b.label(), float64(size)/1e6, c.gzip)

	boot, err := runQEMU(t, c, b, initrd, work)
	if err != nil {
		t.Fatal(err)
	}
	res := parseResults(boot.results)
	if res.BootUptime == "" && len(res.Order) == 0 {
		// No second serial port (microvm has one UART): init wrote the results
		// to the console, where kernel messages may be mixed in.
		res = parseResults(boot.console)
	}
	extra := ""
	if res.HostRoot != "" {
		extra = ", host root mounted: " + res.HostRoot
	}
	t.Logf("VM %s (boot %s): wall %.1fs, init started at guest uptime %ss%s", c.machine, b.label(), boot.wall.Seconds(), res.BootUptime, extra)
	consoleTail := tail(boot.console, 60)
	for _, f := range res.Fatal {
		t.Errorf("VM init (boot %s): %s", b.label(), f)
	}
	if boot.timedOut {
		t.Errorf("qemu (boot %s) did not power off within %s", b.label(), c.timeout+time.Minute)
	}
	if !res.Done && len(res.Fatal) == 0 {
		t.Errorf("the VM (boot %s) never reported DONE (crash, panic or watchdog)", b.label())
	}
	return res, consoleTail, boot.wall
}

// reportRun makes one host subtest per VM test, failing it when the VM test
// failed or never finished.
func reportRun(t *testing.T, rs plannedRun, rr *runResult, vr *vmRun, consoleTail string, outcomes map[string]string) {
	t.Helper()
	seen := map[string]bool{}
	for _, vt := range vr.Tests {
		seen[vt.Name] = true
		outcomes[rs.spec.name+"/"+vt.Name] = strings.ToUpper(vt.Action)
		t.Run(vt.Name, func(t *testing.T) {
			log := strings.TrimRight(vt.Output.String(), "\n")
			switch vt.Action {
			case "pass":
				t.Logf("VM (%.2fs):\n%s", vt.Elapsed.Seconds(), log)
			case "skip":
				t.Skipf("skipped in the VM:\n%s", log)
			case "fail":
				t.Errorf("failed in the VM (%.2fs):\n%s", vt.Elapsed.Seconds(), log)
			default:
				outcomes[rs.spec.name+"/"+vt.Name] = "UNFINISHED"
				t.Errorf("never finished in the VM (%s):\n%s\nconsole tail:\n%s", rr.EndLine, log, consoleTail)
			}
		})
	}
	for _, name := range rs.tests {
		if !seen[name] {
			t.Run(name, func(t *testing.T) {
				outcomes[rs.spec.name+"/"+name] = "MISSING"
				t.Errorf("never ran in the VM; run output:\n%s", vr.Loose.String())
			})
		}
	}
	switch {
	case !rr.Ended:
		t.Errorf("run %s has no END marker; output that belongs to no test:\n%s\nconsole tail:\n%s", rs.spec.name, vr.Loose.String(), consoleTail)
	case rr.TimedOut:
		t.Errorf("run %s timed out: %s", rs.spec.name, rr.EndLine)
	case rr.Exit != 0 && !t.Failed():
		t.Errorf("run %s: %s but no test failed; output that belongs to no test:\n%s", rs.spec.name, rr.EndLine, vr.Loose.String())
	}
}

type plannedRun struct {
	spec  runSpec
	tests []string
}

// listTests asks the VM test binary for its tests (-test.list runs none of them).
func listTests(bin string) ([]string, error) {
	cmd := exec.Command(bin, "-test.list", ".")
	cmd.Env = append(os.Environ(), "VATRUN_IN_VM=") // never in VM mode on the host
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("list VM tests (%s -test.list .): %w", bin, err)
	}
	var names []string
	for _, l := range strings.Fields(string(out)) {
		if strings.HasPrefix(l, "Test") {
			names = append(names, l)
		}
	}
	return names, nil
}

// planRuns splits the VM tests between the runs (root, uid1000, swingset) and applies VATRUN_E2E_RUN.
func planRuns(c *config, tests []string) []plannedRun {
	var runs []plannedRun
	for _, spec := range runSpecs {
		pr := plannedRun{spec: spec}
		for _, name := range tests {
			if runOf(name) != spec.name {
				continue
			}
			if c.filter != nil && !c.filter.MatchString(name) {
				continue
			}
			// TestInside* are the commands of the containers vm/container_test.go starts; they
			// skip anywhere else.
			if strings.HasPrefix(name, "TestInside") {
				continue
			}
			// Benchmarks (TestBench*) run only when VATRUN_E2E_RUN names them (make bench).
			if strings.HasPrefix(name, "TestBench") && c.filter == nil {
				continue
			}
			pr.tests = append(pr.tests, name)
		}
		if len(pr.tests) > 0 {
			runs = append(runs, pr)
		}
	}
	return runs
}

func makeManifest(c *config, bc *bootConfig, runs []plannedRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# written by test/e2e/e2e_test.go\nwatchdog=%s\n", c.timeout)
	for _, d := range bc.directives {
		b.WriteString(d + "\n")
	}
	for _, r := range runs {
		fmt.Fprintf(&b, "run name=%s uid=%d parent=%s cgroup=%s timeout=%s", r.spec.name, r.spec.uid, r.spec.parent, r.spec.cgroup, c.timeout)
		if c.strict {
			b.WriteString(" env=VATRUN_E2E_STRICT=1")
		}
		for _, e := range bc.env {
			b.WriteString(" env=" + e)
		}
		for _, vmPath := range []string{"/bin/vatrun", "/bin/vatrun-hooks", "/bin/vatrun-testworker"} {
			if _, ok := c.extraBin[vmPath]; ok {
				envName := map[string]string{"/bin/vatrun": "VATRUN_BIN", "/bin/vatrun-hooks": "VATRUN_HOOKS_BIN", "/bin/vatrun-testworker": "VATRUN_TESTWORKER"}[vmPath]
				fmt.Fprintf(&b, " env=%s=%s", envName, vmPath)
			}
		}
		quoted := make([]string, len(r.tests))
		for i, n := range r.tests {
			quoted[i] = regexp.QuoteMeta(n)
		}
		fmt.Fprintf(&b, " /e2e/vm.test -test.v=test2json -test.timeout=%s -test.run ^(%s)$\n", c.timeout, strings.Join(quoted, "|"))
	}
	return b.String()
}

type bootResult struct {
	console, results []byte
	wall             time.Duration
	timedOut         bool
}

func qemuArgs(c *config, b *bootConfig, initrd, resultsPath string) []string {
	machine := c.machine
	if machine == "microvm" {
		// No PCI, no ACPI tables to parse beyond the minimum: the fastest to boot.
		machine = "microvm,pit=on,pic=on,rtc=on"
	}
	args := []string{
		"-M", machine, "-cpu", c.cpu, "-m", b.mem, "-smp", c.smp,
		"-accel", "tcg,thread=multi",
		"-kernel", b.kernel, "-initrd", initrd,
		"-append", strings.TrimSpace("console=ttyS0 panic=-1 quiet " + c.appendArgs),
		"-nographic", "-no-reboot", "-nodefaults", "-no-user-config",
		"-monitor", "none",
		"-serial", "stdio", // ttyS0: kernel console
		"-serial", "file:" + resultsPath, // ttyS1: results channel
	}
	if b.virtfs {
		// The host's root, read-only in qemu itself (writes fail with EROFS
		// whatever the guest mounts). multidevs=remap keeps inode numbers of
		// files on different host file systems apart.
		args = append(args, "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap")
	}
	return args
}

// runQEMU boots the VM and returns what it printed. The VM powers itself
// off; qemu is killed a minute after the VM's own watchdog should have.
// Output is written under work (private to this test process: several runs
// may share a checkout) and copied to c.out afterwards.
func runQEMU(t *testing.T, c *config, b *bootConfig, initrd, work string) (*bootResult, error) {
	resultsPath := filepath.Join(work, b.artifact("results.log"))
	args := qemuArgs(c, b, initrd, resultsPath)
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.qemu, args...)
	var console bytes.Buffer
	var w = &lockedWriter{w: &console}
	cmd.Stdout, cmd.Stderr = w, w
	t.Logf("booting: %s %s", c.qemu, strings.Join(args, " "))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); follow(t, c, resultsPath, w, stop) }()

	// qemu must not outlive this test process (go test's own -timeout kills
	// it without running deferred code): Pdeathsig, on a thread that stays
	// alive until qemu is waited for.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	runtime.LockOSThread()
	err := cmd.Run()
	runtime.UnlockOSThread()
	wall := time.Since(start)
	close(stop)
	wg.Wait()
	_ = os.WriteFile(filepath.Join(c.out, b.artifact("console.log")), console.Bytes(), 0o644)

	res := &bootResult{console: console.Bytes(), wall: wall, timedOut: ctx.Err() != nil}
	if err != nil && !res.timedOut {
		return nil, fmt.Errorf("qemu: %w\n%s", err, tail(console.Bytes(), 40))
	}
	res.results, err = os.ReadFile(resultsPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read VM results: %w", err)
	}
	_ = os.WriteFile(filepath.Join(c.out, b.artifact("results.log")), res.results, 0o644)
	return res, nil
}

// follow reports progress while the VM runs: VMRUN markers and test results
// from the results channel (and the whole console with VATRUN_E2E_VERBOSE=1).
func follow(t *testing.T, c *config, resultsPath string, console *lockedWriter, stop <-chan struct{}) {
	var off, consoleOff int
	var partial string
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-stop:
			done = true
		case <-tick.C:
		}
		if c.verbose {
			b := console.snapshot()
			if i := bytes.LastIndexByte(b[consoleOff:], '\n'); i >= 0 {
				for _, l := range strings.Split(strings.TrimRight(string(b[consoleOff:consoleOff+i]), "\r\n"), "\n") {
					t.Logf("console: %s", strings.TrimRight(l, "\r"))
				}
				consoleOff += i + 1
			}
		}
		b, err := os.ReadFile(resultsPath)
		if err != nil || len(b) <= off {
			continue
		}
		lines := strings.Split(partial+string(b[off:]), "\n")
		off = len(b)
		partial = lines[len(lines)-1]
		for _, l := range lines[:len(lines)-1] {
			l = strings.ReplaceAll(strings.TrimRight(l, "\r"), "\x16", "")
			if strings.Contains(l, markerPrefix) || strings.HasPrefix(strings.TrimSpace(l), "--- ") {
				t.Logf("vm: %s", l)
			}
		}
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) snapshot() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.w.Bytes()...)
}

// ansi matches the terminal escapes the firmware prints on the console.
var ansi = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|[A-Za-z])`)

func tail(b []byte, n int) string {
	lines := strings.Split(ansi.ReplaceAllString(strings.ReplaceAll(string(b), "\r", ""), ""), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
