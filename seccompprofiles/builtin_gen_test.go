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
