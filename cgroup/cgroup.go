// Package cgroup gives every vatrun worker its own cgroup v2 leaf with the profile's limits,
// reads the leaf's evidence after the worker's death, and tears it down.
//
// There is one way in, in this order, as the launcher does it:
//
//  1. Open(root, parent), once per parent: detect the host's mode, the parent's controllers,
//     writability and delegation (refusals wrap ErrUnusable, as an *UnusableError saying the
//     problem and its fix), then kill and remove the leaves a vatrun that died left under the
//     parent (Parent.Removed lists them). Nothing else is written.
//  2. Parent.NewLeaf(limits), per worker, before the fork: enable the needed controllers in the
//     parent (moving vatrun's own cgroup's processes into <parent>/vatrun-supervisor first when
//     vatrun runs in the parent), create the leaf, write the limits and read them back, and open
//     the directory fd: Leaf.FD as SysProcAttr.CgroupFD (UseCgroupFD, CLONE_INTO_CGROUP).
//  3. After the worker's wait: Leaf.Evidence, then Leaf.Kill and Leaf.Remove (Remove also kills,
//     so a deferred Remove covers every error path).
//
// Detect is the read-only host check behind `vatrun check`: the detection of step 1 without the
// cleaning, and it never fails (Host.Problem says why cgroup v2 cannot be used).
//
// The parent "" means this process's own cgroup (from /proc/self/cgroup; its parent when the
// process already sits in <parent>/vatrun-supervisor), what systemd's Delegate=yes hands a
// service. The package reads no environment variable: the vatrun command turns
// $VATRUN_CGROUP_PARENT into the parent it passes, and a Go program that wants that variable
// honoured reads it itself (before this API change, "" fell back to it implicitly).
//
// Only a unified host (cgroup v2 alone at /sys/fs/cgroup) is used; the parent cgroup must be
// delegated to vatrun's user (systemd Delegate=yes). Root is never required.
package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/report"
)

// Limits are the cgroup limits of one worker leaf.
type Limits struct {
	// MemoryMax is memory.max in bytes; -1 = no limit ("max"). The kernel rounds it down to a
	// page. The memory controller is enabled even without a limit: its events are evidence.
	MemoryMax int64
	// SwapMax is memory.swap.max in bytes; 0 (the zero value) = no swap, -1 = no limit.
	SwapMax int64
	// CPUMax is cpu.max, "QUOTA PERIOD" in microseconds ("50000 100000" = half a CPU);
	// "" or a "max" quota = no limit, and then the cpu controller is not enabled.
	CPUMax string
	// PidsMax is pids.max; 0 = no limit, and then the pids controller is not enabled.
	PidsMax int64
}

func (lim Limits) validate() error {
	switch {
	case lim.MemoryMax == 0 || lim.MemoryMax < -1:
		return fmt.Errorf("cgroup limits: memory max %d: want bytes > 0 or -1 for no limit", lim.MemoryMax)
	case lim.SwapMax < -1:
		return fmt.Errorf("cgroup limits: swap max %d: want bytes >= 0 or -1 for no limit", lim.SwapMax)
	case lim.PidsMax < 0:
		return fmt.Errorf("cgroup limits: pids max %d: want > 0 or 0 for no limit", lim.PidsMax)
	}
	if lim.cpuQuota() {
		f := strings.Fields(lim.CPUMax)
		q, err := strconv.ParseUint(f[0], 10, 63)
		if len(f) > 2 || err != nil || q == 0 {
			return fmt.Errorf("cgroup limits: cpu max %q: want \"QUOTA [PERIOD]\" in microseconds, or \"max\"", lim.CPUMax)
		}
		if len(f) == 2 {
			if p, err := strconv.ParseUint(f[1], 10, 63); err != nil || p == 0 {
				return fmt.Errorf("cgroup limits: cpu max %q: bad period", lim.CPUMax)
			}
		}
	}
	return nil
}

func (lim Limits) cpuQuota() bool {
	f := strings.Fields(lim.CPUMax)
	return len(f) > 0 && f[0] != "max"
}

// controllers lists the controllers the leaf needs.
func (lim Limits) controllers() []string {
	c := []string{"memory"}
	if lim.cpuQuota() {
		c = append(c, "cpu")
	}
	if lim.PidsMax > 0 {
		c = append(c, "pids")
	}
	return c
}

