// Package hostfacts names the facts of a host that can still make two validators differ when their
// profiles have the same digest: the kernel, libseccomp, cgroup v2 features, memory policy, the
// CPU. Each fact says whether it can change a worker's outcome (exit code, signal, or how its
// death is classified) and why. It also computes the worker digest: what the worker is, as the
// sandbox shows it (WorkerDigest).
//
// Everything is read, never written. Readers take a Source whose Root prefixes every /proc and
// /sys path, so tests run them against fake trees.
package hostfacts

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/hostfacts/factnames"
)

// Fact is one host fact.
type Fact struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// OutcomeRelevant: a different value can change what a worker does or how its death is
	// classified. Only these enter the host facts digest.
	OutcomeRelevant bool `json:"outcomeRelevant"`
	// Why is one line on why the fact matters.
	Why string `json:"why"`
}

// Facts is a list of facts in a fixed order (the order of Names).
type Facts []Fact

// Get returns the fact called name.
func (fs Facts) Get(name string) (Fact, bool) {
	for _, f := range fs {
		if f.Name == name {
			return f, true
		}
	}
	return Fact{}, false
}

// Digest is "sha256:" + the hex SHA-256 of the canonical JSON of the outcome-relevant facts: one
// object, name → value, keys sorted, no whitespace. Two hosts with the same digest agree on every
// fact that can change a worker's outcome (as far as this package names them).
func (fs Facts) Digest() string {
	m := map[string]string{}
	for _, f := range fs {
		if f.OutcomeRelevant {
			m[f.Name] = f.Value
		}
	}
	b, _ := json.Marshal(m) // encoding/json sorts map keys
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Fact names (see factnames).
const (
	KernelRelease       = factnames.KernelRelease
	KernelArch          = factnames.KernelArch
	LibseccompVersion   = factnames.LibseccompVersion
	SeccompActions      = factnames.SeccompActions
	SeccompFlags        = factnames.SeccompFlags
	CgroupMode          = factnames.CgroupMode
	CgroupControllers   = factnames.CgroupControllers
	CgroupKill          = factnames.CgroupKill
	CgroupMemoryPeak    = factnames.CgroupMemoryPeak
	CgroupOOMGroup      = factnames.CgroupOOMGroup
	CgroupEventsLocal   = factnames.CgroupEventsLocal
	CgroupPidsPeak      = factnames.CgroupPidsPeak
	CgroupSwapAccount   = factnames.CgroupSwapAccount
	VMOvercommit        = factnames.VMOvercommit
	SwapPresent         = factnames.SwapPresent
	TransparentHugepage = factnames.TransparentHugepage
	PageSize            = factnames.PageSize
	CPUMathFeatures     = factnames.CPUMathFeatures
	CPUModel            = factnames.CPUModel
	CPUCount            = factnames.CPUCount
)

// Names lists every fact name, in display order.
func Names() []string { return factnames.Names() }

// Known says whether name is a fact this package gathers.
func Known(name string) bool { return factnames.Known(name) }

// Relevant says whether the fact called name can change a worker's outcome (false when unknown).
func Relevant(name string) bool { return factnames.Relevant(name) }

// Source says where facts are read from. The zero value reads this host.
type Source struct {
	// Root prefixes every /proc and /sys path ("" = the real /).
	Root string
	// CgroupParent is the cgroup (a path such as "/vatrun.slice") whose files are probed for
	// cgroup features; "" means this process's own cgroup (no environment variable is read).
	CgroupParent string
	// Test hooks; nil means the real host.
	Uname             func() (release, machine string, err error)
	LibseccompVersion func() string
	SeccompFlags      func() string
	PageSize          func() int
}

func (s Source) real() bool { return s.Root == "" || s.Root == "/" }

func (s Source) path(p string) string {
	if s.real() {
		return p
	}
	return filepath.Join(s.Root, p)
}

// readHead reads at most n bytes of a /proc or /sys file, trimmed.
func (s Source) readHead(p string, n int) (string, error) {
	f, err := os.Open(s.path(p))
	if err != nil {
		return "", err
	}
	defer f.Close()
	b := make([]byte, n)
	m, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.TrimSpace(string(b[:m])), nil
}

func (s Source) read(p string) (string, error) { return s.readHead(p, 4<<10) }

func unknown(err error) string {
	if err == nil {
		return "unknown"
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return "unknown: " + pe.Path + ": " + pe.Err.Error()
	}
	return "unknown: " + err.Error()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// Gather reads every fact from src.
func Gather(src Source) Facts {
	v := map[string]string{}
	v[KernelRelease], v[KernelArch] = src.uname()
	v[LibseccompVersion] = src.libseccomp()
	v[SeccompActions] = src.seccompActions()
	v[SeccompFlags] = src.seccompFlags()
	for k, x := range src.cgroupFacts() {
		v[k] = x
	}
	if x, err := src.read("/proc/sys/vm/overcommit_memory"); err == nil && x != "" {
		v[VMOvercommit] = x
	} else {
		v[VMOvercommit] = unknown(err)
	}
	v[SwapPresent] = src.swap()
	v[TransparentHugepage] = src.thp()
	v[PageSize] = src.pageSize()
	v[CPUMathFeatures], v[CPUModel] = src.cpuinfo()
	v[CPUCount] = src.cpuCount()
	specs := factnames.Specs()
	out := make(Facts, len(specs))
	for i, s := range specs {
		out[i] = Fact{Name: s.Name, Value: v[s.Name], OutcomeRelevant: s.Relevant, Why: s.Why}
	}
	return out
}

var (
	hostOnce   sync.Once
	hostFacts  Facts
	hostDigest string
)

// Host gathers this host's facts once per process and returns them (shared: do not modify). It
// is Gather(Source{}): cgroup features are looked for from this process's own cgroup, whatever
// cgroup parent its workers use, so every report of a process and its `vatrun check` agree.
func Host() Facts {
	hostOnce.Do(func() {
		hostFacts = Gather(Source{})
		hostDigest = hostFacts.Digest()
	})
	return hostFacts
}

// HostDigest is Host().Digest(), computed once per process.
func HostDigest() string {
	Host()
	return hostDigest
}

func (s Source) uname() (release, machine string) {
	if s.Uname != nil {
		r, m, err := s.Uname()
		if err != nil {
			return unknown(err), unknown(err)
		}
		return r, m
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return unknown(err), unknown(err)
	}
	return unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Machine[:])
}

func (s Source) libseccomp() string {
	if s.LibseccompVersion != nil {
		return s.LibseccompVersion()
	}
	a, b, c := libseccomp.GetLibraryVersion()
	return fmt.Sprintf("%d.%d.%d", a, b, c)
}

func (s Source) seccompActions() string {
	x, err := s.read("/proc/sys/kernel/seccomp/actions_avail")
	if err != nil {
		return unknown(err)
	}
	f := strings.Fields(x)
	slices.Sort(f)
	return strings.Join(f, " ")
}

// seccompFlags probes each SECCOMP_FILTER_FLAG_* with seccomp(SECCOMP_SET_MODE_FILTER, flag,
// NULL): the kernel checks the flags before it reads the program, so EFAULT means the flag is
// known and EINVAL that it is not. Nothing is installed.
func (s Source) seccompFlags() string {
	if s.SeccompFlags != nil {
		return s.SeccompFlags()
	}
	if !s.real() {
		return "unknown: not probed in a fake tree"
	}
	flags := []struct {
		bit  uintptr
		name string
	}{{1, "tsync"}, {2, "log"}, {4, "spec_allow"}, {8, "new_listener"}, {16, "tsync_esrch"}, {32 | 8, "wait_killable_recv"}} // wait_killable_recv needs new_listener
	var have []string
	for _, f := range flags {
		_, _, e := unix.Syscall(unix.SYS_SECCOMP, 1 /* SECCOMP_SET_MODE_FILTER */, f.bit, 0)
		switch e {
		case unix.EFAULT:
			have = append(have, f.name)
		case unix.EINVAL:
		default:
			return "unknown: seccomp(2) probe: " + e.Error()
		}
	}
	return strings.Join(have, " ")
}

func (s Source) swap() string {
	x, err := s.read("/proc/swaps")
	if err != nil {
		return unknown(err)
	}
	lines := strings.Split(x, "\n")
	n := 0
	for _, l := range lines[1:] { // a header line, then one line per swap area
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	return yesNo(n > 0)
}

func (s Source) thp() string {
	x, err := s.read("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "unsupported"
		}
		return unknown(err)
	}
	if _, rest, ok := strings.Cut(x, "["); ok {
		if v, _, ok := strings.Cut(rest, "]"); ok {
			return v
		}
	}
	return unknown(fmt.Errorf("no [selected] mode in %q", x))
}

func (s Source) pageSize() string {
	if s.PageSize != nil {
		return strconv.Itoa(s.PageSize())
	}
	return strconv.Itoa(os.Getpagesize())
}

// cpuinfo reads the first processor's entry of /proc/cpuinfo only (the first 16 KiB: the kernel
// generates the file per CPU as it is read, and each entry can cost an IPI for its MHz line).
func (s Source) cpuinfo() (math, model string) {
	x, err := s.readHead("/proc/cpuinfo", 16<<10)
	if err != nil {
		return unknown(err), unknown(err)
	}
	model, math = "unknown", ""
	var gotModel, gotFlags bool
	for line := range strings.Lines(x) {
		k, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name", "Model", "cpu model": // x86; arm64 (some); mips
			if !gotModel {
				model, gotModel = strings.TrimSpace(val), true
			}
		case "flags", "Features": // x86; arm64
			if !gotFlags {
				gotFlags = true
				have := strings.Fields(val)
				var m []string
				for _, f := range []string{"avx2", "fma", "fma4"} {
					if slices.Contains(have, f) {
						m = append(m, f)
					}
				}
				math = strings.Join(m, " ")
			}
		}
	}
	if !gotFlags {
		math = "unknown: no flags line in /proc/cpuinfo"
	} else if math == "" {
		math = "none"
	}
	return math, model
}

