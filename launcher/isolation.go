package launcher

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/hostfacts"
	"github.com/vatrun/vatrun/launcher/plan"
	"github.com/vatrun/vatrun/sandbox"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// refusalsFunc says what will refuse a sandbox with cfg here (refusals; probed).
type refusalsFunc func(cfg sandbox.Config) []hostfacts.Refusal

// probedRefusals is refusals on this host, probed once per process for each kind of sandbox (with
// or without a fresh /proc): a user namespace refused now is refused at the next launch too, and
// a probe costs a fork.
func probedRefusals(cfg sandbox.Config) []hostfacts.Refusal {
	key := cfg.Namespaces&unix.CLONE_NEWPID != 0 && cfg.MountNS()
	if v, ok := refusalCache.Load(key); ok {
		return v.([]hostfacts.Refusal)
	}
	r := refusals(hostfacts.Source{}.ReadWhere(nil), cfg, sandbox.ProbeUserNS)
	v, _ := refusalCache.LoadOrStore(key, r)
	return v.([]hostfacts.Refusal)
}

var refusalCache sync.Map // bool (fresh /proc) → []hostfacts.Refusal

// chooseIsolation is the one decision between the profile's namespaces and the no-namespace mode,
// shared by a launch and by Check: IsolationLandlock always takes the no-namespace mode;
// IsolationNamespacesOrLandlock takes it where the namespaces would be refused (refused); the
// default keeps the namespaces (a refusal then fails the launch, naming its cause).
func chooseIsolation(pl *plan.Plan, cfg sandbox.Config, path string, refused refusalsFunc) (sandbox.Config, error) {
	switch pl.Isolation {
	case seccompprofiles.IsolationLandlock:
		return pl.NoNamespaces(cfg, path, sandbox.LandlockABI())
	case seccompprofiles.IsolationNamespacesOrLandlock:
		if cfg.UserNS && len(refused(cfg)) > 0 {
			return pl.NoNamespaces(cfg, path, sandbox.LandlockABI())
		}
	}
	return cfg, nil
}

// isolationLayers names what confines a worker started with cfg, for its report.
func isolationLayers(cfg sandbox.Config) []string {
	var out []string
	if cfg.Namespaces != 0 || cfg.UserNS {
		ns := "namespaces: " + namespaceNames(cfg.Namespaces, cfg.UserNS)
		if cfg.MountNS() {
			ns += "; minimal root"
		}
		out = append(out, ns)
	}
	if abi := cfg.LandlockABI; abi > 0 {
		l := fmt.Sprintf("landlock ABI %d: filesystem read-only to the worker's own files", abi)
		if abi >= 4 {
			l += ", no TCP"
		}
		if abi >= 6 {
			l += ", signals and abstract unix sockets scoped to the worker"
		}
		out = append(out, l)
	}
	if len(cfg.BPF) > 0 {
		out = append(out, "seccomp filter")
	}
	if len(cfg.Rlimits) > 0 {
		out = append(out, "rlimits")
	}
	if cfg.DropCaps {
		out = append(out, "no capabilities")
	}
	return append(out, "no_new_privs", "new session", "parent-death signal")
}
