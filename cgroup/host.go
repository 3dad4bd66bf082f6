package cgroup

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Mode strings reported in Host.Mode.
const (
	ModeUnified     = "unified"     // only cgroup v2, mounted at the root: usable
	ModeHybrid      = "hybrid"      // v1 controllers plus a controller-less cgroup2 at <root>/unified: not usable
	ModeLegacy      = "legacy"      // cgroup v1 only: not usable
	ModeUnavailable = "unavailable" // no cgroup filesystem at all
)

// SupervisorLeaf is the leaf, beside the workers' leaves, that vatrun moves its own cgroup's
// processes into before enabling controllers there (cgroup v2 lets a non-root cgroup either hold
// processes or delegate controllers to children, not both).
const SupervisorLeaf = "vatrun-supervisor"

// required lists every controller vatrun may need; memory is always used (evidence, oom.group).
var required = []string{"memory", "pids", "cpu"}

// ErrUnusable is wrapped by every refusal (an *UnusableError): cgroup v2 cannot be used here
// (see Host.Problem/Fix).
var ErrUnusable = errors.New("cgroup v2 unusable")

// Test hooks: where vatrun's own cgroup is read from, and the access(2) check.
var (
	selfCgroupFile = "/proc/self/cgroup"
	accessW        = func(p string) error { return unix.Faccessat(unix.AT_FDCWD, p, unix.W_OK, unix.AT_EACCESS) }
)

// Host is what Detect found. Every field is read, never written.
type Host struct {
	Mode        string   // ModeUnified, ModeHybrid, ModeLegacy or ModeUnavailable
	Mountpoint  string   // the cgroup2 mountpoint vatrun uses (only a unified one counts)
	Self        string   // vatrun's own cgroup, from /proc/self/cgroup "0::<path>"
	Parent      string   // the parent chosen for the workers' leaves (a cgroup path, "/a/b")
	Controllers []string // the parent's cgroup.controllers
	Writable    bool     // this user may create a child of Parent and move processes into it
	Problem     string   // why cgroup v2 cannot be used here; "" when it can
	Fix         string   // how to fix Problem
}

// Detect reports whether vatrun can create worker leaves under parent, reading only: Open's
// detection, without the cleaning, judged for every controller vatrun may need (memory, pids,
// cpu). root "" means /sys/fs/cgroup (a non-empty root is for tests: a directory laid out like a
// cgroup2 tree); parent "" means this process's own cgroup (its parent when the process already
// sits in <parent>/vatrun-supervisor). No environment variable is read.
func Detect(root, parent string) Host {
	return detect(newTree(root), parent, required)
}

func detect(t tree, parent string, need []string) Host {
	h := Host{Mountpoint: t.root, Mode: mode(t)}
	self, selfErr := selfCgroup()
	h.Self = self
	if h.Mode != ModeUnified {
		h.Problem, h.Fix = notUnified(t.root, h.Mode)
		return h
	}
	if parent == "" {
		if selfErr != nil {
			h.Problem = fmt.Sprintf("cannot tell which cgroup vatrun runs in to use it as the parent: %v", selfErr)
			h.Fix = "pass --cgroup-parent PATH (or set $VATRUN_CGROUP_PARENT for the vatrun command; " +
				"CgroupOptions.Parent in the Go API), a cgroup path inside " + t.root
			return h
		}
		parent = self
		if path.Base(parent) == SupervisorLeaf {
			parent = path.Dir(parent)
		}
	}
	h.Parent = parent
	if !path.IsAbs(parent) || path.Clean(parent) != parent {
		h.Problem = fmt.Sprintf("cgroup parent %q is not a clean absolute cgroup path", parent)
		h.Fix = "pass --cgroup-parent /system.slice/NAME.service (the form /proc/self/cgroup shows after 0::)"
		return h
	}
	dir := t.dir(parent)
	ctl, err := read(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		h.Problem = fmt.Sprintf("cgroup parent %s: cannot read %s: %v", parent, filepath.Join(dir, "cgroup.controllers"), err)
		h.Fix = "create the parent cgroup or pick an existing one; " + delegateFix()
		return h
	}
	h.Controllers = strings.Fields(ctl)
	why := unwritable(dir)
	h.Writable = why == ""
	missing := missingOf(h.Controllers, need)
	switch {
	case len(missing) > 0:
		h.Problem, h.Fix = lacksControllers(t, parent, ctl, missing)
	case !h.Writable:
		h.Problem = fmt.Sprintf("cgroup parent %s is not writable by uid %d: %s", parent, os.Geteuid(), why)
		h.Fix = delegateFix()
	default:
		h.Problem, h.Fix = internalProcs(t, parent, self, need)
	}
	return h
}

