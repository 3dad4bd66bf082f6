package hostfacts

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"

	"github.com/vatrun/vatrun/internal/workerfiles"
)

// WorkerFile is one file the worker digest covers.
type WorkerFile struct {
	// Role names the file by what it is to the worker, not where it is installed, so two
	// validators with the same files at different paths get the same digest: "exe" (the worker
	// executable), "#!<interpreter as written>" (a script's interpreter, recursively),
	// "interp:<PT_INTERP>" (the ELF interpreter), "lib:<DT_NEEDED name>" (a shared library).
	Role string `json:"role"`
	// Path is where this host has it ("" when it could not be found: the worker will fail to
	// load it, and the digest says "missing").
	Path string `json:"path,omitempty"`
	// SHA256 is the hex digest of its contents, or "missing".
	SHA256 string `json:"sha256"`
}

// WorkerDigest is "sha256:" + the hex SHA-256 of the worker's files, one line per file sorted
// by role: "<role> <sha256>\n". It covers exactly the worker's closure (workerfiles.Of: the
// executable, a #! interpreter chain, the ELF interpreter, and every DT_NEEDED shared library,
// transitively, resolved as the dynamic loader would in the sandbox), the same computation the
// sandbox's minimal root is derived from. It does not cover what the minimal root makes visible
// beyond that (see package workerfiles): libraries loaded later with dlopen (NSS, iconv), the
// rest of the library directories, /etc/ld.so.cache, or the contents of the profile's mounts.
//
// Results are cached: a file's hash by (path, device, inode, size, mtime, ctime), in the process
// and on disk (CacheDirEnv; stored only for a file whose ctime is two seconds old, so a later
// change always misses); a worker's digest with its closure (re-checked with one stat per file).
func WorkerDigest(path string) (string, []WorkerFile, error) {
	c, err := workerfiles.Of(path)
	if err != nil {
		return "", nil, fmt.Errorf("worker digest: %w", err)
	}
	workerMu.Lock()
	e, ok := workerCache[path]
	workerMu.Unlock()
	if ok && e.closure == c {
		return e.digest, e.files, nil
	}
	files, err := hashAll(c)
	if err != nil {
		return "", nil, err
	}
	d := digestOf(files)
	workerMu.Lock()
	workerCache[path] = &workerEntry{digest: d, files: files, closure: c}
	workerMu.Unlock()
	return d, files, nil
}

// hashAll hashes each file of the closure, sorted by role.
func hashAll(c *workerfiles.Closure) ([]WorkerFile, error) {
	var files []WorkerFile
	for _, f := range c.Files {
		if f.Path == "" {
			files = append(files, WorkerFile{Role: f.Role, SHA256: "missing"})
			continue
		}
		sum, _, err := hashFile(f.Path)
		if err != nil {
			if os.IsNotExist(err) {
				files = append(files, WorkerFile{Role: f.Role, Path: f.Path, SHA256: "missing"})
				continue
			}
			return nil, fmt.Errorf("worker digest: %w", err)
		}
		files = append(files, WorkerFile{Role: f.Role, Path: f.Path, SHA256: sum})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Role < files[j].Role })
	return files, nil
}

func digestOf(files []WorkerFile) string {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s %s\n", f.Role, f.SHA256)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// statKey is one version of a file (workerfiles.Key: the closure's own stat key), which keys
// the file-hash caches.
type statKey = workerfiles.Key

func keyOf(path string) (statKey, bool) { return workerfiles.KeyOf(path) }

type workerEntry struct {
	digest  string
	files   []WorkerFile
	closure *workerfiles.Closure // the digest is valid while Of returns this closure
}

var (
	workerMu    sync.Mutex
	workerCache = map[string]*workerEntry{}
	fileCache   = map[statKey]string{}
)

// hashFile returns the hex SHA-256 of path's contents and its stat key, cached by the key.
func hashFile(path string) (string, statKey, error) {
	k, ok := keyOf(path)
	if ok {
		workerMu.Lock()
		sum, hit := fileCache[k]
		workerMu.Unlock()
		if hit {
			return sum, k, nil
		}
		if sum, hit := diskGet(k); hit {
			workerMu.Lock()
			fileCache[k] = sum
			workerMu.Unlock()
			return sum, k, nil
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return "", k, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", k, err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if ok {
		workerMu.Lock()
		fileCache[k] = sum
		workerMu.Unlock()
		diskPut(k, sum)
	}
	return sum, k, nil
}
