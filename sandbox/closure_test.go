package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// A library found through another library's own DT_RUNPATH, outside the library directories and
// the executable's run path, is hashed by the worker digest; the minimal root must make it visible
// too, or the worker fails to load inside the sandbox (the separate walk before
// internal/workerfiles bound only the executable's run-path directories).
func TestWorkerRootLibraryOutsideRunPath(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("needs gcc")
	}
	dir := t.TempDir()
	d1, d2 := filepath.Join(dir, "one"), filepath.Join(dir, "two")
	os.Mkdir(d1, 0o755)
	os.Mkdir(d2, 0o755)
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cc := func(args ...string) {
		if out, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
			t.Skipf("gcc %v: %v\n%s", args, err, out)
		}
	}
	cc("-shared", "-fPIC", "-o", filepath.Join(d2, "libtwo.so"), write("two.c", "int two(void){return 7;}\n"))
	cc("-shared", "-fPIC", "-o", filepath.Join(d1, "libone.so"), write("one.c", "int two(void); int one(void){return two();}\n"),
		"-L"+d2, "-ltwo", "-Wl,--enable-new-dtags,-rpath,"+d2)
	exe := filepath.Join(dir, "worker")
	cc("-o", exe, write("main.c", "int one(void); int main(void){return one();}\n"), "-L"+d1, "-lone", "-Wl,--enable-new-dtags,-rpath,"+d1)
	if out, err := exec.Command(exe).CombinedOutput(); err == nil || err.(*exec.ExitError).ExitCode() != 7 {
		t.Skipf("the test program does not run on the host: %v %s", err, out)
	}

	ms, err := WorkerRoot(exe)
	if err != nil {
		t.Fatal(err)
	}
	two := filepath.Join(d2, "libtwo.so")
	found := false
	for _, m := range ms {
		found = found || (m.Kind == MountRO && m.Source == two)
	}
	if !found {
		t.Fatalf("the minimal root lacks %s, which the loader needs: %v", two, ms)
	}
	ll, _ := LandlockPathsFor(exe)
	found = false
	for _, p := range ll {
		found = found || p == two
	}
	if !found {
		t.Errorf("the Landlock paths lack %s: %v", two, ll)
	}

	spec := Spec{
		Config:   Config{Namespaces: allNS, UserNS: os.Geteuid() != 0, DropCaps: true, Hostname: "vat"},
		Path:     exe,
		CgroupFD: -1,
	}
	ex := wait(t, start(t, spec))
	if !ex.Status.Exited() || ex.Status.ExitStatus() != 7 {
		t.Fatalf("worker status %v, want exit 7 (127: the loader did not find libtwo.so in the minimal root)", ex.Status)
	}
}

// BenchmarkWorkerRootCached: a launch's cost of the minimal root once the worker's closure is
// known (one stat per file of the closure, then a copy of the memoized list).
func BenchmarkWorkerRootCached(b *testing.B) {
	if _, err := WorkerRoot("/bin/true"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		WorkerRoot("/bin/true")
	}
}
