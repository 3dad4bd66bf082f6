package hostfacts

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// cgroupFeature is one control file whose existence vatrun relies on, and the file that marks a
// cgroup where the file's controller is enabled (so its absence there means the kernel lacks it).
type cgroupFeature struct {
	fact, file, marker string
}

var cgroupFeatures = []cgroupFeature{
	{CgroupKill, "cgroup.kill", "cgroup.procs"},
	{CgroupMemoryPeak, "memory.peak", "memory.current"},
	{CgroupOOMGroup, "memory.oom.group", "memory.current"},
	{CgroupEventsLocal, "memory.events.local", "memory.current"},
	{CgroupPidsPeak, "pids.peak", "pids.current"},
	{CgroupSwapAccount, "memory.swap.max", "memory.current"},
}

// cgroupMount finds the cgroup v2 hierarchy: the mode (unified, hybrid, legacy, unavailable) and,
// when unified, its mountpoint. A real host is judged by statfs; a fake tree by its layout (a
// unified root has cgroup.controllers, a hybrid one unified/cgroup.controllers).
func (s Source) cgroupMount() (mode, mount string) {
	root := s.path("/sys/fs/cgroup")
	if s.real() {
		var st unix.Statfs_t
		if unix.Statfs(root, &st) != nil {
			return "unavailable", ""
		}
		if st.Type == unix.CGROUP2_SUPER_MAGIC {
			return "unified", root
		}
		var u unix.Statfs_t
		if unix.Statfs(filepath.Join(root, "unified"), &u) == nil && u.Type == unix.CGROUP2_SUPER_MAGIC {
			return "hybrid", ""
		}
		return "legacy", ""
	}
	switch {
	case exists(filepath.Join(root, "cgroup.controllers")):
		return "unified", root
	case exists(filepath.Join(root, "unified", "cgroup.controllers")):
		return "hybrid", ""
	case exists(root):
		return "legacy", ""
	}
	return "unavailable", ""
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// cgroupParent is the cgroup whose files are probed: the Source's, or this process's own (from
// /proc/self/cgroup). No environment variable is read.
func (s Source) cgroupParent() string {
	if s.CgroupParent != "" {
		return s.CgroupParent
	}
	x, err := s.read("/proc/self/cgroup")
	if err != nil {
		return "/"
	}
	for line := range strings.Lines(x) {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok && p != "" {
			return p
		}
	}
	return "/"
}

// cgroupFacts reads the cgroup facts. Feature files are looked for (existence only) in the first
// cgroup where their controller is enabled, among: the parent, its children, the root's
// children — the root cgroup itself has none of them.
func (s Source) cgroupFacts() map[string]string {
	out := map[string]string{}
	mode, mount := s.cgroupMount()
	out[CgroupMode] = mode
	if mode != "unified" {
		out[CgroupControllers] = "none"
		for _, f := range cgroupFeatures {
			out[f.fact] = "no: cgroup v2 is not unified (" + mode + ")"
		}
		return out
	}
	ctl, err := os.ReadFile(filepath.Join(mount, "cgroup.controllers"))
	if err != nil {
		out[CgroupControllers] = unknown(err)
	} else {
		var have []string
		for _, c := range strings.Fields(string(ctl)) {
			if c == "cpu" || c == "memory" || c == "pids" {
				have = append(have, c)
			}
		}
		slices.Sort(have)
		out[CgroupControllers] = strings.Join(have, " ")
		if len(have) == 0 {
			out[CgroupControllers] = "none"
		}
	}
	parent := filepath.Join(mount, filepath.Clean("/"+s.cgroupParent()))
	var cands []string
	if parent != mount {
		cands = append(cands, parent)
	}
	cands = append(cands, children(parent)...)
	if parent != mount {
		cands = append(cands, children(mount)...)
	}
	for _, f := range cgroupFeatures {
		out[f.fact] = "unknown: no cgroup below " + mount + " has " + f.marker
		for _, d := range cands {
			if exists(filepath.Join(d, f.marker)) {
				out[f.fact] = yesNo(exists(filepath.Join(d, f.file)))
				break
			}
		}
	}
	return out
}

// children lists the cgroups directly below dir, sorted, at most 64.
func children(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, filepath.Join(dir, e.Name()))
			if len(out) == 64 {
				break
			}
		}
	}
	return out
}
