package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vatrun/vatrun/seccompprofiles"
)

// The start-up comparison across sandboxes (section 8, `-only compare`): every launcher starts
// the same static worker, one sample of each in turn, in one helper process that runs in a
// private mount namespace (`unshare -m --propagation private`, like the crun helper) where
// /sys/fs/cgroup is an empty tmpfs, so crun can run with its cgroup manager disabled and never
// touch this host's cgroups. Every launcher runs under the same conditions there. Per sample,
// measured by a tiny static parent (cmpMode): wall time from fork to the launcher's reaping, and
// the launcher's wait4 rusage, which covers it and every descendant it (or they) reaped: CPU
// (user+sys), page faults, max RSS (the largest process of the tree).

// cmpMode runs one launcher under bin/vatrun-bench-rusage (bench/csrc/rusage.c), a tiny static
// parent that times it and reads its wait4 rusage: a child forked from the big bench process
// would start with the bench's pages (its max RSS would be the bench's).
type cmpMode struct {
	name, runner string
	// argv wraps the worker's argv; nil runs the worker directly.
	argv func(worker []string) []string
	// extra opens the fds 5, 6, … the command needs; done is called after the run.
	extra               func() (files []*os.File, done func() error, err error)
	env                 []string // nil: workerEnv
	wall, cpu, flt, rss []int64
}

func (m *cmpMode) sample(_ kind, worker []string) (time.Duration, error) {
	argv := worker
	if m.argv != nil {
		argv = m.argv(worker)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	files := []*os.File{devNull, devNull, devNull, w}
	if m.extra != nil {
		extra, done, err := m.extra()
		if err != nil {
			w.Close()
			return 0, err
		}
		defer done()
		files = append(append(files, nil), extra...)
	}
	env := workerEnv
	if m.env != nil {
		env = m.env
	}
	p, err := os.StartProcess(m.runner, append([]string{m.runner}, argv...), &os.ProcAttr{Env: env, Files: files})
	w.Close()
	if err != nil {
		return 0, err
	}
	out, rerr := io.ReadAll(r)
	st, err := p.Wait()
	if err != nil {
		return 0, err
	}
	if rerr != nil || !st.Success() {
		return 0, fmt.Errorf("%s %v: %v (%q)", m.name, argv, st, out)
	}
	var v [6]int64
	if n, err := fmt.Sscan(string(out), &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]); n != 6 || err != nil {
		return 0, fmt.Errorf("%s: bad rusage line %q", m.name, out)
	}
	m.wall = append(m.wall, v[0])
	m.cpu = append(m.cpu, v[1]+v[2])
	m.flt = append(m.flt, v[3]+v[4])
	m.rss = append(m.rss, v[5])
	return time.Duration(v[0]), nil
}

// cmpRow is one launcher of the comparison.
type cmpRow struct {
	Name      string  `json:"name"`
	Cmd       string  `json:"cmd"`
	NS        string  `json:"ns"`
	Seccomp   string  `json:"seccomp"`
	Root      string  `json:"root"`
	Privs     string  `json:"privs"`
	Skipped   string  `json:"skipped,omitempty"`
	Version   string  `json:"version,omitempty"`
	Wall      []int64 `json:"wall"`   // ns
	CPU       []int64 `json:"cpu"`    // µs, user+sys
	Faults    []int64 `json:"faults"` // minor+major
	MaxRSSKiB []int64 `json:"maxrss"` // KiB
	Reference bool    `json:"reference,omitempty"`
}

type compareResult struct {
	Rows      []*cmpRow `json:"rows"`
	Runs      int       `json:"runs"`
	Warm      int       `json:"warm"`
	LoadStart string    `json:"loadStart"`
	LoadEnd   string    `json:"loadEnd"`
	Elapsed   int64     `json:"elapsed"`
	Err       string    `json:"err,omitempty"`
}

func (c *compareResult) row(name string) *cmpRow {
	for _, r := range c.Rows {
		if r.Name == name {
			return r
		}
	}
	return nil
}

