package e2e

// The SwingSet boot: the VM runs the real Agoric SwingSet kernel (Node.js and
// test/swingset's node_modules, read from the host's root file system over
// virtio-9p, read-only) with its xsnap workers spawned through
// `vatrun run --profile consensus` into real cgroup v2 leaves. The VM side is
// vm/swingset_test.go; init (vminit) loads the 9p modules and mounts the host's
// root at /host.
//
// The Debian cloud kernel that boots the main runs has no 9p (CONFIG_NET_9P is
// not set), so this boot uses the generic Debian kernel of the same version,
// whose virtio and 9p modules setup.sh keeps in .cache/vmlinuz-9p.modules.

import (
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// hostRootVM is where init mounts the host's root in the VM.
const hostRootVM = "/host"

// modules9p are the modules to load for a virtio-9p mount; their dependencies
// are found in the modules' .modinfo and loaded first.
var modules9p = []string{"virtio_pci", "9pnet_virtio", "9p"}

// swingSetBoot checks what the SwingSet boot needs and describes it. When
// something is missing it fails the test (VATRUN_E2E=1) or returns nil and
// why the boot is skipped.
func swingSetBoot(t *testing.T, c *config, work string) (*bootConfig, string) {
	t.Helper()
	missing := func(format string, args ...any) (*bootConfig, string) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if c.strict {
			t.Fatalf("VATRUN_E2E=1 but the SwingSet VM run cannot start: %s", msg)
		}
		return nil, "skipping the SwingSet VM run: " + msg + " (set VATRUN_E2E=1 to make this a failure)"
	}
	if os.Getenv("VATRUN_E2E_SWINGSET") == "0" {
		return nil, "skipping the SwingSet VM run: VATRUN_E2E_SWINGSET=0"
	}
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		return a
	}
	kernel := abs(env("VATRUN_E2E_KERNEL_9P", filepath.Join(".cache", "vmlinuz-9p")))
	if _, err := os.Stat(kernel); err != nil {
		return missing("no kernel with 9p: %v (run `bash test/e2e/setup.sh`)", err)
	}
	modDir := abs(env("VATRUN_E2E_MODULES_9P", filepath.Join(".cache", "vmlinuz-9p.modules")))
	mods, err := moduleOrder(modDir, modules9p)
	if err != nil {
		return missing("9p kernel modules: %v (run `bash test/e2e/setup.sh`)", err)
	}
	repo := abs(filepath.Join("..", ".."))
	swingset := abs(env("VATRUN_E2E_SWINGSET_DIR", filepath.Join(repo, "test", "swingset")))
	for _, p := range []string{
		filepath.Join(swingset, "node_modules"),
		filepath.Join(swingset, "node_modules/@agoric/xsnap/xsnap-native/xsnap/build/bin/lin/release/xsnap-worker"),
		filepath.Join(swingset, "node_modules/@agoric/swingset-vat"),
	} {
		if _, err := os.Stat(p); err != nil {
			return missing("%v: run `bash test/swingset/setup.sh` (npm ci and the xsnap-worker build)", err)
		}
	}
	node, err := exec.LookPath(env("VATRUN_E2E_NODE", "node"))
	if err != nil {
		return missing("no Node.js on the host: %v (the VM runs the host's node; set VATRUN_E2E_NODE)", err)
	}
	vatrun, ok := c.extraBin["/bin/vatrun"]
	if !ok {
		return missing("no vatrun binary (make bin/vatrun, or set VATRUN_BIN)")
	}
	b := &bootConfig{
		name:   bootSwingSet,
		kernel: kernel,
		mem:    env("VATRUN_E2E_SWINGSET_MEM", swingSetMem()),
		virtfs: true,
		files:  map[string]string{},
		env: []string{
			"VATRUN_E2E_HOSTROOT=" + hostRootVM,
			"VATRUN_E2E_REPO=" + repo,
			"VATRUN_E2E_SWINGSET_DIR=" + swingset,
			"VATRUN_E2E_NODE=" + abs(node),
			// The host's path: the chroot into the host's root sees it as is.
			"VATRUN_E2E_HOST_VATRUN=" + abs(vatrun),
		},
	}
	for _, k := range []string{"VATRUN_E2E_SWINGSET_ONLY", "VATRUN_E2E_SWINGSET_TIMEOUT", "VATRUN_E2E_SWINGSET_FILES", "VATRUN_E2E_SWINGSET_DELIVERIES", "VATRUN_E2E_XSNAP_LIMITS", "VATRUN_E2E_XSNAP_OBJECTS"} {
		if v := os.Getenv(k); v != "" {
			b.env = append(b.env, k+"="+v)
		}
	}
	for _, e := range b.env {
		if strings.ContainsAny(e, " \t\n") {
			return missing("%q has a blank: the VM manifest cannot carry it", e)
		}
	}
	for _, m := range mods {
		vmPath := "/lib/modules/" + filepath.Base(m)
		b.files[vmPath] = m
		b.directives = append(b.directives, "module="+vmPath)
	}
	// The VM's writable tmpfs is bound over a host directory that the chrooted run writes to
	// (HOME, TMPDIR, the stores): never the repository or one of its ancestors, which it would
	// hide (a clone under /tmp, say).
	scratch := ""
	for _, d := range []string{"/tmp", "/var/tmp", "/run", "/mnt", "/opt"} {
		if st, err := os.Stat(d); err == nil && st.IsDir() && repo != d && !strings.HasPrefix(repo, d+"/") {
			scratch = d
			break
		}
	}
	if scratch == "" {
		return missing("no directory to put the VM's /tmp on that does not hide the repository %s", repo)
	}
	b.directives = append(b.directives, "hostroot="+hostRootVM, "scratch="+scratch)
	b.env = append(b.env, "VATRUN_E2E_SCRATCH="+scratch)
	return b, ""
}