func (s Source) cpuCount() string {
	x, err := s.read("/sys/devices/system/cpu/online")
	if err != nil {
		if s.real() {
			return strconv.Itoa(runtime.NumCPU())
		}
		return unknown(err)
	}
	n := 0
	for _, r := range strings.Split(x, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(r), "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || b < a {
			return unknown(fmt.Errorf("bad cpu list %q", x))
		}
		n += b - a + 1
	}
	return strconv.Itoa(n)
}

// ParseVersion reads the leading "MAJOR.MINOR[.PATCH]" of a kernel release ("6.1.0-18-amd64" →
// [6 1 0]).
func ParseVersion(s string) ([3]int, error) {
	var v [3]int
	num := s
	if i := strings.IndexFunc(s, func(r rune) bool { return r != '.' && (r < '0' || r > '9') }); i >= 0 {
		num = s[:i]
	}
	parts := strings.Split(strings.TrimSuffix(num, "."), ".")
	if len(parts) < 2 || len(parts) > 3 {
		return v, fmt.Errorf("%q is not a kernel version such as 6.1 or 5.15.0", s)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, fmt.Errorf("%q is not a kernel version such as 6.1 or 5.15.0", s)
		}
		v[i] = n
	}
	return v, nil
}

// KernelAtLeast says whether release is min or newer.
func KernelAtLeast(release, min string) (bool, error) {
	r, err := ParseVersion(release)
	if err != nil {
		return false, err
	}
	m, err := ParseVersion(min)
	if err != nil {
		return false, err
	}
	for i := range r {
		if r[i] != m[i] {
			return r[i] > m[i], nil
		}
	}
	return true, nil
}
