// Package filter compiles a profile's seccomp section to the classic-BPF program the init stage
// loads, with libseccomp (cgo), and prepends the ENOSYS stub for syscalls newer than the profile.
// It is the only part of the profile machinery that needs cgo; seccompprofiles parses and
// validates without it.
package filter

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/seccompprofiles"
)

var actions = map[specs.LinuxSeccompAction]libseccomp.ScmpAction{
	specs.ActAllow:       libseccomp.ActAllow,
	specs.ActErrno:       libseccomp.ActErrno,
	specs.ActKill:        libseccomp.ActKillThread, // OCI and libseccomp: KILL is KILL_THREAD
	specs.ActKillProcess: libseccomp.ActKillProcess,
	specs.ActKillThread:  libseccomp.ActKillThread,
	specs.ActTrap:        libseccomp.ActTrap,
	specs.ActLog:         libseccomp.ActLog,
}

var compareOps = map[specs.LinuxSeccompOperator]libseccomp.ScmpCompareOp{
	specs.OpNotEqual:     libseccomp.CompareNotEqual,
	specs.OpLessThan:     libseccomp.CompareLess,
	specs.OpLessEqual:    libseccomp.CompareLessOrEqual,
	specs.OpEqualTo:      libseccomp.CompareEqual,
	specs.OpGreaterEqual: libseccomp.CompareGreaterEqual,
	specs.OpGreaterThan:  libseccomp.CompareGreater,
	specs.OpMaskedEqual:  libseccomp.CompareMaskedEqual,
}

type archInfo struct {
	arch  libseccomp.ScmpArch
	audit uint32 // AUDIT_ARCH_* the kernel reports in seccomp_data.arch; 0: no ENOSYS stub
}

// architectures maps OCI architecture names to libseccomp and the kernel's audit arch.
var architectures = map[specs.Arch]archInfo{
	specs.ArchX86:         {libseccomp.ArchX86, unix.AUDIT_ARCH_I386},
	specs.ArchX86_64:      {libseccomp.ArchAMD64, unix.AUDIT_ARCH_X86_64},
	specs.ArchX32:         {libseccomp.ArchX32, 0}, // shares AUDIT_ARCH_X86_64
	specs.ArchARM:         {libseccomp.ArchARM, unix.AUDIT_ARCH_ARM},
	specs.ArchAARCH64:     {libseccomp.ArchARM64, unix.AUDIT_ARCH_AARCH64},
	specs.ArchMIPS:        {libseccomp.ArchMIPS, unix.AUDIT_ARCH_MIPS},
	specs.ArchMIPS64:      {libseccomp.ArchMIPS64, unix.AUDIT_ARCH_MIPS64},
	specs.ArchMIPS64N32:   {libseccomp.ArchMIPS64N32, unix.AUDIT_ARCH_MIPS64N32},
	specs.ArchMIPSEL:      {libseccomp.ArchMIPSEL, unix.AUDIT_ARCH_MIPSEL},
	specs.ArchMIPSEL64:    {libseccomp.ArchMIPSEL64, unix.AUDIT_ARCH_MIPSEL64},
	specs.ArchMIPSEL64N32: {libseccomp.ArchMIPSEL64N32, unix.AUDIT_ARCH_MIPSEL64N32},
	specs.ArchPPC:         {libseccomp.ArchPPC, unix.AUDIT_ARCH_PPC},
	specs.ArchPPC64:       {libseccomp.ArchPPC64, unix.AUDIT_ARCH_PPC64},
	specs.ArchPPC64LE:     {libseccomp.ArchPPC64LE, unix.AUDIT_ARCH_PPC64LE},
	specs.ArchS390:        {libseccomp.ArchS390, unix.AUDIT_ARCH_S390},
	specs.ArchS390X:       {libseccomp.ArchS390X, unix.AUDIT_ARCH_S390X},
	specs.ArchPARISC:      {libseccomp.ArchPARISC, unix.AUDIT_ARCH_PARISC},
	specs.ArchPARISC64:    {libseccomp.ArchPARISC64, unix.AUDIT_ARCH_PARISC64},
	specs.ArchRISCV64:     {libseccomp.ArchRISCV64, unix.AUDIT_ARCH_RISCV64},
	specs.ArchLOONGARCH64: {libseccomp.ArchLOONGARCH64, unix.AUDIT_ARCH_LOONGARCH64},
	specs.ArchM68K:        {libseccomp.ArchM68K, unix.AUDIT_ARCH_M68K},
	specs.ArchSH:          {libseccomp.ArchSH, 0},
	specs.ArchSHEB:        {libseccomp.ArchSHEB, 0},
}

