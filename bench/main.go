// Command vatrun-bench measures vatrun against what an operator would use instead (plain
// fork/exec, unshare, bubblewrap, crun) on this machine, side by side in one run, and writes
// BENCHMARKS.md. `make bench` (scripts/bench.sh) builds everything and runs it; see BENCHMARKS.md
// for what each figure means. It is a benchmark, not a test: it asserts correctness (every run
// must succeed, no leak after the throughput run) but never timing.
//
// The binary links package launcher, so it is also the sandbox's init stage for the Go API runs
// (launcher re-executes /proc/self/exe), as in any Go kernel that uses the API.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vatrun/vatrun/seccompprofiles"
)

type options struct {
	vatrun, testWorker, trueBin, sysloop string
	noop, phases                         string
	runs, warm, deathRuns, nsRuns        int
	concurrent                           int
	stepRuns, stormN, stormRounds        int
	idleDur                              time.Duration
	xsnapRuns, kernelRuns                int
	repo                                 string
	phaseTable                           string
	sysIters, sysLaunches                int
	tputDur                              time.Duration
	concs                                []int
	out                                  string
	only                                 map[string]bool
	crunHelper, compareHelper            bool
	thinServer, thinBin                  string
	cmpRuns                              int
	rusage                               string
	command                              string
	vmResults, vmSkipped                 string
}

func (o *options) want(section string) bool { return len(o.only) == 0 || o.only[section] }

func parseOptions() (*options, error) {
	o := &options{}
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	flag.StringVar(&o.vatrun, "vatrun", "bin/vatrun", "the vatrun binary")
	flag.StringVar(&o.testWorker, "testworker", "bin/vatrun-testworker", "the C test worker")
	flag.StringVar(&o.trueBin, "true", "bin/vatrun-bench-true", "the static /bin/true-like worker (bench/csrc/true.c)")
	flag.StringVar(&o.sysloop, "sysloop", "bin/vatrun-bench-sysloop", "the syscall loop (bench/csrc/sysloop.c)")
	flag.StringVar(&o.noop, "noop", "bin/vatrun-bench-noop", "a static cgo Go no-op linked like vatrun (bench/noop): the Go runtime's start")
	flag.StringVar(&o.phases, "phases", "bin/vatrun-bench-phases", "cold step timer (bench/phases)")
	flag.IntVar(&o.runs, "runs", 500, "spawn samples per launcher and worker")
	flag.IntVar(&o.warm, "warm", 10, "warm-up runs per launcher (not counted)")
	flag.IntVar(&o.deathRuns, "death-runs", 200, "death-notice samples per launcher")
	flag.IntVar(&o.nsRuns, "ns-runs", 150, "samples per namespace variant")
	flag.IntVar(&o.concurrent, "concurrent", 200, "idle workers for the memory figures")
	flag.IntVar(&o.stepRuns, "step-runs", 100, "fresh processes timing the cold steps of a launch")
	flag.IntVar(&o.stormN, "storm", 100, "concurrent launches per storm")
	flag.IntVar(&o.stormRounds, "storm-rounds", 5, "storms per launcher (interleaved)")
	flag.DurationVar(&o.idleDur, "idle", 10*time.Second, "window over which idle workers' supervisors are watched for CPU use")
	flag.IntVar(&o.xsnapRuns, "xsnap-runs", 30, "real xsnap worker runs per mode (start, one evaluate, close)")
	flag.IntVar(&o.kernelRuns, "kernel-runs", 2, "runs of test/swingset's baseline scenario (plain and vatrun each), after one warm-up run")
	flag.StringVar(&o.phaseTable, "phase-table", "", "markdown phase table from bench/tools/phases.sh (scripts/bench.sh makes it when perf is installed), included as is")
	flag.StringVar(&o.repo, "repo", ".", "the repository (for bench/xsnap.mjs, js/ and test/swingset)")
	flag.IntVar(&o.sysIters, "sys-iters", 50000, "system calls per round of the syscall loop")
	flag.IntVar(&o.sysLaunches, "sys-launches", 5, "launches of the syscall loop per mode")
	flag.DurationVar(&o.tputDur, "tput", 10*time.Second, "duration of each throughput run")
	concs := flag.String("conc", "2,4,8", "throughput concurrencies")
	flag.StringVar(&o.out, "out", "BENCHMARKS.md", "markdown output (\"-\": stdout)")
	only := flag.String("only", "", "comma-separated sections to run: spawn,ns,death,mem,seccomp,storm,xsnap,tput,compare (default all)")
	flag.BoolVar(&o.crunHelper, "crun-helper", false, "internal: crun runs, in a private mount namespace")
	flag.BoolVar(&o.compareHelper, "compare-helper", false, "internal: the cross-sandbox comparison, in a private mount namespace")
	flag.StringVar(&o.thinServer, "thin-server", "", "internal: serve the long-lived-supervisor prototype's launches on this unix socket (bench/thin.go)")
	flag.StringVar(&o.thinBin, "thin", "bin/vatrun-bench-thin", "the prototype's thin client (bench/csrc/thin.c)")
	flag.StringVar(&o.rusage, "rusage", "bin/vatrun-bench-rusage", "tiny static parent timing one launch and reading its rusage (bench/csrc/rusage.c)")
	flag.IntVar(&o.cmpRuns, "compare-runs", 300, "runs per launcher in the start-up comparison across sandboxes (section 8)")
	flag.StringVar(&o.command, "command", "", "the command line to print as the way to reproduce")
	flag.StringVar(&o.vmResults, "vm-results", "", "results.log of a VM run of TestBenchSpawn (scripts/bench.sh makes it): spawn figures with cgroups")
	flag.StringVar(&o.vmSkipped, "vm-skipped", "", "why there are no VM figures (printed instead)")
	flag.Parse()
	for _, c := range strings.Split(*concs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-conc: bad concurrency %q", c)
		}
		o.concs = append(o.concs, n)
	}
	if *only != "" {
		o.only = map[string]bool{}
		for _, s := range strings.Split(*only, ",") {
			o.only[strings.TrimSpace(s)] = true
		}
	}
	o.vatrun, o.testWorker, o.trueBin, o.sysloop = abs(o.vatrun), abs(o.testWorker), abs(o.trueBin), abs(o.sysloop)
	vatrunPath = o.vatrun
	o.noop, o.phases, o.repo, o.rusage, o.thinBin = abs(o.noop), abs(o.phases), abs(o.repo), abs(o.rusage), abs(o.thinBin)
	for _, p := range []string{o.vatrun, o.testWorker, o.trueBin, o.sysloop, o.noop, o.phases, o.rusage, o.thinBin} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%v (run make bench, or scripts/bench.sh, which builds it)", err)
		}
	}
	return o, nil
}