const (
	cmpPlain   = "plain exec (no sandbox)"
	cmpUnshare = "unshare -fpmiun"
	cmpBwrap   = "bwrap"
	cmpCrun    = "crun run"
	cmpNsjail  = "nsjail"
	cmpMini    = "minijail0"
	cmpSystemd = "systemd-run"
	cmpVatrun  = "vatrun run"
	// cmpVatrunOff is vatrun run without the C-first launch: the Go runtime starts first, and
	// then the sandbox (VATRUN_PRELAUNCH=off).
	cmpVatrunOff = "vatrun run, no launch cache"
	// cmpThin is the long-lived-supervisor prototype: a static client per worker, one Go
	// supervisor for all (bench/thin.go).
	cmpThin = "prototype: thin client + one Go supervisor"
)

// firstLine runs name args and returns the first line of its output ("" on failure).
func firstLine(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

// notInDebian says why a launcher is absent: not installed, and whether apt knows it.
func notInDebian(pkg string) string {
	out, _ := exec.Command("apt-cache", "policy", pkg).Output()
	if !strings.Contains(string(out), "Candidate:") || strings.Contains(string(out), "Candidate: (none)") {
		return fmt.Sprintf("not measured: not installed, and this machine's Debian archive has no `%s` package (`apt-cache policy %s`: no candidate)", pkg, pkg)
	}
	return fmt.Sprintf("not measured: not installed (scripts/bench.sh installs `%s` when run as root)", pkg)
}

// compareHelper is the body of `vatrun-bench -compare-helper`, in a private mount namespace.
func compareHelper(o *options) int {
	res := compareResult{Runs: o.cmpRuns, Warm: o.warm, LoadStart: loadavg()}
	start := time.Now()
	err := func() error {
		tmp, rootfs, cleanup, err := crunMounts()
		if err != nil {
			return err
		}
		defer cleanup()
		xsnap, _ := seccompprofiles.Builtin("xsnap")
		bpfFile, bpfCleanup, err := writeBPF(bwrapFilter(xsnap))
		if err != nil {
			return err
		}
		defer bpfCleanup()
		worker := []string{o.trueBin}
		var modes []*cmpMode
		add := func(r *cmpRow, m *cmpMode) {
			res.Rows = append(res.Rows, r)
			if m != nil && r.Skipped == "" {
				m.name, m.runner = r.Name, o.rusage
				modes = append(modes, m)
			}
		}
		add(&cmpRow{Name: cmpPlain, Cmd: "WORKER", NS: "none", Seccomp: "none", Root: "host /", Privs: "root, all capabilities"}, &cmpMode{})

		r := &cmpRow{Name: cmpUnshare, Cmd: "unshare -fpmiun WORKER", NS: "pid, mount, ipc, uts, net", Seccomp: "none",
			Root: "host / (a private copy of the mount table, host /proc)", Privs: "root, all capabilities"}
		var m *cmpMode
		if p, err := exec.LookPath("unshare"); err != nil {
			r.Skipped = notInDebian("util-linux")
		} else {
			r.Version = firstLine(p, "--version")
			m = &cmpMode{argv: func(w []string) []string { return append([]string{p, "-fpmiun"}, w...) }}
		}
		add(r, m)

		r = &cmpRow{Name: cmpBwrap, Cmd: "bwrap " + strings.Join(bwrapIsolation(worker), " ") + " WORKER 5<xsnap+wait4.bpf",
			NS: "pid, mount, ipc, uts, net, cgroup (`--unshare-all`)", Seccomp: "xsnap + wait4, compiled once by the bench (libseccomp), loaded from fd 5",
			Root: "minimal: tmpfs / with the worker, the library dirs, ld.so.cache; private /dev, fresh /proc, read-only", Privs: "no capabilities, new session", Reference: true}
		m = nil
		if p, err := exec.LookPath("bwrap"); err != nil {
			r.Skipped = notInDebian("bubblewrap")
		} else {
			r.Version = firstLine(p, "--version")
			m = &cmpMode{argv: func(w []string) []string { return append(append([]string{p}, bwrapIsolation(w)...), w...) }, extra: openForChild(bpfFile)}
		}
		add(r, m)

		r = &cmpRow{Name: cmpCrun, Cmd: "crun --cgroup-manager=disabled run --bundle B ID",
			NS: "pid, mount, ipc, uts, net", Seccomp: "xsnap, compiled by crun (libseccomp) at every start",
			Root: "host / bound read-only (not minimal), fresh /proc", Privs: "no capabilities, no_new_privs, xsnap rlimits; no cgroup (manager disabled)"}
		m = nil
		if p, err := exec.LookPath("crun"); err != nil {
			r.Skipped = notInDebian("crun")
		} else {
			r.Version = firstLine(p, "--version")
			bundle := filepath.Join(tmp, "cmp")
			if err := crunBundle(bundle, rootfs, worker, xsnap); err != nil {
				return err
			}
			seq := 0
			m = &cmpMode{argv: func([]string) []string {
				seq++
				return []string{p, "--cgroup-manager=disabled", "run", "--bundle", bundle, fmt.Sprintf("vatrun-cmp-%d-%d", os.Getpid(), seq)}
			}}
		}
		add(r, m)

		for _, x := range []struct{ name, bin, pkg string }{{cmpNsjail, "nsjail", "nsjail"}, {cmpMini, "minijail0", "minijail"}} {
			r = &cmpRow{Name: x.name, NS: "–", Seccomp: "–", Root: "–", Privs: "–"}
			if p, err := exec.LookPath(x.bin); err != nil {
				r.Skipped = notInDebian(x.pkg)
			} else {
				r.Version = firstLine(p, "--version")
				r.Skipped = "installed, but not measured: the bench has no equivalent command line for it yet"
			}
			add(r, nil)
		}

		r = &cmpRow{Name: cmpSystemd, NS: "–", Seccomp: "–", Root: "–", Privs: "–",
			Skipped: "not run: every `systemd-run` unit is a cgroup that systemd creates on the host (off limits to the bench)"}
		if _, err := os.Stat("/run/systemd/system"); err != nil {
			r.Skipped += "; and PID 1 here is not systemd (no /run/systemd/system), so there is no manager to ask"
		}
		add(r, nil)

		runArgs := []string{"run", "--profile", "xsnap", "--no-cgroup", "--report-fd", "5", "--"}
		r = &cmpRow{Name: cmpVatrun, Cmd: "vatrun " + strings.Join(runArgs, " ") + " WORKER 5>report-pipe",
			NS: "pid, mount, ipc, uts, net", Seccomp: "xsnap, compiled with libseccomp when vatrun was built (a built-in profile's program is generated)",
			Root:  "minimal: the worker, its libraries, ld.so.cache; private /dev, fresh /proc, read-only",
			Privs: "no capabilities, no_new_privs, xsnap rlimits, new session; no cgroup (`--no-cgroup`); writes its JSON report"}
		r.Version = firstLine(o.vatrun, "version")
		cacheDir := filepath.Join(tmp, "vatrun-cache")
		hitEnv := append(slices.Clone(workerEnv), "VATRUN_CACHE_DIR="+cacheDir)
		vatrunArgv := func(w []string) []string { return append(append([]string{o.vatrun}, runArgs...), w...) }
		vm := &cmpMode{argv: vatrunArgv, extra: reportPipe, env: hitEnv}
		add(r, vm)
		off := *r
		off.Name, off.Cmd = cmpVatrunOff, "VATRUN_PRELAUNCH=off "+r.Cmd
		offEnv := append(slices.Clone(hitEnv), "VATRUN_PRELAUNCH=off")
		add(&off, &cmpMode{argv: vatrunArgv, extra: reportPipe, env: offEnv})
		entry, err := primeLaunchCache(vm, worker, cacheDir)
		if err != nil {
			return err
		}

		thinSock := filepath.Join(tmp, "thin.sock")
		thin, err := startThinServer(thinSock)
		if err != nil {
			return err
		}
		defer thin.Process.Kill()
		r = &cmpRow{Name: cmpThin, Cmd: "vatrun-bench-thin SOCKET -- WORKER 5>report-pipe (the supervisor: `vatrun-bench -thin-server SOCKET`, launcher.Launch per request)",
			NS: "pid, mount, ipc, uts, net", Seccomp: "xsnap, compiled once by the supervisor",
			Root:  "minimal: the worker, its libraries, ld.so.cache; private /dev, fresh /proc, read-only",
			Privs: "as vatrun run; CPU and page faults include the supervisor's share per launch (its own and its reaped init stages' and workers')"}
		tm := &cmpMode{argv: func(w []string) []string { return append([]string{o.thinBin, thinSock, "--"}, w...) }, extra: reportPipe}
		add(r, tm)
		cpu0, flt0, err := supervisorCost(thin.Process.Pid)
		if err != nil {
			return err
		}

		ss := make([]sampler, len(modes))
		names := make([]string, len(modes))
		for i, m := range modes {
			ss[i], names[i] = m, m.name
		}
		got, err := collect(ss, names, kindTrue, worker, o.cmpRuns, o.warm)
		if err != nil {
			return err
		}
		if err := launchCacheUnchanged(cacheDir, entry); err != nil {
			return err
		}
		vm.wall, vm.cpu, vm.flt, vm.rss = vm.wall[1:], vm.cpu[1:], vm.flt[1:], vm.rss[1:] // the priming run
		// The supervisor's share: its CPU (and its reaped children's) and page faults over all
		// its launches, spread evenly over them (ticks are too coarse per launch).
		cpu1, flt1, err := supervisorCost(thin.Process.Pid)
		if err != nil {
			return err
		}
		n := int64(len(tm.cpu))
		for i := range tm.cpu {
			tm.cpu[i] += (cpu1 - cpu0) * 1_000_000 / clockTicks / n
			tm.flt[i] += (flt1 - flt0) / n
		}
		for _, m := range modes {
			row := res.row(m.name)
			if len(got[m.name]) != o.cmpRuns || len(m.wall) != o.cmpRuns+o.warm {
				return fmt.Errorf("%s: %d samples for %d runs", m.name, len(m.wall), o.cmpRuns+o.warm)
			}
			row.Wall, row.CPU, row.Faults, row.MaxRSSKiB = m.wall[o.warm:], m.cpu[o.warm:], m.flt[o.warm:], m.rss[o.warm:]
		}
		return nil
	}()
	if err != nil {
		res.Err = err.Error()
	}
	res.LoadEnd = loadavg()
	res.Elapsed = int64(time.Since(start))
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// benchCompare runs the comparison in its helper (a private mount namespace).
func benchCompare(o *options) (*compareResult, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("unshare", "-m", "--propagation", "private", self, "-compare-helper",
		"-compare-runs", strconv.Itoa(o.cmpRuns), "-warm", strconv.Itoa(o.warm),
		"-true", o.trueBin, "-vatrun", o.vatrun, "-rusage", o.rusage, "-testworker", o.testWorker, "-thin", o.thinBin)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("compare helper: %w", err)
	}
	var res compareResult
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("compare helper output: %w", err)
	}
	if res.Err != "" {
		return nil, fmt.Errorf("compare helper: %s", res.Err)
	}
	return &res, nil
}