// maxInstructions is the kernel's limit on a seccomp program (BPF_MAXINSNS).
const maxInstructions = unix.BPF_MAXINSNS

// OCIArchName is the profile spelling of a libseccomp architecture (SCMP_ARCH_X86_64), or
// libseccomp's own name when a profile cannot name it.
func OCIArchName(a libseccomp.ScmpArch) string {
	for name, info := range architectures {
		if info.arch == a {
			return string(name)
		}
	}
	return a.String()
}

// LibseccompVersion is the linked libseccomp's version ("2.5.4"), for messages.
func LibseccompVersion() string {
	major, minor, micro := libseccomp.GetLibraryVersion()
	return fmt.Sprintf("%d.%d.%d", major, minor, micro)
}

func scmpAction(name specs.LinuxSeccompAction, errnoRet *uint) libseccomp.ScmpAction {
	a := actions[name]
	if a == libseccomp.ActErrno {
		errno := seccompprofiles.DefaultErrno
		if errnoRet != nil {
			errno = *errnoRet
		}
		a = a.SetReturnCode(int16(errno))
	}
	return a
}

// badArchAction is the action for a syscall of an architecture the filter does not list: the
// default action, or ERRNO(EPERM) when the default lets syscalls through.
func badArchAction(def specs.LinuxSeccompAction, defAct libseccomp.ScmpAction) libseccomp.ScmpAction {
	if def == specs.ActAllow || def == specs.ActLog {
		return libseccomp.ActErrno.SetReturnCode(int16(seccompprofiles.DefaultErrno))
	}
	return defAct
}

func nativeArch() archInfo {
	native, err := libseccomp.GetNativeArch()
	if err != nil {
		return archInfo{arch: libseccomp.ArchInvalid}
	}
	for _, a := range architectures {
		if a.arch == native {
			return a
		}
	}
	return archInfo{arch: native}
}

// builtFilter is a libseccomp filter for a validated Seccomp section, with what the ENOSYS stub
// needs: the architectures and, for each, the highest syscall number the profile names.
type builtFilter struct {
	filter   *libseccomp.ScmpFilter
	defAct   libseccomp.ScmpAction
	archs    []archInfo
	maxNr    map[libseccomp.ScmpArch]int
	warnings []string
}

// build turns a validated Seccomp section into a libseccomp filter. Rules whose action equals
// the default are skipped (libseccomp refuses them; they change nothing). As in runc, several
// args on the same index mean "any of them" (one rule per condition); args on distinct indexes
// all must match. Names unknown on the native architecture are skipped with a warning.
func build(s *seccompprofiles.Seccomp) (*builtFilter, error) {
	b := &builtFilter{defAct: scmpAction(s.DefaultAction, s.DefaultErrnoRet), maxNr: map[libseccomp.ScmpArch]int{}}
	if _, ok := actions[s.DefaultAction]; !ok {
		return nil, fmt.Errorf("seccomp.defaultAction: unsupported action %q (validate the profile first)", s.DefaultAction)
	}
	f, err := libseccomp.NewFilter(b.defAct)
	if err != nil {
		return nil, fmt.Errorf("seccomp.defaultAction %s: libseccomp %s: %w", s.DefaultAction, LibseccompVersion(), err)
	}
	b.filter = f
	ok := false
	defer func() {
		if !ok {
			f.Release()
		}
	}()
	// A syscall of an architecture the filter does not list (i386 `int $0x80`, x32 numbers on
	// x86_64) gets the profile's default action, not libseccomp's KILL_THREAD: otherwise a worker
	// could pick a SIGSYS death (sandbox-violation) under a profile whose default is EPERM. Under
	// a permissive default (ALLOW, LOG) it gets EPERM instead: a foreign architecture would bypass
	// every rule of a denylist (dev's ptrace, mount, unshare, fcntl F_SETOWN... rules).
	badArch := badArchAction(s.DefaultAction, b.defAct)
	if err := f.SetBadArchAction(badArch); err != nil {
		return nil, fmt.Errorf("seccomp: libseccomp %s: setting the bad-architecture action to %v: %w", LibseccompVersion(), badArch, err)
	}
	// The init stage sets no_new_privs itself before loading the program.
	if err := f.SetNoNewPrivsBit(false); err != nil {
		return nil, fmt.Errorf("seccomp: libseccomp %s: setting the no_new_privs attribute: %w", LibseccompVersion(), err)
	}
	// A binary tree over syscall numbers keeps the path short for ~100 rules; older libseccomp
	// lacks it and keeps its default (sorted by priority), which is equally correct.
	_ = f.SetOptimize(2)

	native := nativeArch()
	b.archs = append(b.archs, native)
	for i, name := range s.Architectures {
		a, known := architectures[name]
		if !known {
			return nil, fmt.Errorf("seccomp.architectures[%d]: unknown architecture %q (validate the profile first)", i, name)
		}
		if a.arch == native.arch {
			continue
		}
		if err := f.AddArch(a.arch); err != nil {
			return nil, fmt.Errorf("seccomp.architectures[%d] %s: libseccomp %s cannot add it (%w); remove it from the list", i, name, LibseccompVersion(), err)
		}
		b.archs = append(b.archs, a)
	}

	for i, rule := range s.Syscalls {
		if _, ok := actions[rule.Action]; !ok {
			return nil, fmt.Errorf("seccomp.syscalls[%d].action: unsupported action %q (validate the profile first)", i, rule.Action)
		}
		act := scmpAction(rule.Action, rule.ErrnoRet)
		for _, name := range rule.Names {
			for _, a := range b.archs {
				if nr, err := libseccomp.GetSyscallFromNameByArch(name, a.arch); err == nil && nr >= 0 {
					if cur, seen := b.maxNr[a.arch]; !seen || int(nr) > cur {
						b.maxNr[a.arch] = int(nr)
					}
				}
			}
			call, err := libseccomp.GetSyscallFromName(name)
			if err != nil {
				b.warnings = append(b.warnings, fmt.Sprintf("seccomp.syscalls[%d]: syscall %q is unknown to libseccomp %s on %s; that name is ignored", i, name, LibseccompVersion(), native.arch))
				continue
			}
			if act == b.defAct {
				continue
			}
			if err := addRule(f, call, act, rule.Args); err != nil {
				return nil, fmt.Errorf("seccomp.syscalls[%d] %q: libseccomp %s refused the rule (%w); check for another rule giving %s a different action", i, name, LibseccompVersion(), err, name)
			}
		}
	}
	ok = true
	return b, nil
}

