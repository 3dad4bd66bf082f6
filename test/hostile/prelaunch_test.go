package hostile

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/report"
)

// The C-first launch (sandbox/prelaunch.c): `vatrun run` starts the init stage from its launch
// cache before the Go runtime exists. The cache is an attack surface: whoever could write an
// entry would choose the sandbox. These tests run the same launch through the cache and without
// it, and feed vatrun stale, tampered, badly owned and forged entries: a worker must only ever
// run in the sandbox vatrun computes itself.

// cacheRun is one `vatrun run` of the test worker with the launch cache in dir: the worker's
// replies to cmds, its report, and what the launch cache did (vatrun's debug line).
type cacheRun struct {
	replies []string
	report  *report.Report
	cache   map[string]string
	exit    int
	stderr  string
}

var cacheLine = regexp.MustCompile(`msg="launch cache" state=(\S+) why=("(?:[^"\\]|\\.)*"|\S*) used=(\S+) mismatch=("(?:[^"\\]|\\.)*"|\S*) saved=(\S+) saveSkipped=("(?:[^"\\]|\\.)*"|\S*)`)

func runCached(t *testing.T, dir, worker string, nobody bool, env []string, cmds ...string) cacheRun {
	t.Helper()
	return runCachedArgs(t, dir, worker, nobody, env, nil, cmds...)
}

func runCachedArgs(t *testing.T, dir, worker string, nobody bool, env, workerArgs []string, cmds ...string) cacheRun {
	t.Helper()
	// The same report path every time: the path is part of the command line, hence of the key.
	rep := filepath.Join(dir, "..", "report.json")
	os.Remove(rep)
	p := startVatrun(t, procOpts{
		runArgs:    []string{"--log-level", "debug", "--profile", "xsnap", "--no-cgroup", "--report-file", rep},
		env:        append([]string{"VATRUN_CACHE_DIR=" + dir}, env...),
		worker:     worker,
		workerArgs: workerArgs,
		asNobody:   nobody,
	})
	var r cacheRun
	for _, c := range cmds {
		p.send(c)
		r.replies = append(r.replies, p.reply())
	}
	p.cmdW.Close()
	r.exit = p.exit()
	<-p.done
	r.stderr = p.stderrText()
	r.report = readReportFile(t, rep)
	m := cacheLine.FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("no launch cache line in vatrun's debug log:\n%s", r.stderr)
	}
	r.cache = map[string]string{"state": m[1], "why": strings.Trim(m[2], `"`), "used": m[3], "mismatch": strings.Trim(m[4], `"`), "saved": m[5], "saveSkipped": strings.Trim(m[6], `"`)}
	return r
}

// settledWorker is a copy of the test worker whose change time is old enough for the launch
// cache (an entry is written only for files that changed over 2 s ago).
func settledWorker(t *testing.T) string {
	t.Helper()
	dir := openTempDir(t, 0o755)
	w := filepath.Join(dir, "vatrun-testworker")
	src, err := os.ReadFile(testbin.Worker(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w, src, 0o755); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond)
	return w
}

// cacheDir is a cache directory (the caller's own, 0700) in a directory where the report goes,
// which nobody (65534) can write when the run is as nobody.
func cacheDir(t *testing.T, nobody bool) string {
	t.Helper()
	base := openTempDir(t, 0o755)
	d := filepath.Join(base, "cache")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if nobody && os.Geteuid() == 0 {
		os.Chown(d, 65534, 65534)
		os.Chown(base, 65534, 65534)
	}
	return d
}

// openTempDir is a fresh directory under the system's temporary directory with mode perm: a
// test's t.TempDir sits in a 0700 directory that uid 65534 cannot enter.
func openTempDir(t *testing.T, perm os.FileMode) string {
	t.Helper()
	d, err := os.MkdirTemp("", "vatrun-lc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, perm); err != nil {
		t.Fatal(err)
	}
	return d
}

func entryPath(t *testing.T, dir string) string {
	t.Helper()
	ents, _ := filepath.Glob(filepath.Join(dir, "launch", "[0-9a-f]*"))
	if len(ents) != 1 {
		t.Fatalf("want one launch cache entry in %s, found %v", dir, ents)
	}
	return ents[0]
}

