package filter

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/vatrun/vatrun/seccompprofiles"
)

func mustParse(t *testing.T, src string) *seccompprofiles.Profile {
	t.Helper()
	p, err := seccompprofiles.Parse([]byte(src), "test.json")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Parse no longer compiles; Compile reports what only libseccomp knows, as warnings.
func TestCompileWarnsUnknownSyscalls(t *testing.T) {
	p := mustParse(t, `{"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
		{"names": ["read", "no_such_syscall_xyz"], "action": "SCMP_ACT_ALLOW"}]}}`)
	prog, warnings, err := Compile(p)
	if err != nil || len(prog) == 0 {
		t.Fatalf("an unknown name must not stop compilation: %d bytes, %v", len(prog), err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], `seccomp.syscalls[0]: syscall "no_such_syscall_xyz" is unknown to libseccomp`) {
		t.Errorf("warnings = %q, want one about no_such_syscall_xyz", warnings)
	}
	for _, name := range seccompprofiles.BuiltinNames() {
		b, _ := seccompprofiles.Builtin(name)
		if _, w, err := Compile(b); err != nil || len(w) != 0 {
			t.Errorf("built-in %s: warnings %q, err %v; want none", name, w, err)
		}
	}
}

func TestCompileArchitectures(t *testing.T) {
	p := mustParse(t, `{"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
		"syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]}}`)
	prog, _, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(prog) == 0 {
		t.Fatal("empty program")
	}
}

// A profile Validate would refuse (here: changed in code after Parse) is an error naming the
// field, not a panic or a silently wrong program.
func TestCompileUnvalidated(t *testing.T) {
	p := mustParse(t, `{"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}}`)
	p.Seccomp.Syscalls[0].Action = "SCMP_ACT_NOTIFY"
	if _, _, err := Compile(p); err == nil || !strings.Contains(err.Error(), `seccomp.syscalls[0].action: unsupported action "SCMP_ACT_NOTIFY"`) {
		t.Errorf("err = %v", err)
	}
}

// Two spellings of one profile (same digest) compile to the same bytes.
func TestSameDigestSameProgram(t *testing.T) {
	a := mustParse(t, `{"seccomp": {"defaultAction": "SCMP_ACT_KILL", "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64"],
		"syscalls": [{"names": ["write", "read"], "action": "SCMP_ACT_ALLOW"},
		{"names": ["ioctl"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}]}]}}`)
	b := mustParse(t, `{"seccomp": {"syscalls": [
		{"names": ["ioctl"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]},
		{"action": "SCMP_ACT_ALLOW", "names": ["read", "write", "read"]}],
		"architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X86"], "defaultAction": "SCMP_ACT_KILL_THREAD"}}`)
	if a.Digest() != b.Digest() {
		t.Fatalf("test profiles differ: %s %s", a.Digest(), b.Digest())
	}
	pa, _, err := Compile(a)
	if err != nil {
		t.Fatal(err)
	}
	pb, _, _ := Compile(b)
	if !bytes.Equal(pa, pb) {
		t.Error("profiles with the same digest compiled to different programs")
	}
}

// Shuffling rules and names keeps the digest and, with the current libseccomp, the exact program.
func TestBuiltinOrderIndependence(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, name := range seccompprofiles.BuiltinNames() {
		p, _ := seccompprofiles.Builtin(name)
		want, _, err := Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			q, _ := seccompprofiles.Builtin(name)
			rs := q.Seccomp.Syscalls
			rng.Shuffle(len(rs), func(i, j int) { rs[i], rs[j] = rs[j], rs[i] })
			for _, r := range rs {
				rng.Shuffle(len(r.Names), func(i, j int) { r.Names[i], r.Names[j] = r.Names[j], r.Names[i] })
			}
			if q.Digest() != p.Digest() {
				t.Fatalf("%s: shuffled rules changed the digest", name)
			}
			got, _, err := Compile(q)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: shuffled rules compiled differently (err %v)", name, err)
			}
		}
	}
}
