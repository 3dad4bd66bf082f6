package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadVMResults(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "results.log")
	os.WriteFile(good, []byte("=== RUN TestBenchSpawn\nE2E-BENCH plain fork/exec|8640290|17422340|200|WORKER\n"+
		"  E2E-BENCH Go API, cgroup leaf|46052260|81365510|200|launcher.Launch(xsnap): a|b\n--- PASS\n"), 0o644)
	r, err := readVMResults(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.rows) != 2 || r.rows[0].name != "plain fork/exec" || r.rows[0].median != 8640290*time.Nanosecond ||
		r.rows[1].p99 != 81365510*time.Nanosecond || r.rows[1].samples != 200 || r.rows[1].cmd != "launcher.Launch(xsnap): a|b" {
		t.Fatalf("rows %+v", r.rows)
	}
	if r.row("Go API, cgroup leaf") == nil || r.row("nope") != nil {
		t.Fatal("row lookup")
	}
	for name, text := range map[string]string{
		"empty":      "=== RUN x\n",
		"bad number": "E2E-BENCH a|x|1|2|c\n",
		"few fields": "E2E-BENCH a|1|2\n",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		os.WriteFile(p, []byte(text), 0o644)
		if _, err := readVMResults(p); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := readVMResults(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: no error")
	}
}