// sameReport compares two reports but for what differs between any two runs: times, pids, and
// the refused calls' arguments (stack addresses).
func sameReport(t *testing.T, a, b *report.Report) {
	t.Helper()
	if a == nil || b == nil {
		t.Fatalf("missing report: %v %v", a, b)
	}
	norm := func(r *report.Report) string {
		x := *r
		x.WallTime, x.CPUSeconds, x.Pid = 0, 0, 0
		x.DeniedSyscalls = slices.Clone(x.DeniedSyscalls)
		for i := range x.DeniedSyscalls {
			x.DeniedSyscalls[i].Args = nil
		}
		j, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		return string(j)
	}
	if x, y := norm(a), norm(b); x != y {
		t.Fatalf("reports differ between the cached and the ordinary launch:\n%s\n%s", x, y)
	}
}

// TestLaunchCacheSameLaunch: the second identical run starts before Go (state hit, adopted), and
// the worker sees exactly what it sees without the cache: its pid, fds, ids, filter, no_new_privs,
// capabilities, hostname, root; the report is the same. As root and as an unprivileged user (a
// user namespace, whose id maps the C side writes).
func TestLaunchCacheSameLaunch(t *testing.T) {
	worker := settledWorker(t)
	for _, nobody := range []bool{false, true} {
		t.Run(fmt.Sprintf("nobody=%v", nobody), func(t *testing.T) {
			if nobody && os.Geteuid() != 0 {
				t.Skip("needs root to run as nobody")
			}
			dir := cacheDir(t, nobody)
			cmds := []string{"probe:pid", "probe:fds", "probe:uid", "probe:seccomp", "probe:nnp", "probe:caps", "probe:hostname", "probe:open:/etc/passwd", "probe:session", "ping"}
			first := runCached(t, dir, worker, nobody, nil, cmds...)
			if first.cache["state"] != "miss" || first.cache["saved"] != "true" {
				t.Fatalf("first run: want a miss that saves its entry, got %v\n%s", first.cache, first.stderr)
			}
			second := runCached(t, dir, worker, nobody, nil, cmds...)
			if second.cache["state"] != "hit" || second.cache["used"] != "true" {
				t.Fatalf("second run: want the cached launch used, got %v\n%s", second.cache, second.stderr)
			}
			off := runCached(t, dir, worker, nobody, []string{"VATRUN_PRELAUNCH=off"}, cmds...)
			if off.cache["state"] != "off" || off.cache["used"] != "false" {
				t.Fatalf("VATRUN_PRELAUNCH=off: got %v", off.cache)
			}
			for i := range cmds {
				// probe:session names the worker's pid in the namespace: the same in all three.
				if first.replies[i] != second.replies[i] || first.replies[i] != off.replies[i] {
					t.Errorf("%s: ordinary %q, cached %q, off %q", cmds[i], first.replies[i], second.replies[i], off.replies[i])
				}
			}
			if first.replies[len(cmds)-1] != "pong" || first.exit != 0 || second.exit != 0 {
				t.Fatalf("runs did not work: replies %v, exits %d %d", first.replies, first.exit, second.exit)
			}
			sameReport(t, first.report, second.report)
		})
	}
}

// TestLaunchCacheWorkerArguments: a kernel restarts a worker with other arguments (the snapshot
// to load), so one entry serves every argument list after `-- WORKER`: the cached launch runs the
// worker with this command line's arguments, never the entry's.
func TestLaunchCacheWorkerArguments(t *testing.T) {
	worker := settledWorker(t)
	dir := cacheDir(t, false)
	if r := runCached(t, dir, worker, false, nil, "ping"); r.cache["saved"] != "true" || r.replies[0] != "pong" {
		t.Fatalf("first run: %v %v", r.cache, r.replies)
	}
	for _, code := range []string{"3", "5"} {
		r := runCachedArgs(t, dir, worker, false, nil, []string{"--exit-at-start", code})
		if r.cache["state"] != "hit" || r.cache["used"] != "true" {
			t.Fatalf("--exit-at-start %s: want the entry used, got %v\n%s", code, r.cache, r.stderr)
		}
		if fmt.Sprint(r.exit) != code || r.report == nil || r.report.ExitCode == nil || fmt.Sprint(*r.report.ExitCode) != code {
			t.Fatalf("--exit-at-start %s: the worker did not get this command line's arguments: exit %d", code, r.exit)
		}
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, "launch", "[0-9a-f]*")); len(ents) != 1 {
		t.Fatalf("want one entry for every argument list, found %d", len(ents))
	}
}