// swingSetMem is the SwingSet VM's default memory: 2G, or 4G with VATRUN_E2E_XSNAP_LIMITS=1, whose
// vats hold ~2.1 GB (plain spawn and vatrun's 3G limit, one at a time; vm/xsnaplimits_test.go).
func swingSetMem() string {
	if os.Getenv("VATRUN_E2E_XSNAP_LIMITS") == "1" {
		return "4G"
	}
	return "2G"
}

// moduleOrder returns the .ko files under dir for roots and their
// dependencies (the depends= of each module's .modinfo), dependencies first.
func moduleOrder(dir string, roots []string) ([]string, error) {
	norm := func(s string) string { return strings.ReplaceAll(s, "-", "_") }
	paths := map[string]string{}
	dir, err := filepath.EvalSymlinks(dir) // .cache/vmlinuz-9p.modules is a symlink; WalkDir does not follow it
	if err != nil {
		return nil, err
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			paths[norm(strings.TrimSuffix(d.Name(), ".ko"))] = p
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string) error
	visit = func(name string) error {
		name = norm(name)
		switch state[name] {
		case 1:
			return fmt.Errorf("module dependency cycle at %s", name)
		case 2:
			return nil
		}
		state[name] = 1
		p, ok := paths[name]
		if !ok {
			return fmt.Errorf("module %s not found under %s", name, dir)
		}
		deps, err := moduleDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[name] = 2
		out = append(out, p)
		return nil
	}
	for _, r := range roots {
		if err := visit(r); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// moduleDepends reads depends= from a module's .modinfo section.
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s has no .modinfo", path)
	}
	b, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("%s .modinfo: %w", path, err)
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if v, ok := strings.CutPrefix(kv, "depends="); ok {
			if v == "" {
				return nil, nil
			}
			return strings.Split(v, ","), nil
		}
	}
	return nil, nil
}

func TestModuleOrder(t *testing.T) {
	dir := filepath.Join(".cache", "vmlinuz-9p.modules")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("no 9p modules (bash test/e2e/setup.sh): %v", err)
	}
	mods, err := moduleOrder(dir, modules9p)
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range mods {
		pos[strings.TrimSuffix(filepath.Base(m), ".ko")] = i
	}
	for _, pair := range [][2]string{{"virtio_ring", "virtio"}, {"virtio", "virtio_pci"}, {"9pnet", "9pnet_virtio"}, {"netfs", "fscache"}, {"fscache", "9p"}} {
		a, okA := pos[pair[0]]
		b, okB := pos[pair[1]]
		if !okA || !okB || a >= b {
			t.Errorf("%s must load before %s: order %v", pair[0], pair[1], mods)
		}
	}
}
