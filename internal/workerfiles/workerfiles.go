// Package workerfiles computes, once, the files a worker executable makes the kernel and the
// dynamic loader open to start it: its closure. The sandbox's minimal root (and, through it, the
// Landlock rules of the no-namespace mode) and the worker digest (hostfacts.WorkerDigest) are
// both derived from one Closure, so that they cannot drift apart.
//
// The closure of a resolved worker path is:
//   - the executable ("exe") and its #! interpreter chain ("#!<interpreter as written>"), up to
//     four levels as the kernel allows;
//   - for the ELF file that ends the chain: its ELF interpreter ("interp:<PT_INTERP>"), its
//     DT_RUNPATH and DT_RPATH directories ($ORIGIN expanded), and every DT_NEEDED shared library,
//     transitively ("lib:<DT_NEEDED name>"), resolved as the loader does in the sandbox:
//     DT_RUNPATH, else DT_RPATH (and the executable's DT_RPATH), then LoaderDirs, skipping
//     objects of another class or machine.
//
// What the two consumers take from it differs, on purpose:
//   - The worker digest hashes exactly the files of the closure (Files).
//   - The minimal root makes visible the chain files and the ELF interpreter at their paths, the
//     DT_RUNPATH/DT_RPATH directories, and /etc/ld.so.cache, but the library directories
//     (LibDirs) whole, not only the needed libraries in them: libraries loaded later with dlopen
//     (NSS, iconv/gconv, libgcc_s for unwinding) must load too, and binding one file per library
//     would cost a mount per library at every launch. So the worker can read more than is hashed:
//     the rest of LibDirs and /etc/ld.so.cache, which the digest does not cover. Every library the
//     digest hashes is readable by the worker: one found outside LibDirs and outside the bound
//     run-path directories is bound by itself (Outside).
//
// A Closure is cached per path in the process and re-validated with one stat per file it lists
// (path, device, inode, size, modification and change times): a kernel's thousandth launch of the
// same worker parses no ELF headers.
package workerfiles

import (
	"bytes"
	"debug/elf"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/internal/shebang"
)

// LibDirs are the directory trees where the ELF interpreter and shared libraries live on Linux
// distributions. The minimal root makes each that exists visible whole, read-only (as the same
// symlink, where it is one). Every LoaderDirs entry is inside one of them.
var LibDirs = []string{"/lib", "/lib32", "/lib64", "/libx32", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libx32"}

// LoaderDirs are the standard directories the dynamic loader searches, for this architecture, in
// its order (after DT_RUNPATH/DT_RPATH).
func LoaderDirs() []string {
	triplet := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "riscv64": "riscv64-linux-gnu", "ppc64le": "powerpc64le-linux-gnu", "s390x": "s390x-linux-gnu"}[runtime.GOARCH]
	var out []string
	if triplet != "" {
		out = append(out, "/lib/"+triplet, "/usr/lib/"+triplet)
	}
	return append(out, "/lib64", "/usr/lib64", "/lib", "/usr/lib")
}

// UnderLibDir says whether p is one of LibDirs or inside one.
func UnderLibDir(p string) bool {
	for _, d := range LibDirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// Link is one file execve runs through: the executable, then each #! interpreter.
type Link struct {
	Role string // "exe" or "#!<interpreter as written>"
	Path string
	// Opened says the file could be opened (else the worker's execve fails, and the digest
	// says "missing" or the hash fails).
	Opened bool
	// Interp is the ELF interpreter (PT_INTERP) as written, "" for none or a non-ELF file.
	Interp string
	// RunPath and RPath are the DT_RUNPATH and DT_RPATH entries, $ORIGIN expanded, absolute
	// ones only, cleaned, in order.
	RunPath, RPath []string
}

// File is one file of the closure, named by its role to the worker.
type File struct {
	Role string // "exe", "#!<interpreter>", "interp:<PT_INTERP>", "lib:<DT_NEEDED name>"
	Path string // "" when the loader would not find it
}

// Closure is what a worker executable opens to load.
type Closure struct {
	Chain []Link // the executable and its #! interpreters, in order
	Files []File // every file, in the order found (each role once)
	keys  []Key
	memo  sync.Map
}

// Memo returns what f derives from this closure (a consumer's view of it, e.g. the minimal
// root's mounts), computed once per closure under key: it is dropped with the closure when one of
// its files changes. f must not modify the closure.
func (c *Closure) Memo(key any, f func(*Closure) any) any {
	if v, ok := c.memo.Load(key); ok {
		return v
	}
	v, _ := c.memo.LoadOrStore(key, f(c))
	return v
}

// Key is one version of a file: the same path with the same inode, size and times has the
// same contents.
type Key struct {
	Path                 string
	Dev, Ino             uint64
	Size                 int64
	Mtime, Ctime         int64
	MtimeNsec, CtimeNsec int64
}

// KeyOf stats path; false when it cannot.
func KeyOf(path string) (Key, bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return Key{}, false
	}
	return Key{path, st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Ctim.Sec, st.Mtim.Nsec, st.Ctim.Nsec}, true
}

