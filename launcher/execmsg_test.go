package launcher

import (
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vatrun/vatrun/seccompprofiles"
)

func TestInterpreterOf(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "s")
	os.WriteFile(script, []byte("#!/opt/no/node --flag\nx\n"), 0o755)
	if what, interp := interpreterOf(script); what != "#! interpreter" || interp != "/opt/no/node" {
		t.Errorf("script: %q %q", what, interp)
	}
	if _, interp := interpreterOf("/bin/sh"); interp == "" {
		t.Skip("/bin/sh is not a dynamic ELF here")
	} else if _, err := os.Stat(interp); err != nil {
		t.Errorf("/bin/sh's ELF interpreter %q: %v", interp, err)
	}
}

func TestFilterAllowsExecve(t *testing.T) {
	rule := func(action string, names ...string) seccompprofiles.SeccompSyscall {
		return seccompprofiles.SeccompSyscall{Names: names, Action: specs.LinuxSeccompAction(action)}
	}
	for _, c := range []struct {
		name string
		s    seccompprofiles.Seccomp
		want bool
	}{
		{"allowlist without execve", seccompprofiles.Seccomp{DefaultAction: "SCMP_ACT_ERRNO", Syscalls: []seccompprofiles.SeccompSyscall{rule("SCMP_ACT_ALLOW", "read")}}, false},
		{"allowlist with execve", seccompprofiles.Seccomp{DefaultAction: "SCMP_ACT_ERRNO", Syscalls: []seccompprofiles.SeccompSyscall{rule("SCMP_ACT_ALLOW", "read", "execve")}}, true},
		{"denylist", seccompprofiles.Seccomp{DefaultAction: "SCMP_ACT_ALLOW", Syscalls: []seccompprofiles.SeccompSyscall{rule("SCMP_ACT_ERRNO", "ptrace")}}, true},
		{"denylist with execve", seccompprofiles.Seccomp{DefaultAction: "SCMP_ACT_ALLOW", Syscalls: []seccompprofiles.SeccompSyscall{rule("SCMP_ACT_ERRNO", "execve")}}, false},
	} {
		if got := filterAllowsExecve(&c.s); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	for _, n := range seccompprofiles.BuiltinNames() {
		p, _ := seccompprofiles.Builtin(n)
		if !filterAllowsExecve(p.Seccomp) {
			t.Errorf("built-in %s: execve not allowed?", n)
		}
	}
}
