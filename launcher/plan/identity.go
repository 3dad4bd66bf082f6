package plan

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/vatrun/vatrun/sandbox"
)

// WorkerID is the uid and gid a root vatrun's worker runs as: 1986098176 (0x76617400, "vat" in
// ASCII). No host file or process has it: it lies in the range systemd documents as unused
// (1879048192–2147352575), above the container ranges of systemd-nspawn (524288–1879048191), LXD
// (1000000–1001000000 by default) and /etc/subuid allocations (100000 + 65536 per user), below
// 2^31 (tools that read ids as signed). See docs/worker-identity.md.
const WorkerID = 1986098176

// OverflowID is the kernel's overflow uid and gid ("nobody"), the fallback when WorkerID is not
// mapped in vatrun's own user namespace (a root vatrun in a container that maps only 65536 ids).
const OverflowID = 65534

// WorkerIDs says which uid and gid the worker runs as on the host when vatrun runs with cfg: the
// switched-to ids, or vatrun's own.
func WorkerIDs(cfg sandbox.Config) (uid, gid int) {
	if cfg.SetIDs {
		return int(cfg.UID), int(cfg.GID)
	}
	return os.Getuid(), os.Getgid()
}

var ownMaps struct {
	once     sync.Once
	uid, gid [][3]uint64
	err      error
}

// RootWorkerID returns the id a root vatrun's worker switches to: WorkerID when vatrun's user
// namespace maps it (as uid and as gid), else OverflowID, else an error.
func RootWorkerID() (uint32, error) {
	ownMaps.once.Do(func() {
		ownMaps.uid, ownMaps.err = readIDMap("/proc/self/uid_map")
		if ownMaps.err == nil {
			ownMaps.gid, ownMaps.err = readIDMap("/proc/self/gid_map")
		}
	})
	if ownMaps.err != nil {
		return 0, fmt.Errorf("%w: the worker's uid: %v", ErrConfig, ownMaps.err)
	}
	for _, id := range []uint64{WorkerID, OverflowID} {
		if idMapped(ownMaps.uid, id) && idMapped(ownMaps.gid, id) {
			return uint32(id), nil
		}
	}
	return 0, fmt.Errorf("%w: vatrun runs as root, and neither uid/gid %d nor %d exists in its user namespace (see /proc/self/uid_map), so the worker would run as root: map one of them, or run vatrun unprivileged", ErrConfig, WorkerID, OverflowID)
}

// readIDMap parses a /proc/PID/{uid,gid}_map: lines of inside, outside, count.
func readIDMap(path string) ([][3]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][3]uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			return nil, fmt.Errorf("%s: bad line %q", path, sc.Text())
		}
		var e [3]uint64
		for i, s := range fields {
			if e[i], err = strconv.ParseUint(s, 10, 32); err != nil {
				return nil, fmt.Errorf("%s: bad line %q", path, sc.Text())
			}
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

func idMapped(m [][3]uint64, id uint64) bool {
	for _, e := range m {
		if id >= e[0] && id < e[0]+e[2] {
			return true
		}
	}
	return false
}
