package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vatrun/vatrun/internal/workerfiles"
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

// rootMemo keys the minimal root's mounts in a worker's closure (workerfiles.Closure.Memo).
type rootMemo struct{}

type rootResult struct {
	mounts []Mount
	err    error
}

// WorkerRoot lists what the worker at path (absolute) needs to load, for the minimal root: its
// executable at the same path, a #! interpreter (and what that needs), the library directories
// (workerfiles.LibDirs) whole, /etc/ld.so.cache, the directories of its DT_RUNPATH / DT_RPATH, and
// any needed library found outside those. Nothing else of the host. It is derived from the
// worker's closure (workerfiles.Of, the same the worker digest hashes) once per version of its
// files in this process: a Go kernel's thousandth launch of xsnap does not parse its ELF headers
// again. Callers get their own copy.
func WorkerRoot(path string) ([]Mount, error) {
	c, err := workerfiles.Of(path)
	if err != nil {
		return nil, fmt.Errorf("minimal root: %w", err)
	}
	r := c.Memo(rootMemo{}, func(c *workerfiles.Closure) any {
		ms, err := workerRoot(c)
		return rootResult{ms, err}
	}).(rootResult)
	if r.err != nil {
		return nil, r.err
	}
	return append([]Mount(nil), r.mounts...), nil
}

// workerRoot derives the minimal root from the closure, in the order the separate walk had
// (before normalizeMounts): library directories, /etc/ld.so.cache, then for each file of the #!
// chain its path, its ELF interpreter and its run-path directories, then libraries found
// elsewhere.
func workerRoot(c *workerfiles.Closure) ([]Mount, error) {
	var out []Mount
	for _, d := range workerfiles.LibDirs {
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
	var runDirs []string
	seen := map[string]bool{}
	for _, l := range c.Chain {
		if seen[l.Path] || !l.Opened {
			break // a loop (execve fails with ELOOP) or a file execve cannot open
		}
		seen[l.Path] = true
		out = append(out, visibleAt(l.Path)...)
		if l.Interp != "" && filepath.IsAbs(l.Interp) && !workerfiles.UnderLibDir(l.Interp) {
			out = append(out, Mount{MountRO, l.Interp, l.Interp})
		}
		for _, dir := range append(append([]string(nil), l.RunPath...), l.RPath...) {
			if workerfiles.UnderLibDir(dir) {
				continue
			}
			if st, err := os.Stat(dir); err == nil && st.IsDir() {
				out = append(out, Mount{MountRO, dir, dir})
				runDirs = append(runDirs, dir)
			}
		}
	}
	// A library the loader finds outside the library and run-path directories (through a
	// library's own DT_RUNPATH, or a DT_NEEDED with a slash) is made visible by itself, so that
	// every file the worker digest hashes is one the worker can open.
	inRunDir := func(p string) bool {
		for _, d := range runDirs {
			if strings.HasPrefix(p, d+"/") {
				return true
			}
		}
		return false
	}
	for _, f := range c.Files {
		if !strings.HasPrefix(f.Role, "lib:") || !filepath.IsAbs(f.Path) || workerfiles.UnderLibDir(f.Path) || inRunDir(f.Path) || seen[f.Path] {
			continue
		}
		if _, err := os.Stat(f.Path); err != nil {
			continue // the loader will not find it either; the digest says "missing"
		}
		seen[f.Path] = true
		out = append(out, visibleAt(f.Path)...)
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
