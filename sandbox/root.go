package sandbox

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/internal/shebang"
)

// MountKind says what one entry of the minimal root's mount table is.
type MountKind byte

const (
	// MountRO binds Source read-only at Target (nosuid, nodev).
	MountRO MountKind = 'r'
	// MountRW binds Source read-write at Target (nosuid, nodev).
	MountRW MountKind = 'w'
	// MountSymlink makes Target a symlink to Source (as written).
	MountSymlink MountKind = 'l'
	// MountTmpfs mounts a private tmpfs at Target; Source is its size in bytes (decimal). Its
	// pages count against the worker's memory cgroup.
	MountTmpfs MountKind = 't'
)

// Mount is one entry of the minimal root's mount table: what the worker can see besides a
// private /dev and a fresh /proc. Paths are absolute.
type Mount struct {
	Kind   MountKind
	Source string
	Target string
}

// libDirs are where the ELF interpreter and shared libraries live on Linux distributions; each
// that exists on the host is made visible read-only (as the same symlink, where it is one).
var libDirs = []string{"/lib", "/lib32", "/lib64", "/libx32", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libx32"}

// rootKey is one version of a worker executable: the same path with the same inode, size and
// change times has the same ELF headers.
type rootKey struct {
	path             string
	dev, ino         uint64
	size             int64
	mtimeNs, ctimeNs int64
}

var rootCache sync.Map // rootKey → []Mount

// WorkerRoot lists what the worker at path (absolute) needs to load, for the minimal root: its
// executable at the same path, a #! interpreter (and what that needs), the library directories,
// /etc/ld.so.cache, and the directories of its DT_RUNPATH / DT_RPATH. Nothing else of the host.
// The list is computed once per version of the executable (path, inode, size, change times) in
// this process: a Go kernel's thousandth launch of xsnap does not parse its ELF headers again.
// Callers get their own copy.
func WorkerRoot(path string) ([]Mount, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return workerRoot(path) // its execve will say what is wrong
	}
	key := rootKey{path, st.Dev, st.Ino, st.Size, st.Mtim.Nano(), st.Ctim.Nano()}
	if v, ok := rootCache.Load(key); ok {
		return append([]Mount(nil), v.([]Mount)...), nil
	}
	ms, err := workerRoot(path)
	if err != nil {
		return nil, err
	}
	rootCache.Store(key, ms)
	return append([]Mount(nil), ms...), nil
}