// Leaf is one worker's cgroup. Its methods may be called from several goroutines.
type Leaf struct {
	t       tree
	cg      string // cgroup path, "/parent/vatrun-…"
	dir     string // its directory
	memMax  int64  // memory.max as applied, -1 = max
	pids    bool   // pids controller enabled
	mu      sync.Mutex
	fd      int // directory fd for CLONE_INTO_CGROUP, -1 once closed
	removed bool
}

// Parent is a parent cgroup opened by Open: what detection found there, and the stale leaves
// Open removed. Its NewLeaf may be called from several goroutines, for as long as the parent
// exists; a Parent never detects or cleans again (open the parent again for that).
type Parent struct {
	// Host is what Open's detection found (Problem is always "": Open refuses otherwise).
	Host Host
	// Removed lists the cgroup paths of the stale leaves Open killed and removed.
	Removed []string
	// CleanErr says which stale leaves Open could not remove (nil when it removed them all). It
	// does not stop leaves being made; a caller may log it and open the parent again later.
	CleanErr error

	t  tree
	mu sync.Mutex // serialises preparing the parent (enabling controllers, moving processes)
}

// UnusableError is a refusal: cgroup v2 cannot be used under this parent. Host says what was
// found, Host.Problem why it cannot be used and Host.Fix what to do. It wraps ErrUnusable.
type UnusableError struct{ Host Host }

func (e *UnusableError) Error() string {
	return fmt.Sprintf("%v: %s\nfix: %s", ErrUnusable, e.Host.Problem, e.Host.Fix)
}

func (e *UnusableError) Unwrap() error { return ErrUnusable }

// always lists the controllers every leaf needs: memory (its events are the OOM evidence, and
// memory.oom.group is always written). The others are checked per leaf, by NewLeaf.
var always = []string{"memory"}

// Open opens the parent under which worker leaves are made: it detects, reading only, whether
// vatrun can make leaves there (root "" means /sys/fs/cgroup; a non-empty root is for tests, a
// directory laid out like a cgroup2 tree; parent "" means this process's own cgroup, see the
// package doc), refusing with an *UnusableError that names the problem and the fix; then it kills
// and removes the leaves under parent left by a vatrun that is gone (Parent.Removed; see
// cleanStale), once, here. Leaves of live owners and anything not named like a leaf are left alone.
func Open(root, parent string) (*Parent, error) {
	t := newTree(root)
	h := detect(t, parent, always)
	if h.Problem != "" {
		return nil, &UnusableError{Host: h}
	}
	p := &Parent{Host: h, t: t}
	p.Removed, p.CleanErr = cleanStale(t, h.Parent)
	return p, nil
}

// Path is the parent's cgroup path ("/system.slice/kernel.service").
func (p *Parent) Path() string { return p.Host.Parent }

// NewLeaf makes a new worker leaf under the parent with lim: it checks that the parent offers the
// controllers lim needs and still exists, enables them in the parent's cgroup.subtree_control
// (moving the processes of vatrun's own cgroup into <parent>/vatrun-supervisor first when vatrun
// runs in the parent), creates the leaf, writes the limits, reads each back and compares, and
// opens the directory fd for CLONE_INTO_CGROUP. A refusal is an *UnusableError (a parent that
// lacks a controller, has gone, or holds foreign processes); on any error nothing is left behind.
func (p *Parent) NewLeaf(lim Limits) (*Leaf, error) {
	if err := lim.validate(); err != nil {
		return nil, err
	}
	h := p.Host
	need := lim.controllers()
	if missing := missingOf(h.Controllers, need); len(missing) > 0 {
		h.Problem, h.Fix = lacksControllers(p.t, h.Parent, strings.Join(h.Controllers, " "), missing)
		return nil, &UnusableError{Host: h}
	}
	dir := p.t.dir(h.Parent)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		h.Problem, h.Fix = gone(h.Parent, dir)
		return nil, &UnusableError{Host: h}
	}
	if h.Problem, h.Fix = internalProcs(p.t, h.Parent, h.Self, need); h.Problem != "" {
		return nil, &UnusableError{Host: h}
	}
	p.mu.Lock()
	err := prepareParent(p.t, h.Parent, h.Self, need)
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	name, err := leafName()
	if err != nil {
		return nil, err
	}
	l := &Leaf{t: p.t, cg: path.Join(h.Parent, name), fd: -1, pids: lim.PidsMax > 0}
	l.dir = p.t.dir(l.cg)
	if err := p.t.mkdir(l.dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) { // the parent went away since the check above
			h.Problem, h.Fix = gone(h.Parent, dir)
			return nil, &UnusableError{Host: h}
		}
		return nil, fmt.Errorf("cgroup %s: create leaf: %w", l.cg, err)
	}
	if err := l.setup(lim); err != nil {
		return nil, errors.Join(err, l.Remove())
	}
	return l, nil
}

