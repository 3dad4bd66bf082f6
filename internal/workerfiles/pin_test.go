package workerfiles_test

// The minimal root (sandbox.WorkerRoot), its Landlock paths and the worker digest
// (hostfacts.WorkerDigest) were computed by two separate walks before package workerfiles. This
// test keeps a frozen copy of both old walks (legacyRoot, legacyDigest, from sandbox/root.go and
// hostfacts/worker.go at b37d8e9) and requires the derived values to be identical for the test
// worker, /bin/true, #! scripts and the real xsnap-worker (each where present).

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/vatrun/vatrun/hostfacts"
	"github.com/vatrun/vatrun/internal/shebang"
	"github.com/vatrun/vatrun/sandbox"
)

func TestMain(m *testing.M) {
	os.Setenv(hostfacts.CacheDirEnv, "off")
	os.Exit(m.Run())
}

const xsnapWorker = "/work/main/test/swingset/node_modules/@agoric/xsnap/xsnap-native/xsnap/build/bin/lin/release/xsnap-worker"

func pinnedWorkers(t *testing.T) []string {
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	chain := filepath.Join(dir, "chain")
	missing := filepath.Join(dir, "missing-interp")
	os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755)
	os.WriteFile(chain, []byte("#!"+script+"\n"), 0o755)
	os.WriteFile(missing, []byte("#!/nonexistent/interp -x\n"), 0o755)
	out := []string{script, chain, missing, filepath.Join(dir, "absent")}
	for _, p := range []string{os.Getenv("VATRUN_TESTWORKER"), "/bin/true", xsnapWorker, os.Getenv("VATRUN_XSNAP_WORKER"), "/usr/bin/python3", "/usr/bin/perl"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			t.Logf("%s: not here (%v), not compared", p, err)
			continue
		}
		out = append(out, p)
	}
	return out
}

func TestSameAsBeforeTheClosure(t *testing.T) {
	for _, p := range pinnedWorkers(t) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			wantRoot, err := legacyRoot(p)
			if err != nil {
				t.Fatal(err)
			}
			gotRoot, err := sandbox.WorkerRoot(p)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(gotRoot, wantRoot) {
				t.Errorf("minimal root of %s changed:\n got %v\nwant %v", p, gotRoot, wantRoot)
			}
			var wantLL []string
			for _, m := range wantRoot {
				if m.Kind == sandbox.MountRO {
					wantLL = append(wantLL, m.Source)
				}
			}
			if gotLL, _ := sandbox.LandlockPathsFor(p); !reflect.DeepEqual(gotLL, wantLL) {
				t.Errorf("Landlock paths of %s changed:\n got %v\nwant %v", p, gotLL, wantLL)
			}
			wantD, wantFiles, err := legacyDigest(p)
			if err != nil {
				t.Fatal(err)
			}
			gotD, gotFiles, err := hostfacts.WorkerDigest(p)
			if err != nil {
				t.Fatal(err)
			}
			if gotD != wantD || !reflect.DeepEqual(gotFiles, wantFiles) {
				t.Errorf("worker digest of %s changed:\n got %s %v\nwant %s %v", p, gotD, gotFiles, wantD, wantFiles)
			}
			t.Logf("%s: %d mounts, %s over %d files", p, len(gotRoot), gotD, len(gotFiles))
		})
	}
}

// ---- frozen copy of sandbox/root.go's walk at b37d8e9 (without its cache) ----