// quantileInt is the nearest-rank q-quantile of xs.
func quantileInt(xs []int64, q float64) int64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func xRatio(a, b int64) string {
	if b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}

// compareSection renders section 8.
func (r *results) compareSection(p func(string, ...any)) {
	c := r.cmp
	if c == nil {
		return
	}
	m := r.machine
	ref := c.row(cmpBwrap)
	if ref != nil && len(ref.Wall) == 0 {
		ref = nil
	}
	p("## 8. Start-up across sandboxes\n\n")
	p("Each launcher starts the same static worker, `bin/vatrun-bench-true` (`_exit(0)`, `bench/csrc/true.c`, built\n")
	p("`gcc -O2 -static`), with stdin/stdout/stderr on /dev/null and environment `PATH=/usr/local/bin:/usr/bin:/bin`;\n")
	p("%d runs each after %d warm-up runs, interleaved (one run of every launcher in turn), as root. Wall time: from\n", c.Runs, c.Warm)
	p("the bench's fork of the launcher to its reaping (for vatrun, its report written). CPU, page faults and max RSS:\n")
	p("the launcher's wait4 rusage, which covers it and every process of its tree that was reaped inside it (the init\n")
	p("process of the sandbox and the worker): CPU is user + sys of the whole tree, max RSS the largest process of it.\n")
	p("They are measured by `bin/vatrun-bench-rusage` (`bench/csrc/rusage.c`), a tiny static parent that forks the\n")
	p("launcher, waits for it and reads its rusage, so that no launcher starts with the bench's own pages.\n")
	p("Medians, p90 for wall time; ratios are medians over bwrap's median in the same run.\n\n")
	p("All launchers run from one helper process in a private mount namespace (`unshare -m --propagation private`)\n")
	p("in which `/sys/fs/cgroup` is an empty tmpfs: crun %s refuses this host's hybrid cgroup hierarchy even with\n", orDash(strings.TrimPrefix(c.versionOf(cmpCrun), "crun version ")))
	p("`--cgroup-manager=disabled`, and the empty tmpfs guarantees that it cannot read or write a host cgroup. No\n")
	p("launcher here puts the worker in a cgroup.\n\n")
	p("Machine: %d × %s, Linux %s, %s; load average %s at the start, %s at the end (other work on the\n", m.nproc, m.model, m.kernel, m.goVer, c.LoadStart, c.LoadEnd)
	p("machine inflates absolute times and p90s; interleaving keeps the ratios fair). Took %v.\n\n", time.Duration(c.Elapsed).Round(time.Second))
	p("| launcher | wall median | p90 | × bwrap | CPU (user+sys) | × bwrap | page faults | × bwrap | max RSS | × bwrap |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, x := range c.Rows {
		if x.Skipped != "" {
			p("| %s | %s | | | | | | | | |\n", x.Name, x.Skipped)
			continue
		}
		w, cpu, f, rss := quantileInt(x.Wall, 0.5), quantileInt(x.CPU, 0.5), quantileInt(x.Faults, 0.5), quantileInt(x.MaxRSSKiB, 0.5)
		rw, rc, rf, rr := "–", "–", "–", "–"
		if ref != nil {
			rw = xRatio(w, quantileInt(ref.Wall, 0.5))
			rc = xRatio(cpu, quantileInt(ref.CPU, 0.5))
			rf = xRatio(f, quantileInt(ref.Faults, 0.5))
			rr = xRatio(rss, quantileInt(ref.MaxRSSKiB, 0.5))
		}
		p("| %s | %s | %s | %s | %s | %s | %d | %s | %s | %s |\n", x.Name, ms(time.Duration(w)), ms(time.Duration(quantileInt(x.Wall, 0.9))), rw,
			ms(time.Duration(cpu)*time.Microsecond), rc, f, rf, mib(rss), rr)
	}
	p("\nIsolation per row (what each command line gives the worker) and the exact command (WORKER is the static worker):\n\n")
	p("| launcher | version | namespaces | seccomp | root | privileges, limits |\n|---|---|---|---|---|---|\n")
	for _, x := range c.Rows {
		if x.Skipped != "" {
			continue
		}
		p("| %s | %s | %s | %s | %s | %s |\n", x.Name, orDash(x.Version), x.NS, x.Seccomp, x.Root, x.Privs)
	}
	p("\n")
	for _, x := range c.Rows {
		if x.Skipped == "" {
			p("- %s: `%s`\n", x.Name, x.Cmd)
		}
	}
	p("\nbwrap and vatrun give the same isolation (the same five namespaces, bwrap also a cgroup namespace; the same\n")
	p("minimal root; the xsnap filter, bwrap's with wait4 added for its own pid 1); crun gets the same namespaces, filter\n")
	p("and rlimits but the host's whole root read-only; `unshare` gives namespaces only. crun compiles the filter at\n")
	p("every start; bwrap loads a program compiled ahead of time, and so does vatrun for a built-in profile.\n\n")
	p("The two `vatrun run` rows are the same command: the first uses the launch cache (one priming run made its\n")
	p("entry, and the bench checks that every sampled run used it: the C-first launch, [docs/launch-cache.md](docs/launch-cache.md)),\n")
	p("the second has `VATRUN_PRELAUNCH=off` (the Go runtime first, then the sandbox). The prototype row measures a design,\n")
	p("not a product: a static client per worker (`bench/csrc/thin.c`) that hands its argv and fds over a unix socket\n")
	p("to one long-lived Go supervisor (`bench/thin.go`, launcher.Launch per request) and mirrors the worker's wait status;\n")
	p("its CPU and page faults include the supervisor's, spread evenly over its launches.\n\n")
	p("Rerun this section alone (as root, ~%s): `scripts/bench.sh -only compare -out -` prints it (installing\n", "1 min")
	p("bubblewrap and crun first if they are missing); `bin/vatrun-bench -only compare -compare-runs N -out -` once built.\n\n")
}

