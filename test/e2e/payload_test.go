package e2e

import (
	"bufio"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vatrun/vatrun/test/e2e/initramfs"
)

type payload struct {
	init, vmTest string
	extra        map[string]string // executables: VM path -> host path (with their libraries)
	files        map[string]string // plain files: VM path -> host path
}

// buildPayload compiles /init (pure Go, CGO_ENABLED=0) and the VM test binary, both static. The
// test binary links the launcher (its init stage is a C constructor, and seccomp filters are
// compiled with libseccomp), so it is built with cgo and linked statically like bin/vatrun.
func buildPayload(c *config, dir string) (*payload, error) {
	p := &payload{init: filepath.Join(dir, "init"), vmTest: filepath.Join(dir, "vm.test"), extra: c.extraBin}
	for _, b := range []struct {
		cgo  string
		args []string
	}{
		{"0", []string{"build", "-trimpath", "-ldflags=-s -w", "-o", p.init, "./vminit"}},
		{"1", []string{"test", "-c", "-trimpath", "-tags", "osusergo,netgo",
			"-ldflags=-s -w -linkmode external -extldflags -static", "-o", p.vmTest, "./vm"}},
	} {
		cmd := exec.Command(c.goBin, b.args...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED="+b.cgo, "GOOS=linux", "GOARCH=amd64")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(b.args, " "), err, out)
		}
	}
	return p, nil
}

const (
	passwd = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:e2e user:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	group  = "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n"
)

