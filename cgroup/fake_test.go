package cgroup

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeKernel builds a fake cgroup2 tree in a temporary directory and plays the kernel for it
// (kernelSim): new directories get the control files a real cgroup gets, and writes to
// cgroup.subtree_control, cgroup.procs and cgroup.kill act as on a real cgroup2fs.
type fakeKernel struct {
	root     string
	noKill   bool              // no cgroup.kill (Linux < 5.14)
	noPeak   bool              // no memory.peak (Linux < 5.19)
	pidsPeak bool              // pids.peak present (recent kernels)
	clamp    map[string]string // file name → what it reads back whatever is written

	mu  sync.Mutex
	log []string // "relative/file=data" for every write the kernel saw
}

const (
	parentCG = "/system.slice/kernel.service"
	deadPid  = 4194305 // above the largest possible pid_max: never a process
)

// newFake makes a unified fake tree with the controllers enabled down to parentCG, vatrun (this
// test process) sitting in parentCG, and installs it as the package's kernel for the test.
func newFake(t *testing.T, opt func(*fakeKernel)) *fakeKernel {
	t.Helper()
	k := &fakeKernel{root: t.TempDir(), clamp: map[string]string{}}
	if opt != nil {
		opt(k)
	}
	sim = k
	oldSelf, oldAccess, oldTimeout := selfCgroupFile, accessW, KillTimeout
	t.Cleanup(func() { sim, selfCgroupFile, accessW, KillTimeout = nil, oldSelf, oldAccess, oldTimeout })
	accessW = func(string) error { return nil }
	k.put("cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc")
	k.put("cgroup.subtree_control", "cpu memory pids")
	k.put("cgroup.procs", "")
	k.put("cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0")
	k.mkdir(t, "/system.slice")
	k.put("system.slice/cgroup.subtree_control", "cpu memory pids")
	k.mkdir(t, parentCG)
	k.put(parentCG+"/cgroup.procs", strconv.Itoa(os.Getpid()))
	k.refresh()
	k.setSelf(t, parentCG)
	return k
}

