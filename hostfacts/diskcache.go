package hostfacts

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// CacheDirEnv names the directory where file hashes are kept across vatrun processes (each
// `vatrun run` is a new process, so an in-process cache alone would hash the worker at every
// launch). "off" disables it. Default: $XDG_CACHE_HOME/vatrun, else $HOME/.cache/vatrun.
const CacheDirEnv = "VATRUN_CACHE_DIR"

// settle: a file's hash is stored only once its ctime is this old, so a later change of the file
// always gets a newer ctime than the one in the key (ctime cannot be set from user space).
var settle = 2 * time.Second

var (
	diskOnce sync.Once
	diskDir  string // "" = no disk cache
)

// CacheBase is vatrun's cache directory for a process with this environment and euid, "" for
// none: $VATRUN_CACHE_DIR ("off": none), else $XDG_CACHE_HOME/vatrun, else $HOME/.cache/vatrun,
// else /var/cache/vatrun for root (a service started without HOME); only an absolute path.
// The launch cache's C constructor (sandbox/prelaunch.c, vr_cache_base) finds the same directory;
// sandbox's TestCacheBaseAgrees holds the two together.
func CacheBase(getenv func(string) string, euid int) string {
	d := getenv(CacheDirEnv)
	switch {
	case d == "off":
		return ""
	case d != "":
	case getenv("XDG_CACHE_HOME") != "":
		d = filepath.Join(getenv("XDG_CACHE_HOME"), "vatrun")
	case getenv("HOME") != "":
		d = filepath.Join(getenv("HOME"), ".cache", "vatrun")
	case euid == 0:
		d = "/var/cache/vatrun"
	default:
		return ""
	}
	if !filepath.IsAbs(d) {
		return ""
	}
	return filepath.Clean(d)
}

func cacheDir() string {
	diskOnce.Do(func() {
		d := CacheBase(os.Getenv, os.Geteuid())
		if d == "" {
			return
		}
		dir := filepath.Join(d, "filehash")
		if _, err := os.Lstat(dir); err == nil && !usableDir(dir) {
			return // someone else's, or writable by others: do not trust it
		}
		diskDir = dir
	})
	return diskDir
}

// usableDir says whether dir is a directory of ours that nobody else can write into.
func usableDir(dir string) bool {
	st, err := os.Lstat(dir)
	if err != nil || !st.IsDir() || st.Mode().Perm()&0o022 != 0 {
		return false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && sys.Uid == uint32(os.Geteuid())
}

// diskName is the cache file name of the file version k.
func diskName(k statKey) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d\x00%d\x00%d.%d\x00%d.%d", k.Path, k.Dev, k.Ino, k.Size, k.Mtime, k.MtimeNsec, k.Ctime, k.CtimeNsec))
	return hex.EncodeToString(sum[:16])
}

// diskGet returns the stored hash of the file version k, if any.
func diskGet(k statKey) (string, bool) {
	dir := cacheDir()
	if dir == "" {
		return "", false
	}
	b, err := os.ReadFile(filepath.Join(dir, diskName(k)))
	if err != nil || len(b) != 64 {
		return "", false
	}
	if _, err := hex.DecodeString(string(b)); err != nil {
		return "", false
	}
	return string(b), true
}

// diskPut stores the hash of the file version k, once the file has settled; errors are ignored
// (a read-only home under systemd's ProtectHome= only means hashing at every launch).
func diskPut(k statKey, sum string) {
	dir := cacheDir()
	if dir == "" || time.Since(time.Unix(k.Ctime, k.CtimeNsec)) < settle {
		return
	}
	if err := os.MkdirAll(dir, 0o700); err != nil || !usableDir(dir) {
		return
	}
	f, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return
	}
	_, err = f.WriteString(sum)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, diskName(k)))
	}
	if err != nil {
		os.Remove(f.Name())
	}
}
