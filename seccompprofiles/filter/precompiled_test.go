package filter

import (
	"bytes"
	"runtime"
	"slices"
	"testing"

	"github.com/vatrun/vatrun/seccompprofiles"
)

// TestPrecompiledFresh: every built-in's precompiled program is exactly what Compile gives it
// now (else run `go generate ./seccompprofiles/filter`), and a profile that is not a built-in, or
// a built-in edited after loading, has none.
func TestPrecompiledFresh(t *testing.T) {
	if g := precompiled; len(g) > 0 {
		for _, p := range g {
			if p.arch != runtime.GOARCH || p.libseccomp != LibseccompVersion() {
				t.Skipf("the programs were generated for %s with libseccomp %s; this is %s with %s", p.arch, p.libseccomp, runtime.GOARCH, LibseccompVersion())
			}
		}
	}
	for _, n := range seccompprofiles.BuiltinNames() {
		p, _ := seccompprofiles.Builtin(n)
		want, wantWarn, err := Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		got, gotWarn, ok := Precompiled(p.Digest())
		if !ok || !bytes.Equal(got, want) || !slices.Equal(gotWarn, wantWarn) {
			t.Fatalf("%s: the precompiled program is stale or missing (ok=%v, %d vs %d bytes): run go generate ./seccompprofiles/filter", n, ok, len(got), len(want))
		}
		got[0] ^= 0xff // a copy: the table itself is unchanged
		if again, _, _ := Precompiled(p.Digest()); !bytes.Equal(again, want) {
			t.Fatalf("%s: Precompiled returned the table's own bytes", n)
		}
		p.Limits.Memory++
		if _, _, ok := Precompiled(p.Digest()); ok {
			t.Fatalf("%s edited: a precompiled program was still offered", n)
		}
	}
}
