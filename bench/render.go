package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

type machine struct {
	nproc                int
	model, kernel, goVer string
	unshareVer           string
	loadStart, loadEnd   string
}

func machineInfo() machine {
	m := machine{nproc: runtime.NumCPU(), goVer: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.model = strings.TrimSpace(v)
				break
			}
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.kernel = unix.ByteSliceToString(u.Release[:])
	}
	m.loadStart = loadavg()
	if out, err := exec.Command("unshare", "--version").Output(); err == nil {
		m.unshareVer = strings.TrimSpace(string(out))
	}
	return m
}

// loadavg is the first three fields of /proc/loadavg: other work on the machine skews every
// figure (the round-robin sampling keeps the ratios fairer than the absolute times).
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

type results struct {
	opts    *options
	started time.Time
	elapsed time.Duration
	machine machine
	spawn   *spawnResult
	vm      *vmResult
	ns      *nsResult
	death   *deathResult
	mem     *memResult
	seccomp *seccompResult
	tput    *tputResult
	steps   *stepResult
	storm   *stormResult
	xsnap   *xsnapResult
	cmp     *compareResult
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// targets compares the figures with the issues' targets; the last column says why one is missed,
// from what the same run measured.
func (r *results) targets() [][4]string {
	var out [][4]string
	if s := r.spawn; s != nil {
		plain, goAPI, run, bw := s.row(rowPlain), s.row(rowGo), s.row(rowRun), s.row(rowBwrap)
		if bw != nil && len(bw.true) > 0 && len(bw.ping) > 0 {
			rt := float64(run.true.median()) / float64(bw.true.median())
			rp := float64(run.ping.median()) / float64(bw.ping.median())
			why := ""
			if rt > 1 || rp > 1 {
				why = r.runVsBwrapReason()
			}
			out = append(out, [4]string{"`vatrun run` whole process ≤ 1.0× bwrap with the same isolation",
				fmt.Sprintf("%.2f× (static worker: %s vs %s), %.2f× (test worker's first reply)", rt, ms(run.true.median()), ms(bw.true.median()), rp),
				verdict(rt <= 1 && rp <= 1), why})
		}
		gt := float64(goAPI.true.median()) / float64(plain.true.median())
		gp := float64(goAPI.ping.median()) / float64(plain.ping.median())
		out = append(out, [4]string{"full sandbox spawn, Go API ≤ 2× plain fork/exec",
			fmt.Sprintf("%.2f× (static worker), %.2f× (test worker's first reply)", gt, gp), verdict(gt <= 2 && gp <= 2),
			"the init stage's exec, namespaces and filter (see the namespace table)"})
		rt := float64(run.true.median()) / float64(plain.true.median())
		out = append(out, [4]string{"`vatrun run` whole process ≤ 3× plain exec of the static worker",
			fmt.Sprintf("%.2f×", rt), verdict(rt <= 3), "a whole Go process per worker (see where the time goes)"})
	}
	if x := r.xsnap; x != nil && x.skipped == "" && len(x.plain) > 0 {
		rr := float64(x.vatrun.median()) / float64(x.plain.median())
		why := ""
		if rr > 1.10 {
			why = fmt.Sprintf("vatrun adds %s per worker start (its whole-process cost, see section 1)", ms(x.vatrun.median()-x.plain.median()))
		}
		out = append(out, [4]string{"real xsnap worker: start + one evaluate + close ≤ 1.10× plain spawn",
			fmt.Sprintf("%.2f× (%s vs %s)", rr, ms(x.vatrun.median()), ms(x.plain.median())), verdict(rr <= 1.10), why})
	}
	if d := r.death; d != nil {
		g, ru := d.goAPI.median(), d.run.median()
		why := ""
		if g > 500*time.Microsecond || ru > time.Millisecond {
			why = "the init stage's wait4, report and exit as pid 1 (its namespaces are torn down before it can be reaped), then the supervisor's wakeup: see the phase table (worker exit → init stage gone → report)"
		}
		out = append(out, [4]string{"death notice ≤ 0.5 ms median (Go API), ≤ 1 ms (`vatrun run`)",
			fmt.Sprintf("Go API %s, vatrun run %s", ms(g), ms(ru)),
			verdict(g <= 500*time.Microsecond && ru <= time.Millisecond), why})
	}
	if m := r.mem; m != nil {
		pss := m.vatrunSum.PSS / int64(m.n)
		why := ""
		if pss > 1024 {
			why = fmt.Sprintf("the Go supervisor's private memory: %s USS each (heap, stacks, runtime metadata of a %s binary)", mib(m.vatrunSum.USS/int64(m.n)), binarySize())
		}
		if m.thinN > 0 {
			n := int64(m.thinN)
			thin := m.thinClients.PSS/n + (m.thinSupAfter.PSS-m.thinSupBefore.PSS)/n
			why += fmt.Sprintf("; the prototype (a static thin client per worker, one Go supervisor): %s PSS per live worker (client %s + the supervisor's growth %s), + %s per init stage",
				mib(thin), mib(m.thinClients.PSS/n), mib((m.thinSupAfter.PSS-m.thinSupBefore.PSS)/n), mib(m.thinInits.PSS/n))
		}
		out = append(out, [4]string{"`vatrun run` per live worker ≤ 1 MiB PSS",
			fmt.Sprintf("%s PSS (%s RSS) per supervisor at %d workers, + %s PSS per init stage; Go API: %s per worker",
				mib(pss), mib(m.vatrunSum.RSS/int64(m.n)), m.n, mib(m.initSum.PSS/int64(m.n)), mib(m.goDelta/int64(m.goN))),
			verdict(pss <= 1024), why})
		if id := m.idle; id != nil {
			ok := id.sup.ticks == 0 && id.stage.ticks == 0 && id.sup.vol+id.sup.invol == 0 && id.stage.vol+id.stage.invol == 0
			why := ""
			if !ok {
				why = fmt.Sprintf("%d supervisor threads; wakeups come from the Go runtime (sysmon, GC, timers) while it sleeps", id.threads)
			}
			out = append(out, [4]string{"no CPU while the worker idles (supervisor and init stage)",
				fmt.Sprintf("over %v, per process: supervisor %.2f ticks/s, %.2f switches/s; init stage %.2f ticks/s, %.2f switches/s",
					id.dur, id.perSec(id.sup.ticks), id.perSec(id.sup.vol+id.sup.invol), id.perSec(id.stage.ticks), id.perSec(id.stage.vol+id.stage.invol)),
				verdict(ok), why})
		}
	}
	if st := r.storm; st != nil && len(st.rounds["bwrap"]) > 0 {
		wall := func(x stormRound) int64 { return int64(x.wall) }
		rss := func(x stormRound) int64 { return x.peakMem }
		wr := float64(st.med("vatrun run", wall)) / float64(st.med("bwrap", wall))
		mr := float64(st.med("vatrun run", rss)) / float64(st.med("bwrap", rss))
		why := ""
		if wr > 1 || mr > 1 {
			why = fmt.Sprintf("%d vs %d page faults and %s vs %s CPU per storm", st.med("vatrun run", func(x stormRound) int64 { return x.faults }),
				st.med("bwrap", func(x stormRound) int64 { return x.faults }),
				ms(time.Duration(st.med("vatrun run", func(x stormRound) int64 { return int64(x.cpu) }))),
				ms(time.Duration(st.med("bwrap", func(x stormRound) int64 { return int64(x.cpu) }))))
			if len(st.rounds[cmpThin]) > 0 {
				why += fmt.Sprintf("; the prototype (thin clients, one Go supervisor): time %.2f×, peak memory %.2f×, CPU %s",
					float64(st.med(cmpThin, wall))/float64(st.med("bwrap", wall)), float64(st.med(cmpThin, rss))/float64(st.med("bwrap", rss)),
					ms(time.Duration(st.med(cmpThin, func(x stormRound) int64 { return int64(x.cpu) }))))
			}
		}
		out = append(out, [4]string{fmt.Sprintf("launch storm: %d concurrent `vatrun run` ≤ 1.2× %d concurrent bwrap's time (peak memory reported)", st.n, st.n),
			fmt.Sprintf("time %.2f×, peak memory %.2f×", wr, mr), verdict(wr <= 1.2), why})
	}
	out = append(out, r.compareTargets()...)
	if s := r.seccomp; s != nil {
		base, xs := s.ns[modeNoFilter], s.ns[modeXsnap]
		var parts []string
		ok := true
		for _, k := range sysloopKinds {
			ov := (xs[k] - base[k]) / base[k] * 100
			parts = append(parts, fmt.Sprintf("%s %+.1f%%", k, ov))
			if k != "ioctl" && ov > 5 {
				ok = false
			}
		}
		if bw, bd := s.ns[modeBwrap], s.ns[modeBwrapDev]; bw != nil && bd != nil {
			var peer []string
			for _, k := range sysloopKinds {
				peer = append(peer, fmt.Sprintf("%s %+.1f%%", k, (bd[k]-bw[k])/bw[k]*100))
			}
			parts = append(parts, "(bwrap with the dev filter: "+strings.Join(peer, ", ")+")")
		}
		out = append(out, [4]string{"seccomp overhead ≤ 5% on the syscall loop (xsnap vs no filter)",
			strings.Join(parts, ", "), verdict(ok), "any filter's slower syscall entry, the same under bwrap"})
	}
	return out
}

// runVsBwrapReason says, from the same run, where `vatrun run` spends what bwrap does not.
// compareTargets are the start-up targets judged on section 8 (the same static worker, one
// launcher after another, CPU and page faults of the whole process tree).
func (r *results) compareTargets() [][4]string {
	c := r.cmp
	if c == nil {
		return nil
	}
	bw, run, off, thin := c.row(cmpBwrap), c.row(cmpVatrun), c.row(cmpVatrunOff), c.row(cmpThin)
	if bw == nil || run == nil || len(bw.Wall) == 0 || len(run.Wall) == 0 {
		return nil
	}
	med := func(xs []int64) float64 { return float64(quantileInt(xs, 0.5)) }
	wall, cpu := med(run.Wall)/med(bw.Wall), med(run.CPU)/med(bw.CPU)
	var out [][4]string
	why := ""
	if off != nil && len(off.Wall) > 0 {
		why = fmt.Sprintf("without the launch cache (Go first, then the sandbox): %.2f×", med(off.Wall)/med(bw.Wall))
	}
	if wall > 1 {
		why = "the Go runtime's start and the launch's own computation stay on the path to the gate (docs/launch-cache.md); " + why
	}
	out = append(out, [4]string{"section 8: `vatrun run` wall ≤ 1.0× bwrap with the same isolation (stretch 0.8×)",
		fmt.Sprintf("%.2f× (%s vs %s)", wall, ms(time.Duration(med(run.Wall))), ms(time.Duration(med(bw.Wall)))), verdict(wall <= 1), why})
	why = fmt.Sprintf("a Go process per worker (%d page faults per launch against bwrap's %d)", medianInt(run.Faults), medianInt(bw.Faults))
	if s := r.spawn; s != nil {
		if noop := s.row(rowNoop); noop != nil && len(noop.true) > 0 {
			why = fmt.Sprintf("a Go process per worker: a static cgo no-op Go program alone takes %s from exec to exit (section 1) and %d page faults per launch against bwrap's %d",
				ms(noop.true.median()), medianInt(run.Faults), medianInt(bw.Faults))
		}
	}
	if thin != nil && len(thin.CPU) > 0 {
		why += fmt.Sprintf("; the prototype (a static thin client per worker, one long-lived Go supervisor) takes %.2f× bwrap's CPU (supervisor share included) and %.2f× its wall time", med(thin.CPU)/med(bw.CPU), med(thin.Wall)/med(bw.Wall))
	}
	out = append(out, [4]string{"section 8: CPU per launch within 2× bwrap's (user + sys of the whole tree)",
		fmt.Sprintf("%.2f× (%s vs %s)", cpu, ms(time.Duration(med(run.CPU)*1000)), ms(time.Duration(med(bw.CPU)*1000))), verdict(cpu <= 2), why})
	return out
}

func (r *results) runVsBwrapReason() string {
	s := r.spawn
	plain, noop, help, start, run, bw := s.row(rowPlain), s.row(rowNoop), s.row(rowHelp), s.row(rowStart), s.row(rowRun), s.row(rowBwrap)
	if noop == nil || help == nil || start == nil || len(noop.true) == 0 {
		return ""
	}
	m := func(x *spawnRow) time.Duration { return x.true.median() }
	return fmt.Sprintf("Go runtime start %s + package inits %s + profile load/digest %s before any sandbox work; %d vs %d page faults per launch",
		ms(m(noop)-m(plain)), ms(m(help)-m(noop)), ms(m(start)-m(help)), medianInt(run.faultsTrue), medianInt(bw.faultsTrue))
}

func (r *results) markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	o := r.opts
	m := r.machine
	p("# vatrun benchmarks\n\n")
	p("Generated by `make bench` (`scripts/bench.sh` → `bin/vatrun-bench`) on %s in %v; **do not edit by hand**,\n", r.started.UTC().Format("2006-01-02 15:04 MST"), r.elapsed.Round(time.Second))
	p("rerun it. Every figure below comes from the same run, side by side: launchers are sampled in turn\n")
	p("(round-robin, after %d warm-up runs each), so drift on the machine hits all of them alike.\n", o.warm)
	p("These are benchmarks, not tests: nothing here fails on timing, but every run must succeed\n")
	p("(right exit code, right reply, right report) and the leak check must pass.\n\n")

	p("## Machine\n\n")
	p("| | |\n|---|---|\n")
	p("| nproc | %d |\n| model name | %s |\n| kernel | %s |\n| Go | %s |\n", m.nproc, m.model, m.kernel, m.goVer)
	if r.spawn != nil {
		p("| bubblewrap | %s |\n| crun | %s |\n", orDash(r.spawn.bwrapVer), orDash(r.spawn.crunVersion))
	}
	p("| util-linux | %s |\n", orDash(m.unshareVer))
	p("| load average (1, 5, 15 min) at start / end | %s / %s |\n", m.loadStart, m.loadEnd)
	p("| cgroups | hybrid v1/v2 host: vatrun runs with `--no-cgroup` / `Cgroup.Disable` here (the host's cgroups are never touched) |\n\n")

	if t := r.targets(); len(t) > 0 {
		p("## Targets\n\n| target | measured (medians) | | why missed (measured in this run) |\n|---|---|---|---|\n")
		for _, x := range t {
			why := x[3]
			if x[2] == "met" {
				why = ""
			}
			p("| %s | %s | %s | %s |\n", x[0], x[1], x[2], why)
		}
		p("\n")
	}

	if s := r.spawn; s != nil {
		plain := s.row(rowPlain)
		p("## 1. Spawn latency\n\n")
		p("From the launcher's start to (a) the static worker `bin/vatrun-bench-true` (`_exit(0)`, `bench/csrc/true.c`)\n")
		p("having exited and been reaped (for vatrun: the report is ready), and (b) the C test worker's reply `4:pong,`\n")
		p("to a `4:ping,` queued on its fd 3, read from its fd 4. %d samples each; ratios are medians over the plain\n", o.runs)
		p("fork/exec median of the same worker. Every sandbox has new pid, mount, ipc, uts and net namespaces;\n")
		p("vatrun, bwrap and crun also apply the xsnap profile's seccomp filter and drop all capabilities.\n\n")
		p("| launcher | static: median | p99 | × plain | page faults | test worker reply: median | p99 | × plain | page faults |\n")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, row := range s.rows {
			if row.name == rowVM {
				switch {
				case r.vm != nil && len(r.vm.rows) > 0:
					row.skipped = "see [With cgroups, in the e2e VM](#with-cgroups-in-the-e2e-vm) below"
				case r.vm != nil && r.vm.skipped != "":
					row.skipped = "not measured: " + r.vm.skipped
				default:
					row.skipped = "not measured: scripts/bench.sh boots the e2e VM for it (needs qemu and the kernel: make e2e sets them up)"
				}
			}
			if row.skipped != "" {
				p("| %s | %s | | | | | | | |\n", row.name, row.skipped)
				continue
			}
			cell := func(d, base dist, faults []int64) string {
				if len(d) == 0 {
					return " | | | "
				}
				f := "–"
				if len(faults) > 0 {
					f = fmt.Sprint(medianInt(faults))
				}
				return fmt.Sprintf("%s | %s | %s | %s", ms(d.median()), ms(d.p99()), ratio(d.median(), base.median()), f)
			}
			p("| %s | %s | %s |\n", row.name, cell(row.true, plain.true, row.faultsTrue), cell(row.ping, plain.ping, row.faultsPing))
		}
		p("\nPage faults: minor + major, per launch (median), of the launcher and of every process it waited for (the\n")
		p("rusage wait4 returns), so a sandbox's count covers its init stage and worker; \"–\": the Go API runs in the bench\n")
		p("process itself. On this kind of VM a page fault costs about 10 µs, so a launch's cost follows its faults.\n")
		p("\nCommands (WORKER is `bin/vatrun-bench-true` or `bin/vatrun-testworker`; fds 3 and 4 are pipes for the\n")
		p("test worker; stdin/stdout/stderr are /dev/null; environment `%s`):\n\n", strings.Join(workerEnv, " "))
		for _, row := range s.rows {
			if row.cmd != "" {
				p("- %s: `%s`\n", strings.TrimSpace(row.name), row.cmd)
			}
		}
		p("- crun's bundle: `config.json` with `root` = a recursive bind of `/` (read-only), a fresh `/proc`, the five\n")
		p("  namespaces, no capabilities, `noNewPrivileges`, the xsnap profile's rlimits and seccomp section\n")
		p("  (crun compiles it with libseccomp at every start). %s refuses hybrid cgroup hosts even\n", orDash(s.crunVersion))
		p("  with `--cgroup-manager=disabled` (\"cgroups in hybrid mode not supported\") and cannot pivot_root into\n")
		p("  `/` itself, so its runs happen in `unshare -m --propagation private`, where `/sys/fs/cgroup` is an\n")
		p("  empty tmpfs and the rootfs is that bind mount; crun only `statfs`es the empty tmpfs: no host cgroup is\n")
		p("  read or written.\n\n")
	}

	r.startupTable(p)

	if v := r.vm; v != nil && len(v.rows) > 0 {
		plain := v.row("plain fork/exec")
		p("### With cgroups, in the e2e VM\n\n")
		p("The host's cgroups are off limits (hybrid v1/v2, owned by the host), so the cgroup figures come from the\n")
		p("e2e VM (`test/e2e/vm/bench_test.go`, `TestBenchSpawn`): qemu under TCG (no KVM: every instruction is\n")
		p("emulated, so absolute times are ~10× the host's), 2 vCPUs, a real cgroup v2 with memory, cpu and pids\n")
		p("delegated, run as root. Worker: the static C test worker with `--exit-at-start 0`; %d samples each,\n", v.rows[0].samples)
		p("round-robin; ratios are over the plain fork/exec median *in the VM*.\n\n")
		p("| launcher | median | p99 | × plain (VM) | what |\n|---|---:|---:|---:|---|\n")
		for _, x := range v.rows {
			rat := ""
			if plain != nil {
				rat = ratio(x.median, plain.median)
			}
			p("| %s | %s | %s | %s | `%s` |\n", x.name, ms(x.median), ms(x.p99), rat, x.cmd)
		}
		if a, b := v.row("Go API, no cgroup"), v.row("Go API, cgroup leaf"); a != nil && b != nil {
			p("\nThe cgroup leaf (mkdir, five limit files written and read back, `CLONE_INTO_CGROUP`, the evidence read\n")
			p("after the death, `cgroup.kill` and rmdir) adds %s per launch in the VM (%s of the Go API's time there).\n", ms(b.median-a.median), pct(b.median-a.median, b.median))
		}
		p("\n")
	}

	if n := r.ns; n != nil && len(n.variants) > 1 {
		base := n.variants[1]
		p("### Where vatrun's spawn time goes (Go API, static worker)\n\n")
		p("The xsnap profile with namespaces switched on one at a time (%d samples each), against the same sandbox\n", o.nsRuns)
		p("without namespaces or seccomp (the init stage's exec, fork, rlimits, capability drop, no_new_privs, close_range).\n\n")
		p("| variant | median | p99 | + over no namespaces |\n|---|---:|---:|---:|\n")
		for i, v := range n.variants {
			extra := ""
			if i >= 2 {
				extra = fmt.Sprintf("%+.2f ms", float64(v.d.median()-base.d.median())/1e6)
			}
			p("| %s | %s | %s | %s |\n", v.name, ms(v.d.median()), ms(v.d.p99()), extra)
		}
		p("\n")
	}

	if d := r.death; d != nil {
		p("## 2. Death notice\n\n")
		p("The test worker idles (`--ready`, nothing on fd 3); the bench finds its host pid, sends SIGKILL and times until\n")
		p("`vatrun run`'s report fd (a pipe) is readable, or `Worker.Wait` returns. %d samples each.\n\n", o.deathRuns)
		p("| launcher | median | p99 | × plain |\n|---|---:|---:|---:|\n")
		p("| plain child, `os.Process.Wait` (the floor) | %s | %s | |\n", ms(d.plain.median()), ms(d.plain.p99()))
		p("| `vatrun run --report-fd 5`: kill → report readable | %s | %s | %s |\n", ms(d.run.median()), ms(d.run.p99()), ratio(d.run.median(), d.plain.median()))
		p("| Go API: kill → `Worker.Wait` returns | %s | %s | %s |\n\n", ms(d.goAPI.median()), ms(d.goAPI.p99()), ratio(d.goAPI.median(), d.plain.median()))
	}

	if mm := r.mem; mm != nil {
		p("## 3. Memory per live worker\n\n")
		p("Idle test workers (`--ready`), xsnap profile without cgroups. RSS counts the shared pages of the static\n")
		p("binary in every process; PSS splits them between the processes that share them; USS is private memory.\n\n")
		p("| what | RSS | PSS | USS |\n|---|---:|---:|---:|\n")
		row := func(name string, x procMem, div int) {
			d := int64(div)
			p("| %s | %s | %s | %s |\n", name, mib(x.RSS/d), mib(x.PSS/d), mib(x.USS/d))
		}
		row("1 worker: `vatrun run` supervisor", mm.one.vatrun, 1)
		row("1 worker: its init stage (C, before the Go runtime)", mm.one.init, 1)
		row("1 worker: the test worker", mm.one.worker, 1)
		row(fmt.Sprintf("%d workers: sum of the `vatrun run` supervisors", mm.n), mm.vatrunSum, 1)
		row(fmt.Sprintf("%d workers: per supervisor", mm.n), mm.vatrunSum, mm.n)
		row(fmt.Sprintf("%d workers: sum of the init stages", mm.n), mm.initSum, 1)
		row(fmt.Sprintf("%d workers: per init stage", mm.n), mm.initSum, mm.n)
		row(fmt.Sprintf("%d workers: sum of the workers", mm.n), mm.workers, 1)
		p("| %d workers through the Go API in one process: supervisor RSS growth | %s (%s per worker, %.1f goroutines per worker) | | |\n",
			mm.goN, mib(mm.goDelta), mib(mm.goDelta/int64(mm.goN)), float64(mm.goGoroutines)/float64(mm.goN))
		row(fmt.Sprintf("%d workers through the Go API: sum of the init stages", mm.goN), mm.goInits, 1)
		if mm.thinN > 0 {
			n := int64(mm.thinN)
			p("| prototype (thin client + one Go supervisor, `bench/thin.go`), %d workers: per thin client | %s | %s | %s |\n", mm.thinN, mib(mm.thinClients.RSS/n), mib(mm.thinClients.PSS/n), mib(mm.thinClients.USS/n))
			p("| prototype: the supervisor's growth per worker | %s | %s | %s |\n", mib((mm.thinSupAfter.RSS-mm.thinSupBefore.RSS)/n), mib((mm.thinSupAfter.PSS-mm.thinSupBefore.PSS)/n), mib((mm.thinSupAfter.USS-mm.thinSupBefore.USS)/n))
			p("| prototype: per init stage | %s | %s | %s |\n", mib(mm.thinInits.RSS/n), mib(mm.thinInits.PSS/n), mib(mm.thinInits.USS/n))
		}
		p("\n")
	}

	r.idleSection(p)

	if s := r.seccomp; s != nil {
		p("## 4. Seccomp cost per system call\n\n")
		p("`bin/vatrun-bench-sysloop %d 5` (`bench/csrc/sysloop.c`) inside the sandbox through the Go API, %d launches\n", o.sysIters, o.sysLaunches)
		p("per mode, interleaved; the figure is the best round of %d calls over all launches and 5 rounds each. `getppid` and `read` (of /dev/null) are\n", o.sysIters)
		p("allowed without conditions by both filters, so the kernel's seccomp action cache answers them without running\n")
		p("BPF; xsnap allows `ioctl` only for some request numbers, so its BPF program runs for every `ioctl` call.\n\n")
		p("| mode | getppid ns | read ns | ioctl(TCGETS) ns |\n|---|---:|---:|---:|\n")
		for _, mode := range s.modes {
			v := s.ns[mode]
			cell := func(k string) string {
				b, ok := s.base[mode]
				if !ok {
					return fmt.Sprintf("%.0f", v[k])
				}
				base := s.ns[b]
				return fmt.Sprintf("%.0f (%+.1f%%)", v[k], (v[k]-base[k])/base[k]*100)
			}
			p("| %s | %s | %s | %s |\n", mode, cell("getppid"), cell("read"), cell("ioctl"))
		}
		p("\nPercentages are against the same sandbox without a filter (vatrun's rows against \"%s\", bwrap's against\n", modeNoFilter)
		p("\"%s\"). bwrap loads the dev profile's program compiled by the same libseccomp: any seccomp filter puts\n", modeBwrap)
		p("every system call of the process on the kernel's slower entry path, whichever sandbox installed it.\n\n")
	}

	if t := r.tput; t != nil {
		p("## 5. Throughput and leaks\n\n")
		p("Static worker, full sandbox minus cgroups, Go API: N goroutines each launch and wait in a loop for %v.\n\n", o.tputDur)
		p("| concurrency | workers launched and reaped per second |\n|---:|---:|\n")
		for _, c := range o.concs {
			best := ""
			if c == t.best {
				best = " (best)"
			}
			p("| %d | %.0f%s |\n", c, t.perConc[c], best)
		}
		v := "no leak"
		if !t.leakFree {
			v = "**LEAK**"
		}
		p("\nLeak check: **%s** — before: %v; after: %v.\n", v, t.before, t.after)
		p("(OS threads are reported, not compared: the Go runtime keeps the threads it created.)\n\n")
	}

	r.moreSections(p)
	r.compareSection(p)

	p("## Reading the figures\n\n")
	if n := r.ns; n != nil && len(n.variants) == 10 {
		v := func(i int) time.Duration { return n.variants[i].d.median() }
		plain, bare, netns, all5, full := v(0), v(1), v(7), v(8), v(9)
		p("- Where the Go API's time goes (the namespace table): without namespaces or a filter the sandbox costs %s\n", ratio(bare, plain))
		p("  plain fork/exec — a second exec (the init stage: this static binary, entered in a C constructor before the\n")
		p("  Go runtime starts) and a vfork of the worker; the five namespaces add %s (net alone %s: the kernel builds and\n", ms(all5-bare), ms(netns-bare))
		p("  tears down a network stack per namespace); the seccomp filter adds %s (the kernel copies and prepares the\n", ms(full-all5))
		p("  program for every process). Namespaces and the filter are the isolation itself, paid by every sandbox of the\n")
		p("  group; the 2× target would leave no room for the init stage's exec.\n")
	}
	if s := r.spawn; s != nil {
		if st, pl := s.row(rowStart), s.row(rowPlain); st != nil && pl != nil && len(st.true) > 0 && len(pl.true) > 0 {
			p("- `vatrun run` adds a whole Go process: the \"process start\" row (Go runtime, package inits, profile parsing and\n")
			p("  digest, no launch) alone is %s a plain exec. Since the C-first launch ([docs/launch-cache.md](docs/launch-cache.md)),\n", ratio(st.true.median(), pl.true.median()))
			p("  the sandbox is started by the C constructor from the launch cache and set up while the Go runtime starts, and a\n")
			p("  built-in profile's digest and seccomp program are generated at build time; what remains on the path is the Go\n")
			p("  runtime's start and the launch Go computes to confirm the cached one. A Go supervisor process per worker cannot\n")
			p("  meet 3× a plain exec, nor 2× bwrap's CPU (section 8); the prototype of section 8 (a static thin client per\n")
			p("  worker, one long-lived Go supervisor) shows what would, and a kernel that wants the fast path today uses the Go\n")
			p("  API (one supervisor for all its workers).\n")
		}
	}
	p("- On this kind of VM a page fault costs about 10 µs, so start-up cost follows the pages a process touches: see\n")
	p("  the page-fault columns of section 1. `vatrun run` touches several times the pages bwrap does, most of them\n")
	p("  before any sandbox work: the Go runtime's start (heap arenas, threads) and the package inits of a %s binary\n", binarySize())
	p("  (the built-in profiles come from generated literals, so no JSON is parsed; containerd/cgroups, which brought\n")
	p("  protobuf, cilium/ebpf, dbus and logrus, is gone; a built-in's digest and program are generated too).\n")
	p("- Death notice: the worker's exit, the init stage's wait4 wakeup, its report on the status pipe and its own exit\n")
	p("  (it is pid 1 of the pid namespace and owns the mount, ipc, uts and net namespaces, torn down before it can be\n")
	p("  reaped), then the supervisor's wakeup, reaping, report build and write. `vatrun run` pays the report path cold\n")
	p("  (first JSON encoding of the process) and a log line first.\n")
	p("- RSS counts the static binary's shared text in every `vatrun run`; PSS/USS are the memory a worker really adds.\n")
	p("  Through the Go API a live worker costs the supervisor a goroutine and a few fds.\n")
	p("- The seccomp action cache answers unconditionally allowed system calls without running BPF, so a filter costs\n")
	p("  only the slower system-call entry there — the same in bwrap with the same program (section 4): the ≤ 5%% target\n")
	p("  is below what any seccomp filter costs a cheap system call on this kernel; a call with argument checks (ioctl\n")
	p("  under xsnap) also runs the program.\n")
	if v := r.vm; v != nil {
		if a, b := v.row("Go API, no cgroup"), v.row("Go API, cgroup leaf"); a != nil && b != nil {
			p("- The cgroup leaf costs %s of the Go API's launch in the VM (%s there under TCG): mkdir of the leaf (the kernel\n", pct(b.median-a.median, b.median), ms(b.median-a.median))
			p("  sets up memory, pids and cpu state for it), the limits written and read back, the evidence read, cgroup.kill\n")
			p("  and rmdir. It is what makes the limits identical and the OOM/pids evidence exact.\n")
		}
	}
	p("- Other work on the machine (see the load average) inflates every p99 and the absolute times; the ratios come\n")
	p("  from interleaved samples.\n\n")
	p("## Reproduce\n\n```sh\nmake bench                # = scripts/bench.sh: installs what is missing (as root), builds, runs, rewrites BENCHMARKS.md\n")
	if o.command != "" {
		p("%s\n", o.command)
	}
	p("```\n\nSections can be run alone: `bin/vatrun-bench -only spawn,ns,death,mem,seccomp,storm,xsnap,tput,compare -out -`; see `bin/vatrun-bench -h`.\n")
	p("The phase timeline alone: `bench/tools/phases.sh 60` (root, linux-perf).\n")
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// summary is the short form printed on stderr at the end.
func (r *results) summary() string {
	var b strings.Builder
	for _, t := range r.targets() {
		fmt.Fprintf(&b, "%-70s %-60s %s\n", t[0], t[1], strings.Trim(t[2], "*"))
	}
	return b.String()
}
