package main

import "time"

// idleSection renders the idle-CPU figures (a part of section 3).
func (r *results) idleSection(p func(string, ...any)) {
	if m := r.mem; m != nil && m.idle != nil {
		id := m.idle
		p("### CPU while the workers idle\n\n")
		p("The %d idle `vatrun run` of the memory figures, watched for %v: CPU time (utime+stime from /proc/PID/stat, in\n", id.n, id.dur)
		p("clock ticks of 10 ms) and context switches of all threads (/proc/PID/task/*/status) at both ends of the window,\n")
		p("summed over the processes. A process that never wakes up shows zeros.\n\n")
		p("| process | CPU ticks (sum) | voluntary switches (sum) | involuntary (sum) | switches per process per second |\n|---|---:|---:|---:|---:|\n")
		p("| `vatrun run` supervisor (%d OS threads each) | %d | %d | %d | %.3f |\n", id.threads, id.sup.ticks, id.sup.vol, id.sup.invol, id.perSec(id.sup.vol+id.sup.invol))
		p("| init stage (C, pid 1 of the sandbox) | %d | %d | %d | %.3f |\n\n", id.stage.ticks, id.stage.vol, id.stage.invol, id.perSec(id.stage.vol+id.stage.invol))
	}
}

// moreSections renders the storm and real-xsnap figures (sections 6 and 7).
func (r *results) moreSections(p func(string, ...any)) {
	if st := r.storm; st != nil && len(st.names) > 0 {
		p("## 6. Launch storms\n\n")
		p("%d launches of the static worker started at once (goroutines released together), until the last one is\n", st.n)
		p("reaped; %d storms per launcher, interleaved, after one warm-up storm each; medians over the storms. Peak memory:\n", len(st.rounds[st.names[0]]))
		p("the largest sum, sampled every 10 ms, over all live processes of the storm, of their memory not backed by a\n")
		p("file (/proc/PID/statm resident − shared: heap, stacks, data); page faults and CPU: all processes of all\n")
		p("launches (wait4's rusage). A static `true` lives too briefly to be sampled: the plain row's memory is ~0.\n\n")
		p("| launcher | wall time | × plain | peak memory | page faults | CPU (user+sys) |\n|---|---:|---:|---:|---:|---:|\n")
		base := st.med(st.names[0], func(x stormRound) int64 { return int64(x.wall) })
		for _, n := range st.names {
			w := st.med(n, func(x stormRound) int64 { return int64(x.wall) })
			p("| %s | %s | %s | %s | %d | %s |\n", n, ms(time.Duration(w)), ratio(time.Duration(w), time.Duration(base)),
				mib(st.med(n, func(x stormRound) int64 { return x.peakMem })), st.med(n, func(x stormRound) int64 { return x.faults }),
				ms(time.Duration(st.med(n, func(x stormRound) int64 { return int64(x.cpu) }))))
		}
		p("\nCommands: as in section 1 (`vatrun run --profile xsnap --no-cgroup --report-fd 5 -- WORKER`, from the launch\n")
		p("cache: the C-first launch; bwrap with the same isolation and the xsnap+wait4 program). The prototype: `vatrun-bench-thin\n")
		p("SOCKET -- WORKER` against one `vatrun-bench -thin-server` (bench/thin.go), whose own memory counts in the peak and\n")
		p("whose CPU and page faults during the storm (its own, its init stages' and workers') are added.\n\n")
	}
	if x := r.xsnap; x != nil {
		p("## 7. The real xsnap worker and a SwingSet kernel\n\n")
		if x.skipped != "" {
			p("Not measured: %s.\n\n", x.skipped)
			return
		}
		p("`node bench/xsnap.mjs test/swingset VATRUN %d`: npm `@agoric/xsnap` 0.15.0's own API (`xsnap({spawn, …})`,\n", len(x.plain))
		p("`evaluate('1 + 1')`, `close()`), timed from the `xsnap()` call to the worker's exit, with plain\n")
		p("`child_process.spawn` and with `makeVatrunSpawn` (js/, `--profile xsnap --no-cgroup`), interleaved, after 3\n")
		p("warm-up rounds; every vatrun run must report `exited` (%d reports).\n\n", x.reports)
		p("| spawn | median | p99 | × plain |\n|---|---:|---:|---:|\n")
		p("| plain `child_process.spawn` | %s | %s | |\n", ms(x.plain.median()), ms(x.plain.p99()))
		p("| `makeVatrunSpawn` (vatrun run) | %s | %s | %s |\n\n", ms(x.vatrun.median()), ms(x.vatrun.p99()), ratio(x.vatrun.median(), x.plain.median()))
		if x.kernelRuns > 0 {
			p("A SwingSet kernel (`@agoric/swingset-vat` 0.33.0, xsnap workers, heap snapshots every 5 deliveries, at most\n")
			p("2 vats online, so workers are evicted and restarted from snapshots): `test/swingset/baseline.test.mjs` with\n")
			p("`VATRUN_SWINGSET_PROFILES=xsnap VATRUN_SWINGSET_ONLY=baseline`, which also asserts that both modes reach the\n")
			p("same kernel state. Per run, plain spawn first, then vatrun (the test's order); one warm-up run, then %d runs, medians (ms).\n\n", x.kernelRuns)
			p("| mode | boot | %d deliveries | phase 1 | restart (reopen the store) | %d deliveries | phase 2 | workers started |\n", x.deliveries[0], x.deliveries[1])
			p("|---|---:|---:|---:|---:|---:|---:|---:|\n")
			for _, mode := range []string{"plain", "xsnap"} {
				name := "plain spawn"
				if mode == "xsnap" {
					name = "vatrun run --profile xsnap"
				}
				p("| %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %d |\n", name, x.kernelMed(mode, "boot"), x.kernelMed(mode, "deliveries1"),
					x.kernelMed(mode, "phase1"), x.kernelMed(mode, "restart"), x.kernelMed(mode, "deliveries2"), x.kernelMed(mode, "phase2"), x.kernelWorkers[mode])
			}
			p1, v1 := x.kernelMed("plain", "phase1")+x.kernelMed("plain", "phase2"), x.kernelMed("xsnap", "phase1")+x.kernelMed("xsnap", "phase2")
			p("\nBoth phases: vatrun %.2f× plain (%+.0f ms for %d worker starts, %+.1f ms per start).\n\n", v1/p1, v1-p1, x.kernelWorkers["xsnap"], (v1-p1)/float64(max(1, x.kernelWorkers["xsnap"])))
		} else if x.kernelSkipped != "" {
			p("SwingSet kernel: not measured (%s).\n\n", x.kernelSkipped)
		}
	}
}
