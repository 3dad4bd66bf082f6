package learn

import (
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"

	"github.com/vatrun/vatrun/seccompprofiles"
)

func record(t *testing.T, u *Usage, names ...string) {
	t.Helper()
	for _, n := range names {
		nr, err := libseccomp.GetSyscallFromNameByArch(n, libseccomp.ArchAMD64)
		if err != nil {
			t.Fatal(err)
		}
		u.Record(libseccomp.ArchAMD64, nr)
		u.Record(libseccomp.ArchAMD64, nr)
	}
}

func TestLearn(t *testing.T) {
	xsnap, _ := seccompprofiles.Builtin("xsnap")
	u := &Usage{}
	record(t, u, "read", "write", "ioctl", "socket", "execve", "exit_group")
	if u.Len() != 6 {
		t.Fatalf("Len %d, want 6", u.Len())
	}
	for _, c := range u.Calls() {
		if c.Arch != "SCMP_ARCH_X86_64" || c.Count != 2 || c.Name == "" {
			t.Errorf("call %+v", c)
		}
	}
	p, data, notes, err := Learn(xsnap, u, LearnOptions{Name: "w", Description: "d"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := seccompprofiles.Parse(data, "again")
	if err != nil || again.Digest() != p.Digest() {
		t.Fatalf("the JSON does not parse back to the same profile: %v", err)
	}
	if p.Name != "w" || p.Limits != xsnap.Limits || p.Namespaces != xsnap.Namespaces || p.Consensus != xsnap.Consensus {
		t.Errorf("not based on xsnap: %+v", p)
	}
	s := p.Seccomp
	if s.DefaultAction != specs.ActErrno || *s.DefaultErrnoRet != 1 || !slices.Equal(s.Architectures, []specs.Arch{specs.ArchX86_64}) {
		t.Errorf("seccomp header %+v", s)
	}
	if got := s.Syscalls[0].Names; !slices.Equal(got, []string{"execve", "exit_group", "read", "socket", "write"}) || len(s.Syscalls[0].Args) != 0 {
		t.Errorf("unconditional rule %+v", s.Syscalls[0])
	}
	// ioctl keeps xsnap's two conditional rules (TCGETS, TIOCGWINSZ) instead of becoming unconditional.
	if len(s.Syscalls) != 3 || s.Syscalls[1].Names[0] != "ioctl" || len(s.Syscalls[1].Args) == 0 {
		t.Errorf("conditional rules %+v", s.Syscalls[1:])
	}
	joined := strings.Join(notes, "\n")
	if !strings.Contains(joined, "not allowed by xsnap (review them): socket") || !strings.Contains(joined, "conditions for: ioctl") {
		t.Errorf("notes %q", notes)
	}

	dev, _ := seccompprofiles.Builtin("dev")
	p, _, notes, err = Learn(dev, u, LearnOptions{Name: "w"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Seccomp.Syscalls) != 1 || len(p.Seccomp.Syscalls[0].Names) != 6 || len(notes) != 0 {
		t.Errorf("from dev: %+v, notes %q", p.Seccomp.Syscalls, notes)
	}

	if _, _, _, err := Learn(xsnap, &Usage{}, LearnOptions{Name: "w"}); err == nil {
		t.Error("nothing recorded: want an error")
	}
}