func workerRoot(path string) ([]Mount, error) {
	var out []Mount
	for _, d := range libDirs {
		st, err := os.Lstat(d)
		switch {
		case err != nil:
			continue
		case st.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(d)
			if err != nil {
				return nil, fmt.Errorf("minimal root: %w", err)
			}
			out = append(out, Mount{MountSymlink, target, d})
		case st.IsDir():
			out = append(out, Mount{MountRO, d, d})
		}
	}
	if _, err := os.Stat("/etc/ld.so.cache"); err == nil {
		out = append(out, Mount{MountRO, "/etc/ld.so.cache", "/etc/ld.so.cache"})
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
			return nil // a missing or unreadable worker: its execve says so (ENOENT, EACCES)
		}
		out = append(out, visibleAt(p)...)
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
			return nil // not ELF: execve will say so
		}
		defer ef.Close()
		for _, prog := range ef.Progs {
			if prog.Type == elf.PT_INTERP {
				b := make([]byte, prog.Filesz)
				if _, err := prog.ReadAt(b, 0); err == nil {
					if interp := string(bytes.TrimRight(b, "\x00")); filepath.IsAbs(interp) && !underLibDir(interp) {
						out = append(out, Mount{MountRO, interp, interp})
					}
				}
			}
		}
		for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
			vals, _ := ef.DynString(tag)
			for _, v := range vals {
				for _, dir := range strings.Split(v, ":") {
					dir = strings.ReplaceAll(strings.ReplaceAll(dir, "${ORIGIN}", filepath.Dir(p)), "$ORIGIN", filepath.Dir(p))
					if filepath.IsAbs(dir) && !underLibDir(dir) {
						if st, err := os.Stat(dir); err == nil && st.IsDir() {
							out = append(out, Mount{MountRO, filepath.Clean(dir), filepath.Clean(dir)})
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

// visibleAt makes the file p visible at the same path: its directory's symlinked components are
// recreated as the same symlinks (/bin -> usr/bin on a merged-/usr host), and the file is bound
// at its resolved directory, so that execve(p) works inside the sandbox as it does outside.
func visibleAt(p string) []Mount {
	var out []Mount
	cur := "/"
	for _, c := range strings.Split(strings.Trim(filepath.Dir(p), "/"), "/") {
		if c == "" {
			continue
		}
		next := filepath.Join(cur, c)
		st, err := os.Lstat(next)
		if err == nil && st.Mode()&fs.ModeSymlink != 0 {
			if target, err := os.Readlink(next); err == nil {
				out = append(out, Mount{MountSymlink, target, next})
			}
			if resolved, err := filepath.EvalSymlinks(next); err == nil {
				next = resolved
			}
		}
		cur = next
	}
	return append(out, Mount{MountRO, p, filepath.Join(cur, filepath.Base(p))})
}

func underLibDir(p string) bool {
	for _, d := range libDirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// normalizeMounts orders the table so that a parent comes before what is inside it, drops
// entries a read-only bind already covers (the stage could not create their targets inside a
// read-only mount), and refuses relative or duplicate targets and targets the stage owns.
func normalizeMounts(ms []Mount) ([]Mount, error) {
	sorted := append([]Mount(nil), ms...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Target < sorted[j].Target })
	var out []Mount
	targets := map[string]Mount{}
	for _, m := range sorted {
		if !filepath.IsAbs(m.Target) || filepath.Clean(m.Target) != m.Target || m.Target == "/" {
			return nil, fmt.Errorf("minimal root: target %q must be a clean absolute path below /", m.Target)
		}
		if m.Kind != MountSymlink && m.Kind != MountTmpfs && !filepath.IsAbs(m.Source) {
			return nil, fmt.Errorf("minimal root: source %q of %s must be absolute", m.Source, m.Target)
		}
		for _, own := range []string{"/dev", "/proc", "/oldroot"} {
			if m.Target == own || strings.HasPrefix(m.Target, own+"/") {
				return nil, fmt.Errorf("minimal root: %s is the sandbox's own (private /dev, fresh /proc); choose another target", m.Target)
			}
		}
		if prev, ok := targets[m.Target]; ok {
			if prev == m {
				continue // the same entry twice
			}
			return nil, fmt.Errorf("minimal root: %s is given twice (%c %s and %c %s)", m.Target, prev.Kind, prev.Source, m.Kind, m.Source)
		}
		covered := false
		for _, o := range out {
			if o.Kind == MountRO && strings.HasPrefix(m.Target, o.Target+"/") {
				covered = m.Kind == MountRO
				if !covered {
					return nil, fmt.Errorf("minimal root: %s is inside the read-only %s", m.Target, o.Target)
				}
			}
		}
		if covered {
			continue
		}
		targets[m.Target] = m
		out = append(out, m)
	}
	return out, nil
}

// encodeMounts is the stage's mount table: kind, source, NUL, target, NUL, for each entry.
func encodeMounts(ms []Mount) ([]byte, error) {
	var b bytes.Buffer
	for _, m := range ms {
		if strings.ContainsRune(m.Source, 0) || strings.ContainsRune(m.Target, 0) {
			return nil, errors.New("minimal root: a path with a NUL byte")
		}
		if len(m.Source) > 4000 || len(m.Target) > 4000 {
			return nil, fmt.Errorf("minimal root: path too long: %.60s", m.Target)
		}
		b.WriteByte(byte(m.Kind))
		b.WriteString(m.Source)
		b.WriteByte(0)
		b.WriteString(m.Target)
		b.WriteByte(0)
	}
	return b.Bytes(), nil
}
