package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vatrun/vatrun/sandbox"
	"github.com/vatrun/vatrun/seccompprofiles"
	"github.com/vatrun/vatrun/seccompprofiles/filter"
)

type spawnRow struct {
	name, cmd  string
	true, ping dist
	// faultsTrue, faultsPing: page faults per launch (the launcher and every process it waited
	// for); nil when not measurable (the Go API's are in the bench process itself).
	faultsTrue, faultsPing []int64
	skipped                string
	breakdown              bool // a part of another row, not a peer
}

type spawnResult struct {
	rows                  []*spawnRow
	crunVersion, bwrapVer string
}

func (r *spawnResult) row(name string) *spawnRow {
	for _, x := range r.rows {
		if x.name == name {
			return x
		}
	}
	return nil
}

const (
	rowPlain   = "plain fork/exec (Go os.StartProcess)"
	rowUnshare = "unshare -fpmiun"
	rowBwrap   = "bwrap, same isolation"
	rowCrun    = "crun run (--cgroup-manager=disabled)"
	rowRunc    = "runc run"
	rowGo      = "vatrun Go API (launcher.Launch)"
	rowRun     = "vatrun run (whole process)"
	rowVM      = "vatrun with cgroups (VM)"
	rowStart   = "  of which: vatrun process start (vatrun profile digest xsnap)"
	rowNoop    = "  of which: Go runtime start (static cgo no-op)"
	rowHelp    = "  of which: Go runtime + vatrun's package inits (vatrun help)"
)

