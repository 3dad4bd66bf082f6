package hostfacts

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/vatrun/vatrun/internal/shebang"
)

// WorkerFile is one file the worker digest covers.
type WorkerFile struct {
	// Role names the file by what it is to the worker, not where it is installed, so two
	// validators with the same files at different paths get the same digest: "exe" (the worker
	// executable), "#!<interpreter as written>" (a script's interpreter, recursively),
	// "interp:<PT_INTERP>" (the ELF interpreter), "lib:<DT_NEEDED name>" (a shared library).
	Role string `json:"role"`
	// Path is where this host has it ("" when it could not be found: the worker will fail to
	// load it, and the digest says "missing").
	Path string `json:"path,omitempty"`
	// SHA256 is the hex digest of its contents, or "missing".
	SHA256 string `json:"sha256"`
}

// WorkerDigest is "sha256:" + the hex SHA-256 of the worker's files, one line per file sorted
// by role: "<role> <sha256>\n". It covers what the sandbox makes visible to the worker and the
// worker actually loads at start: the executable, a #! interpreter chain, the ELF interpreter,
// and every DT_NEEDED shared library, transitively, resolved as the dynamic loader would in the
// sandbox (DT_RUNPATH, else DT_RPATH, then the standard library directories; $ORIGIN expanded).
// It does not cover libraries loaded later with dlopen (NSS, iconv), the rest of the library
// directories, /etc/ld.so.cache, or the contents of the profile's mounts.
//
// Results are cached: a file's hash by (path, device, inode, size, mtime, ctime), in the process
// and on disk (CacheDirEnv; stored only for a file whose ctime is two seconds old, so a later
// change always misses); a worker's file list by its path, in the process, re-checked with one
// stat per file.
func WorkerDigest(path string) (string, []WorkerFile, error) {
	workerMu.Lock()
	c, ok := workerCache[path]
	workerMu.Unlock()
	if ok && c.fresh() {
		return c.digest, c.files, nil
	}
	files, keys, err := workerFiles(path)
	if err != nil {
		return "", nil, err
	}
	d := digestOf(files)
	workerMu.Lock()
	workerCache[path] = &workerEntry{digest: d, files: files, keys: keys}
	workerMu.Unlock()
	return d, files, nil
}

func digestOf(files []WorkerFile) string {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s %s\n", f.Role, f.SHA256)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

type statKey struct {
	path                 string
	dev, ino             uint64
	size                 int64
	mtime, ctime         int64
	mtimeNsec, ctimeNsec int64
}

func keyOf(path string) (statKey, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return statKey{}, false
	}
	return statKey{path, st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Ctim.Sec, st.Mtim.Nsec, st.Ctim.Nsec}, true
}

type workerEntry struct {
	digest string
	files  []WorkerFile
	keys   []statKey
}

func (e *workerEntry) fresh() bool {
	for _, k := range e.keys {
		if now, ok := keyOf(k.path); !ok || now != k {
			return false
		}
	}
	return true
}

var (
	workerMu    sync.Mutex
	workerCache = map[string]*workerEntry{}
	fileCache   = map[statKey]string{}
)

// hashFile returns the hex SHA-256 of path's contents and its stat key, cached by the key.
func hashFile(path string) (string, statKey, error) {
	k, ok := keyOf(path)
	if ok {
		workerMu.Lock()
		sum, hit := fileCache[k]
		workerMu.Unlock()
		if hit {
			return sum, k, nil
		}
		if sum, hit := diskGet(k); hit {
			workerMu.Lock()
			fileCache[k] = sum
			workerMu.Unlock()
			return sum, k, nil
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return "", k, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", k, err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if ok {
		workerMu.Lock()
		fileCache[k] = sum
		workerMu.Unlock()
		diskPut(k, sum)
	}
	return sum, k, nil
}

// libDirs are the standard directories the dynamic loader searches, for this architecture, in
// its order; the sandbox makes all of them visible (sandbox.WorkerRoot).
func libDirs() []string {
	triplet := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "riscv64": "riscv64-linux-gnu", "ppc64le": "powerpc64le-linux-gnu", "s390x": "s390x-linux-gnu"}[runtime.GOARCH]
	var out []string
	if triplet != "" {
		out = append(out, "/lib/"+triplet, "/usr/lib/"+triplet)
	}
	return append(out, "/lib64", "/usr/lib64", "/lib", "/usr/lib")
}

type walker struct {
	files []WorkerFile
	keys  []statKey
	seen  map[string]bool
	exe   *elf.File // the executable's class and machine: libraries must match
	exeRP []string  // the executable's DT_RPATH (searched for its dependencies without RUNPATH)
}

func (w *walker) add(role, path string) error {
	if w.seen[role] {
		return nil
	}
	w.seen[role] = true
	if path == "" {
		w.files = append(w.files, WorkerFile{Role: role, SHA256: "missing"})
		return nil
	}
	sum, k, err := hashFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			w.files = append(w.files, WorkerFile{Role: role, Path: path, SHA256: "missing"})
			return nil
		}
		return fmt.Errorf("worker digest: %w", err)
	}
	w.files = append(w.files, WorkerFile{Role: role, Path: path, SHA256: sum})
	w.keys = append(w.keys, k)
	return nil
}

func workerFiles(path string) ([]WorkerFile, []statKey, error) {
	w := &walker{seen: map[string]bool{}}
	if err := w.walk("exe", path, 0); err != nil {
		return nil, nil, err
	}
	sort.Slice(w.files, func(i, j int) bool { return w.files[i].Role < w.files[j].Role })
	return w.files, w.keys, nil
}

// walk hashes the file at path under role, then what it makes the kernel or the loader read.
func (w *walker) walk(role, path string, depth int) error {
	if depth > 4 || w.seen[role] {
		return nil
	}
	if err := w.add(role, path); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil // missing: recorded as such by add
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
		return nil // not ELF: execve refuses it, nothing more is loaded
	}
	defer ef.Close()
	if w.exe == nil {
		w.exe = ef
		w.exeRP = expand(dynStrings(ef, elf.DT_RPATH), path)
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

// needed resolves and hashes ef's DT_NEEDED libraries, and theirs.
func (w *walker) needed(ef *elf.File, path string, depth int) error {
	libs, _ := ef.ImportedLibraries()
	search := expand(dynStrings(ef, elf.DT_RUNPATH), path)
	if len(search) == 0 {
		search = append(expand(dynStrings(ef, elf.DT_RPATH), path), w.exeRP...)
	}
	search = append(search, libDirs()...)
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

// matches says whether p is an ELF object the executable can load (same class and machine), as
// the loader skips libraries of another architecture (/usr/lib vs /usr/lib64 on Fedora).
func (w *walker) matches(p string) bool {
	lf, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer lf.Close()
	return w.exe == nil || (lf.Class == w.exe.Class && lf.Machine == w.exe.Machine)
}

func dynStrings(ef *elf.File, tag elf.DynTag) []string {
	vals, _ := ef.DynString(tag)
	var out []string
	for _, v := range vals {
		out = append(out, strings.Split(v, ":")...)
	}
	return out
}

func expand(dirs []string, path string) []string {
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