// missingOf lists the controllers of need that are not in have.
func missingOf(have, need []string) []string {
	var missing []string
	for _, c := range need {
		if !slices.Contains(have, c) {
			missing = append(missing, c)
		}
	}
	return missing
}

// lacksControllers is the refusal of a parent whose cgroup.controllers (ctl) lacks missing.
func lacksControllers(t tree, parent, ctl string, missing []string) (problem, fix string) {
	return fmt.Sprintf("cgroup parent %s lacks the %s controller(s): its cgroup.controllers lists %q",
			parent, strings.Join(missing, ", "), ctl),
		fmt.Sprintf("enable them for the parent: systemd's Delegate=yes does (or, as root, write "+
			"'+memory +pids +cpu' to %s); %s", filepath.Join(filepath.Dir(t.dir(parent)), "cgroup.subtree_control"), delegateFix())
}

// gone is the refusal of a parent that was opened but no longer exists.
func gone(parent, dir string) (problem, fix string) {
	return fmt.Sprintf("cgroup parent %s no longer exists (%s was removed after vatrun opened it, "+
			"e.g. its service was stopped or restarted)", parent, dir),
		"open the parent again (the launcher does at the next launch); if it keeps vanishing, " +
			"pass a --cgroup-parent that lives as long as the workers, such as the kernel service's own cgroup"
}

// mode tells how cgroups are mounted at t.root. For the real /sys/fs/cgroup (or any real cgroup2
// mount) it is hostMode, the host's answer; a fake tree is judged by its layout: a unified root
// has cgroup.controllers, a hybrid one has unified/cgroup.controllers.
func mode(t tree) string {
	if t.root == defaultRoot || t.real {
		// A real cgroup2 mount counts only when the host is unified: in hybrid mode the cgroup2
		// mount (/sys/fs/cgroup/unified) has no memory, cpu or pids controller to give.
		return hostMode()
	}
	if exists(filepath.Join(t.root, "cgroup.controllers")) {
		return ModeUnified
	}
	if exists(filepath.Join(t.root, "unified", "cgroup.controllers")) {
		return ModeHybrid
	}
	if exists(t.root) {
		return ModeLegacy
	}
	return ModeUnavailable
}