var legacyLibDirs = []string{"/lib", "/lib32", "/lib64", "/libx32", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libx32"}

func legacyRoot(path string) ([]sandbox.Mount, error) {
	var out []sandbox.Mount
	for _, d := range legacyLibDirs {
		st, err := os.Lstat(d)
		switch {
		case err != nil:
			continue
		case st.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(d)
			if err != nil {
				return nil, err
			}
			out = append(out, sandbox.Mount{Kind: sandbox.MountSymlink, Source: target, Target: d})
		case st.IsDir():
			out = append(out, sandbox.Mount{Kind: sandbox.MountRO, Source: d, Target: d})
		}
	}
	if _, err := os.Stat("/etc/ld.so.cache"); err == nil {
		out = append(out, sandbox.Mount{Kind: sandbox.MountRO, Source: "/etc/ld.so.cache", Target: "/etc/ld.so.cache"})
	}
	seen := map[string]bool{}
	var add func(p string, depth int) error
	add = func(p string, depth int) error {
		if seen[p] || depth > 4 {
			return nil
		}
		seen[p] = true
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		out = append(out, legacyVisibleAt(p)...)
		defer f.Close()
		head := make([]byte, 256)
		n, _ := f.Read(head)
		head = head[:n]
		if bytes.HasPrefix(head, []byte("#!")) {
			if interp := shebang.Interpreter(head); interp != "" {
				if _, err := os.Stat(interp); err == nil {
					return add(interp, depth+1)
				}
			}
			return nil
		}
		ef, err := elf.NewFile(f)
		if err != nil {
			return nil
		}
		defer ef.Close()
		for _, prog := range ef.Progs {
			if prog.Type == elf.PT_INTERP {
				b := make([]byte, prog.Filesz)
				if _, err := prog.ReadAt(b, 0); err == nil {
					if interp := string(bytes.TrimRight(b, "\x00")); filepath.IsAbs(interp) && !legacyUnderLibDir(interp) {
						out = append(out, sandbox.Mount{Kind: sandbox.MountRO, Source: interp, Target: interp})
					}
				}
			}
		}
		for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
			vals, _ := ef.DynString(tag)
			for _, v := range vals {
				for _, dir := range strings.Split(v, ":") {
					dir = strings.ReplaceAll(strings.ReplaceAll(dir, "${ORIGIN}", filepath.Dir(p)), "$ORIGIN", filepath.Dir(p))
					if filepath.IsAbs(dir) && !legacyUnderLibDir(dir) {
						if st, err := os.Stat(dir); err == nil && st.IsDir() {
							out = append(out, sandbox.Mount{Kind: sandbox.MountRO, Source: filepath.Clean(dir), Target: filepath.Clean(dir)})
						}
					}
				}
			}
		}
		return nil
	}
	if err := add(path, 0); err != nil {
		return nil, err
	}
	return out, nil
}

func legacyVisibleAt(p string) []sandbox.Mount {
	var out []sandbox.Mount
	cur := "/"
	for _, c := range strings.Split(strings.Trim(filepath.Dir(p), "/"), "/") {
		if c == "" {
			continue
		}
		next := filepath.Join(cur, c)
		st, err := os.Lstat(next)
		if err == nil && st.Mode()&fs.ModeSymlink != 0 {
			if target, err := os.Readlink(next); err == nil {
				out = append(out, sandbox.Mount{Kind: sandbox.MountSymlink, Source: target, Target: next})
			}
			if resolved, err := filepath.EvalSymlinks(next); err == nil {
				next = resolved
			}
		}
		cur = next
	}
	return append(out, sandbox.Mount{Kind: sandbox.MountRO, Source: p, Target: filepath.Join(cur, filepath.Base(p))})
}

func legacyUnderLibDir(p string) bool {
	for _, d := range legacyLibDirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// ---- frozen copy of hostfacts/worker.go's walk at b37d8e9 (hashing without caches) ----

func legacyDigest(path string) (string, []hostfacts.WorkerFile, error) {
	w := &legacyWalker{seen: map[string]bool{}}
	if err := w.walk("exe", path, 0); err != nil {
		return "", nil, err
	}
	sort.Slice(w.files, func(i, j int) bool { return w.files[i].Role < w.files[j].Role })
	h := sha256.New()
	for _, f := range w.files {
		fmt.Fprintf(h, "%s %s\n", f.Role, f.SHA256)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), w.files, nil
}

func legacyLoaderDirs() []string {
	triplet := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "riscv64": "riscv64-linux-gnu", "ppc64le": "powerpc64le-linux-gnu", "s390x": "s390x-linux-gnu"}[runtime.GOARCH]
	var out []string
	if triplet != "" {
		out = append(out, "/lib/"+triplet, "/usr/lib/"+triplet)
	}
	return append(out, "/lib64", "/usr/lib64", "/lib", "/usr/lib")
}