// setSelf makes /proc/self/cgroup say vatrun runs in cg.
func (k *fakeKernel) setSelf(t *testing.T, cg string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "self-cgroup")
	if err := os.WriteFile(f, []byte("0::"+cg+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	selfCgroupFile = f
}

func (k *fakeKernel) path(rel string) string { return filepath.Join(k.root, rel) }

// put writes a file of the tree atomically (a concurrent reader never sees it half written).
func (k *fakeKernel) put(rel, data string) {
	p := k.path(rel)
	tmp := filepath.Join(filepath.Dir(p), ".tmp-"+filepath.Base(p))
	if err := os.WriteFile(tmp, []byte(data+"\n"), 0o644); err != nil {
		panic(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		panic(err)
	}
}

func (k *fakeKernel) get(t *testing.T, rel string) string {
	t.Helper()
	s, err := read(k.path(rel))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (k *fakeKernel) mkdir(t *testing.T, cg string) {
	t.Helper()
	if err := os.Mkdir(k.path(cg), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := k.Mkdir(k.path(cg)); err != nil {
		t.Fatal(err)
	}
}

func (k *fakeKernel) rel(p string) string {
	r, err := filepath.Rel(k.root, p)
	if err != nil || strings.HasPrefix(r, "..") {
		panic(fmt.Sprintf("fake kernel: %s is outside %s", p, k.root))
	}
	return r
}

// Mkdir fills a new cgroup directory the way the kernel does, with the files of the controllers
// its parent enables.
func (k *fakeKernel) Mkdir(dir string) error {
	rel := k.rel(dir)
	en := strings.Fields(k.read(filepath.Join(filepath.Dir(rel), "cgroup.subtree_control")))
	files := map[string]string{
		"cgroup.controllers":     strings.Join(en, " "),
		"cgroup.subtree_control": "",
		"cgroup.procs":           "",
		"cgroup.threads":         "",
		"cgroup.events":          "populated 0\nfrozen 0",
		"cgroup.type":            "domain",
		"cgroup.freeze":          "0",
		"cpu.stat":               "usage_usec 0\nuser_usec 0\nsystem_usec 0",
	}
	if !k.noKill {
		files["cgroup.kill"] = ""
	}
	if slices.Contains(en, "cpu") {
		files["cpu.stat"] += "\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0"
		files["cpu.max"] = "max 100000"
		files["cpu.weight"] = "100"
	}
	if slices.Contains(en, "memory") {
		files["memory.max"] = "max"
		files["memory.swap.max"] = "max"
		files["memory.oom.group"] = "0"
		files["memory.current"] = "0"
		files["memory.events"] = "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0"
		if !k.noPeak {
			files["memory.peak"] = "0"
		}
	}
	if slices.Contains(en, "pids") {
		files["pids.max"] = "max"
		files["pids.current"] = "0"
		files["pids.events"] = "max 0"
		if k.pidsPeak {
			files["pids.peak"] = "0"
		}
	}
	for f, v := range files {
		k.put(filepath.Join(rel, f), v)
	}
	return nil
}

func (k *fakeKernel) read(rel string) string {
	s, _ := read(k.path(rel))
	return s
}

func perr(op, file string, errno unix.Errno) error {
	return &fs.PathError{Op: op, Path: file, Err: errno}
}

// Write acts out a write to a control file.
func (k *fakeKernel) Write(file, data string) error {
	if _, err := os.Stat(file); err != nil {
		return err // control files are never created by writing
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	rel := k.rel(file)
	dir := filepath.Dir(rel)
	k.log = append(k.log, rel+"="+data)
	switch filepath.Base(rel) {
	case "cgroup.subtree_control":
		avail := strings.Fields(k.read(filepath.Join(dir, "cgroup.controllers")))
		cur := strings.Fields(k.read(rel))
		for _, tok := range strings.Fields(data) {
			c := tok[1:]
			if !slices.Contains(avail, c) || (tok[0] != '+' && tok[0] != '-') {
				return perr("write", file, unix.EINVAL)
			}
			if tok[0] == '+' && dir != "." && k.read(filepath.Join(dir, "cgroup.procs")) != "" {
				return perr("write", file, unix.EBUSY) // no internal processes
			}
			if tok[0] == '+' && !slices.Contains(cur, c) {
				cur = append(cur, c)
			}
			if tok[0] == '-' {
				cur = slices.DeleteFunc(cur, func(s string) bool { return s == c })
			}
		}
		var out []string
		for _, c := range avail { // the kernel lists them in its own order
			if slices.Contains(cur, c) {
				out = append(out, c)
			}
		}
		k.put(rel, strings.Join(out, " "))
	case "cgroup.procs":
		pid := strings.TrimSpace(data)
		if dir != "." && k.read(filepath.Join(dir, "cgroup.subtree_control")) != "" {
			return perr("write", file, unix.EBUSY)
		}
		k.removePid(pid)
		k.put(rel, strings.TrimSpace(k.read(rel)+"\n"+pid))
		k.refresh()
	case "cgroup.kill":
		if data != "1" {
			return perr("write", file, unix.EINVAL)
		}
		_ = filepath.WalkDir(k.path(dir), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				k.put(filepath.Join(k.rel(p), "cgroup.procs"), "")
			}
			return err
		})
		k.refresh()
	default:
		k.put(rel, data)
		return k.written(rel)
	}
	return nil
}

func (k *fakeKernel) written(rel string) error {
	name := filepath.Base(rel)
	if v, ok := k.clamp[name]; ok {
		k.put(rel, v)
		return nil
	}
	v := k.read(rel)
	bad := perr("write", k.path(rel), unix.EINVAL)
	switch name {
	case "memory.max", "memory.swap.max":
		if v == "max" {
			return nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return bad // e.g. "-1", which the kernel refuses
		}
		page := int64(os.Getpagesize())
		k.put(rel, strconv.FormatInt(n/page*page, 10))
	case "memory.oom.group":
		if v != "0" && v != "1" {
			return bad
		}
	case "pids.max":
		if n, err := strconv.Atoi(v); v != "max" && (err != nil || n < 0) {
			return bad
		}
	case "cpu.max":
		f := strings.Fields(v)
		if len(f) == 1 {
			k.put(rel, f[0]+" 100000")
		} else if len(f) != 2 {
			return bad
		}
	}
	return nil
}

// removePid takes pid out of every cgroup.procs of the tree.
func (k *fakeKernel) removePid(pid string) {
	_ = filepath.WalkDir(k.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return err
		}
		rel := k.rel(p)
		pids := slices.DeleteFunc(strings.Fields(k.read(rel)), func(s string) bool { return s == pid })
		k.put(rel, strings.Join(pids, "\n"))
		return nil
	})
}

// exited is what the kernel does when a process of the tree exits.
func (k *fakeKernel) exited(pid int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.removePid(strconv.Itoa(pid))
	k.refresh()
}

// refresh recomputes every cgroup.events "populated" (a process anywhere below counts).
func (k *fakeKernel) refresh() {
	_ = filepath.WalkDir(k.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || p == k.root {
			return err
		}
		populated := 0
		_ = filepath.WalkDir(p, func(q string, e fs.DirEntry, err error) error {
			if err == nil && e.Name() == "cgroup.procs" && k.read(k.rel(q)) != "" {
				populated = 1
			}
			return err
		})
		k.put(filepath.Join(k.rel(p), "cgroup.events"), fmt.Sprintf("populated %d\nfrozen 0", populated))
		return nil
	})
}

// writes returns the log of writes the kernel saw.
func (k *fakeKernel) writes() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.log)
}
