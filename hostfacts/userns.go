package hostfacts

import (
	"fmt"
	"syscall"
)

// Causes of a refused user namespace (Refusal.Cause) and of a refused fresh /proc.
const (
	CauseNone          = ""
	CauseSeccomp       = "seccomp-filter"            // the container's (or a service's) seccomp filter refuses clone(CLONE_NEWUSER)
	CauseSysctlClone   = "sysctl-unprivileged-clone" // kernel.unprivileged_userns_clone = 0 (Debian, older Ubuntu)
	CauseSysctlMax     = "sysctl-max-user-namespaces"
	CauseAppArmor      = "apparmor-restrict" // kernel.apparmor_restrict_unprivileged_userns = 1 (Ubuntu 23.10+)
	CauseNestingDepth  = "userns-nesting"    // EUSERS: 32 nested user namespaces
	CauseNoUserNS      = "kernel-no-userns"  // kernel built without CONFIG_USER_NS
	CauseMaskedProc    = "masked-proc"       // the kernel refuses a fresh /proc: the container masks /proc paths
	CauseUnknownRefuse = "unknown"
)

// Fix is how one runtime lifts a refusal.
type Fix struct {
	Runtime string `json:"runtime"` // "docker", "compose", "podman", "kubernetes", "host"
	How     string `json:"how"`
}

// Refusal is why the sandbox cannot have what it needs here, and how to fix it.
type Refusal struct {
	Cause   string `json:"cause"`
	Problem string `json:"problem"`
	Fixes   []Fix  `json:"fixes,omitempty"`
}

// The recipe files, as the fixes name them (contrib/ in the source tree; docs/containers.md).
const (
	RecipeSeccomp = "contrib/docker-seccomp.json"
)

func seccompFixes() []Fix {
	return []Fix{
		{"docker", "docker run --security-opt seccomp=" + RecipeSeccomp + " … (Docker's default profile plus clone with namespace flags, clone3, mount, umount2, pivot_root, sethostname: docs/containers.md)"},
		{"compose", `security_opt: ["seccomp=../docker-seccomp.json"] (contrib/containers/compose.yaml)`},
		{"podman", "podman run --security-opt seccomp=" + RecipeSeccomp + " …"},
		{"kubernetes", "copy " + RecipeSeccomp + " to /var/lib/kubelet/seccomp/vatrun.json on each node; securityContext: {seccompProfile: {type: Localhost, localhostProfile: vatrun.json}} with hostUsers: false (contrib/containers/k8s-agd-vatrun.yaml)"},
	}
}

func maskedProcFixes() []Fix {
	return []Fix{
		{"docker", "docker run --security-opt systempaths=unconfined … (best with user-namespace remapping: dockerd --userns-remap)"},
		{"compose", `security_opt: ["systempaths=unconfined"]`},
		{"podman", "podman run --security-opt unmask=/proc/* … (rootless podman runs in a user namespace already)"},
		{"kubernetes", "securityContext: {procMount: Unmasked} (allowed only with hostUsers: false in the pod spec)"},
	}
}

