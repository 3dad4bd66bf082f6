package seccompprofiles

import (
	"crypto/sha256"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
)

//go:embed builtin/*.json
var builtinFS embed.FS

// BuiltinNames returns the names of the built-in profiles, sorted.
func BuiltinNames() []string {
	entries, err := builtinFS.ReadDir("builtin")
	if err != nil {
		panic(fmt.Sprintf("seccompprofiles: embedded builtin directory unreadable: %v", err))
	}
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

//go:generate go run -tags vatrun_gen ./internal/gen

// genBuiltin is a built-in profile as a Go literal (builtin_gen.go): make returns it when the
// embedded JSON's sha256 is sum, i.e. the literal was generated from these very bytes.
type genBuiltin struct {
	sum    [32]byte
	digest string // the profile's Digest, computed by the generator
	make   func() *Profile
}

// builtinDigest is the digest of an unmodified built-in profile without computing it: the
// generated one when p equals its generated literal field for field (a profile edited after Builtin
// returned it, or parsed from JSON that changed since generation, is not equal and gets its digest
// computed). Canonical JSON and sha256 cost a `vatrun run` about 0.4 ms at every start.
func builtinDigest(p *Profile) (string, bool) {
	name, ok := strings.CutPrefix(p.Source, "builtin:")
	if !ok {
		return "", false
	}
	g, ok := generated[name]
	if !ok || g.digest == "" {
		return "", false
	}
	fresh := g.make()
	fresh.Source = p.Source
	if !reflect.DeepEqual(p, fresh) {
		return "", false
	}
	return g.digest, true
}

// Builtin returns a fresh copy of the built-in profile name, parsed and validated like a file.
// It comes from its generated literal when that was made from the same JSON (no parsing at start).
func Builtin(name string) (*Profile, bool) {
	if g, ok := generated[name]; ok {
		data, err := builtinFS.ReadFile("builtin/" + name + ".json")
		if err == nil && sha256.Sum256(data) == g.sum {
			p := g.make()
			p.Source = "builtin:" + name
			return p, true
		}
	}
	return BuiltinParsed(name)
}

// BuiltinParsed is Builtin by parsing the embedded JSON (what the generator uses).
func BuiltinParsed(name string) (*Profile, bool) {
	if name == "" || strings.ContainsAny(name, "/.") {
		return nil, false
	}
	data, err := builtinFS.ReadFile("builtin/" + name + ".json")
	if err != nil {
		return nil, false
	}
	p, err := Parse(data, "builtin:"+name)
	if err != nil {
		// The tests parse every built-in; reaching this is a build from broken sources.
		panic(fmt.Sprintf("seccompprofiles: built-in profile %s is invalid: %v", name, err))
	}
	if p.Name == "" {
		p.Name = name
	}
	return p, true
}

// Load returns the built-in profile nameOrPath if there is one, else parses the file at that
// path. A profile file without a "name" field is named after the file (without ".json").
func Load(nameOrPath string) (*Profile, error) {
	if p, ok := Builtin(nameOrPath); ok {
		return p, nil
	}
	data, err := readProfileFile(nameOrPath)
	if err != nil {
		builtins := strings.Join(BuiltinNames(), ", ")
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("profile %q: no built-in profile has that name and no such file exists; built-in profiles: %s", nameOrPath, builtins)
		}
		return nil, fmt.Errorf("profile %q: not a built-in profile (built-ins: %s), and reading it as a file failed: %w", nameOrPath, builtins, err)
	}
	p, err := Parse(data, nameOrPath)
	if err != nil {
		return nil, err
	}
	if p.Name == "" {
		p.Name = strings.TrimSuffix(filepath.Base(nameOrPath), ".json")
	}
	return p, nil
}

// MaxProfileSize bounds a profile file (the largest built-in is ~6 KiB).
const MaxProfileSize = 1 << 20

// readProfileFile reads a profile file without ever blocking or growing without bound: it opens
// non-blocking (a FIFO with no writer does not hang), refuses anything but a regular file
// (/dev/zero, a FIFO, a directory), and refuses a file over MaxProfileSize.
func readProfileFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s): give a JSON file", path, st.Mode().Type())
	}
	if st.Size() > MaxProfileSize {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d a profile may have", path, st.Size(), MaxProfileSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxProfileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxProfileSize {
		return nil, fmt.Errorf("%s grew past %d bytes while being read", path, MaxProfileSize)
	}
	return data, nil
}
