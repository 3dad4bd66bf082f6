package seccompprofiles

import (
	"crypto/sha256"
	"reflect"
	"testing"
)

// TestGeneratedBuiltinsFresh: every built-in has a generated literal made from its current JSON
// (else a start would parse it again: run go generate ./seccompprofiles), and the literal is the
// parsed profile exactly, digest included.
func TestGeneratedBuiltinsFresh(t *testing.T) {
	for _, n := range BuiltinNames() {
		g, ok := generated[n]
		data, err := builtinFS.ReadFile("builtin/" + n + ".json")
		if err != nil {
			t.Fatal(err)
		}
		if !ok || g.sum != sha256.Sum256(data) {
			t.Errorf("%s: builtin_gen.go is stale or lacks it: run go generate ./seccompprofiles", n)
			continue
		}
		a, _ := Builtin(n)
		b, _ := BuiltinParsed(n)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: generated != parsed\n%+v\n%+v", n, a, b)
		}
		if a.Digest() != b.Digest() {
			t.Errorf("%s: digest %s, parsed %s", n, a.Digest(), b.Digest())
		}
	}
	// Two calls give two profiles: a caller may change its copy.
	a, _ := Builtin("xsnap")
	b, _ := Builtin("xsnap")
	a.Limits.Pids = 12345
	if b.Limits.Pids == 12345 {
		t.Error("Builtin returned a shared profile")
	}
}

// TestBuiltinDigestShortcut: an unmodified built-in gets its generated digest, which is the one
// its canonical form hashes to; any edit after Builtin returned it is noticed (the digest is
// computed again and differs).
func TestBuiltinDigestShortcut(t *testing.T) {
	for _, n := range BuiltinNames() {
		p, _ := Builtin(n)
		d, ok := builtinDigest(p)
		if !ok {
			t.Fatalf("%s: no generated digest used for the unmodified built-in", n)
		}
		if want := p.computeDigest(); d != want || p.Digest() != want {
			t.Fatalf("%s: generated digest %s, computed %s", n, d, want)
		}
		for name, edit := range map[string]func(*Profile){
			"memory":   func(p *Profile) { p.Limits.Memory++ },
			"syscall":  func(p *Profile) { p.Seccomp.Syscalls[0].Names = append(p.Seccomp.Syscalls[0].Names, "acct") },
			"fds":      func(p *Profile) { p.Fds = append(p.Fds, 9) },
			"exitcode": func(p *Profile) { p.ExitCodes["99"] = ExitCode{Meaning: "x"} },
		} {
			q, _ := Builtin(n)
			edit(q)
			if _, ok := builtinDigest(q); ok {
				t.Errorf("%s edited (%s): the generated digest was still used", n, name)
			}
			if q.Digest() == d {
				t.Errorf("%s edited (%s): same digest as the built-in", n, name)
			}
		}
	}
}

func BenchmarkBuiltinDigest(b *testing.B) {
	p, _ := Builtin("xsnap")
	for b.Loop() {
		p.Digest()
	}
}
