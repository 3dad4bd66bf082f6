package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
)

// cleanStale kills and removes the leaves under parent left by a vatrun that is gone (Open calls
// it once): a leaf's name holds its owner's pid and start time, and the owner is gone when that
// pid no longer exists or belongs to a process started at another time. Leaves of live owners,
// and anything not named like a leaf, are left alone. Every vatrun sharing a parent must share the
// pid namespace (pids are compared as seen here). It returns the cgroup paths removed, and what it
// could not remove.
func cleanStale(t tree, parent string) (removed []string, err error) {
	ents, err := os.ReadDir(t.dir(parent))
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: list stale leaves: %w", parent, err)
	}
	var errs []error
	for _, e := range ents {
		pid, start, ok := parseLeafName(e.Name())
		if !e.IsDir() || !ok || ownerAlive(pid, start) {
			continue
		}
		cg := path.Join(parent, e.Name())
		dir := t.dir(cg)
		if err := kill(t, cg, dir); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := removeTree(t, cg, dir); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, cg)
	}
	return removed, errors.Join(errs...)
}

// parseLeafName parses vatrun-<pid>-<start>-<seq>.
func parseLeafName(name string) (pid int, start uint64, ok bool) {
	f := strings.Split(name, "-")
	if len(f) != 4 || f[0] != "vatrun" {
		return 0, 0, false
	}
	pid, err1 := strconv.Atoi(f[1])
	start, err2 := strconv.ParseUint(f[2], 10, 64)
	_, err3 := strconv.ParseUint(f[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || pid <= 0 {
		return 0, 0, false
	}
	return pid, start, true
}

// ownerAlive says whether process pid, started at start, still runs. When in doubt (an
// unexpected error reading /proc) it says yes: a leaf left behind is better than a live
// worker killed.
func ownerAlive(pid int, start uint64) bool {
	s, err := startTime(pid)
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	return err != nil || s == start
}