// versionOf is a row's version string ("" when absent).
func (c *compareResult) versionOf(name string) string {
	if r := c.row(name); r != nil {
		return r.Version
	}
	return ""
}

// primeLaunchCache makes the C-first launch's entry for the vatrun row: once the worker's change
// time is old enough for an entry (2 s), one run writes it. It returns the entry's identity.
func primeLaunchCache(m *cmpMode, worker []string, dir string) (os.FileInfo, error) {
	st, err := os.Stat(worker[0])
	if err != nil {
		return nil, err
	}
	ctime := st.Sys().(*syscall.Stat_t).Ctim
	if wait := 2100*time.Millisecond - time.Since(time.Unix(ctime.Sec, ctime.Nsec)); wait > 0 {
		time.Sleep(wait)
	}
	if _, err := m.sample(kindTrue, worker); err != nil {
		return nil, err
	}
	ents, _ := filepath.Glob(filepath.Join(dir, "launch", "[0-9a-f]*"))
	if len(ents) != 1 {
		return nil, fmt.Errorf("launch cache: want one entry after the priming run, found %v", ents)
	}
	return os.Stat(ents[0])
}

// launchCacheUnchanged checks that every vatrun run used the primed entry: a run whose launch
// did not match it (or that missed it) would have written an entry of its own.
func launchCacheUnchanged(dir string, entry os.FileInfo) error {
	ents, _ := filepath.Glob(filepath.Join(dir, "launch", "[0-9a-f]*"))
	if len(ents) != 1 {
		return fmt.Errorf("launch cache: %d entries after the runs (want the primed one only): some runs did not use the C-first launch", len(ents))
	}
	now, err := os.Stat(ents[0])
	if err != nil || !os.SameFile(now, entry) || !now.ModTime().Equal(entry.ModTime()) {
		return fmt.Errorf("launch cache: the entry was rewritten during the runs: some runs did not use the C-first launch")
	}
	return nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times (100 on Linux).
const clockTicks = 100

// startThinServer starts the prototype's supervisor and waits until it listens.
func startThinServer(sock string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-thin-server", sock)
	cmd.Env = workerEnv
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line := make([]byte, 6)
	if _, err := io.ReadFull(out, line); err != nil || string(line) != "ready\n" {
		cmd.Process.Kill()
		return nil, fmt.Errorf("thin server did not start: %q %v", line, err)
	}
	return cmd, nil
}