// FD is the leaf directory's fd, for SysProcAttr{UseCgroupFD: true, CgroupFD: l.FD()}; valid
// until Remove.
func (l *Leaf) FD() int { l.mu.Lock(); defer l.mu.Unlock(); return l.fd }

// Path is the leaf's directory (e.g. /sys/fs/cgroup/system.slice/k.service/vatrun-4242-9-1).
func (l *Leaf) Path() string { return l.dir }

// setup writes the limits, reads them back, and opens the fd.
//
// Each limit is one write(2) to an existing control file (tree.write), in the order cpu.max,
// memory.swap.max, memory.max, memory.oom.group, pids.max. "No limit" is not written: a new leaf
// already reads "max" (memory.max refuses "-1"); the read-back checks that.
func (l *Leaf) setup(lim Limits) error {
	type write struct{ file, value string }
	var writes []write
	files := []string{"memory.max", "memory.swap.max", "memory.oom.group"} // read back
	if lim.cpuQuota() {
		writes = append(writes, write{"cpu.max", strings.Join(strings.Fields(lim.CPUMax), " ")})
		files = append(files, "cpu.max")
	}
	if lim.SwapMax >= 0 {
		writes = append(writes, write{"memory.swap.max", strconv.FormatInt(lim.SwapMax, 10)})
	}
	if lim.MemoryMax >= 0 {
		writes = append(writes, write{"memory.max", strconv.FormatInt(lim.MemoryMax, 10)})
	}
	writes = append(writes, write{"memory.oom.group", "1"})
	if lim.PidsMax > 0 {
		writes = append(writes, write{"pids.max", strconv.FormatInt(lim.PidsMax, 10)})
		files = append(files, "pids.max")
	}
	// Say clearly which control file this kernel lacks before writing any.
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(l.dir, f)); err != nil {
			hint := ""
			if f == "memory.swap.max" {
				hint = " (kernel without swap accounting: boot with swapaccount=1, or set swap to -1)"
			}
			return fmt.Errorf("cgroup %s: %s missing%s: %w", l.cg, f, hint, err)
		}
	}
	for _, w := range writes {
		if err := l.t.write(filepath.Join(l.dir, w.file), w.value); err != nil {
			return fmt.Errorf("cgroup %s: write %q to %s: %w", l.cg, w.value, w.file, err)
		}
	}
	page := int64(os.Getpagesize())
	bytes := func(v int64) string {
		if v < 0 {
			return "max"
		}
		return strconv.FormatInt(v/page*page, 10)
	}
	want := map[string]string{
		"memory.max":       bytes(lim.MemoryMax),
		"memory.swap.max":  bytes(lim.SwapMax),
		"memory.oom.group": "1",
	}
	if lim.cpuQuota() {
		want["cpu.max"] = strings.Join(strings.Fields(lim.CPUMax), " ")
	}
	if lim.PidsMax > 0 {
		want["pids.max"] = strconv.FormatInt(lim.PidsMax, 10)
	}
	for _, f := range files {
		got, err := read(filepath.Join(l.dir, f))
		if err != nil {
			return fmt.Errorf("cgroup %s: read back %s: %w", l.cg, f, err)
		}
		w := want[f]
		if f == "cpu.max" && !strings.Contains(w, " ") {
			got, _, _ = strings.Cut(got, " ") // period not given: the kernel keeps its own
		}
		if got != w {
			return fmt.Errorf("cgroup %s: %s reads back %q, want %q", l.cg, f, got, w)
		}
	}
	l.memMax = -1
	if lim.MemoryMax >= 0 {
		l.memMax = lim.MemoryMax / page * page
	}
	fd, err := unix.Open(l.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("cgroup %s: open directory for CLONE_INTO_CGROUP: %w", l.cg, err)
	}
	l.mu.Lock()
	l.fd = fd
	l.mu.Unlock()
	return nil
}