func benchSpawn(o *options, xsnap *seccompprofiles.Profile) (*spawnResult, error) {
	res := &spawnResult{}
	// bwrap's own pid-1 process runs under the filter too and must wait4 for the worker, which
	// the xsnap allowlist refuses (EPERM: "init wait(): Operation not permitted"): bwrap gets the
	// xsnap program plus one rule allowing wait4, compiled by the same libseccomp.
	bpfFile, cleanup, err := writeBPF(bwrapFilter(xsnap))
	if err != nil {
		return nil, err
	}
	defer cleanup()

	type mode struct {
		row  *spawnRow
		s    sampler
		true bool // also for the static worker
		ping bool
	}
	var modes []mode
	add := func(row *spawnRow, s sampler, t, p bool) {
		res.rows = append(res.rows, row)
		if s != nil {
			modes = append(modes, mode{row, s, t, p})
		}
	}
	add(&spawnRow{name: rowPlain, cmd: "WORKER"}, &extMode{name: "plain"}, true, true)
	if p, err := exec.LookPath("unshare"); err == nil {
		add(&spawnRow{name: rowUnshare, cmd: "unshare -fpmiun WORKER"},
			&extMode{name: "unshare", argv: func(w []string) []string { return append([]string{p, "-fpmiun"}, w...) }}, true, true)
	} else {
		add(&spawnRow{name: rowUnshare, skipped: "unshare (util-linux) not installed"}, nil, false, false)
	}
	bwrapArgs := bwrapIsolation
	if p, err := exec.LookPath("bwrap"); err == nil {
		if out, err := exec.Command(p, "--version").Output(); err == nil {
			res.bwrapVer = strings.TrimSpace(string(out))
		}
		add(&spawnRow{name: rowBwrap, cmd: "bwrap " + strings.Join(bwrapArgs([]string{o.trueBin}), " ") + " WORKER 5<xsnap+wait4.bpf"},
			&extMode{name: "bwrap", argv: func(w []string) []string { return append(append([]string{p}, bwrapArgs(w)...), w...) },
				extra: openForChild(bpfFile)}, true, true)
	} else {
		add(&spawnRow{name: rowBwrap, skipped: "bubblewrap not installed (apt-get install bubblewrap)"}, nil, false, false)
	}
	runArgs := []string{"run", "--profile", "xsnap", "--no-cgroup", "--report-fd", "5", "--"}
	add(&spawnRow{name: rowGo, cmd: "launcher.Launch(xsnap profile, cgroups disabled) + Worker.Wait"},
		&goMode{name: "go", profile: xsnap}, true, true)
	add(&spawnRow{name: rowRun, cmd: "vatrun " + strings.Join(runArgs, " ") + " WORKER 5>report-pipe"},
		&extMode{name: "vatrun run", argv: func(w []string) []string { return append(append([]string{o.vatrun}, runArgs...), w...) },
			extra: reportPipe}, true, true)
	add(&spawnRow{name: rowStart, cmd: "vatrun profile digest xsnap", breakdown: true},
		&extMode{name: "vatrun start", argv: func([]string) []string { return []string{o.vatrun, "profile", "digest", "xsnap"} }}, true, false)
	add(&spawnRow{name: rowHelp, cmd: "vatrun help", breakdown: true},
		&extMode{name: "vatrun help", argv: func([]string) []string { return []string{o.vatrun, "help"} }}, true, false)
	add(&spawnRow{name: rowNoop, cmd: "vatrun-bench-noop (bench/noop: package main, import \"C\", os.Exit(0); linked like vatrun)", breakdown: true},
		&extMode{name: "go noop", argv: func([]string) []string { return []string{o.noop} }}, true, false)

	for _, k := range []kind{kindTrue, kindPing} {
		var ss []sampler
		var names []string
		worker := []string{o.trueBin}
		if k == kindPing {
			worker = []string{o.testWorker}
		}
		for _, m := range modes {
			if (k == kindTrue && m.true) || (k == kindPing && m.ping) {
				ss = append(ss, m.s)
				names = append(names, m.row.name)
			}
		}
		got, err := collect(ss, names, k, worker, o.runs, o.warm)
		if err != nil {
			return nil, err
		}
		for _, r := range res.rows {
			if k == kindTrue {
				r.true = got[r.name]
			} else {
				r.ping = got[r.name]
			}
		}
		for _, m := range modes {
			if em, ok := m.s.(*extMode); ok {
				if k == kindTrue {
					m.row.faultsTrue = em.faults
				} else {
					m.row.faultsPing = em.faults
				}
				em.faults = nil
			}
		}
	}

	crunRow := &spawnRow{name: rowCrun, cmd: "crun --cgroup-manager=disabled run --bundle B [--preserve-fds 2] ID (in a private mount namespace, see below)"}
	logf("spawn latency: crun")
	t, p, ver, err := runCrun(o)
	if err != nil {
		crunRow.skipped = err.Error()
	} else {
		crunRow.true, crunRow.ping, res.crunVersion = t, p, ver
	}
	runc := &spawnRow{name: rowRunc, skipped: "skipped: runc has no way to run without cgroups as root; it would create cgroups on this host"}
	vm := &spawnRow{name: rowVM, skipped: "not measured yet: the VM harness (test/e2e) has no benchmark mode yet"}
	// Peers first, vatrun last.
	var rows []*spawnRow
	for _, r := range res.rows {
		if r.name == rowGo {
			rows = append(rows, crunRow, runc)
		}
		rows = append(rows, r)
	}
	res.rows = append(rows, vm)
	return res, nil
}

type nsVariant struct {
	name string
	d    dist
}

type nsResult struct {
	variants []*nsVariant
}

