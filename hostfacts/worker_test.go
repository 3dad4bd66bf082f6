package hostfacts

import (
	"debug/elf"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func copyFile(t *testing.T, src, dst string, extra []byte) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, append(data, extra...), 0o755); err != nil {
		t.Fatal(err)
	}
}

func roles(files []WorkerFile) map[string]WorkerFile {
	m := map[string]WorkerFile{}
	for _, f := range files {
		m[f.Role] = f
	}
	return m
}

func TestWorkerDigestNamesRolesNotPaths(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "sub", "b")
	os.MkdirAll(filepath.Dir(b), 0o755)
	os.WriteFile(a, []byte("\x7fELF not really, just bytes"), 0o755)
	copyFile(t, a, b, nil)
	da, files, err := WorkerDigest(a)
	if err != nil {
		t.Fatal(err)
	}
	db, _, err := WorkerDigest(b)
	if err != nil {
		t.Fatal(err)
	}
	if da != db {
		t.Errorf("the same file at two paths: %s vs %s", da, db)
	}
	if len(files) != 1 || files[0].Role != "exe" || files[0].Path != a {
		t.Errorf("files %+v", files)
	}
	// A changed worker (same path) is a different worker, cache or not.
	time.Sleep(10 * time.Millisecond)
	os.WriteFile(a, []byte("\x7fELF not really, other bytes"), 0o755)
	if d, _, _ := WorkerDigest(a); d == da {
		t.Error("a changed worker kept its digest")
	}
}

func TestWorkerDigestScriptInterpreter(t *testing.T) {
	dir := t.TempDir()
	interp := filepath.Join(dir, "interp")
	os.WriteFile(interp, []byte("interpreter v1"), 0o755)
	script := filepath.Join(dir, "worker.sh")
	os.WriteFile(script, []byte("#!"+interp+" -x\necho hi\n"), 0o755)
	d1, files, err := WorkerDigest(script)
	if err != nil {
		t.Fatal(err)
	}
	r := roles(files)
	if r["exe"].Path != script || r["#!"+interp].Path != interp {
		t.Fatalf("files %+v", files)
	}
	time.Sleep(10 * time.Millisecond)
	os.WriteFile(interp, []byte("interpreter v2"), 0o755)
	if d2, _, _ := WorkerDigest(script); d2 == d1 {
		t.Error("a changed interpreter kept the script's digest")
	}
	missing := filepath.Join(dir, "missing.sh")
	os.WriteFile(missing, []byte("#!/nonexistent/interp\n"), 0o755)
	_, files, err = WorkerDigest(missing)
	if err != nil {
		t.Fatal(err)
	}
	if r := roles(files); r["#!/nonexistent/interp"].SHA256 != "missing" {
		t.Errorf("files %+v", files)
	}
}

// A dynamically linked host binary: the digest covers its ELF interpreter and its libraries.
func TestWorkerDigestDynamicELF(t *testing.T) {
	var bin string
	for _, p := range []string{"/bin/sh", "/bin/true", "/usr/bin/env"} {
		if f, err := elf.Open(p); err == nil {
			libs, _ := f.ImportedLibraries()
			f.Close()
			if len(libs) > 0 {
				bin = p
				break
			}
		}
	}
	if bin == "" {
		t.Skip("no dynamically linked /bin/sh, /bin/true or /usr/bin/env here")
	}
	_, files, err := WorkerDigest(bin)
	if err != nil {
		t.Fatal(err)
	}
	r := roles(files)
	var interp, libc bool
	for role, f := range r {
		if strings.HasPrefix(role, "interp:") && f.SHA256 != "missing" {
			interp = true
		}
		if strings.HasPrefix(role, "lib:libc.so") && f.SHA256 != "missing" {
			libc = true
		}
	}
	if !interp || !libc {
		t.Errorf("%s: want its ELF interpreter and libc among %+v", bin, files)
	}
	for _, f := range files {
		t.Logf("%-30s %s %s", f.Role, f.SHA256[:12], f.Path)
	}
}

func BenchmarkWorkerDigestCached(b *testing.B) {
	if _, _, err := WorkerDigest("/bin/sh"); err != nil {
		b.Skip(err)
	}
	for b.Loop() {
		WorkerDigest("/bin/sh")
	}
}

func BenchmarkWorkerDigestCold(b *testing.B) {
	for b.Loop() {
		workerMu.Lock()
		workerCache = map[string]*workerEntry{}
		fileCache = map[statKey]string{}
		workerMu.Unlock()
		if _, _, err := WorkerDigest("/bin/sh"); err != nil {
			b.Skip(err)
		}
	}
}

func BenchmarkGather(b *testing.B) {
	for b.Loop() {
		Gather(Source{})
	}
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vatrun-hostfacts-cache-")
	if err != nil {
		panic(err)
	}
	os.Setenv(CacheDirEnv, dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestDiskCache(t *testing.T) {
	old := settle
	settle = 0
	defer func() { settle = old }()
	p := filepath.Join(t.TempDir(), "w")
	os.WriteFile(p, []byte("version one"), 0o755)
	d1, _, err := WorkerDigest(p)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := keyOf(p)
	sum, ok := diskGet(k)
	if !ok {
		t.Fatalf("not stored in %s", cacheDir())
	}
	// Another process (an empty in-process cache) gets it from disk, and the same digest.
	workerMu.Lock()
	workerCache, fileCache = map[string]*workerEntry{}, map[statKey]string{}
	workerMu.Unlock()
	if d2, files, _ := WorkerDigest(p); d2 != d1 || files[0].SHA256 != sum {
		t.Errorf("from disk: %s vs %s", d2, d1)
	}
	// A change of the file (same size) misses: its ctime moved.
	time.Sleep(10 * time.Millisecond)
	os.WriteFile(p, []byte("version two"), 0o755)
	if d3, _, _ := WorkerDigest(p); d3 == d1 {
		t.Error("a changed file hit the cache")
	}
	// A recent file is not stored.
	settle = time.Hour
	q := filepath.Join(t.TempDir(), "fresh")
	os.WriteFile(q, []byte("fresh"), 0o755)
	WorkerDigest(q)
	if kq, _ := keyOf(q); func() bool { _, ok := diskGet(kq); return ok }() {
		t.Error("a file changed just now was stored")
	}
}
