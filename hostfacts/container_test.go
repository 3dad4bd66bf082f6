package hostfacts

import (
	"slices"
	"strings"
	"syscall"
	"testing"
)

// dockerDefault is what a process sees in a container that Docker (or crun given Docker's
// defaults) starts: /.dockerenv, moby's seccomp filter, Docker's 14 capabilities, masked and
// read-only /proc paths, a read-only cgroup2 in a private cgroup namespace.
func dockerDefault() map[string]string {
	return map[string]string{
		".dockerenv":        "",
		"proc/1/environ":    "PATH=/usr/bin\x00HOSTNAME=abc\x00",
		"proc/self/cgroup":  "0::/\n",
		"proc/self/uid_map": "         0          0 4294967295\n",
		"proc/self/ns/user": "",
		"proc/self/status":  "Name:\tvatrun\nUid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t2\nSeccomp_filters:\t1\n",
		"proc/self/mountinfo": `900 800 0:50 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
901 900 0:52 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
902 900 0:53 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
903 900 0:54 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
904 903 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate
910 901 0:52 /bus /proc/bus ro,nosuid,nodev,noexec,relatime - proc proc rw
911 901 0:52 /fs /proc/fs ro,nosuid,nodev,noexec,relatime - proc proc rw
912 901 0:52 /irq /proc/irq ro,nosuid,nodev,noexec,relatime - proc proc rw
913 901 0:52 /sys /proc/sys ro,nosuid,nodev,noexec,relatime - proc proc rw
914 901 0:52 /sysrq-trigger /proc/sysrq-trigger ro,nosuid,nodev,noexec,relatime - proc proc rw
915 901 0:57 / /proc/asound ro,relatime - tmpfs tmpfs ro
916 901 0:57 / /proc/acpi ro,relatime - tmpfs tmpfs ro
917 901 0:53 /null /proc/kcore rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
918 901 0:53 /null /proc/keys rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
919 901 0:53 /null /proc/timer_list rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
920 901 0:58 / /proc/scsi ro,relatime - tmpfs tmpfs ro
`,
		"sys/fs/cgroup/cgroup.subtree_control":      "",
		"sys/fs/cgroup/cgroup.procs":                "1\n7\n",
		"proc/sys/kernel/unprivileged_userns_clone": "1\n",
		"proc/sys/user/max_user_namespaces":         "63459\n",
	}
}

func TestReadWhereDockerDefault(t *testing.T) {
	w := Source{Root: fakeTree(t, dockerDefault())}.ReadWhere(nil)
	if !w.InContainer || w.Runtime != RuntimeDocker {
		t.Errorf("InContainer %v runtime %q, want a docker container (evidence %q)", w.InContainer, w.Runtime, w.Evidence)
	}
	if w.Seccomp != 2 || w.SeccompFilters != 1 {
		t.Errorf("seccomp %d filters %d, want 2 and 1", w.Seccomp, w.SeccompFilters)
	}
	if len(w.CapEff) != 14 || HasCap(w.CapEff, "SYS_ADMIN") || !HasCap(w.CapEff, "NET_BIND_SERVICE") {
		t.Errorf("CapEff %v, want Docker's 14 default capabilities without SYS_ADMIN", w.CapEff)
	}
	wantMasked := []string{"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/scsi"}
	if !slices.Equal(w.MaskedProc, wantMasked) {
		t.Errorf("MaskedProc %v, want %v", w.MaskedProc, wantMasked)
	}
	wantRO := []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
	if !slices.Equal(w.ReadOnlyProc, wantRO) {
		t.Errorf("ReadOnlyProc %v, want %v", w.ReadOnlyProc, wantRO)
	}
	if w.InUserNS {
		t.Error("InUserNS with an identity uid_map")
	}
	cg := w.Cgroup
	if !cg.Mounted || !cg.PrivateNS || !cg.ReadOnly || cg.Self != "/" || cg.SelfProcs != 2 || len(cg.SubtreeControl) != 0 {
		t.Errorf("cgroup view %+v, want a read-only private namespace at /, 2 processes, nothing delegated", cg)
	}
	if w.UnprivUsernsClone != "1" || w.MaxUserNamespaces != "63459" || w.AppArmorRestrictNS != "" {
		t.Errorf("sysctls %q %q %q", w.UnprivUsernsClone, w.MaxUserNamespaces, w.AppArmorRestrictNS)
	}
}

