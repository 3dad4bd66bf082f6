//go:build vatrun_gen

package seccompprofiles

// generated is empty while the generator itself runs (go generate, tag vatrun_gen): it parses
// the JSON, and builtin_gen.go, which it is about to rewrite, is left out of its build.
var generated = map[string]genBuiltin{}
