package sandbox

/*
#include <stdlib.h>
#include "prelaunch.h"
*/
import "C"

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/vatrun/vatrun/internal/workerfiles"
)

// The C-first launch (prelaunch.c, prelaunch.h): before the Go runtime starts, `vatrun run`'s C
// constructor forks an intermediate process that looks the invocation up in the launch cache and,
// on a verified hit, clones the init stage. The stage sets up the sandbox and waits at a gate; Start computes the launch as
// always, and lets the worker run only when what was started is byte for byte what it would
// start itself. Otherwise it kills the waiting stage (no worker ever ran there) and launches
// the ordinary way. After an ordinary launch, `vatrun run` writes the entry for next time.

// launchCacheMax bounds the entries kept: past it, the older half is removed.
const launchCacheMax = 256

// launchSettle: an entry is written only when every file it lists changed longer ago than this,
// so that a later change of a file always gets a newer ctime than the one in the entry.
var launchSettle = 2 * time.Second

// LaunchCache is the state of the C-first launch in this process.
type LaunchCache struct {
	// State: "" (not `vatrun run`, no cache directory, or not looked at yet), "miss", "hit" (the
	// stage was started before Go), "refused" (an entry existed and was not used, or the start
	// failed: Why), "off" (VATRUN_PRELAUNCH=off).
	State string
	Why   string
	// Used: the started stage was adopted (the launch matched); Mismatch says why it was not.
	Used     bool
	Mismatch string
	// Saved: an ordinary launch wrote its entry; SaveSkipped says why it did not.
	Saved       bool
	SaveSkipped string
}

var pre struct {
	sync.Mutex
	taken   bool
	enabled bool     // EnableLaunchCache was called (vatrun run)
	extra   []string // files besides the worker's closure that the launch read
	state   LaunchCache
}

// EnableLaunchCache makes this process (vatrun run) adopt a stage started by its C constructor
// and write its launch to the cache. extra are the files the launch read besides the worker's
// closure: a profile file, mount sources; each is re-checked (one stat) before the entry is used.
func EnableLaunchCache(extra ...string) {
	pre.Lock()
	defer pre.Unlock()
	pre.enabled = true
	pre.extra = append([]string(nil), extra...)
}

// LaunchCacheState says what the C-first launch did in this process.
func LaunchCacheState() LaunchCache {
	pre.Lock()
	defer pre.Unlock()
	st := pre.state
	if st.State == "" && C.vr_pre.state == 4 {
		st.State = "off"
	}
	return st
}

// prelaunched is the stage the constructor started, taken once.
type prelaunched struct {
	pid      int
	status   *os.File
	gate     *os.File
	inv      []byte
	key, dir string
}

func takePrelaunched() (*prelaunched, string, string) {
	pre.Lock()
	defer pre.Unlock()
	if pre.taken || !pre.enabled {
		return nil, "", ""
	}
	pre.taken = true
	if C.vr_pre.state == 4 {
		pre.state.State = "off"
	}
	if C.vr_pre.state != 5 { // off, or not `vatrun run`, or no cache directory
		return nil, "", ""
	}
	dir := C.GoString(&C.vr_pre.dir[0])
	// The intermediate process's message, then it exits.
	pidf := os.NewFile(uintptr(C.vr_pre.pid_fd), "prelaunch-result")
	status := os.NewFile(uintptr(C.vr_pre.status_fd), "prelaunch-status")
	gate := os.NewFile(uintptr(C.vr_pre.gate_fd), "prelaunch-gate")
	m, why, inv, err := readPreMsg(pidf)
	pidf.Close()
	ws := reap(int(C.vr_pre.mid))
	p := &prelaunched{pid: int(m.pid), status: status, gate: gate, inv: inv, key: m.key, dir: dir}
	switch {
	case err != nil:
		pre.state.State, pre.state.Why = "refused", fmt.Sprintf("launch cache: no word from the intermediate process (%v, %v)", err, ws)
	case m.state == 1:
		pre.state.State = "miss"
	case m.state == 2 && m.pid > 0:
		pre.state.State = "hit"
		return p, m.key, dir
	default:
		pre.state.State, pre.state.Why = "refused", why
		if m.err != 0 {
			pre.state.Why += fmt.Sprintf(" (%v)", syscall.Errno(m.err))
		}
	}
	if p.pid > 0 { // a stage the intermediate process started and then killed: reap it
		p.discard()
	} else {
		gate.Close()
		status.Close()
	}
	return nil, m.key, dir
}

