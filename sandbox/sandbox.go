// Package sandbox is where a worker is spawned: Start (start.go) clones the init stage, the
// child-side stage that runs between the supervisor's clone and the worker's exec. The stage
// itself is C (stage.c) and runs as a constructor before the Go runtime starts, in any binary
// that links this package, when its argv[1] is Marker; this file is the Go side of its wire
// format: the config the supervisor writes and the status messages it reads.
package sandbox

/*
#cgo CFLAGS: -O2 -Wall -Wextra -Werror=implicit-function-declaration
#include <string.h>
#include "stage.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Marker is argv[1] of the init stage.
const Marker = C.VR_MARKER

// MaxBPF is the longest seccomp program the stage accepts (the kernel's BPF_MAXINSNS).
const MaxBPF = C.VR_MAX_BPF

// MsgSize is the size of one status message.
const MsgSize = int(C.sizeof_struct_vr_msg)

// Rlimit is one resource limit the worker gets.
type Rlimit struct {
	Resource int
	Cur, Max uint64
}

// Config is what the init stage needs to know.
type Config struct {
	// Namespaces are the CLONE_NEW* flags the stage is cloned with (CLONE_NEWUSER excepted; see
	// UserNS). With CLONE_NEWPID the stage is pid 1 of the new pid namespace; with CLONE_NEWNS
	// the worker gets a minimal root (Mounts, a private /dev, a fresh /proc, nothing else); with
	// CLONE_NEWUTS the stage sets Hostname.
	Namespaces uintptr
	// UserNS: also create a user namespace that maps the caller's uid and gid to themselves
	// (and, with SetIDs, UID and GID to themselves too).
	UserNS bool
	// SetIDs: the worker's process switches to UID and GID, with no supplementary groups, between
	// fork and exec (setgroups, setresgid, setresuid; it needs CAP_SETUID and CAP_SETGID, i.e. a
	// root vatrun). With UserNS, UID and GID are mapped into the user namespace for it.
	SetIDs   bool
	UID, GID uint32
	DropCaps bool // empty the bounding and ambient capability sets before exec
	// LandlockABI (0: off) confines the worker with Landlock at this ABI (1..MaxLandlockABI; see
	// LandlockABI()): it may read and execute LandlockPaths (files, and directories with what is
	// beneath them) and nothing else of the filesystem; from ABI 4 no TCP bind or connect; from
	// ABI 6 it may not signal, nor reach an abstract unix socket of, a process outside its domain.
	LandlockABI   int
	LandlockPaths []string
	Hostname      string
	// KeepFDs: fds [0, KeepFDs) reach the worker; every fd above is closed at exec.
	KeepFDs int
	// StatusFD is the stage's fd number of the status pipe's write end.
	StatusFD int
	Rlimits  []Rlimit
	// BPF is a raw seccomp program (struct sock_filter array); empty means no filter.
	BPF []byte
	// Mounts is what the minimal root holds besides /dev and /proc (MountNS); Start adds what the
	// worker executable needs to load (WorkerRoot).
	Mounts []Mount
	// RecordDenied: record the syscalls BPF refuses with ERRNO (seccomp user notification,
	// answered by the init stage with the same errno); see Exit.Denied and docs/sandbox.md.
	RecordDenied bool
}

// PidNS says whether the stage is pid 1 of a new pid namespace.
func (c *Config) PidNS() bool { return c.Namespaces&unix.CLONE_NEWPID != 0 }

// MountNS says whether the worker gets its own minimal root.
func (c *Config) MountNS() bool { return c.Namespaces&unix.CLONE_NEWNS != 0 }

// Encode serialises the config for the stage's config fd.
func (c *Config) Encode() ([]byte, error) {
	if len(c.Rlimits) > C.VR_MAX_RLIMITS {
		return nil, fmt.Errorf("sandbox config: %d rlimits, at most %d", len(c.Rlimits), C.VR_MAX_RLIMITS)
	}
	if len(c.BPF)%8 != 0 {
		return nil, fmt.Errorf("sandbox config: seccomp program of %d bytes is not a whole number of instructions", len(c.BPF))
	}
	if n := len(c.BPF) / 8; n > MaxBPF {
		return nil, fmt.Errorf("sandbox config: seccomp program has %d instructions, the kernel takes at most %d", n, MaxBPF)
	}
	if len(c.Hostname) >= 64 {
		return nil, fmt.Errorf("sandbox config: hostname %q longer than 63 bytes", c.Hostname)
	}
	var cfg C.struct_vr_config
	cfg.magic = C.VR_MAGIC
	cfg.version = C.VR_VERSION
	if c.Namespaces&unix.CLONE_NEWUSER != 0 {
		return nil, errors.New("sandbox config: CLONE_NEWUSER belongs in UserNS, not Namespaces")
	}
	var flags uint32
	if c.PidNS() {
		flags |= C.VR_FLAG_PIDNS
	}
	if c.MountNS() {
		flags |= C.VR_FLAG_MOUNTNS
	}
	if c.Namespaces&unix.CLONE_NEWUTS != 0 {
		flags |= C.VR_FLAG_UTSNS
	}
	if c.DropCaps {
		flags |= C.VR_FLAG_DROPCAPS
	}
	if c.RecordDenied {
		flags |= C.VR_FLAG_RECORD_DENIED
	}
	if c.SetIDs {
		flags |= C.VR_FLAG_SETIDS
		cfg.worker_uid = C.uint32_t(c.UID)
		cfg.worker_gid = C.uint32_t(c.GID)
	}
	cfg.flags = C.uint32_t(flags)
	cfg.keep_fds = C.int32_t(c.KeepFDs)
	cfg.status_fd = C.int32_t(c.StatusFD)
	cfg.nrlimits = C.uint32_t(len(c.Rlimits))
	for i, r := range c.Rlimits {
		cfg.rlimits[i].resource = C.int32_t(r.Resource)
		cfg.rlimits[i].cur = C.uint64_t(r.Cur)
		cfg.rlimits[i].max = C.uint64_t(r.Max)
	}
	cfg.bpf_len = C.uint32_t(len(c.BPF) / 8)
	var table []byte
	if c.MountNS() {
		ms, err := normalizeMounts(c.Mounts)
		if err != nil {
			return nil, err
		}
		if table, err = encodeMounts(ms); err != nil {
			return nil, err
		}
	}
	cfg.mounts_len = C.uint32_t(len(table))
	var ll []byte
	if c.LandlockABI > 0 {
		if c.LandlockABI > MaxLandlockABI {
			return nil, fmt.Errorf("sandbox config: landlock ABI %d, this vatrun knows up to %d", c.LandlockABI, MaxLandlockABI)
		}
		for _, p := range c.LandlockPaths {
			if !filepath.IsAbs(p) || strings.IndexByte(p, 0) >= 0 {
				return nil, fmt.Errorf("sandbox config: landlock path %q is not a clean absolute path", p)
			}
			ll = append(append(ll, p...), 0)
		}
		cfg.landlock_abi = C.uint32_t(c.LandlockABI)
		cfg.landlock_len = C.uint32_t(len(ll))
	}
	for i := 0; i < len(c.Hostname); i++ {
		cfg.hostname[i] = C.char(c.Hostname[i])
	}
	raw := C.GoBytes(unsafe.Pointer(&cfg), C.int(unsafe.Sizeof(cfg)))
	raw = append(raw, c.BPF...)
	raw = append(raw, table...)
	return append(raw, ll...), nil
}

// MsgType says what a status message reports.
type MsgType uint32

const (
	// MsgExecOK: the worker's execve succeeded; Msg.A is its pid as the stage sees it.
	MsgExecOK MsgType = C.VR_MSG_EXEC_OK
	// MsgSetupFailed: a step failed before the worker ran; Msg.A is the errno, Msg.Text the step.
	MsgSetupFailed MsgType = C.VR_MSG_SETUP_FAILED
	// MsgExited: the worker was reaped; Msg.A is the raw wait status, Msg.Count the refused
	// calls that did not fit the MsgDenied records.
	MsgExited MsgType = C.VR_MSG_EXITED
	// MsgDenied: one syscall the filter refused (sent before MsgExited); Msg.A is its number.
	MsgDenied MsgType = C.VR_MSG_DENIED
)

// MaxDenied is how many distinct refused syscalls the init stage records.
const MaxDenied = C.VR_MAX_DENIED

// ExecRecording in Msg.Flags of MsgExecOK: the refused syscalls are being recorded.
const ExecRecording = C.VR_EXEC_RECORDING

// Denied is one syscall the seccomp filter refused with ERRNO, as the init stage recorded it.
type Denied struct {
	Nr    int
	Arch  uint32 // AUDIT_ARCH_*
	Errno int    // what the worker got
	Count uint64
	Args  [6]uint64 // of the first refused call
	// Last ranks its latest refusal among all the refused calls (1 is the first refused call):
	// the highest is the call refused last, the likeliest cause of a death that follows.
	Last uint64
}

// Msg is one status message from the stage.
type Msg struct {
	Type     MsgType
	A        int
	Utime    time.Duration
	Stime    time.Duration
	MaxRSSKB int64
	// CPU is the worker's PROF clock (raw tick-sampled user+system time) read while it
	// was a zombie: the clock RLIMIT_CPU is enforced against; negative when unknown.
	CPU time.Duration
	// Forwarded: bit N set when the stage relayed signal N to the worker while it was alive.
	Forwarded uint64
	// Mono is CLOCK_MONOTONIC (ns) when the worker's exec succeeded (MsgExecOK) or when it was
	// reaped (MsgExited), read by the init stage; 0 when unknown.
	Mono int64
	Text string
	// MsgDenied: the refused call's architecture, errno, count and first arguments.
	Arch  uint32
	Errno int
	Count uint64
	Args  [6]uint64
	// Flags of MsgExecOK (ExecRecording).
	Flags uint32
	// Last: MsgDenied's rank of the latest refusal (Denied.Last).
	Last uint64
}

// DecodeMsg parses one MsgSize-byte status message.
func DecodeMsg(b []byte) (Msg, error) {
	if len(b) != MsgSize {
		return Msg{}, fmt.Errorf("sandbox status message: %d bytes, want %d", len(b), MsgSize)
	}
	var raw C.struct_vr_msg
	C.memcpy(unsafe.Pointer(&raw), unsafe.Pointer(&b[0]), C.size_t(MsgSize))
	m := Msg{
		Type:      MsgType(raw._type),
		A:         int(raw.a),
		Utime:     time.Duration(raw.utime_usec) * time.Microsecond,
		Stime:     time.Duration(raw.stime_usec) * time.Microsecond,
		MaxRSSKB:  int64(raw.maxrss_kb),
		CPU:       time.Duration(raw.cpu_nsec),
		Forwarded: uint64(raw.forwarded),
		Mono:      int64(raw.mono_nsec),
		Text:      C.GoStringN(&raw.text[0], C.int(C.strnlen(&raw.text[0], C.size_t(len(raw.text))))),
		Arch:      uint32(raw.arch),
		Errno:     int(raw.err),
		Count:     uint64(raw.count),
		Flags:     uint32(raw.flags),
		Last:      uint64(raw.last),
	}
	for i := range m.Args {
		m.Args[i] = uint64(raw.args[i])
	}
	switch m.Type {
	case MsgExecOK, MsgSetupFailed, MsgExited, MsgDenied:
		return m, nil
	}
	return Msg{}, errors.New("sandbox status message: unknown type " + fmt.Sprint(m.Type))
}

// MaxInheritedFD bounds the fds InheritedFD knows about: 0 to MaxInheritedFD-1.
const MaxInheritedFD = C.VR_MAX_INHERITED_FD

// InheritedFD says whether fd (0 to MaxInheritedFD-1) was open when this process started, as
// seen by a constructor that ran before the Go runtime could open descriptors of its own.
func InheritedFD(fd int) bool {
	if fd < 0 || fd >= MaxInheritedFD {
		return false
	}
	return uint64(C.vr_inherited_fds)&(1<<uint(fd)) != 0
}

// EvalBPF runs a seccomp program (struct sock_filter array) on a struct seccomp_data (64 bytes) with
// the init stage's interpreter, the one that finds each refused call's errno; ok is false for a
// program it cannot run. For tests.
func EvalBPF(prog, data []byte) (action uint32, ok bool) {
	if len(prog) == 0 || len(prog)%8 != 0 || len(data) != 64 {
		return 0, false
	}
	var cok C.int
	act := C.vr_bpf_eval(unsafe.Pointer(&prog[0]), C.uint32_t(len(prog)/8), unsafe.Pointer(&data[0]), &cok)
	return uint32(act), cok != 0
}

// DieBySignal ends this process by sig, after its default action is restored, with no core dump
// of its own, so that the parent's wait status is the one the worker had (death by sig). For a
// signal whose default action does not terminate it exits 128+sig. It does not return.
func DieBySignal(sig int) {
	C.vr_die_by_signal(C.int(sig))
}