// hostMode reads the host's cgroup mode with statfs(2) alone: /sys/fs/cgroup is a cgroup2
// filesystem (unified); or it is something else (a tmpfs of v1 hierarchies) with a cgroup2
// filesystem at /sys/fs/cgroup/unified (hybrid) or without (legacy); or it cannot be looked at
// (unavailable).
func hostMode() string {
	var st unix.Statfs_t
	if err := unix.Statfs(defaultRoot, &st); err != nil {
		return ModeUnavailable
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return ModeUnified
	}
	if err := unix.Statfs(filepath.Join(defaultRoot, "unified"), &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return ModeHybrid
	}
	return ModeLegacy
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func notUnified(root, mode string) (problem, fix string) {
	unified := "boot the host with cgroup v2 only: add systemd.unified_cgroup_hierarchy=1 to the kernel " +
		"command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub and reboot); " +
		"systemd 247 and later default to it"
	switch mode {
	case ModeHybrid:
		return fmt.Sprintf("cgroups at %s are in hybrid mode: the memory, cpu and pids controllers are on "+
			"cgroup v1, and the cgroup2 mount at %s has none of them, so vatrun does not use it", root,
			filepath.Join(root, "unified")), unified
	case ModeLegacy:
		return fmt.Sprintf("cgroups at %s are cgroup v1 only (legacy mode); vatrun needs cgroup v2", root), unified
	}
	return fmt.Sprintf("no cgroup filesystem is mounted at %s", root),
		"mount cgroup v2 there (mount -t cgroup2 none " + root + "), as systemd does at boot; " + unified
}

// delegateFix is the standard advice: run vatrun in a systemd service with a delegated cgroup.
func delegateFix() string {
	name := "<user>"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return "run vatrun (or the kernel that starts it) as a systemd service that owns its cgroup:\n" +
		"[Service]\nDelegate=yes\nUser=" + name + "\n" +
		"then vatrun's default parent is the service's own cgroup; or pass --cgroup-parent " +
		"(or $VATRUN_CGROUP_PARENT) naming a cgroup whose directory, cgroup.procs and " +
		"cgroup.subtree_control this user owns"
}

// unwritable says why this user cannot create children of dir and move processes between them,
// or "" when it can: dir, its cgroup.procs and cgroup.subtree_control must be writable (access(2),
// as the kernel checks for a delegated subtree). Nothing is created.
func unwritable(dir string) string {
	var why []string
	for _, p := range []string{dir, filepath.Join(dir, "cgroup.procs"), filepath.Join(dir, "cgroup.subtree_control")} {
		if err := accessW(p); err != nil {
			owner := "?"
			var st syscall.Stat_t
			if syscall.Stat(p, &st) == nil {
				owner = fmt.Sprintf("uid %d, mode %#o", st.Uid, st.Mode&0o7777)
			}
			why = append(why, fmt.Sprintf("%s (%s): %v", p, owner, err))
		}
	}
	return strings.Join(why, "; ")
}

// internalProcs refuses a parent that holds processes other than vatrun's own cgroup-mates while
// controllers still have to be enabled there (cgroup v2's no-internal-process rule).
func internalProcs(t tree, parent, self string, need []string) (problem, fix string) {
	if parent == "/" && t.hostRoot() || parent != "/" && ours(parent, self) {
		return "", "" // the root is exempt; vatrun's own cgroup is emptied into vatrun-supervisor
	}
	dir := t.dir(parent)
	sub, _ := read(filepath.Join(dir, "cgroup.subtree_control"))
	if !missingAny(strings.Fields(sub), need) {
		return "", ""
	}
	procs, _ := read(filepath.Join(dir, "cgroup.procs"))
	if procs == "" {
		return "", ""
	}
	if parent == "/" {
		// A container's own cgroup, seen from its private cgroup namespace: prepareParent does not
		// move the container's processes (its init, the node) out of it.
		return fmt.Sprintf("cgroup parent / is the root of a cgroup namespace (a container's cgroup, not the host's root) "+
				"and holds processes (%s), so controllers cannot be enabled for children there (cgroup v2 allows "+
				"processes only in leaves)", strings.Join(strings.Fields(procs), " ")),
			"move the container's processes out of its cgroup root first: run the container with " +
				"contrib/containers/cgroup-nest.sh as its entrypoint, which does that and sets " +
				"VATRUN_CGROUP_PARENT=/vatrun (docs/containers.md, the cgroup v2 nesting recipe)"
	}
	return fmt.Sprintf("cgroup parent %s holds processes (%s) and is not vatrun's own cgroup, so controllers "+
			"cannot be enabled for children there (cgroup v2 allows processes only in leaves)", parent,
			strings.Join(strings.Fields(procs), " ")),
		"pass a --cgroup-parent that holds no processes, or leave it unset so vatrun uses its own delegated " +
			"cgroup (it moves that cgroup's processes into " + SupervisorLeaf + "); " + delegateFix()
}

func missingAny(have, need []string) bool {
	for _, c := range need {
		if !slices.Contains(have, c) {
			return true
		}
	}
	return false
}

// selfCgroup returns vatrun's cgroup v2 path from /proc/self/cgroup ("0::/path").
func selfCgroup() (string, error) {
	b, err := os.ReadFile(selfCgroupFile)
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(b)) {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s has no cgroup v2 line (0::/path)", selfCgroupFile)
}

// hostRoot says whether the tree's root is the host's root cgroup, which the no-internal-process
// rule exempts, rather than the root of a cgroup namespace (a container's own cgroup, which it
// does not): the kernel gives every cgroup but the host's root a cgroup.type file.
func (t tree) hostRoot() bool { return !exists(filepath.Join(t.root, "cgroup.type")) }

// ours says whether parent is vatrun's own (delegated) cgroup: vatrun runs in it or in its
// supervisor leaf, so every process in it belongs to the same service as vatrun.
func ours(parent, self string) bool {
	return self == parent || self == path.Join(parent, SupervisorLeaf)
}

// DetectFor is Detect judged for the controllers a leaf with lim needs: what Open and NewLeaf
// would refuse, read-only (vatrun check's preflight, which must agree with a launch).
func DetectFor(root, parent string, lim Limits) Host {
	return detect(newTree(root), parent, lim.controllers())
}