// preMsg is struct vr_pre_msg (prelaunch.h).
type preMsg struct {
	state, pid, err int32
	key             string
}

func readPreMsg(f *os.File) (m preMsg, why string, inv []byte, err error) {
	hdr := make([]byte, C.sizeof_struct_vr_pre_msg)
	if _, err = io.ReadFull(f, hdr); err != nil {
		return m, "", nil, err
	}
	le := binary.LittleEndian
	m.state, m.pid, m.err = int32(le.Uint32(hdr[0:])), int32(le.Uint32(hdr[4:])), int32(le.Uint32(hdr[8:]))
	whyLen, invLen := le.Uint32(hdr[12:]), le.Uint32(hdr[16:])
	m.key = strings.TrimRight(string(hdr[20:20+64]), "\x00")
	if len(m.key) != 64 {
		m.key = ""
	}
	if whyLen > 4096 || invLen > uint32(C.VR_LC_MAX) {
		return m, "", nil, fmt.Errorf("malformed message")
	}
	body := make([]byte, whyLen+invLen)
	if _, err = io.ReadFull(f, body); err != nil {
		return m, "", nil, err
	}
	return m, string(body[:whyLen]), body[whyLen:], nil
}

// discard kills the waiting stage (it never forked a worker) and reaps it.
func (p *prelaunched) discard() {
	syscall.Kill(p.pid, syscall.SIGKILL)
	p.gate.Close()
	p.status.Close()
	reap(p.pid)
}

// reap waits for the child pid (the intermediate process, a discarded stage) to end.
func reap(pid int) syscall.WaitStatus {
	var ws syscall.WaitStatus
	for {
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != syscall.EINTR {
			return ws
		}
	}
}

// invocation is what Start clones and execs, in the wire format prelaunch.c reads.
type invocation struct {
	flags          uint64
	setgroupsDeny  bool
	uidMap, gidMap string
	fds            []int32
	dir            string
	config         []byte
	argv, env      []string
	// appendArgs: argv is the worker's path and argv[0]; its arguments are the command line's
	// (after `-- WORKER`), filled in by prelaunch.c.
	appendArgs bool
}

// wire writes prelaunch.h's formats: little-endian integers, and str as a u32 length and bytes.
type wire struct{ bytes.Buffer }

func (w *wire) u32(x uint32) { w.Write(binary.LittleEndian.AppendUint32(nil, x)) }
func (w *wire) u64(x uint64) { w.Write(binary.LittleEndian.AppendUint64(nil, x)) }
func (w *wire) str(s string) { w.u32(uint32(len(s))); w.WriteString(s) }
func (w *wire) flag(b bool) {
	if b {
		w.u32(1)
	} else {
		w.u32(0)
	}
}
func (w *wire) strs(ss []string) {
	w.u32(uint32(len(ss)))
	for _, s := range ss {
		w.str(s)
	}
}

func (v invocation) encode() []byte {
	var w wire
	w.u32(uint32(C.VR_INV_MAGIC))
	w.u32(uint32(C.VR_INV_VERSION))
	w.u64(v.flags)
	w.flag(v.setgroupsDeny)
	w.str(v.uidMap)
	w.str(v.gidMap)
	w.u32(uint32(len(v.fds)))
	for _, fd := range v.fds {
		w.u32(uint32(fd))
	}
	w.str(v.dir)
	w.str(string(v.config))
	w.strs(v.argv)
	w.flag(v.appendArgs)
	w.strs(v.env)
	return w.Bytes()
}

// idMap is a uid_map/gid_map text as Go's forkExec writes it.
func idMap(ms []syscall.SysProcIDMap) string {
	var s strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&s, "%d %d %d\n", m.ContainerID, m.HostID, m.Size)
	}
	return s.String()
}

