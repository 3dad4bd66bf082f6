package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/launcher/plan"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// crun 1.8 refuses to start on a hybrid cgroup host ("cgroups in hybrid mode not supported")
// even with --cgroup-manager=disabled, and cannot pivot_root into "/" itself. So its runs happen
// in a helper process in a private mount namespace (`unshare -m --propagation private`) where
// /sys/fs/cgroup is an empty tmpfs and the bundle's rootfs is a recursive bind of "/" (made
// read-only by crun). Nothing reaches the host's cgroups: crun only statfs()s the empty tmpfs
// (verified with strace when this was written). The helper prints its samples as JSON.

type crunResult struct {
	Samples map[string][]int64 `json:"samples"` // ns
	Version string             `json:"version"`
	Err     string             `json:"err,omitempty"`
}

// crunBundle writes an OCI bundle running worker with the profile's rlimits and seccomp section,
// no capabilities, no_new_privs, and the pid, mount, ipc, uts and network namespaces.
func crunBundle(dir, rootfs string, worker []string, prof *seccompprofiles.Profile) error {
	var rlimits []map[string]any
	for _, r := range plan.ProfileRlimits(prof) {
		rlimits = append(rlimits, map[string]any{"type": r.Name, "soft": r.Cur, "hard": r.Max})
	}
	none := []string{}
	cfg := map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"terminal":        false,
			"user":            map[string]any{"uid": 0, "gid": 0},
			"args":            worker,
			"env":             workerEnv,
			"cwd":             "/",
			"capabilities":    map[string]any{"bounding": none, "effective": none, "permitted": none, "inheritable": none, "ambient": none},
			"rlimits":         rlimits,
			"noNewPrivileges": true,
		},
		"root":     map[string]any{"path": rootfs, "readonly": true},
		"hostname": "vat",
		"mounts":   []map[string]any{{"destination": "/proc", "type": "proc", "source": "proc"}},
		"linux": map[string]any{
			"namespaces": []map[string]string{{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "network"}},
			"seccomp":    prof.Seccomp,
		},
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644)
}

// crunHelper is the body of `vatrun-bench -crun-helper`, already in a private mount namespace.
func crunHelper(o *options) int {
	res := crunResult{Samples: map[string][]int64{}}
	err := func() error {
		out, err := exec.Command("crun", "--version").Output()
		if err != nil {
			return fmt.Errorf("crun --version: %w", err)
		}
		res.Version = strings.SplitN(string(out), "\n", 2)[0]
		tmp, rootfs, cleanup, err := crunMounts()
		if err != nil {
			return err
		}
		defer cleanup()
		prof, _ := seccompprofiles.Builtin("xsnap")
		bTrue, bPing := filepath.Join(tmp, "true"), filepath.Join(tmp, "ping")
		if err := crunBundle(bTrue, rootfs, []string{o.trueBin}, prof); err != nil {
			return err
		}
		if err := crunBundle(bPing, rootfs, []string{o.testWorker}, prof); err != nil {
			return err
		}
		seq := 0
		crun := func(bundle string, preserve int) *extMode {
			return &extMode{name: "crun", argv: func([]string) []string {
				seq++
				a := []string{"/usr/bin/crun", "--cgroup-manager=disabled", "run", "--bundle", bundle}
				if preserve > 0 {
					a = append(a, "--preserve-fds", strconv.Itoa(preserve))
				}
				return append(a, fmt.Sprintf("vatrun-bench-%d-%d", os.Getpid(), seq))
			}}
		}
		for _, c := range []struct {
			k      kind
			worker []string
			mode   *extMode
			key    string
		}{
			{kindTrue, []string{o.trueBin}, crun(bTrue, 0), "true"},
			{kindPing, []string{o.testWorker}, crun(bPing, 2), "ping"},
		} {
			got, err := collect([]sampler{c.mode}, []string{"crun"}, c.k, c.worker, o.runs, o.warm)
			if err != nil {
				return err
			}
			for name, d := range got {
				for _, s := range d {
					res.Samples[name+"-"+c.key] = append(res.Samples[name+"-"+c.key], int64(s))
				}
			}
		}
		return nil
	}()
	if err != nil {
		res.Err = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// crunMounts prepares, in the private mount namespace the helper runs in, what crun needs: an
// empty tmpfs over /sys/fs/cgroup (so crun sees no hybrid hierarchy and can touch no host
// cgroup) and a recursive bind of "/" as the bundles' rootfs, in a new temporary directory.
func crunMounts() (tmp, rootfs string, cleanup func(), err error) {
	// Belt and braces: only ever mount over /sys/fs/cgroup in a namespace of our own.
	self, _ := os.Readlink("/proc/self/ns/mnt")
	parent, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()))
	init1, _ := os.Readlink("/proc/1/ns/mnt")
	if self == "" || self == init1 || (parent != "" && self == parent) {
		return "", "", nil, fmt.Errorf("crun helper: not in a private mount namespace (run it under unshare -m --propagation private)")
	}
	if err := unix.Mount("none", "/sys/fs/cgroup", "tmpfs", 0, "size=64k"); err != nil {
		return "", "", nil, fmt.Errorf("mount an empty tmpfs over /sys/fs/cgroup (private namespace): %w", err)
	}
	tmp, err = os.MkdirTemp("", "vatrun-bench-crun-")
	if err != nil {
		return "", "", nil, err
	}
	rootfs = filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		os.RemoveAll(tmp)
		return "", "", nil, err
	}
	if err := unix.Mount("/", rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		os.RemoveAll(tmp)
		return "", "", nil, fmt.Errorf("bind / to the bundle's rootfs: %w", err)
	}
	return tmp, rootfs, func() {
		unix.Unmount(rootfs, unix.MNT_DETACH)
		os.RemoveAll(tmp)
	}, nil
}

// runCrun runs the helper and returns crun's samples (true, ping), its version, or why it was
// skipped.
func runCrun(o *options) (dTrue, dPing dist, version string, err error) {
	if _, err := exec.LookPath("crun"); err != nil {
		return nil, nil, "", fmt.Errorf("crun is not installed (apt-get install crun)")
	}
	self, err := os.Executable()
	if err != nil {
		return nil, nil, "", err
	}
	args := []string{"-m", "--propagation", "private", self, "-crun-helper",
		"-runs", strconv.Itoa(o.runs), "-warm", strconv.Itoa(o.warm),
		"-true", o.trueBin, "-testworker", o.testWorker}
	cmd := exec.Command("unshare", args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, nil, "", fmt.Errorf("crun helper: %w", err)
	}
	var res crunResult
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, nil, "", fmt.Errorf("crun helper output: %w", err)
	}
	if res.Err != "" {
		return nil, nil, res.Version, fmt.Errorf("%s", res.Err)
	}
	conv := func(ns []int64) dist {
		d := make(dist, len(ns))
		for i, v := range ns {
			d[i] = time.Duration(v)
		}
		return d
	}
	return conv(res.Samples["crun-true"]), conv(res.Samples["crun-ping"]), res.Version, nil
}