func main() {
	o, err := parseOptions()
	if err != nil {
		fmt.Fprintln(os.Stderr, "vatrun-bench:", err)
		os.Exit(2)
	}
	devNull, err = os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vatrun-bench:", err)
		os.Exit(1)
	}
	if o.crunHelper {
		os.Exit(crunHelper(o))
	}
	if o.thinServer != "" {
		os.Exit(thinServer(o.thinServer))
	}
	if o.compareHelper {
		os.Exit(compareHelper(o))
	}
	os.Exit(run(o))
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "[%s] "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

// profiles are the built-in xsnap and dev profiles and xsnap variants.
func profiles() (map[string]*seccompprofiles.Profile, error) {
	out := map[string]*seccompprofiles.Profile{}
	for _, n := range []string{"xsnap", "dev"} {
		p, ok := seccompprofiles.Builtin(n)
		if !ok {
			return nil, fmt.Errorf("no built-in profile %s", n)
		}
		out[n] = p
	}
	nf, _ := seccompprofiles.Builtin("xsnap")
	// No filter, asked for explicitly (a profile without a seccomp section is refused).
	nf.Name, nf.Seccomp = "xsnap-without-seccomp", &seccompprofiles.Seccomp{DefaultAction: "SCMP_ACT_ALLOW"}
	out["nofilter"] = nf
	return out, nil
}

