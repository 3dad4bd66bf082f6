package filter

import (
	"runtime"
	"slices"
	"sync"
)

//go:generate go run ./internal/genbpf

// precompiledProgram is a built-in profile's program as Compile gave it when builtin_bpf_gen.go
// was generated, on that architecture with that libseccomp.
type precompiledProgram struct {
	arch, libseccomp string
	prog             string
	warnings         []string
}

var libVersion = sync.OnceValue(LibseccompVersion)

// Precompiled returns the program Compile gives the profile with this digest, compiled ahead of
// time (the built-in profiles: `go generate ./seccompprofiles/filter`; TestPrecompiledFresh
// compiles them again and compares), so that `vatrun run` does not run libseccomp at every start
// (about 0.4 ms). ok is false for any other profile, or when this binary's architecture or
// libseccomp differ from the generator's: then Compile it.
func Precompiled(digest string) (prog []byte, warnings []string, ok bool) {
	g, ok := precompiled[digest]
	if !ok || g.arch != runtime.GOARCH || g.libseccomp != libVersion() {
		return nil, nil, false
	}
	return []byte(g.prog), slices.Clone(g.warnings), true
}
