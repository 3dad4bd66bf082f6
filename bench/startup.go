package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// stepNames are the cold steps vatrun-bench-phases times, in its output order.
var stepNames = []struct{ key, what string }{
	{"load", "built-in profile load: JSON syntax check, strict field check (reflection), decode, defaults, validation"},
	{"digest", "profile digest: canonical JSON + sha256"},
	{"compile", "seccomp compile with libseccomp (the Go API caches it per digest; `vatrun run` compiles at every start)"},
	{"root", "worker root: ELF walk of the worker for what it needs to load"},
}

type stepResult struct {
	us, faults map[string][]int64
	initFaults []int64
	runs       int
}

// benchSteps runs vatrun-bench-phases n times, each in a fresh process, so every step is timed
// cold, as `vatrun run` pays it.
func benchSteps(o *options, n int) (*stepResult, error) {
	res := &stepResult{us: map[string][]int64{}, faults: map[string][]int64{}, runs: n}
	for i := 0; i < n; i++ {
		out, err := exec.Command(o.phases, "xsnap", o.trueBin).Output()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.phases, err)
		}
		for _, f := range strings.Fields(string(out)) {
			k, v, _ := strings.Cut(f, "=")
			if k == "init_faults" {
				x, _ := strconv.ParseInt(v, 10, 64)
				res.initFaults = append(res.initFaults, x)
				continue
			}
			a, b, _ := strings.Cut(v, ",")
			us, _ := strconv.ParseInt(a, 10, 64)
			fl, _ := strconv.ParseInt(b, 10, 64)
			res.us[k] = append(res.us[k], us)
			res.faults[k] = append(res.faults[k], fl)
		}
	}
	return res, nil
}

// startupTable splits `vatrun run`'s whole-process time (static worker) by subtracting rows of
// the same interleaved run from each other.
func (r *results) startupTable(p func(string, ...any)) {
	s := r.spawn
	if s == nil {
		return
	}
	plain, noop, help, start, run, goAPI, bw := s.row(rowPlain), s.row(rowNoop), s.row(rowHelp), s.row(rowStart), s.row(rowRun), s.row(rowGo), s.row(rowBwrap)
	if plain == nil || noop == nil || help == nil || start == nil || run == nil || len(noop.true) == 0 {
		return
	}
	med := func(x *spawnRow) time.Duration { return x.true.median() }
	fl := func(x *spawnRow) int64 { return medianInt(x.faultsTrue) }
	total := med(run)
	p("### Where `vatrun run`'s time goes (static worker)\n\n")
	p("Differences between rows of the spawn table above (same run, interleaved, static worker), so each line is\n")
	p("what one more layer costs; page faults likewise (per launch, the whole process tree).\n\n")
	p("| layer | median | share of `vatrun run` | page faults |\n|---|---:|---:|---:|\n")
	line := func(name string, d time.Duration, f int64) {
		p("| %s | %s | %s | %d |\n", name, ms(d), pct(d, total), f)
	}
	line("plain fork/exec + wait of the static worker (the floor)", med(plain), fl(plain))
	line("+ Go runtime start and exit (static cgo no-op − plain)", med(noop)-med(plain), fl(noop)-fl(plain))
	line("+ vatrun's package inits, "+binarySize()+" binary (`vatrun help` − no-op)", med(help)-med(noop), fl(help)-fl(noop))
	line("+ profile load and digest (`vatrun profile digest xsnap` − `vatrun help`)", med(start)-med(help), fl(start)-fl(help))
	line("+ the launch (C-first from the launch cache: the stage's clone and setup overlap the Go runtime's start; Go computes and compares the launch, opens the gate), worker, teardown, report (`vatrun run` − digest)", total-med(start), fl(run)-fl(start))
	line("= `vatrun run`", total, fl(run))
	if goAPI != nil && len(goAPI.true) > 0 {
		p("| for comparison: the Go API's launch in a running process (filter compiled once) | %s | %s | |\n", ms(med(goAPI)), pct(med(goAPI), total))
	}
	if bw != nil && len(bw.true) > 0 {
		p("| for comparison: bwrap, same isolation, whole process | %s | %s | %d |\n", ms(med(bw)), pct(med(bw), total), fl(bw))
	}
	if st := r.steps; st != nil {
		p("\nThe steps before the clone, each timed cold (first call) in a fresh process (`bin/vatrun-bench-phases xsnap WORKER`,\n")
		p("bench/phases; %d processes; page faults from getrusage around the step); the Go runtime and package inits\n", st.runs)
		p("of that process took %d page faults before the first step.\n\n", medianInt(st.initFaults))
		p("| step | median µs | page faults |\n|---|---:|---:|\n")
		for _, sn := range stepNames {
			p("| %s | %d | %d |\n", sn.what, medianInt(st.us[sn.key]), medianInt(st.faults[sn.key]))
		}
	}
	if o := r.opts; o.phaseTable != "" {
		b, err := os.ReadFile(o.phaseTable)
		if err == nil {
			p("\nThe same, function by function, in the real binary: `bench/tools/phases.sh 60` records 60 runs of\n")
			p("`vatrun run --profile xsnap --no-cgroup -- bin/vatrun-bench-true` with perf (uprobes on vatrun's functions,\n")
			p("including the C constructor of the init stage, plus the sched exec/fork/exit events) just before this run,\n")
			p("once for each path: the ordinary launch (`VATRUN_PRELAUNCH=off`) and the C-first launch from the launch\n")
			p("cache ([docs/launch-cache.md](docs/launch-cache.md)); medians per phase. The uprobes add a few µs each; page\n")
			p("faults per phase come from a second recording with every fault traced, whose times are not used. Phases\n")
			p("overlap where processes run in parallel (in the C-first launch, the init stage's clone and setup run while\n")
			p("the Go runtime starts, on the machine's other core: both slow down when perf and they share 2 cores), and a\n")
			p("vfork's fork event is traced after the child's exec (negative worker_fork → worker_exec).\n\n")
			p("%s\n\n", strings.TrimSpace(string(b)))
		}
	} else {
		p("\nA finer, per-function timeline of one `vatrun run` (uprobes on the binary, perf) comes from\n")
		p("`bench/tools/phases.sh` (root, linux-perf; scripts/bench.sh runs it when perf is installed).\n\n")
	}
}