// prepareParent enables the needed controllers in the parent's cgroup.subtree_control, first
// moving the processes of vatrun's own cgroup into SupervisorLeaf when the parent is that cgroup
// (a non-root cgroup with processes cannot enable controllers for its children).
func prepareParent(t tree, parent, self string, need []string) error {
	dir := t.dir(parent)
	stc := filepath.Join(dir, "cgroup.subtree_control")
	cur, err := read(stc)
	if err != nil {
		return fmt.Errorf("cgroup %s: read cgroup.subtree_control: %w", parent, err)
	}
	var add []string
	for _, c := range need {
		if !strings.Contains(" "+cur+" ", " "+c+" ") {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if parent != "/" && ours(parent, self) {
		if err := moveToSupervisor(t, parent); err != nil {
			return err
		}
	}
	if err := t.write(stc, strings.Join(add, " ")); err != nil {
		hint := ""
		if errors.Is(err, unix.EBUSY) {
			hint = " (the parent holds processes: cgroup v2 allows them only in leaves)"
		}
		return fmt.Errorf("cgroup %s: enable %s in cgroup.subtree_control%s: %w", parent, strings.Join(add, " "), hint, err)
	}
	got, err := read(stc)
	if err != nil {
		return fmt.Errorf("cgroup %s: read back cgroup.subtree_control: %w", parent, err)
	}
	if missingAny(strings.Fields(got), need) {
		return fmt.Errorf("cgroup %s: cgroup.subtree_control reads back %q after enabling %s", parent, got, strings.Join(add, " "))
	}
	return nil
}

// moveToSupervisor moves every process of parent into parent/SupervisorLeaf (vatrun and the rest
// of its own service: they must leave the parent before it can delegate controllers).
func moveToSupervisor(t tree, parent string) error {
	sup := t.dir(path.Join(parent, SupervisorLeaf))
	if err := t.mkdir(sup); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("cgroup %s: create %s: %w", parent, SupervisorLeaf, err)
	}
	procs := filepath.Join(t.dir(parent), "cgroup.procs")
	for range 100 { // processes may fork while being moved: repeat until the parent is empty
		s, err := read(procs)
		if err != nil {
			return fmt.Errorf("cgroup %s: read cgroup.procs: %w", parent, err)
		}
		if s == "" {
			return nil
		}
		for _, pid := range strings.Fields(s) {
			err := t.write(filepath.Join(sup, "cgroup.procs"), pid)
			if err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("cgroup %s: move pid %s into %s: %w", parent, pid, SupervisorLeaf, err)
			}
		}
	}
	return fmt.Errorf("cgroup %s: processes keep appearing while moving them into %s", parent, SupervisorLeaf)
}

// Evidence reads the leaf's counters: call it after the worker's wait and before Kill/Remove.
// notes lists what the kernel could not say (e.g. no memory.peak before Linux 5.19: reported 0).
func (l *Leaf) Evidence() (ev report.CgroupEvidence, notes []string, err error) {
	ev.MemoryMax = l.memMax
	me, err := readKV(filepath.Join(l.dir, "memory.events"))
	if err != nil {
		return ev, nil, fmt.Errorf("cgroup %s: read memory.events: %w", l.cg, err)
	}
	ev.OOM, ev.OOMKill, ev.OOMGroupKill = me["oom"], me["oom_kill"], me["oom_group_kill"]
	if ev.MemoryPeak, err = readUint(filepath.Join(l.dir, "memory.peak")); errors.Is(err, fs.ErrNotExist) {
		notes = append(notes, "cgroup memory.peak absent (Linux < 5.19): peak memory reported as 0")
	} else if err != nil {
		return ev, notes, fmt.Errorf("cgroup %s: read memory.peak: %w", l.cg, err)
	}
	cs, err := readKV(filepath.Join(l.dir, "cpu.stat"))
	if err != nil {
		return ev, notes, fmt.Errorf("cgroup %s: read cpu.stat: %w", l.cg, err)
	}
	ev.CPUUsageUsec, ev.NrThrottled, ev.ThrottledUsec = cs["usage_usec"], cs["nr_throttled"], cs["throttled_usec"]
	pe, err := readKV(filepath.Join(l.dir, "pids.events"))
	switch {
	case err == nil:
		ev.PidsMaxEvents = pe["max"]
	case !l.pids && errors.Is(err, fs.ErrNotExist):
		// no pids limit, and no other leaf asked for the controller
	default:
		return ev, notes, fmt.Errorf("cgroup %s: read pids.events: %w", l.cg, err)
	}
	if ev.PidsPeak, err = readUint(filepath.Join(l.dir, "pids.peak")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return ev, notes, fmt.Errorf("cgroup %s: read pids.peak: %w", l.cg, err)
	}
	return ev, notes, nil
}