// JudgeUserNS names the one cause of a refused clone(CLONE_NEWUSER) from the errno a child's
// clone got (0: it worked) and what Where read. A seccomp filter acts at the system call's entry,
// before any sysctl is consulted, so when vatrun inherited a filter and the clone got EPERM (or
// ENOSYS) while the sysctls allow it, the filter is the cause.
func JudgeUserNS(w Where, errno syscall.Errno) Refusal {
	privileged := HasCap(w.CapEff, "SYS_ADMIN") && !w.InUserNS
	filtered := w.Seccomp == 2
	host := func(how string) []Fix { return []Fix{{"host", how}} }
	switch {
	case errno == 0:
		return Refusal{}
	case errno == syscall.EINVAL && !w.UserNamespacesBuilt:
		return Refusal{CauseNoUserNS, "the kernel has no user namespaces (CONFIG_USER_NS off)", host("a kernel built with CONFIG_USER_NS=y, or run vatrun as root with CAP_SYS_ADMIN")}
	case errno == syscall.EUSERS:
		return Refusal{CauseNestingDepth, "clone(CLONE_NEWUSER): EUSERS: 32 user namespaces are nested already", host("run vatrun fewer user namespaces deep")}
	case errno == syscall.ENOSPC:
		if w.MaxUserNamespaces == "0" {
			return Refusal{CauseSysctlMax, "clone(CLONE_NEWUSER): ENOSPC: user.max_user_namespaces = 0", host("sysctl -w user.max_user_namespaces=15000 (on the host or node; persist in /etc/sysctl.d)")}
		}
		return Refusal{CauseSysctlMax, fmt.Sprintf("clone(CLONE_NEWUSER): ENOSPC: the user.max_user_namespaces limit (%s) is reached, here or in an enclosing namespace", orUnknown(w.MaxUserNamespaces)), host("raise user.max_user_namespaces on the host or node")}
	case (errno == syscall.EPERM || errno == syscall.ENOSYS || errno == syscall.EACCES) && filtered:
		p := fmt.Sprintf("clone(CLONE_NEWUSER): %s from the seccomp filter vatrun inherited (/proc/self/status: Seccomp 2, %d filter(s))", errnoName(errno), w.SeccompFilters)
		if w.Runtime != RuntimeNone {
			p = fmt.Sprintf("clone(CLONE_NEWUSER): %s from the %s container's seccomp filter (/proc/self/status: Seccomp 2, %d filter(s))", errnoName(errno), runtimeName(w.Runtime), w.SeccompFilters)
		}
		if w.UnprivUsernsClone == "0" && !privileged {
			p += "; kernel.unprivileged_userns_clone = 0 would refuse it next"
		} else {
			p += "; the sysctls allow it"
		}
		return Refusal{CauseSeccomp, p, seccompFixes()}
	case errno == syscall.EPERM && w.UnprivUsernsClone == "0" && !privileged:
		return Refusal{CauseSysctlClone, "clone(CLONE_NEWUSER): EPERM: kernel.unprivileged_userns_clone = 0 and vatrun lacks CAP_SYS_ADMIN", host("sysctl -w kernel.unprivileged_userns_clone=1 (on the host or node; persist in /etc/sysctl.d), or run vatrun as root")}
	}
	return Refusal{CauseUnknownRefuse, fmt.Sprintf("clone(CLONE_NEWUSER): %s, and neither a seccomp filter nor the sysctls explain it (a chroot, or a security module?)", errnoName(errno)), nil}
}

// JudgeAppArmor says whether AppArmor's restriction explains a sandbox that failed after the
// user namespace itself was created (the namespace then has no capabilities: mounts fail).
func JudgeAppArmor(w Where) (Refusal, bool) {
	if w.AppArmorRestrictNS != "1" || !w.AppArmorEnabled {
		return Refusal{}, false
	}
	return Refusal{CauseAppArmor, "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1): the namespace is created but has no capabilities, so the sandbox's mounts fail", []Fix{
		{"host", "an AppArmor profile for vatrun that allows userns (/etc/apparmor.d/vatrun: abi <abi/4.0>, profile vatrun /usr/local/bin/vatrun flags=(unconfined) { userns, }), or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"},
	}}, true
}

// JudgeProc says whether a masked /proc will make the kernel refuse the fresh /proc that a
// sandbox with its own pid and mount namespaces mounts from inside a new user namespace.
func JudgeProc(w Where, needsFreshProc, userNS bool) (Refusal, bool) {
	if !needsFreshProc || !userNS || len(w.MaskedProc) == 0 {
		return Refusal{}, false
	}
	return Refusal{CauseMaskedProc, fmt.Sprintf("the container masks %d /proc paths (%s, …): from a new user namespace the kernel refuses a fresh /proc that would reveal them (EPERM)", len(w.MaskedProc), w.MaskedProc[0]), maskedProcFixes()}, true
}

// FixFor returns the fixes for runtime (every runtime's when it is unknown or none applies).
func (r Refusal) FixFor(runtime string) []Fix {
	var out []Fix
	for _, f := range r.Fixes {
		if f.Runtime == runtime || f.Runtime == "host" || runtime == RuntimeDocker && f.Runtime == "compose" {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return r.Fixes
	}
	return out
}

func runtimeName(rt string) string {
	switch rt {
	case RuntimeDocker:
		return "Docker"
	case RuntimePodman:
		return "Podman"
	case RuntimeKubernetes:
		return "Kubernetes"
	case RuntimeOCI:
		return "OCI"
	case RuntimeUnknown:
		return "surrounding"
	}
	return rt
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.EPERM:
		return "EPERM"
	case syscall.ENOSYS:
		return "ENOSYS"
	case syscall.EACCES:
		return "EACCES"
	case syscall.EINVAL:
		return "EINVAL"
	case syscall.ENOSPC:
		return "ENOSPC"
	case syscall.EUSERS:
		return "EUSERS"
	}
	return fmt.Sprintf("errno %d (%v)", int(e), e)
}