// writeInitramfs writes the VM's root file system to path and returns its size.
func writeInitramfs(path string, p *payload, manifest string, compress bool) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, fmt.Errorf("create initramfs: %w", err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	var out io.Writer = bw
	var zw *gzip.Writer
	if compress {
		// BestSpeed: the image is built on every run and decompressed by an
		// emulated CPU; the size difference to better levels buys nothing.
		if zw, err = gzip.NewWriterLevel(bw, gzip.BestSpeed); err != nil {
			return 0, fmt.Errorf("gzip: %w", err)
		}
		out = zw
	}
	w := initramfs.NewWriter(out)
	if err := fillInitramfs(w, p, manifest); err != nil {
		return 0, err
	}
	if err := w.Close(); err != nil {
		return 0, err
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return 0, fmt.Errorf("gzip: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return 0, fmt.Errorf("write initramfs: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat initramfs: %w", err)
	}
	return st.Size(), f.Close()
}

func fillInitramfs(w *initramfs.Writer, p *payload, manifest string) error {
	const sticky = 0o777 | os.ModeSticky
	steps := []func() error{
		// The kernel opens /dev/console for init's stdio before devtmpfs is mounted.
		func() error { return w.CharDev("/dev/console", 0o600, 5, 1) },
		func() error { return w.Dir("/proc", 0o555) },
		func() error { return w.Dir("/sys", 0o555) },
		func() error { return w.Dir("/tmp", sticky) },
		func() error { return w.Dir("/root", 0o700) },
		func() error { return w.Dir("/bin", 0o755) },
		func() error { return w.File("/etc/passwd", 0o644, []byte(passwd)) },
		func() error { return w.File("/etc/group", 0o644, []byte(group)) },
		func() error { return w.CopyFile("/init", p.init) },
		func() error { return w.CopyFile("/e2e/vm.test", p.vmTest) },
		func() error { return w.File("/e2e/manifest", 0o644, []byte(manifest)) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	added := map[string]bool{}
	// A few host programs that tests and vatrun itself use (vatrun check
	// probes the sandbox with /bin/true), with their libraries.
	for _, prog := range hostPrograms {
		if _, err := os.Stat(prog); err == nil {
			if err := addExecutable(w, prog, prog, added); err != nil {
				return err
			}
		}
	}
	for vmPath, hostPath := range p.extra {
		if err := addExecutable(w, vmPath, hostPath, added); err != nil {
			return err
		}
	}
	// The container test (vm/container_test.go): crun, a shell and the tools the cgroup nesting
	// recipe's entrypoint uses, the entrypoint itself and the recipe's seccomp profile. Absent
	// host tools are left out (the test then skips, or fails when strict).
	for _, vmPath := range slices.Sorted(maps.Keys(containerPrograms)) {
		hostPath := containerPrograms[vmPath]
		if _, err := os.Stat(hostPath); err == nil {
			if err := addExecutable(w, vmPath, hostPath, added); err != nil {
				return err
			}
		}
	}
	for _, vmPath := range slices.Sorted(maps.Keys(containerFiles)) {
		if err := w.CopyFile(vmPath, containerFiles[vmPath]); err != nil {
			return err
		}
	}
	for vmPath, hostPath := range p.files {
		if err := w.CopyFile(vmPath, hostPath); err != nil {
			return err
		}
	}
	return nil
}

// addExecutable copies a host program into the image; for a dynamically linked
// ELF it also copies its interpreter and shared libraries (recursively) to the
// same paths, since the VM has no libc of its own.
func addExecutable(w *initramfs.Writer, vmPath, hostPath string, added map[string]bool) error {
	if err := w.CopyFile(vmPath, hostPath); err != nil {
		return err
	}
	added[vmPath] = true
	deps, err := elfDeps(hostPath)
	if err != nil {
		return fmt.Errorf("%s: %w", hostPath, err)
	}
	for _, d := range deps {
		if added[d] {
			continue
		}
		added[d] = true
		real, err := filepath.EvalSymlinks(d)
		if err != nil {
			return fmt.Errorf("%s needs %s: %w", hostPath, d, err)
		}
		if err := w.CopyFile(d, real); err != nil {
			return err
		}
	}
	return nil
}

var hostPrograms = []string{"/bin/true", "/bin/false"}

// containerPrograms are the VM paths and host paths of what vm/container_test.go runs: crun
// (1.8.1 and its libraries besides libc: 4.2 MB, 1.9 MB gzip), and dash and the coreutils and
// grep that contrib/containers/cgroup-nest.sh calls (1.2 MB, 0.55 MB gzip).
var containerPrograms = map[string]string{
	"/bin/crun": "/usr/bin/crun", "/bin/sh": "/bin/sh", "/bin/cat": "/bin/cat",
	"/bin/touch": "/bin/touch", "/bin/mkdir": "/bin/mkdir", "/bin/grep": "/bin/grep",
}

// containerFiles are repository files the container test needs (paths relative to test/e2e,
// where go test runs).
var containerFiles = map[string]string{
	"/e2e/cgroup-nest.sh":      "../../contrib/containers/cgroup-nest.sh",
	"/e2e/docker-seccomp.json": "../../contrib/docker-seccomp.json",
}

var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// elfDeps returns the host paths of path's interpreter and shared libraries,
// transitively. A static binary, or a file that is not ELF, has none.
func elfDeps(path string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	var visit func(p string, top bool) error
	visit = func(p string, top bool) error {
		f, err := elf.Open(p)
		if err != nil {
			if top {
				return nil // a script or other non-ELF program
			}
			return fmt.Errorf("read ELF %s: %w", p, err)
		}
		defer f.Close()
		for _, prog := range f.Progs {
			if prog.Type != elf.PT_INTERP {
				continue
			}
			b, err := io.ReadAll(prog.Open())
			if err != nil {
				return fmt.Errorf("read interpreter of %s: %w", p, err)
			}
			interp := strings.TrimRight(string(b), "\x00")
			if !seen[interp] {
				seen[interp] = true
				out = append(out, interp)
			}
		}
		libs, err := f.ImportedLibraries()
		if err != nil {
			return fmt.Errorf("dynamic section of %s: %w", p, err)
		}
		var runpath []string
		for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
			vals, _ := f.DynString(tag)
			for _, v := range vals {
				for _, d := range strings.Split(v, ":") {
					runpath = append(runpath, strings.ReplaceAll(d, "$ORIGIN", filepath.Dir(p)))
				}
			}
		}
		for _, lib := range libs {
			found := ""
			for _, d := range append(runpath, libDirs...) {
				if _, err := os.Stat(filepath.Join(d, lib)); err == nil {
					found = filepath.Join(d, lib)
					break
				}
			}
			if found == "" {
				return fmt.Errorf("%s needs %s, not found in %v", p, lib, append(runpath, libDirs...))
			}
			if seen[found] {
				continue
			}
			seen[found] = true
			out = append(out, found)
			if err := visit(found, false); err != nil {
				return err
			}
		}
		return nil
	}
	return out, visit(path, true)
}