// benchNamespaces times the Go API with the static worker for profile variants that add one
// namespace at a time to a sandbox without namespaces or seccomp.
func benchNamespaces(o *options, xsnap *seccompprofiles.Profile) (*nsResult, error) {
	mk := func(name string, pid, mnt, ipc, uts, net, filter bool) (*nsVariant, sampler) {
		p, _ := seccompprofiles.Builtin("xsnap")
		p.Name = "bench-" + name
		p.Namespaces.Pid, p.Namespaces.Mount, p.Namespaces.IPC, p.Namespaces.UTS, p.Namespaces.Net = pid, mnt, ipc, uts, net
		if !filter {
			p.Seccomp = &seccompprofiles.Seccomp{DefaultAction: "SCMP_ACT_ALLOW"} // explicitly no filter
		}
		return &nsVariant{name: name}, &goMode{name: name, profile: p}
	}
	type v struct {
		name                          string
		pid, mnt, ipc, uts, net, filt bool
	}
	list := []v{
		{name: "no namespaces, no seccomp (rlimits, caps, no_new_privs)"},
		{name: "+ pid", pid: true},
		{name: "+ mount (private, / read-only)", mnt: true},
		{name: "+ pid + mount (and a fresh /proc)", pid: true, mnt: true},
		{name: "+ ipc", ipc: true},
		{name: "+ uts (and the hostname)", uts: true},
		{name: "+ net", net: true},
		{name: "all five namespaces, no seccomp", pid: true, mnt: true, ipc: true, uts: true, net: true},
		{name: "all five + xsnap seccomp (the full sandbox)", pid: true, mnt: true, ipc: true, uts: true, net: true, filt: true},
	}
	res := &nsResult{}
	plain := &nsVariant{name: "plain fork/exec"}
	res.variants = append(res.variants, plain)
	ss := []sampler{&extMode{name: "plain"}}
	names := []string{plain.name}
	for _, x := range list {
		nv, s := mk(x.name, x.pid, x.mnt, x.ipc, x.uts, x.net, x.filt)
		res.variants = append(res.variants, nv)
		ss = append(ss, s)
		names = append(names, nv.name)
	}
	got, err := collect(ss, names, kindTrue, []string{o.trueBin}, o.nsRuns, o.warm)
	if err != nil {
		return nil, err
	}
	for _, nv := range res.variants {
		nv.d = got[nv.name]
	}
	return res, nil
}

// bwrapIsolation is bwrap's arguments for the same isolation as vatrun's minimal root: a tmpfs
// root holding only what sandbox.WorkerRoot makes visible (the worker, the library dirs,
// ld.so.cache), a private /dev, a fresh /proc, a read-only root, a new session, no capabilities,
// all namespaces, and the seccomp program on fd 5.
func bwrapIsolation(w []string) []string {
	args := []string{"--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--tmpfs", "/"}
	mounts, _ := sandbox.WorkerRoot(w[0])
	for _, m := range mounts {
		switch m.Kind {
		case sandbox.MountRO:
			args = append(args, "--ro-bind", m.Source, m.Target)
		case sandbox.MountSymlink:
			args = append(args, "--symlink", m.Source, m.Target)
		}
	}
	return append(args, "--dev", "/dev", "--proc", "/proc", "--remount-ro", "/", "--hostname", "vat", "--seccomp", "5", "--")
}

// bwrapFilter is p's seccomp section plus a rule allowing wait4, which bwrap's own pid 1 needs
// under the filter; the worker gets the same program.
func bwrapFilter(p *seccompprofiles.Profile) *seccompprofiles.Profile {
	q := *p
	sc := *p.Seccomp
	sc.Syscalls = append(slices.Clone(sc.Syscalls), seccompprofiles.SeccompSyscall{Names: []string{"wait4"}, Action: "SCMP_ACT_ALLOW"})
	q.Seccomp = &sc
	q.Name = p.Name + "+wait4"
	return &q
}

// writeBPF compiles p's filter into a temporary file, for bwrap's --seccomp FD; cleanup removes it.
func writeBPF(p *seccompprofiles.Profile) (path string, cleanup func(), err error) {
	bpf, _, err := filter.Compile(p)
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "vatrun-bench-")
	if err != nil {
		return "", nil, err
	}
	path = filepath.Join(dir, p.Name+".bpf")
	if err := os.WriteFile(path, bpf, 0o644); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return path, func() { os.RemoveAll(dir) }, nil
}
