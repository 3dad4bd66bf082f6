package launcher

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/vatrun/vatrun/cgroup"
	"github.com/vatrun/vatrun/launcher/plan"
	"github.com/vatrun/vatrun/report"
)

// CgroupOptions says where the worker's cgroup v2 leaf goes.
type CgroupOptions struct {
	// Parent is the cgroup (path inside the cgroup2 mount, e.g. /system.slice/kernel.service)
	// under which each worker gets its own leaf. "" means the cgroup this process runs in (what
	// systemd's Delegate=yes hands a service). No environment variable is read: the vatrun command
	// passes $VATRUN_CGROUP_PARENT here; a Go kernel that wants it reads it itself.
	Parent string
	// Root is the cgroup2 mountpoint; "" means /sys/fs/cgroup.
	Root string
	// Disable: never use cgroups. Consensus profiles refuse to run then.
	Disable bool
}

// parents caches the cgroup parents this process has opened (cgroup.Open: detection, then the
// stale leaves removed), keyed by Root NUL Parent as given, so a Go kernel launching many workers
// detects and cleans once per parent, not once per launch.
//
// An entry is dropped, so that the next launch opens the parent again, when cleaning its stale
// leaves failed (they are tried again then) and when making a leaf under it fails: a parent that
// was removed (its service stopped), recreated with another owner or emptied of controllers is
// then detected afresh, and the launch that failed reports why. A change that does not make a leaf
// fail (e.g. controllers delegated later) is not seen until then: a long-lived process that needs
// it restarts. A parent Open refuses is not cached: each launch detects again and says why.
var (
	parents sync.Map   // string → *cgroup.Parent
	openMu  sync.Mutex // one Open at a time: two first launches do not clean the same leaves at once
)

func parentKey(opts CgroupOptions) string { return opts.Root + "\x00" + opts.Parent }

// openParent returns the cached parent for opts, opening it at the first launch.
func openParent(opts CgroupOptions, log *slog.Logger) (*cgroup.Parent, error) {
	key := parentKey(opts)
	if p, ok := parents.Load(key); ok {
		return p.(*cgroup.Parent), nil
	}
	openMu.Lock()
	defer openMu.Unlock()
	if p, ok := parents.Load(key); ok { // opened while this launch waited
		return p.(*cgroup.Parent), nil
	}
	p, err := cgroup.Open(opts.Root, opts.Parent)
	if err != nil {
		return nil, err
	}
	if len(p.Removed) > 0 {
		log.Info("removed stale worker cgroups left by a vatrun that died", "removed", p.Removed)
	}
	if p.CleanErr != nil {
		log.Warn("cleaning stale worker cgroups", "parent", p.Path(), "err", p.CleanErr)
		return p, nil // not cached: the next launch tries again
	}
	parents.Store(key, p)
	return p, nil
}

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
		warnings, err := cgroupVerdict(p, opts, nil)
		return nil, warnings, err
	}
	refuse := func(err error) (*cgroupLeaf, []string, error) {
		var ue *cgroup.UnusableError
		if !errors.As(err, &ue) {
			return nil, nil, fmt.Errorf("%w: %w", ErrSetup, err)
		}
		warnings, err := cgroupVerdict(p, opts, &ue.Host)
		return nil, warnings, err
	}
	parent, err := openParent(opts, spec.Logger)
	if err != nil {
		return refuse(err)
	}
	leaf, err := parent.NewLeaf(p.Cgroup)
	if err != nil {
		parents.CompareAndDelete(parentKey(opts), parent) // open it afresh at the next launch
		return refuse(err)
	}
	return &cgroupLeaf{leaf: leaf}, nil, nil
}

// cgroupVerdict is the one decision on a worker without a leaf, shared by a launch and by
// Preflight (vatrun check): unusable is the cgroup's problem (nil when a leaf can be made, or when
// cgroups are disabled). A consensus profile refuses; an explicitly chosen parent that does not
// work is an error for every profile; otherwise the worker runs without a leaf and the report
// says why (the warnings).
func cgroupVerdict(p *plan.Plan, opts CgroupOptions, unusable *cgroup.Host) ([]string, error) {
	if opts.Disable {
		if p.Consensus {
			return nil, fmt.Errorf("%w: profile %q is a consensus profile: it needs a cgroup v2 leaf with identical limits on every validator; remove --no-cgroup", ErrConfig, p.Name)
		}
		return []string{"cgroup evidence unavailable: cgroups disabled (--no-cgroup)"}, nil
	}
	if unusable == nil || unusable.Problem == "" {
		return nil, nil
	}
	switch {
	case p.Consensus:
		return nil, fmt.Errorf("%w: %s\nfix: %s", ErrSetup, unusable.Problem, unusable.Fix)
	case opts.Parent != "":
		return nil, fmt.Errorf("%w: %s\nfix: %s; or, since profile %q is not a consensus profile, run it without cgroup limits: drop --cgroup-parent (and VATRUN_CGROUP_PARENT), or pass --no-cgroup", ErrSetup, unusable.Problem, unusable.Fix, p.Name)
	}
	return []string{"cgroup evidence unavailable: " + unusable.Problem}, nil
}