func TestReadWhereRuntimes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(map[string]string)
		env   map[string]string
		want  string
		inCtr bool
	}{
		{"podman containerenv", func(m map[string]string) { delete(m, ".dockerenv"); m["run/.containerenv"] = "engine=\"podman-4.3\"\n" }, nil, RuntimePodman, true},
		{"pid 1 container=podman", func(m map[string]string) { delete(m, ".dockerenv"); m["proc/1/environ"] = "container=podman\x00" }, nil, RuntimePodman, true},
		{"crun by hand: container=oci", func(m map[string]string) { delete(m, ".dockerenv"); m["proc/1/environ"] = "container=oci\x00" }, nil, RuntimeOCI, true},
		{"kubernetes env", func(m map[string]string) { delete(m, ".dockerenv") }, map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, RuntimeKubernetes, true},
		{"kubepods cgroup", func(m map[string]string) {
			delete(m, ".dockerenv")
			m["proc/self/cgroup"] = "0::/kubepods.slice/kubepods-burstable.slice/cri-containerd-1.scope\n"
		}, nil, RuntimeKubernetes, true},
		{"overlay root only", func(m map[string]string) { delete(m, ".dockerenv") }, nil, RuntimeUnknown, true},
		{"a host", func(m map[string]string) {
			delete(m, ".dockerenv")
			m["proc/self/mountinfo"] = "21 1 8:1 / / rw,relatime - ext4 /dev/vda1 rw\n"
			m["proc/self/cgroup"] = "0::/user.slice/user-1000.slice/session-1.scope\n"
		}, nil, RuntimeNone, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := dockerDefault()
			tc.edit(m)
			w := Source{Root: fakeTree(t, m)}.ReadWhere(func(k string) string { return tc.env[k] })
			if w.Runtime != tc.want || w.InContainer != tc.inCtr {
				t.Errorf("runtime %q in container %v, want %q %v (evidence %q)", w.Runtime, w.InContainer, tc.want, tc.inCtr, w.Evidence)
			}
		})
	}
}

func TestJudgeUserNS(t *testing.T) {
	base := func() Where { return Source{Root: fakeTree(t, dockerDefault())}.ReadWhere(nil) }
	for _, tc := range []struct {
		name  string
		edit  func(*Where)
		errno syscall.Errno
		cause string
		fix   string // a runtime whose fix must be given
	}{
		{"allowed", func(*Where) {}, 0, CauseNone, ""},
		{"docker's seccomp filter, sysctls allow", func(*Where) {}, syscall.EPERM, CauseSeccomp, "docker"},
		{"seccomp filter answering ENOSYS", func(*Where) {}, syscall.ENOSYS, CauseSeccomp, "docker"},
		{"Debian sysctl, no filter", func(w *Where) { w.Seccomp, w.UnprivUsernsClone = 0, "0" }, syscall.EPERM, CauseSysctlClone, "host"},
		{"max_user_namespaces 0", func(w *Where) { w.Seccomp, w.MaxUserNamespaces = 0, "0" }, syscall.ENOSPC, CauseSysctlMax, "host"},
		{"max_user_namespaces 0 under a filter: ENOSPC is the sysctl's", func(w *Where) { w.MaxUserNamespaces = "0" }, syscall.ENOSPC, CauseSysctlMax, "host"},
		{"nesting", func(*Where) {}, syscall.EUSERS, CauseNestingDepth, "host"},
		{"no CONFIG_USER_NS", func(w *Where) { w.Seccomp, w.UserNamespacesBuilt = 0, false }, syscall.EINVAL, CauseNoUserNS, "host"},
		{"EPERM, no filter, sysctls allow", func(w *Where) { w.Seccomp = 0 }, syscall.EPERM, CauseUnknownRefuse, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := base()
			tc.edit(&w)
			r := JudgeUserNS(w, tc.errno)
			if r.Cause != tc.cause {
				t.Fatalf("cause %q (%s), want %q", r.Cause, r.Problem, tc.cause)
			}
			if tc.fix != "" && !slices.ContainsFunc(r.FixFor(w.Runtime), func(f Fix) bool { return f.Runtime == tc.fix }) {
				t.Errorf("fixes for %s %v lack %s", w.Runtime, r.FixFor(w.Runtime), tc.fix)
			}
			if tc.cause == CauseSeccomp && (strings.Contains(r.Problem, "unprivileged_userns_clone = 0") || !strings.Contains(r.Problem, "Docker")) {
				t.Errorf("problem %q: want the Docker filter named and the sysctls cleared", r.Problem)
			}
		})
	}
}

func TestJudgeProc(t *testing.T) {
	w := Source{Root: fakeTree(t, dockerDefault())}.ReadWhere(nil)
	if r, ok := JudgeProc(w, true, true); !ok || r.Cause != CauseMaskedProc || len(r.FixFor(RuntimeKubernetes)) != 1 || !strings.Contains(r.FixFor(RuntimeKubernetes)[0].How, "procMount: Unmasked") {
		t.Errorf("masked /proc with a user namespace: %v %+v", ok, r)
	}
	if _, ok := JudgeProc(w, true, false); ok {
		t.Error("masked /proc refused without a user namespace (the initial user namespace may mount it)")
	}
	if _, ok := JudgeProc(w, false, true); ok {
		t.Error("masked /proc refused for a sandbox that mounts no /proc")
	}
	m := dockerDefault()
	m["proc/self/mountinfo"] = "901 900 0:52 / /proc rw - proc proc rw\n"
	if _, ok := JudgeProc(Source{Root: fakeTree(t, m)}.ReadWhere(nil), true, true); ok {
		t.Error("an unmasked /proc refused")
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/a\040b\134`); got != `/a b\` {
		t.Errorf("got %q", got)
	}
}
