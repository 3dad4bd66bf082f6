package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// defaultRoot is where a unified (cgroup v2 only) host mounts its single hierarchy.
const defaultRoot = "/sys/fs/cgroup"

// kernelSim plays the kernel for a fake cgroup tree (a plain directory, used by tests). A real
// cgroup2 filesystem fills a new directory with control files and turns writes into actions
// (moving a pid, enabling a controller, killing); a plain directory does neither, so a fake tree
// calls these instead. Production code never sets it: on a real cgroup2fs it is not consulted.
type kernelSim interface {
	// Mkdir populates dir, just created with os.Mkdir, with the files the kernel would create.
	Mkdir(dir string) error
	// Write performs a write of data to a control file as the kernel would (it may fail, round a
	// limit to a page, or act: move a pid, enable a controller, kill).
	Write(file, data string) error
}

// sim is set by tests only.
var sim kernelSim

// tree is the cgroup v2 hierarchy vatrun works in: a real cgroup2 mount (real) or a fake tree in a
// plain directory. Only mkdir, write and rmdir differ between the two.
type tree struct {
	root string // mountpoint (directory of the root cgroup)
	real bool   // statfs(root) says CGROUP2_SUPER_MAGIC
}

func newTree(root string) tree {
	if root == "" {
		root = defaultRoot
	}
	var st unix.Statfs_t
	real := unix.Statfs(root, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
	return tree{root: filepath.Clean(root), real: real}
}

// dir is the directory of cgroup path p ("/a/b", as in /proc/self/cgroup).
func (t tree) dir(p string) string { return filepath.Join(t.root, p) }

// mkdir creates one cgroup directory.
func (t tree) mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if !t.real && sim != nil {
		if err := sim.Mkdir(dir); err != nil {
			return errors.Join(err, os.RemoveAll(dir))
		}
	}
	return nil
}

// write writes data to an existing control file in one write(2), never creating it (a control
// file that is missing is an answer: e.g. no cgroup.kill before Linux 5.14).
func (t tree) write(file, data string) error {
	if !t.real && sim != nil {
		return sim.Write(file, data)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(data)
	return errors.Join(err, f.Close())
}

// rmdir removes one empty cgroup directory. On a real cgroup2fs a cgroup directory holding only its
// control files is removed by rmdir(2) itself (unlinking the control files is refused); a fake
// tree's files are ordinary, so they are removed first.
func (t tree) rmdir(dir string) error {
	if !t.real {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if !e.IsDir() {
				if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
					return err
				}
			}
		}
	}
	return unix.Rmdir(dir)
}

// read returns a control file's contents without the trailing newline.
func read(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// readKV parses a flat keyed file ("key value" per line: memory.events, cpu.stat, pids.events).
func readKV(file string) (map[string]uint64, error) {
	s, err := read(file)
	if err != nil {
		return nil, err
	}
	m := map[string]uint64{}
	for line := range strings.Lines(s) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			return nil, fmt.Errorf("%s: malformed line %q", file, line)
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: malformed line %q: %w", file, line, err)
		}
		m[k] = n
	}
	return m, nil
}