func addRule(f *libseccomp.ScmpFilter, call libseccomp.ScmpSyscall, act libseccomp.ScmpAction, args []seccompprofiles.SeccompArg) error {
	if len(args) == 0 {
		return f.AddRule(call, act)
	}
	conds := make([]libseccomp.ScmpCondition, 0, len(args))
	perIndex := map[uint]int{}
	for _, a := range args {
		op, ok := compareOps[a.Op]
		if !ok {
			return fmt.Errorf("unsupported operator %q", a.Op)
		}
		vals := []uint64{a.Value}
		if a.Op == specs.OpMaskedEqual {
			vals = append(vals, a.ValueTwo)
		}
		c, err := libseccomp.MakeCondition(a.Index, op, vals...)
		if err != nil {
			return fmt.Errorf("argument %d: %w", a.Index, err)
		}
		conds = append(conds, c)
		perIndex[a.Index]++
	}
	for _, n := range perIndex {
		if n > 1 {
			for _, c := range conds {
				if err := f.AddRuleConditional(call, act, []libseccomp.ScmpCondition{c}); err != nil {
					return err
				}
			}
			return nil
		}
	}
	return f.AddRuleConditional(call, act, conds)
}

// Compile compiles p's seccomp section for the native architecture (plus the listed ones) to a
// raw classic-BPF program: an array of struct sock_filter (8 bytes each, native byte order),
// ready for seccomp(SECCOMP_SET_MODE_FILTER). It also returns the warnings of the compilation
// (syscall names libseccomp does not know on this host: their rules are ignored, as runc does),
// so a caller compiles once and shows them. It returns nil, nil, nil when p has no seccomp
// section.
//
// Unless the default action is permissive (SCMP_ACT_ALLOW, SCMP_ACT_LOG, or ERRNO(ENOSYS)
// already), the program starts with a short stub (the idea of runc's patchbpf): a syscall whose
// number is above the highest one the profile names for that architecture returns ENOSYS
// instead of the default action. Such a syscall is newer than the profile, and libcs fall back
// to an older one on ENOSYS (clone3 to clone, faccessat2 to faccessat...), so a profile keeps
// working on newer kernels and libcs. x32 syscalls on x86_64 bypass the stub; like every syscall
// of an architecture the profile does not list, they get the default action (EPERM when the
// default allows), never libseccomp's KILL_THREAD.
//
// Compile compiles the canonical form (sorted rules, names, args and architectures), so profiles
// with the same digest get byte-identical programs from the same libseccomp. Errors name the
// profile and the field; a program over the kernel's 4096-instruction limit is an error.
func Compile(p *seccompprofiles.Profile) (prog []byte, warnings []string, err error) {
	if p.Seccomp == nil {
		return nil, nil, nil
	}
	prog, warnings, err = compile(p.Seccomp, nil)
	if err != nil {
		return nil, warnings, fmt.Errorf("profile %s: %w", p.Label(), err)
	}
	return prog, warnings, nil
}

