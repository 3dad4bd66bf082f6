package seccompprofiles

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
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

// Builtin returns a fresh copy of the built-in profile name, parsed and validated like a file.
func Builtin(name string) (*Profile, bool) {
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
	data, err := os.ReadFile(nameOrPath)
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