func run(o *options) int {
	start := time.Now()
	profs, err := profiles()
	if err != nil {
		logf("%v", err)
		return 1
	}
	res := &results{opts: o, started: start}
	res.machine = machineInfo()
	fail := func(section string, err error) int {
		logf("%s: %v", section, err)
		return 1
	}
	if o.want("spawn") {
		logf("spawn latency: %d runs per launcher and worker", o.runs)
		if res.spawn, err = benchSpawn(o, profs["xsnap"]); err != nil {
			return fail("spawn", err)
		}
	}
	if o.want("spawn") {
		logf("cold steps: %d fresh processes", o.stepRuns)
		if res.steps, err = benchSteps(o, o.stepRuns); err != nil {
			return fail("steps", err)
		}
	}
	if o.vmResults != "" {
		if res.vm, err = readVMResults(o.vmResults); err != nil {
			return fail("vm", err)
		}
	} else if o.vmSkipped != "" {
		res.vm = &vmResult{skipped: o.vmSkipped}
	}
	if o.want("ns") {
		logf("namespace breakdown: %d runs per variant", o.nsRuns)
		if res.ns, err = benchNamespaces(o, profs["xsnap"]); err != nil {
			return fail("namespaces", err)
		}
	}
	if o.want("death") {
		logf("death notice: %d runs per launcher", o.deathRuns)
		if res.death, err = benchDeath(o, profs["xsnap"]); err != nil {
			return fail("death", err)
		}
	}
	if o.want("mem") {
		logf("memory: 1 and %d idle workers", o.concurrent)
		if res.mem, err = benchMem(o, profs["xsnap"]); err != nil {
			return fail("memory", err)
		}
	}
	if o.want("seccomp") {
		logf("seccomp: %d launches per mode", o.sysLaunches)
		if res.seccomp, err = benchSeccomp(o, profs); err != nil {
			return fail("seccomp", err)
		}
	}
	if o.want("storm") {
		logf("launch storms: %d concurrent launches, %d storms per launcher", o.stormN, o.stormRounds)
		var bw func([]string) []string
		var bpf string
		if p, err := exec.LookPath("bwrap"); err == nil {
			f, cleanup, err := writeBPF(bwrapFilter(profs["xsnap"]))
			if err != nil {
				return fail("storm", err)
			}
			defer cleanup()
			bpf = f
			bw = func(w []string) []string { return append(append([]string{p}, bwrapIsolation(w)...), w...) }
		}
		if res.storm, err = benchStorm(o, bw, bpf); err != nil {
			return fail("storm", err)
		}
	}
	if o.want("xsnap") {
		logf("real xsnap worker: %d runs per mode", o.xsnapRuns)
		if res.xsnap, err = benchXsnap(o); err != nil {
			return fail("xsnap", err)
		}
	}
	if o.want("tput") {
		logf("throughput: %v per concurrency %v", o.tputDur, o.concs)
		if res.tput, err = benchThroughput(o, profs["xsnap"]); err != nil {
			return fail("throughput", err)
		}
		if res.tput.leakFree {
			logf("leak check: OK (before: %v; after: %v)", res.tput.before, res.tput.after)
		} else {
			logf("leak check: LEAK (before: %v; after: %v)", res.tput.before, res.tput.after)
		}
	}
	if o.want("compare") {
		logf("start-up across sandboxes: %d runs per launcher", o.cmpRuns)
		if res.cmp, err = benchCompare(o); err != nil {
			return fail("compare", err)
		}
	}
	res.elapsed = time.Since(start)
	res.machine.loadEnd = loadavg()
	md := res.markdown()
	if o.out == "-" {
		fmt.Print(md)
	} else if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
		logf("%v", err)
		return 1
	} else {
		logf("wrote %s in %v", o.out, res.elapsed.Round(time.Second))
	}
	fmt.Fprint(os.Stderr, res.summary())
	if res.tput != nil && !res.tput.leakFree {
		return 1
	}
	return 0
}

// vatrunPath is the vatrun binary measured (-vatrun), for binarySize.
var vatrunPath = "bin/vatrun"

// binarySize is the measured vatrun binary's size ("7.7 MB"), for the texts that explain costs.
func binarySize() string {
	st, err := os.Stat(vatrunPath)
	if err != nil {
		return "the vatrun"
	}
	return fmt.Sprintf("%.1f MB", float64(st.Size())/1e6)
}
