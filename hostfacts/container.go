package hostfacts

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Container runtimes Where can name.
const (
	RuntimeNone       = ""           // not in a container, as far as can be told
	RuntimeDocker     = "docker"     // Docker or compose (/.dockerenv)
	RuntimePodman     = "podman"     // Podman (/run/.containerenv, container=podman)
	RuntimeKubernetes = "kubernetes" // a Kubernetes pod (KUBERNETES_SERVICE_HOST, kubepods cgroup)
	RuntimeOCI        = "oci"        // some other OCI runtime (container=oci, crun or runc run by hand)
	RuntimeLXC        = "lxc"
	RuntimeNspawn     = "systemd-nspawn"
	RuntimeUnknown    = "unknown" // a container, runtime not told
)

// Where is where vatrun runs: inside a container or not, and what the container took away that
// the sandbox needs (user namespaces, a fresh /proc, a writable cgroup). Everything is read from
// /proc and /sys under the Source's root and from the environment given; nothing is written.
type Where struct {
	// InContainer: some evidence says this is a container; Runtime names it when it can be told.
	InContainer bool     `json:"inContainer"`
	Runtime     string   `json:"runtime,omitempty"`
	Evidence    []string `json:"evidence,omitempty"`
	// Seccomp is /proc/self/status Seccomp (0 none, 1 strict, 2 filter; -1 unknown) and
	// SeccompFilters its Seccomp_filters: a filter vatrun inherited (from the container runtime or
	// systemd's SystemCallFilter=), since vatrun itself installs none before its workers start.
	Seccomp        int `json:"seccomp"`
	SeccompFilters int `json:"seccompFilters"`
	// CapEff and CapBnd are the effective and bounding capability sets (names, CAP_ prefix dropped).
	CapEff []string `json:"capEff"`
	CapBnd []string `json:"capBnd,omitempty"`
	// MaskedProc are /proc paths hidden by a mount over them (/dev/null or an empty tmpfs);
	// ReadOnlyProc are /proc paths remounted read-only. A masked /proc makes the kernel refuse a
	// fresh proc mount in a new user namespace (it would reveal what the mask hides).
	MaskedProc   []string `json:"maskedProc,omitempty"`
	ReadOnlyProc []string `json:"readOnlyProc,omitempty"`
	// InUserNS: vatrun already runs in a user namespace other than the host's (uid_map).
	InUserNS bool `json:"inUserNS"`
	// Cgroup is what the container shows of cgroup v2.
	Cgroup CgroupView `json:"cgroupView"`
	// The sysctls that refuse unprivileged user namespaces ("" when the file is absent).
	UnprivUsernsClone   string `json:"unprivilegedUsernsClone,omitempty"`
	MaxUserNamespaces   string `json:"maxUserNamespaces,omitempty"`
	AppArmorRestrictNS  string `json:"apparmorRestrictUnprivilegedUserns,omitempty"`
	AppArmorEnabled     bool   `json:"apparmorEnabled"`
	UserNamespacesBuilt bool   `json:"userNamespacesBuilt"` // /proc/self/ns/user exists
}

// CgroupView is the cgroup2 mount as the container shows it.
type CgroupView struct {
	Mounted bool `json:"mounted"` // a cgroup2 filesystem at /sys/fs/cgroup
	// PrivateNS: vatrun's cgroup reads "/" although the host root is not where it runs (a
	// private cgroup namespace: Docker's default on cgroup v2, Podman's, Kubernetes').
	PrivateNS bool   `json:"privateNS"`
	ReadOnly  bool   `json:"readOnly"` // mounted read-only (Docker and Kubernetes without privileges)
	Self      string `json:"self"`     // /proc/self/cgroup 0::
	// SubtreeControl is the controllers vatrun's own cgroup delegates to its children, and
	// SelfProcs how many processes sit in that cgroup: a non-root cgroup with processes cannot
	// delegate (the no-internal-process rule), so a container's init must move into a child first.
	SubtreeControl []string `json:"subtreeControl,omitempty"`
	SelfProcs      int      `json:"selfProcs"`
}

// mountLine is one line of /proc/self/mountinfo.
type mountLine struct {
	root, point, opts, fstype, source string
}

