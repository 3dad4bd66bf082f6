package launcher

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/cgroup"
	"github.com/vatrun/vatrun/report"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// CgroupOptions says where the worker's cgroup v2 leaf goes.
type CgroupOptions struct {
	// Parent is the cgroup (path inside the cgroup2 mount, e.g. /system.slice/kernel.service)
	// under which each worker gets its own leaf. "" means $VATRUN_CGROUP_PARENT, else the cgroup
	// vatrun runs in (what systemd's Delegate=yes hands a service).
	Parent string
	// Root is the cgroup2 mountpoint; "" means /sys/fs/cgroup.
	Root string
	// Disable: never use cgroups. Consensus profiles refuse to run then.
	Disable bool
}

// cleanedParents holds the parents (mountpoint NUL path) whose stale leaves this process has
// removed.
var cleanedParents sync.Map

type cgroupLeaf struct {
	leaf *cgroup.Leaf
}

func (c *cgroupLeaf) fd() int { return c.leaf.FD() }

func (c *cgroupLeaf) path() string {
	if c == nil {
		return ""
	}
	return c.leaf.Path()
}

func (c *cgroupLeaf) kill() error { return c.leaf.Kill() }

func (c *cgroupLeaf) evidence() (report.CgroupEvidence, []string, error) { return c.leaf.Evidence() }

// teardown kills whatever is left in the leaf and removes it, on every path.
func (c *cgroupLeaf) teardown(log *slog.Logger) {
	if err := c.leaf.Kill(); err != nil {
		log.Warn("cgroup kill", "cgroup", c.leaf.Path(), "err", err)
	}
	if err := c.leaf.Remove(); err != nil {
		log.Warn("cgroup remove", "cgroup", c.leaf.Path(), "err", err)
	}
}

func cgroupLimits(p *seccompprofiles.Profile) cgroup.Limits {
	return cgroup.Limits{
		MemoryMax: int64(p.Limits.Memory),
		SwapMax:   int64(p.Limits.Swap),
		CPUMax:    p.Limits.CPUMax,
		PidsMax:   p.Limits.Pids,
	}
}

// setupCgroup creates the worker's leaf. A consensus profile refuses to run without one; other
// profiles run without one when cgroup v2 is not usable here, and the report says the cgroup
// evidence is unavailable (and why) instead of guessing. An explicitly chosen parent that does not
// work is an error for every profile.
func setupCgroup(spec Spec) (*cgroupLeaf, []string, error) {
	opts := spec.Cgroup
	p := spec.Profile
	if opts.Disable {
		if p.Consensus {
			return nil, nil, fmt.Errorf("%w: profile %q is a consensus profile: it needs a cgroup v2 leaf with identical limits on every validator; remove --no-cgroup", ErrConfig, p.Name)
		}
		return nil, []string{"cgroup evidence unavailable: cgroups disabled (--no-cgroup)"}, nil
	}
	parent := opts.Parent
	if parent == "" {
		parent = os.Getenv("VATRUN_CGROUP_PARENT")
	}
	host := cgroup.Detect(opts.Root, parent)
	if host.Problem != "" {
		if p.Consensus || parent != "" {
			return nil, nil, fmt.Errorf("%w: %s\nfix: %s", ErrSetup, host.Problem, host.Fix)
		}
		return nil, []string{"cgroup evidence unavailable: " + host.Problem}, nil
	}
	// Leaves are left behind only by a process that died: clean them at this process's first
	// launch under the parent (every `vatrun run` is such a first launch; a Go kernel's own leaves
	// are removed as its workers die).
	key := host.Mountpoint + "\x00" + host.Parent
	if _, done := cleanedParents.LoadOrStore(key, true); !done {
		if removed, err := cgroup.CleanStale(opts.Root, host.Parent); err != nil {
			cleanedParents.Delete(key) // try again at the next launch
			spec.Logger.Warn("cleaning stale worker cgroups", "parent", host.Parent, "err", err)
		} else if len(removed) > 0 {
			spec.Logger.Info("removed stale worker cgroups left by a vatrun that died", "removed", removed)
		}
	}
	leaf, err := host.NewLeaf(cgroupLimits(p))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	return &cgroupLeaf{leaf: leaf}, nil, nil
}

// enforcement says what holds each of the profile's limits for one worker, and which rlimits
// stand in for a missing cgroup: RLIMIT_DATA for memory.max (the private writable mappings, which
// is stricter than resident memory: a worker that maps more than it touches fails sooner; not
// RLIMIT_AS, which would count xsnap's 1 GiB PROT_NONE heap reservation). The process-count limit
// holds without a cgroup only where the seccomp filter forbids process creation altogether
// (RLIMIT_NPROC counts a uid's processes across the whole host and does not bind root); cpu.max
// has no stand-in.
func enforcement(p *seccompprofiles.Profile, cgroup bool) (map[string]string, []seccompprofiles.Rlimit) {
	l := p.Limits
	m := map[string]string{}
	var extra []seccompprofiles.Rlimit
	switch {
	case l.Memory == seccompprofiles.Unlimited:
		m["memory"] = "none: the profile sets no memory limit"
	case cgroup:
		m["memory"] = "cgroup memory.max"
	default:
		m["memory"] = "RLIMIT_DATA (no cgroup: the private writable memory the worker maps, not what it touches)"
		extra = append(extra, seccompprofiles.Rlimit{Resource: unix.RLIMIT_DATA, Name: "RLIMIT_DATA", Cur: uint64(l.Memory), Max: uint64(l.Memory)})
	}
	switch {
	case !p.AllowsProcessCreation():
		m["pids"] = "seccomp: no process creation"
	case l.Pids <= 0:
		m["pids"] = "none: the profile sets no pids limit"
	case cgroup:
		m["pids"] = "cgroup pids.max"
	default:
		m["pids"] = "none: no cgroup, and the profile allows process creation"
	}
	switch {
	case strings.HasPrefix(l.CPUMax, "max"):
		m["cpuMax"] = "none: the profile sets no cpu.max quota"
	case cgroup:
		m["cpuMax"] = "cgroup cpu.max"
	default:
		m["cpuMax"] = "none: no cgroup"
	}
	if l.CPUSeconds > 0 {
		m["cpuSeconds"] = "RLIMIT_CPU"
	} else {
		m["cpuSeconds"] = "none: the profile sets no lifetime CPU limit"
	}
	return m, extra
}