// saveLaunch writes the cache entry of an ordinary launch of the worker at path (argv0 as typed).
func saveLaunch(key, dir string, inv []byte, path, argv0 string) error {
	if key == "" || dir == "" {
		return fmt.Errorf("no cache directory")
	}
	if !strings.Contains(argv0, "/") {
		return fmt.Errorf("the worker was found through PATH, which the entry cannot re-check")
	}
	c, err := workerfiles.Of(path)
	if err != nil {
		return err
	}
	keys := c.Keys()
	if len(keys) == 0 || keys[0].Path != path {
		return fmt.Errorf("the worker's closure is incomplete")
	}
	pre.Lock()
	extra := pre.extra
	pre.Unlock()
	for _, p := range append([]string{argv0}, extra...) {
		k, ok := workerfiles.KeyOf(p)
		if !ok {
			return fmt.Errorf("cannot stat %s", p)
		}
		keys = append(keys, k)
	}
	now := time.Now()
	for _, k := range keys {
		if now.Sub(time.Unix(k.Ctime, k.CtimeNsec)) < launchSettle {
			return fmt.Errorf("%s changed less than %v ago", k.Path, launchSettle)
		}
	}
	kb, err := hex.DecodeString(key)
	if err != nil || len(kb) != 32 || hex.EncodeToString(kb) != key {
		return fmt.Errorf("bad key %q", key)
	}
	var b wire
	b.u32(uint32(C.VR_LC_MAGIC))
	b.u32(uint32(C.VR_LC_VERSION))
	b.Write(kb)
	b.u32(uint32(len(keys)))
	for _, k := range keys {
		b.str(k.Path)
		for _, v := range []uint64{k.Dev, k.Ino, uint64(k.Size), uint64(k.Mtime), uint64(k.MtimeNsec), uint64(k.Ctime), uint64(k.CtimeNsec)} {
			b.u64(v)
		}
	}
	b.str(string(inv))
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	if b.Len() > int(C.VR_LC_MAX) {
		return fmt.Errorf("entry of %d bytes is over %d", b.Len(), C.VR_LC_MAX)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	cdir := C.CString(dir)
	trusted := C.vr_pre_trusted_dir(cdir) != 0
	C.free(unsafe.Pointer(cdir))
	if !trusted {
		return fmt.Errorf("%s (or a directory above it) can be written by another user", dir)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(b.Bytes())
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), filepath.Join(dir, key))
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return werr
	}
	pruneLaunchCache(dir)
	return nil
}

// pruneLaunchCache removes the older half of the entries when there are more than launchCacheMax.
func pruneLaunchCache(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) <= launchCacheMax {
		return
	}
	type aged struct {
		name string
		mod  time.Time
	}
	var all []aged
	for _, e := range ents {
		if info, err := e.Info(); err == nil {
			all = append(all, aged{e.Name(), info.ModTime()})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mod.Before(all[j].mod) })
	for _, a := range all[:len(all)/2] {
		os.Remove(filepath.Join(dir, a.name))
	}
}

// cSHA256 is prelaunch.c's SHA-256, for the test against crypto/sha256.
func cSHA256(b []byte) [32]byte {
	var s C.struct_vr_sha256
	var out [32]byte
	C.vr_sha256_init(&s)
	if len(b) > 0 {
		C.vr_sha256_update(&s, unsafe.Pointer(&b[0]), C.size_t(len(b)))
	}
	C.vr_sha256_final(&s, (*C.uint8_t)(unsafe.Pointer(&out[0])))
	return out
}

// cCacheBase is prelaunch.c's cache directory for env and euid, for the test against
// hostfacts.CacheBase.
func cCacheBase(env []string, euid int) string {
	cenv := make([]*C.char, len(env)+1)
	for i, e := range env {
		cenv[i] = C.CString(e)
		defer C.free(unsafe.Pointer(cenv[i]))
	}
	var out [512]C.char
	if C.vr_cache_base(&cenv[0], C.unsigned(euid), &out[0], C.size_t(len(out))) == 0 {
		return ""
	}
	return C.GoString(&out[0])
}

// template is the form of inv a launch-cache entry holds: when the worker's arguments are this
// command line's after `-- WORKER` (the part the C side's key leaves out), argv holds only the
// worker's path and argv[0], and the arguments come from the command line. Otherwise inv itself.
func (v invocation) template() invocation {
	from := int(C.vr_pre.args_from)
	if from < 0 || len(v.argv) < 2 || from > len(os.Args) || !slices.Equal(v.argv[2:], os.Args[from:]) {
		return v
	}
	v.argv = v.argv[:2]
	v.appendArgs = true
	return v
}
