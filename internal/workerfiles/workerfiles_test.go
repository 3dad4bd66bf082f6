package workerfiles

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Every directory the loader searches by default is inside a directory the minimal root makes
// visible whole: a library the digest finds there, the worker can open.
func TestLoaderDirsInsideLibDirs(t *testing.T) {
	for _, d := range LoaderDirs() {
		if !UnderLibDir(d) {
			t.Errorf("loader directory %s is not inside LibDirs %v", d, LibDirs)
		}
	}
}

// The closure is cached per path and recomputed when any file it lists changes, not only the
// executable: here the #! interpreter is rewritten.
func TestClosureCachedUntilAFileChanges(t *testing.T) {
	dir := t.TempDir()
	interp := filepath.Join(dir, "interp")
	script := filepath.Join(dir, "script")
	os.WriteFile(interp, []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(script, []byte("#!"+interp+"\n"), 0o755)
	c1, _ := Of(script)
	if c2, _ := Of(script); c2 != c1 {
		t.Error("an unchanged worker's closure was computed again")
	}
	roles := func(c *Closure) []string {
		var out []string
		for _, f := range c.Files {
			out = append(out, f.Role)
		}
		return out
	}
	if r := roles(c1); len(r) < 3 || r[0] != "exe" || r[1] != "#!"+interp || r[2] != "#!/bin/sh" {
		t.Fatalf("roles %v, want exe, #!%s, #!/bin/sh, ...", r, interp)
	}
	time.Sleep(10 * time.Millisecond)
	os.WriteFile(interp, []byte("no interpreter any more\n"), 0o755)
	c3, _ := Of(script)
	if c3 == c1 {
		t.Fatal("the closure was not recomputed after its interpreter changed")
	}
	if r := roles(c3); len(r) != 2 {
		t.Errorf("roles after the change %v, want exe and #!%s only", r, interp)
	}
	// Memo values live with their closure.
	n := 0
	f := func(*Closure) any { n++; return n }
	first := c3.Memo("k", f)
	again := c3.Memo("k", f)
	other := c1.Memo("k", f)
	if first != 1 || again != 1 || other != 2 {
		t.Errorf("Memo gave %v, %v, %v; want 1, 1 (once per closure), 2 (another closure)", first, again, other)
	}
}
