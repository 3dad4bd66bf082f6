package main

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/vatrun/vatrun/cgroup"
	"github.com/vatrun/vatrun/internal/testbin"
)

// jsonKeys are the JSON object keys of struct type t (json tag name, else the field name).
func jsonKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		keys = append(keys, name)
	}
	return keys
}

// docTable returns the rows (cells split on |) of the first table after heading in file.
func docTable(t *testing.T, file, heading string) [][]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testbin.RepoRoot(), file))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("%s: no %q heading", file, heading)
	}
	var rows [][]string
	for _, line := range strings.Split(rest, "\n") {
		if !strings.HasPrefix(line, "|") {
			if len(rows) > 0 {
				break
			}
			continue
		}
		rows = append(rows, strings.Split(strings.Trim(line, "|"), "|"))
	}
	if len(rows) < 3 {
		t.Fatalf("%s: no table under %q", file, heading)
	}
	return rows[2:]
}

var backticked = regexp.MustCompile("`([A-Za-z]+)`")

func codeNames(cell string) []string {
	var out []string
	for _, m := range backticked.FindAllStringSubmatch(cell, -1) {
		out = append(out, m[1])
	}
	return out
}

// docs/cli.md's `vatrun check --json` table names exactly the keys the command prints, and the
// keys of its cgroup and sandboxProbe objects (the message used to say "the cgroup.fix field":
// the key is Fix).
func TestCheckJSONKeysDocumented(t *testing.T) {
	rows := docTable(t, "docs/cli.md", "## `vatrun check --json`")
	var top []string
	nested := map[string][]string{}
	for _, r := range rows {
		names := codeNames(r[0])
		top = append(top, names...)
		if len(names) == 1 {
			nested[names[0]] = codeNames(r[1])
		}
	}
	if want := jsonKeys(reflect.TypeFor[checkResult]()); !sameSet(top, want) {
		t.Errorf("docs/cli.md check --json keys %v, the command's %v", top, want)
	}
	for key, typ := range map[string]reflect.Type{"cgroup": reflect.TypeFor[cgroup.Host](), "sandboxProbe": reflect.TypeFor[probeResult]()} {
		if want := jsonKeys(typ); !sameSet(nested[key], want) {
			t.Errorf("docs/cli.md %s keys %v, the command's %v", key, nested[key], want)
		}
	}
	// The problem line names a real key.
	if !slices.Contains(jsonKeys(reflect.TypeFor[cgroup.Host]()), "Fix") {
		t.Error("cgroup.Host has no Fix key, but check's problem line names cgroup.Fix")
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
