package launcher

import (
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/vatrun/vatrun/cgroup"
	"github.com/vatrun/vatrun/launcher/plan"
	"github.com/vatrun/vatrun/report"
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

// setupCgroup creates the worker's leaf. A consensus profile refuses to run without one; other
// profiles run without one when cgroup v2 is not usable here, and the report says the cgroup
// evidence is unavailable (and why) instead of guessing. An explicitly chosen parent that does not
// work is an error for every profile.
func setupCgroup(spec Spec, p *plan.Plan) (*cgroupLeaf, []string, error) {
	opts := spec.Cgroup
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
	leaf, err := host.NewLeaf(p.Cgroup)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	return &cgroupLeaf{leaf: leaf}, nil, nil
}
