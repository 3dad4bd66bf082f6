package sandbox

import (
	"sync"

	"golang.org/x/sys/unix"
)

// MaxLandlockABI is the newest Landlock ABI whose rights the init stage knows (stage.c
// vr_landlock): a newer kernel is used at this ABI.
const MaxLandlockABI = 7

var landlockABI = sync.OnceValue(func() int {
	// landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) returns the ABI.
	abi, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0 // ENOSYS (no Landlock) or EOPNOTSUPP (built in, disabled at boot)
	}
	return int(abi)
})

// LandlockABI is the Landlock ABI of the running kernel (0: none, or disabled at boot), as the
// kernel says it.
func LandlockABI() int { return landlockABI() }

// LandlockPathsFor lists the paths a worker confined by Landlock needs to read: the read-only
// sources of its minimal root (WorkerRoot, derived from the worker's closure, workerfiles.Of: its
// executable, a #! interpreter, the library directories, /etc/ld.so.cache, its DT_RUNPATH), so
// that what the worker can open without namespaces is what it would see with them. Symlinks need no rule (Landlock checks the file they resolve to).
func LandlockPathsFor(path string) ([]string, error) {
	ms, err := WorkerRoot(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if m.Kind == MountRO {
			out = append(out, m.Source)
		}
	}
	return out, nil
}