type legacyWalker struct {
	files []hostfacts.WorkerFile
	seen  map[string]bool
	exe   *elf.File
	exeRP []string
}

func (w *legacyWalker) add(role, path string) error {
	if w.seen[role] {
		return nil
	}
	w.seen[role] = true
	if path == "" {
		w.files = append(w.files, hostfacts.WorkerFile{Role: role, SHA256: "missing"})
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			w.files = append(w.files, hostfacts.WorkerFile{Role: role, Path: path, SHA256: "missing"})
			return nil
		}
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	w.files = append(w.files, hostfacts.WorkerFile{Role: role, Path: path, SHA256: hex.EncodeToString(h.Sum(nil))})
	return nil
}

func (w *legacyWalker) walk(role, path string, depth int) error {
	if depth > 4 || w.seen[role] {
		return nil
	}
	if err := w.add(role, path); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	head := make([]byte, 256)
	n, _ := f.Read(head)
	head = head[:n]
	if bytes.HasPrefix(head, []byte("#!")) {
		if interp := shebang.Interpreter(head); interp != "" {
			return w.walk("#!"+interp, interp, depth+1)
		}
		return nil
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil
	}
	defer ef.Close()
	if w.exe == nil {
		w.exe = ef
		w.exeRP = legacyExpand(legacyDynStrings(ef, elf.DT_RPATH), path)
	}
	for _, prog := range ef.Progs {
		if prog.Type == elf.PT_INTERP {
			b := make([]byte, prog.Filesz)
			if _, err := prog.ReadAt(b, 0); err == nil {
				interp := string(bytes.TrimRight(b, "\x00"))
				if err := w.add("interp:"+interp, interp); err != nil {
					return err
				}
			}
		}
	}
	return w.needed(ef, path, depth)
}

func (w *legacyWalker) needed(ef *elf.File, path string, depth int) error {
	libs, _ := ef.ImportedLibraries()
	search := legacyExpand(legacyDynStrings(ef, elf.DT_RUNPATH), path)
	if len(search) == 0 {
		search = append(legacyExpand(legacyDynStrings(ef, elf.DT_RPATH), path), w.exeRP...)
	}
	search = append(search, legacyLoaderDirs()...)
	for _, lib := range libs {
		role := "lib:" + lib
		if w.seen[role] {
			continue
		}
		found := ""
		if strings.Contains(lib, "/") {
			found = lib
		} else {
			for _, d := range search {
				if p := filepath.Join(d, lib); w.matches(p) {
					found = p
					break
				}
			}
		}
		if err := w.add(role, found); err != nil {
			return err
		}
		if found == "" || depth > 16 {
			continue
		}
		lf, err := elf.Open(found)
		if err != nil {
			continue
		}
		err = w.needed(lf, found, depth+1)
		lf.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (w *legacyWalker) matches(p string) bool {
	lf, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer lf.Close()
	return w.exe == nil || (lf.Class == w.exe.Class && lf.Machine == w.exe.Machine)
}

func legacyDynStrings(ef *elf.File, tag elf.DynTag) []string {
	vals, _ := ef.DynString(tag)
	var out []string
	for _, v := range vals {
		out = append(out, strings.Split(v, ":")...)
	}
	return out
}

func legacyExpand(dirs []string, path string) []string {
	var out []string
	origin := filepath.Dir(path)
	for _, d := range dirs {
		d = strings.ReplaceAll(strings.ReplaceAll(d, "${ORIGIN}", origin), "$ORIGIN", origin)
		if filepath.IsAbs(d) {
			out = append(out, filepath.Clean(d))
		}
	}
	return out
}