// Keys are the versions of the files the closure was computed from (each re-checked by one stat
// when the closure is reused): the executable first.
func (c *Closure) Keys() []Key { return append([]Key(nil), c.keys...) }

func (c *Closure) fresh() bool {
	for _, k := range c.keys {
		if now, ok := KeyOf(k.Path); !ok || now != k {
			return false
		}
	}
	return true
}

var cache sync.Map // path → *Closure

// Of returns the closure of the worker at path (absolute, resolved). It is computed once per
// version of its files in this process; callers must not modify it. An unreadable worker is
// not an error: its execve will say what is wrong, and its Link says Opened false.
func Of(path string) (*Closure, error) {
	if v, ok := cache.Load(path); ok && v.(*Closure).fresh() {
		return v.(*Closure), nil
	}
	c := compute(path)
	if len(c.keys) > 0 && c.keys[0].Path == path {
		cache.Store(path, c)
	}
	return c, nil
}

type walker struct {
	c     *Closure
	seen  map[string]bool
	exe   *elf.File // the first ELF: libraries must match its class and machine
	exeRP []string  // its DT_RPATH (searched for its dependencies without RUNPATH)
}

func compute(path string) *Closure {
	w := &walker{c: &Closure{}, seen: map[string]bool{}}
	w.chain("exe", path, 0)
	return w.c
}

func (w *walker) add(role, path string) {
	w.seen[role] = true
	w.c.Files = append(w.c.Files, File{Role: role, Path: path})
	if path == "" {
		return
	}
	if k, ok := KeyOf(path); ok {
		w.c.keys = append(w.c.keys, k)
	}
}

// chain records the file at path under role, then what it makes the kernel or the loader read.
func (w *walker) chain(role, path string, depth int) {
	if depth > 4 || w.seen[role] {
		return
	}
	w.add(role, path)
	w.c.Chain = append(w.c.Chain, Link{Role: role, Path: path})
	link := &w.c.Chain[len(w.c.Chain)-1]
	f, err := os.Open(path)
	if err != nil {
		return // missing or unreadable: its execve says so
	}
	defer f.Close()
	link.Opened = true
	head := make([]byte, 256)
	n, _ := f.Read(head)
	head = head[:n]
	if bytes.HasPrefix(head, []byte("#!")) {
		if interp := shebang.Interpreter(head); interp != "" {
			w.chain("#!"+interp, interp, depth+1)
		}
		return
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return // not ELF: execve refuses it, nothing more is loaded
	}
	defer ef.Close()
	link.RunPath = expand(dynStrings(ef, elf.DT_RUNPATH), path)
	link.RPath = expand(dynStrings(ef, elf.DT_RPATH), path)
	if w.exe == nil {
		w.exe = ef
		w.exeRP = link.RPath
	}
	for _, prog := range ef.Progs {
		if prog.Type == elf.PT_INTERP {
			b := make([]byte, prog.Filesz)
			if _, err := prog.ReadAt(b, 0); err == nil {
				link.Interp = string(bytes.TrimRight(b, "\x00"))
				if role := "interp:" + link.Interp; !w.seen[role] {
					w.add(role, link.Interp)
				}
			}
		}
	}
	w.needed(ef, path, depth)
}

// needed resolves ef's DT_NEEDED libraries, and theirs.
func (w *walker) needed(ef *elf.File, path string, depth int) {
	libs, _ := ef.ImportedLibraries()
	search := expand(dynStrings(ef, elf.DT_RUNPATH), path)
	if len(search) == 0 {
		search = append(expand(dynStrings(ef, elf.DT_RPATH), path), w.exeRP...)
	}
	search = append(search, LoaderDirs()...)
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
		w.add(role, found)
		if found == "" || depth > 16 {
			continue
		}
		lf, err := elf.Open(found)
		if err != nil {
			continue
		}
		w.needed(lf, found, depth+1)
		lf.Close()
	}
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
