package main

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Manifest is what /e2e/manifest asks init to do. Syntax, one directive a line
// ('#' starts a comment line):
//
//	watchdog=15m
//	module=/lib/modules/virtio_ring.ko   (loaded in the order given, before any run)
//	hostroot=/host                       (9p tag "hostroot" mounted read-only there, see mountHostRoot)
//	scratch=/tmp                         (where, inside the host root, the VM's writable /tmp is bound;
//	                                      never the repository or an ancestor of it)
//	run name=root uid=0 parent=/e2e-root cgroup=/e2e-root/tests timeout=10m env=K=V /e2e/vm.test -test.v
//
// A run's options come first (key=value); its argv starts at the first field
// that begins with "/". Fields are split on blanks; there is no quoting.
type Manifest struct {
	Watchdog time.Duration
	Modules  []string // kernel modules to load, in dependency order
	HostRoot string   // where to mount the host's root file system (virtio-9p), "" for nowhere
	Scratch  string   // the path inside it where the VM's /tmp is bound (default /tmp)
	Runs     []Run
}

// Run is one program that init starts and waits for.
type Run struct {
	Name    string
	UID     int           // the gid is the same number
	Parent  string        // cgroup (relative to the cgroup2 root) delegated to UID, with controllers enabled for its children
	Cgroup  string        // cgroup the program starts in (CLONE_INTO_CGROUP); created and owned by UID
	Timeout time.Duration // the run is killed after this long
	Env     []string
	Argv    []string
}

func parseManifest(r io.Reader) (*Manifest, error) {
	m := &Manifest{Watchdog: 15 * time.Minute}
	sc := bufio.NewScanner(r)
	lineNo := 0
	names := map[string]bool{}
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		switch {
		case strings.HasPrefix(fields[0], "watchdog="):
			d, err := time.ParseDuration(strings.TrimPrefix(fields[0], "watchdog="))
			if err != nil || d <= 0 || len(fields) != 1 {
				return nil, fmt.Errorf("manifest line %d: bad watchdog %q", lineNo, line)
			}
			m.Watchdog = d
		case strings.HasPrefix(fields[0], "module="):
			p := strings.TrimPrefix(fields[0], "module=")
			if !strings.HasPrefix(p, "/") || len(fields) != 1 {
				return nil, fmt.Errorf("manifest line %d: bad module %q", lineNo, line)
			}
			m.Modules = append(m.Modules, p)
		case strings.HasPrefix(fields[0], "hostroot="):
			p := strings.TrimPrefix(fields[0], "hostroot=")
			if !strings.HasPrefix(p, "/") || p == "/" || strings.Contains(p, "..") || len(fields) != 1 {
				return nil, fmt.Errorf("manifest line %d: bad hostroot %q", lineNo, line)
			}
			m.HostRoot = p
		case strings.HasPrefix(fields[0], "scratch="):
			p := strings.TrimPrefix(fields[0], "scratch=")
			if !strings.HasPrefix(p, "/") || p == "/" || strings.Contains(p, "..") || len(fields) != 1 {
				return nil, fmt.Errorf("manifest line %d: bad scratch %q", lineNo, line)
			}
			m.Scratch = p
		case fields[0] == "run":
			run, err := parseRun(fields[1:])
			if err != nil {
				return nil, fmt.Errorf("manifest line %d: %w", lineNo, err)
			}
			if names[run.Name] {
				return nil, fmt.Errorf("manifest line %d: duplicate run name %q", lineNo, run.Name)
			}
			names[run.Name] = true
			m.Runs = append(m.Runs, run)
		default:
			return nil, fmt.Errorf("manifest line %d: unknown directive %q", lineNo, fields[0])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	return m, nil
}

func parseRun(fields []string) (Run, error) {
	run := Run{Timeout: 10 * time.Minute}
	i := 0
	for ; i < len(fields) && !strings.HasPrefix(fields[i], "/"); i++ {
		k, v, ok := strings.Cut(fields[i], "=")
		if !ok {
			return run, fmt.Errorf("run option %q is not key=value", fields[i])
		}
		switch k {
		case "name":
			run.Name = v
		case "uid":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return run, fmt.Errorf("bad uid %q", v)
			}
			run.UID = n
		case "parent":
			run.Parent = v
		case "cgroup":
			run.Cgroup = v
		case "timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return run, fmt.Errorf("bad timeout %q", v)
			}
			run.Timeout = d
		case "env":
			if !strings.Contains(v, "=") {
				return run, fmt.Errorf("env %q is not K=V", v)
			}
			run.Env = append(run.Env, v)
		default:
			return run, fmt.Errorf("unknown run option %q", k)
		}
	}
	run.Argv = fields[i:]
	if len(run.Argv) == 0 {
		return run, fmt.Errorf("run has no program (argv must start with an absolute path)")
	}
	if run.Name == "" {
		return run, fmt.Errorf("run has no name=")
	}
	for _, p := range []string{run.Parent, run.Cgroup} {
		if p != "" && (!strings.HasPrefix(p, "/") || strings.Contains(p, "..")) {
			return run, fmt.Errorf("cgroup path %q must be absolute (relative to the cgroup2 root) and clean", p)
		}
	}
	return run, nil
}