func parseMountinfo(s string) []mountLine {
	var out []mountLine
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if len(f) < 6 || sep < 6 || sep+2 >= len(f) {
			continue
		}
		out = append(out, mountLine{root: unescapeMount(f[3]), point: unescapeMount(f[4]), opts: f[5], fstype: f[sep+1], source: f[sep+2]})
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func hasOpt(opts, o string) bool { return slices.Contains(strings.Split(opts, ","), o) }

// capNames lists the capabilities in order of their numbers (CAP_LAST_CAP 40).
var capNames = []string{"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"}

// CapNames turns a capability mask (as /proc/self/status prints it, hex) into names.
func CapNames(mask uint64) []string {
	var out []string
	for i, n := range capNames {
		if mask&(1<<uint(i)) != 0 {
			out = append(out, n)
		}
	}
	if mask>>uint(len(capNames)) != 0 {
		out = append(out, fmt.Sprintf("0x%x", mask>>uint(len(capNames))<<uint(len(capNames))))
	}
	return out
}

// HasCap says whether names holds the capability called name ("SYS_ADMIN").
func HasCap(names []string, name string) bool { return slices.Contains(names, name) }

// statusField returns a field of /proc/self/status.
func statusField(status, name string) (string, bool) {
	for line := range strings.Lines(status) {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// ReadWhere reads where vatrun runs. getenv reads the environment (nil: none is read; only the
// vatrun command passes os.Getenv, for KUBERNETES_SERVICE_HOST).
func (s Source) ReadWhere(getenv func(string) string) Where {
	w := Where{Seccomp: -1}
	ev := func(runtime, why string) {
		w.InContainer = true
		w.Evidence = append(w.Evidence, why)
		if w.Runtime == RuntimeNone || w.Runtime == RuntimeUnknown || w.Runtime == RuntimeOCI && runtime != RuntimeUnknown {
			w.Runtime = runtime
		}
	}
	// Kubernetes first: its pods run under Docker-like runtimes, and the pod is what the
	// operator configures.
	if getenv != nil && getenv("KUBERNETES_SERVICE_HOST") != "" {
		ev(RuntimeKubernetes, "KUBERNETES_SERVICE_HOST is set")
	}
	if exists(s.path("/.dockerenv")) {
		ev(RuntimeDocker, "/.dockerenv exists")
	}
	if exists(s.path("/run/.containerenv")) {
		ev(RuntimePodman, "/run/.containerenv exists")
	}
	if env, err := s.readHead("/proc/1/environ", 64<<10); err == nil {
		for kv := range strings.SplitSeq(env, "\x00") {
			if v, ok := strings.CutPrefix(kv, "container="); ok && v != "" {
				rt := map[string]string{"podman": RuntimePodman, "docker": RuntimeDocker, "lxc": RuntimeLXC, "systemd-nspawn": RuntimeNspawn, "oci": RuntimeOCI}[v]
				if rt == "" {
					rt = RuntimeUnknown
				}
				ev(rt, "pid 1 has container="+v)
			}
		}
	}
	selfCg, _ := s.read("/proc/self/cgroup")
	for line := range strings.Lines(selfCg) {
		switch l := strings.TrimSpace(line); {
		case strings.Contains(l, "kubepods"):
			ev(RuntimeKubernetes, "cgroup "+l)
		case strings.Contains(l, "/docker/") || strings.Contains(l, "docker-"):
			ev(RuntimeDocker, "cgroup "+l)
		case strings.Contains(l, "libpod"):
			ev(RuntimePodman, "cgroup "+l)
		}
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			w.Cgroup.Self = p
		}
	}
	mi, _ := s.readHead("/proc/self/mountinfo", 1<<20)
	mounts := parseMountinfo(mi)
	for _, m := range mounts {
		if m.point == "/" && m.fstype == "overlay" {
			ev(RuntimeUnknown, "the root is an overlay filesystem")
		}
	}
	if w.InContainer && w.Runtime == RuntimeNone {
		w.Runtime = RuntimeUnknown
	}

	status, _ := s.read("/proc/self/status")
	if status == "" {
		status, _ = s.readHead("/proc/self/status", 8<<10)
	}
	if v, ok := statusField(status, "Seccomp"); ok {
		w.Seccomp, _ = strconv.Atoi(v)
	}
	if v, ok := statusField(status, "Seccomp_filters"); ok {
		w.SeccompFilters, _ = strconv.Atoi(v)
	}
	if v, ok := statusField(status, "CapEff"); ok {
		m, _ := strconv.ParseUint(v, 16, 64)
		w.CapEff = CapNames(m)
	}
	if v, ok := statusField(status, "CapBnd"); ok {
		m, _ := strconv.ParseUint(v, 16, 64)
		w.CapBnd = CapNames(m)
	}

	for _, m := range mounts {
		if !strings.HasPrefix(m.point, "/proc/") || strings.HasPrefix(m.point, "/proc/sys/fs/binfmt_misc") {
			continue
		}
		switch {
		case m.fstype == "tmpfs" || m.root == "/null" || path.Base(m.root) == "null" && m.fstype != "proc":
			w.MaskedProc = append(w.MaskedProc, m.point)
		case hasOpt(m.opts, "ro"):
			w.ReadOnlyProc = append(w.ReadOnlyProc, m.point)
		}
	}

	if uidMap, err := s.read("/proc/self/uid_map"); err == nil {
		f := strings.Fields(uidMap)
		w.InUserNS = !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
	}
	w.UserNamespacesBuilt = exists(s.path("/proc/self/ns/user"))
	w.UnprivUsernsClone, _ = s.read("/proc/sys/kernel/unprivileged_userns_clone")
	w.MaxUserNamespaces, _ = s.read("/proc/sys/user/max_user_namespaces")
	w.AppArmorRestrictNS, _ = s.read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
	if en, err := s.read("/sys/module/apparmor/parameters/enabled"); err == nil {
		w.AppArmorEnabled = en == "Y"
	}

	for _, m := range mounts {
		if m.point != "/sys/fs/cgroup" || m.fstype != "cgroup2" {
			continue
		}
		w.Cgroup.Mounted = true
		w.Cgroup.ReadOnly = hasOpt(m.opts, "ro")
		// In a private cgroup namespace, the mount's root and vatrun's own cgroup are both
		// relative to the namespace's root: "/" for a container's init that has not moved.
		// (A host's cgroup root never holds an ordinary process under systemd.)
		w.Cgroup.PrivateNS = w.InContainer && m.root == "/" && (w.Cgroup.Self == "/" || !strings.Contains(selfCg, "0::/system.slice") && !strings.Contains(selfCg, "0::/user.slice") && !strings.Contains(selfCg, "kubepods") && !strings.Contains(selfCg, "docker"))
	}
	if w.Cgroup.Mounted && w.Cgroup.Self != "" {
		dir := path.Join("/sys/fs/cgroup", w.Cgroup.Self)
		if sc, err := s.read(path.Join(dir, "cgroup.subtree_control")); err == nil {
			w.Cgroup.SubtreeControl = strings.Fields(sc)
		}
		if procs, err := s.readHead(path.Join(dir, "cgroup.procs"), 64<<10); err == nil {
			w.Cgroup.SelfProcs = len(strings.Fields(procs))
		}
	}
	return w
}