// compile builds, exports and patches the program. extraStub, for tests, adds stub blocks for
// further (fictitious) architectures after the real ones.
func compile(s *seccompprofiles.Seccomp, extraStub []stubBlock) ([]byte, []string, error) {
	b, err := build(s.Canonical())
	if err != nil {
		return nil, nil, err
	}
	defer b.filter.Release()
	prog, err := exportBPF(b.filter)
	if err != nil {
		return nil, b.warnings, fmt.Errorf("seccomp: %w", err)
	}
	stub, err := enosysStub(b.defAct, append(b.stubBlocks(), extraStub...))
	if err != nil {
		return nil, b.warnings, fmt.Errorf("seccomp: %w", err)
	}
	out := append(encodeBPF(stub), prog...)
	if n := len(out) / 8; n > maxInstructions {
		return nil, b.warnings, fmt.Errorf("seccomp: the program has %d instructions, the kernel accepts at most %d; use fewer argument conditions or rules, or fewer architectures", n, maxInstructions)
	}
	return out, b.warnings, nil
}

func exportBPF(f *libseccomp.ScmpFilter) ([]byte, error) {
	fd, err := unix.MemfdCreate("vatrun-seccomp-bpf", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create for the BPF export: %w", err)
	}
	file := os.NewFile(uintptr(fd), "vatrun-seccomp-bpf")
	defer file.Close()
	if err := f.ExportBPF(file); err != nil {
		return nil, fmt.Errorf("libseccomp %s export: %w", LibseccompVersion(), err)
	}
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewinding the BPF export: %w", err)
	}
	prog, err := io.ReadAll(file)
	if err != nil {
		return nil, fmt.Errorf("reading the BPF export: %w", err)
	}
	if len(prog) == 0 || len(prog)%8 != 0 {
		return nil, fmt.Errorf("libseccomp %s exported %d bytes, not a whole number of 8-byte instructions", LibseccompVersion(), len(prog))
	}
	// The stub leaves the syscall number in the accumulator; that is only safe because
	// libseccomp's program starts by loading the architecture itself.
	first := decodeBPF(prog[:8])[0]
	if first.Code != unix.BPF_LD|unix.BPF_W|unix.BPF_ABS || first.K != 4 {
		return nil, fmt.Errorf("libseccomp %s program does not start by loading seccomp_data.arch (got code %#x k %d); the ENOSYS stub cannot be prepended", LibseccompVersion(), first.Code, first.K)
	}
	return prog, nil
}

func encodeBPF(insns []unix.SockFilter) []byte {
	var buf bytes.Buffer
	for _, in := range insns {
		_ = binary.Write(&buf, binary.NativeEndian, in)
	}
	return buf.Bytes()
}

func decodeBPF(prog []byte) []unix.SockFilter {
	out := make([]unix.SockFilter, len(prog)/8)
	_ = binary.Read(bytes.NewReader(prog[:len(out)*8]), binary.NativeEndian, out)
	return out
}

// SyscallName is libseccomp's name for syscall nr of the architecture the kernel reports as
// auditArch (seccomp_data.arch), with the OCI name of that architecture ("" when it is the
// native one); "syscall N" when libseccomp does not know it.
func SyscallName(nr int, auditArch uint32) (name, arch string) {
	native := nativeArch()
	a := native
	if auditArch != native.audit {
		a = archInfo{arch: libseccomp.ArchInvalid}
		for _, info := range architectures {
			if info.audit != 0 && info.audit == auditArch {
				a = info
				break
			}
		}
		if a.arch == libseccomp.ArchInvalid {
			return fmt.Sprintf("syscall %d", nr), fmt.Sprintf("audit arch %#x", auditArch)
		}
		arch = OCIArchName(a.arch)
	}
	n, err := libseccomp.ScmpSyscall(nr).GetNameByArch(a.arch)
	if err != nil || n == "" {
		return fmt.Sprintf("syscall %d", nr), arch
	}
	return n, arch
}