func readUint(file string) (uint64, error) {
	s, err := read(file)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", file, err)
	}
	return n, nil
}

// Kill kills every process in the leaf (and any cgroup below it) and waits until the kernel says
// it is empty (cgroup.events "populated 0"), at most KillTimeout.
func (l *Leaf) Kill() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return kill(l.t, l.cg, l.dir)
}

// Remove kills what is left (see Kill), removes the leaf, and closes the fd. It is idempotent:
// defer it right after NewLeaf.
func (l *Leaf) Remove() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.removed {
		return nil
	}
	var cerr error
	if l.fd >= 0 {
		if err := unix.Close(l.fd); err != nil {
			cerr = fmt.Errorf("cgroup %s: close fd: %w", l.cg, err)
		}
		l.fd = -1
	}
	if err := kill(l.t, l.cg, l.dir); err != nil {
		return errors.Join(cerr, err)
	}
	if err := removeTree(l.t, l.cg, l.dir); err != nil {
		return errors.Join(cerr, err)
	}
	l.removed = true
	return cerr
}

// KillTimeout bounds the wait for a killed cgroup to empty.
var KillTimeout = 10 * time.Second

// kill writes cgroup.kill ("1"); where it is missing (Linux < 5.14) it SIGKILLs every pid in the
// subtree's cgroup.procs, again at each poll, since a process may fork meanwhile. It never waits
// for (reaps) a process: that is the launcher's, whose exit status is the report. It returns once
// cgroup.events says "populated 0" — at once, without writing anything, when it already does
// (Remove after Kill, a stale leaf whose processes are gone).
func kill(t tree, cg, dir string) error {
	if populated, err := isPopulated(cg, dir); err != nil || !populated {
		return err
	}
	fallback := false
	if err := t.write(filepath.Join(dir, "cgroup.kill"), "1"); errors.Is(err, fs.ErrNotExist) {
		fallback = true
	} else if err != nil {
		return fmt.Errorf("cgroup %s: write cgroup.kill: %w", cg, err)
	}
	deadline := time.Now().Add(KillTimeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		if populated, err := isPopulated(cg, dir); err != nil || !populated {
			return err
		}
		if fallback {
			if err := signalAll(cg, dir); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: still populated %v after kill", cg, KillTimeout)
		}
		time.Sleep(wait)
	}
}

// isPopulated reads cgroup.events: whether a live process is in the cgroup or below it.
func isPopulated(cg, dir string) (bool, error) {
	ev, err := readKV(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return false, fmt.Errorf("cgroup %s: read cgroup.events: %w", cg, err)
	}
	populated, ok := ev["populated"]
	if !ok {
		return false, fmt.Errorf("cgroup %s: cgroup.events has no populated line", cg)
	}
	return populated != 0, nil
}

// signalAll sends SIGKILL to each pid in dir's cgroup.procs and those of the cgroups below.
func signalAll(cg, dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		s, err := read(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return fmt.Errorf("cgroup %s: read cgroup.procs: %w", cg, err)
		}
		for _, f := range strings.Fields(s) {
			pid, err := strconv.Atoi(f)
			if err != nil || pid <= 0 {
				return fmt.Errorf("cgroup %s: bad pid %q in cgroup.procs", cg, f)
			}
			if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("cgroup %s: kill pid %d: %w", cg, pid, err)
			}
		}
		return nil
	})
}

// removeTree removes dir and any cgroups below it, deepest first, retrying briefly on EBUSY
// (the kernel may lag behind "populated 0" by a moment).
func removeTree(t tree, cg, dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cgroup %s: list: %w", cg, err)
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := removeTree(t, path.Join(cg, e.Name()), filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	for i := 0; ; i++ {
		err := t.rmdir(dir)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || i == 20 {
			return fmt.Errorf("cgroup %s: remove: %w", cg, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var seq atomic.Uint64

// leafName is vatrun-<pid>-<start>-<seq>: the owner's pid and its start time (clock ticks after
// boot, /proc/PID/stat field 22), so Open can tell a dead owner from a reused pid.
func leafName() (string, error) {
	start, err := startTime(os.Getpid())
	if err != nil {
		return "", fmt.Errorf("cgroup: read own start time: %w", err)
	}
	return fmt.Sprintf("vatrun-%d-%d-%d", os.Getpid(), start, seq.Add(1)), nil
}

// startTime is field 22 of /proc/PID/stat.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces and parentheses
	f := strings.Fields(s[i+1:])       // f[0] is field 3 (state)
	if i < 0 || len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}