// primedEntry runs the settled test worker once through vatrun run, which writes its launch-cache
// entry: the worker, the cache directory, the entry's path and its bytes.
func primedEntry(t *testing.T) (worker, dir, entry string, orig []byte) {
	t.Helper()
	worker = settledWorker(t)
	dir = cacheDir(t, false)
	if r := runCached(t, dir, worker, false, nil, "ping"); r.cache["saved"] != "true" {
		t.Fatalf("no entry saved: %v", r.cache)
	}
	entry = entryPath(t, dir)
	orig, err := os.ReadFile(entry)
	if err != nil {
		t.Fatal(err)
	}
	return worker, dir, entry, orig
}

// TestLaunchCacheRefusesStaleAndTampered: an entry whose worker changed, whose bytes were
// altered, or that another user could have written is not used, and the launch still works.
func TestLaunchCacheRefusesStaleAndTampered(t *testing.T) {
	worker, dir, entry, orig := primedEntry(t)
	check := func(name, wantWhy string) {
		t.Helper()
		r := runCached(t, dir, worker, false, nil, "ping")
		if r.cache["state"] != "refused" || r.cache["used"] != "false" || !strings.Contains(r.cache["why"], wantWhy) {
			t.Errorf("%s: want refused (%q), got %v", name, wantWhy, r.cache)
		}
		if len(r.replies) != 1 || r.replies[0] != "pong" || r.exit != 0 {
			t.Errorf("%s: the ordinary launch did not run: %v exit %d", name, r.replies, r.exit)
		}
	}
	restore := func() {
		t.Helper()
		if err := os.WriteFile(entry, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chmod(entry, 0o600)
		os.Chmod(filepath.Dir(entry), 0o700)
	}

	tampered := bytes.Clone(orig)
	tampered[len(tampered)/2] ^= 1
	os.WriteFile(entry, tampered, 0o600)
	check("one byte flipped", "sha256 does not match")

	restore()
	os.Chmod(entry, 0o622)
	check("entry writable by others", "only we can write")

	restore()
	os.Chmod(filepath.Dir(entry), 0o777)
	check("directory writable by others", "can be written by another user")

	restore()
	now := time.Now()
	if err := os.Chtimes(worker, now, now); err != nil {
		t.Fatal(err)
	}
	check("worker changed", "changed since the entry was written")
}

// lcEntry is a decoded launch cache entry (sandbox/prelaunch.h).
type lcEntry struct {
	head   []byte // magic, version, key
	verify []byte // the verify list, as stored
	inv    lcInv
}

type lcInv struct {
	magic, version uint32
	flags          uint64
	deny           uint32
	uidMap, gidMap []byte
	fds            []uint32
	dir, config    []byte
	argv, env      [][]byte
	appendArgs     uint32
}

func decodeEntry(t *testing.T, b []byte) lcEntry {
	t.Helper()
	body := b[:len(b)-32]
	e := lcEntry{head: body[:40]}
	r := bytes.NewReader(body[40:])
	u32 := func(r *bytes.Reader) uint32 {
		var v uint32
		if err := binary.Read(r, binary.LittleEndian, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	str := func(r *bytes.Reader) []byte {
		s := make([]byte, u32(r))
		if _, err := io.ReadFull(r, s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	start := len(body[40:]) - r.Len()
	n := u32(r)
	for i := uint32(0); i < n; i++ {
		str(r)
		r.Seek(7*8, io.SeekCurrent)
	}
	e.verify = body[40+start : 40+len(body[40:])-r.Len()]
	ib := str(r)
	ir := bytes.NewReader(ib)
	v := &e.inv
	v.magic, v.version = u32(ir), u32(ir)
	binary.Read(ir, binary.LittleEndian, &v.flags)
	v.deny = u32(ir)
	v.uidMap, v.gidMap = str(ir), str(ir)
	for n := u32(ir); n > 0; n-- {
		v.fds = append(v.fds, u32(ir))
	}
	v.dir, v.config = str(ir), str(ir)
	for n := u32(ir); n > 0; n-- {
		v.argv = append(v.argv, str(ir))
	}
	v.appendArgs = u32(ir)
	for n := u32(ir); n > 0; n-- {
		v.env = append(v.env, str(ir))
	}
	return e
}

func (e lcEntry) encode() []byte {
	var ib bytes.Buffer
	u32 := func(b *bytes.Buffer, v uint32) { binary.Write(b, binary.LittleEndian, v) }
	str := func(b *bytes.Buffer, s []byte) { u32(b, uint32(len(s))); b.Write(s) }
	v := e.inv
	u32(&ib, v.magic)
	u32(&ib, v.version)
	binary.Write(&ib, binary.LittleEndian, v.flags)
	u32(&ib, v.deny)
	str(&ib, v.uidMap)
	str(&ib, v.gidMap)
	u32(&ib, uint32(len(v.fds)))
	for _, fd := range v.fds {
		u32(&ib, fd)
	}
	str(&ib, v.dir)
	str(&ib, v.config)
	u32(&ib, uint32(len(v.argv)))
	for _, s := range v.argv {
		str(&ib, s)
	}
	u32(&ib, v.appendArgs)
	u32(&ib, uint32(len(v.env)))
	for _, s := range v.env {
		str(&ib, s)
	}
	var b bytes.Buffer
	b.Write(e.head)
	b.Write(e.verify)
	str(&b, ib.Bytes())
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes()
}

// TestLaunchCacheForgedEntryNeverRuns: an entry forged by someone who can write the cache (same
// user), with a valid checksum, that starts a different worker in a weaker sandbox: no mount
// namespace (the host's root), no seccomp filter, a shell that leaves a mark on the host. The
// C side starts it (the checks it can make pass), but the stage waits at its gate until Go has
// computed the launch itself; Go's launch differs, so the waiting stage is killed before any
// worker exists, and the real worker runs in the real sandbox. Without the gate the mark appears.
func TestLaunchCacheForgedEntryNeverRuns(t *testing.T) {
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Skipf("no /bin/sh: %v", err)
	}
	worker, dir, entry, orig := primedEntry(t)
	e := decodeEntry(t, orig)
	markDir := openTempDir(t, 0o777)
	mark := filepath.Join(markDir, "forged-worker-ran")
	const newns = 0x00020000
	e.inv.flags &^= newns
	cfg := bytes.Clone(e.inv.config)
	flags := binary.LittleEndian.Uint32(cfg[8:])
	binary.LittleEndian.PutUint32(cfg[8:], flags&^0x2) // VR_FLAG_MOUNTNS off: the host's root
	// bpf_len, mounts_len, landlock: the struct's fields after the rlimits; dropping the program
	// leaves its bytes in the tail, which the stage then reads as the mount table: cut them too.
	off := 24 + 16*24
	bpfLen := binary.LittleEndian.Uint32(cfg[off:])
	mountsLen := binary.LittleEndian.Uint32(cfg[off+4:])
	llLen := binary.LittleEndian.Uint32(cfg[off+12:])
	hdr := len(cfg) - int(bpfLen)*8 - int(mountsLen) - int(llLen)
	binary.LittleEndian.PutUint32(cfg[off:], 0)
	binary.LittleEndian.PutUint32(cfg[off+4:], 0)
	binary.LittleEndian.PutUint32(cfg[off+8:], 0)
	binary.LittleEndian.PutUint32(cfg[off+12:], 0)
	e.inv.config = cfg[:hdr]
	e.inv.argv = [][]byte{[]byte(sh), []byte("sh"), []byte("-c"), []byte("echo pwned > " + mark)}
	e.inv.appendArgs = 0
	if err := os.WriteFile(entry, e.encode(), 0o600); err != nil {
		t.Fatal(err)
	}

	r := runCached(t, dir, worker, false, nil, "probe:open:/etc/passwd", "probe:seccomp", "ping")
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat(mark); err == nil {
		t.Fatalf("the forged entry's worker ran (%s exists): a cache entry chose the sandbox", mark)
	}
	if r.cache["state"] != "hit" || r.cache["used"] != "false" || r.cache["mismatch"] == "" {
		t.Fatalf("want the forged entry started, then refused by Go's comparison; got %v\n%s", r.cache, r.stderr)
	}
	if r.replies[0] == "ok" || r.replies[1] == "seccomp:0" || r.replies[2] != "pong" || r.exit != 0 {
		t.Fatalf("the real worker did not run in the real sandbox: %v exit %d", r.replies, r.exit)
	}
	// The ordinary launch that followed wrote its own entry in the forged one's place.
	if now, err := os.ReadFile(entry); err != nil || !bytes.Equal(now, orig) {
		t.Fatalf("the forged entry was not replaced by the launch's own (%v)", err)
	}
}
