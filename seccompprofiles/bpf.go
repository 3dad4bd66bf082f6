package seccompprofiles

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"

	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// OCI action names.
const (
	actAllow       = "SCMP_ACT_ALLOW"
	actErrno       = "SCMP_ACT_ERRNO"
	actKill        = "SCMP_ACT_KILL"
	actKillProcess = "SCMP_ACT_KILL_PROCESS"
	actKillThread  = "SCMP_ACT_KILL_THREAD"
	actTrap        = "SCMP_ACT_TRAP"
	actLog         = "SCMP_ACT_LOG"
)

var actions = map[string]libseccomp.ScmpAction{
	actAllow:       libseccomp.ActAllow,
	actErrno:       libseccomp.ActErrno,
	actKill:        libseccomp.ActKillThread, // OCI and libseccomp: KILL is KILL_THREAD
	actKillProcess: libseccomp.ActKillProcess,
	actKillThread:  libseccomp.ActKillThread,
	actTrap:        libseccomp.ActTrap,
	actLog:         libseccomp.ActLog,
}

// unsupportedActions are OCI actions vatrun refuses, with the reason.
var unsupportedActions = map[string]string{
	"SCMP_ACT_NOTIFY": "needs a seccomp agent listening on a notification fd, and vatrun runs none",
	"SCMP_ACT_TRACE":  "needs a ptrace tracer attached to the worker, and vatrun attaches none",
}

var actionNames = sortedKeys(actions)

var compareOps = map[string]libseccomp.ScmpCompareOp{
	"SCMP_CMP_NE":        libseccomp.CompareNotEqual,
	"SCMP_CMP_LT":        libseccomp.CompareLess,
	"SCMP_CMP_LE":        libseccomp.CompareLessOrEqual,
	"SCMP_CMP_EQ":        libseccomp.CompareEqual,
	"SCMP_CMP_GE":        libseccomp.CompareGreaterEqual,
	"SCMP_CMP_GT":        libseccomp.CompareGreater,
	"SCMP_CMP_MASKED_EQ": libseccomp.CompareMaskedEqual,
}

type archInfo struct {
	arch  libseccomp.ScmpArch
	audit uint32 // AUDIT_ARCH_* the kernel reports in seccomp_data.arch; 0: no ENOSYS stub
}

// architectures maps OCI architecture names to libseccomp and the kernel's audit arch.
var architectures = map[string]archInfo{
	"SCMP_ARCH_X86":         {libseccomp.ArchX86, unix.AUDIT_ARCH_I386},
	"SCMP_ARCH_X86_64":      {libseccomp.ArchAMD64, unix.AUDIT_ARCH_X86_64},
	"SCMP_ARCH_X32":         {libseccomp.ArchX32, 0}, // shares AUDIT_ARCH_X86_64
	"SCMP_ARCH_ARM":         {libseccomp.ArchARM, unix.AUDIT_ARCH_ARM},
	"SCMP_ARCH_AARCH64":     {libseccomp.ArchARM64, unix.AUDIT_ARCH_AARCH64},
	"SCMP_ARCH_MIPS":        {libseccomp.ArchMIPS, unix.AUDIT_ARCH_MIPS},
	"SCMP_ARCH_MIPS64":      {libseccomp.ArchMIPS64, unix.AUDIT_ARCH_MIPS64},
	"SCMP_ARCH_MIPS64N32":   {libseccomp.ArchMIPS64N32, unix.AUDIT_ARCH_MIPS64N32},
	"SCMP_ARCH_MIPSEL":      {libseccomp.ArchMIPSEL, unix.AUDIT_ARCH_MIPSEL},
	"SCMP_ARCH_MIPSEL64":    {libseccomp.ArchMIPSEL64, unix.AUDIT_ARCH_MIPSEL64},
	"SCMP_ARCH_MIPSEL64N32": {libseccomp.ArchMIPSEL64N32, unix.AUDIT_ARCH_MIPSEL64N32},
	"SCMP_ARCH_PPC":         {libseccomp.ArchPPC, unix.AUDIT_ARCH_PPC},
	"SCMP_ARCH_PPC64":       {libseccomp.ArchPPC64, unix.AUDIT_ARCH_PPC64},
	"SCMP_ARCH_PPC64LE":     {libseccomp.ArchPPC64LE, unix.AUDIT_ARCH_PPC64LE},
	"SCMP_ARCH_S390":        {libseccomp.ArchS390, unix.AUDIT_ARCH_S390},
	"SCMP_ARCH_S390X":       {libseccomp.ArchS390X, unix.AUDIT_ARCH_S390X},
	"SCMP_ARCH_PARISC":      {libseccomp.ArchPARISC, unix.AUDIT_ARCH_PARISC},
	"SCMP_ARCH_PARISC64":    {libseccomp.ArchPARISC64, unix.AUDIT_ARCH_PARISC64},
	"SCMP_ARCH_RISCV64":     {libseccomp.ArchRISCV64, unix.AUDIT_ARCH_RISCV64},
	"SCMP_ARCH_LOONGARCH64": {libseccomp.ArchLOONGARCH64, unix.AUDIT_ARCH_LOONGARCH64},
	"SCMP_ARCH_M68K":        {libseccomp.ArchM68K, unix.AUDIT_ARCH_M68K},
	"SCMP_ARCH_SH":          {libseccomp.ArchSH, 0},
	"SCMP_ARCH_SHEB":        {libseccomp.ArchSHEB, 0},
}

// x32SyscallBit marks x32 syscalls on x86_64 (__X32_SYSCALL_BIT).
const x32SyscallBit = 0x40000000

// maxInstructions is the kernel's limit on a seccomp program (BPF_MAXINSNS).
const maxInstructions = unix.BPF_MAXINSNS

func scmpAction(name string, errnoRet *uint) libseccomp.ScmpAction {
	a := actions[name]
	if a == libseccomp.ActErrno {
		errno := DefaultErrno
		if errnoRet != nil {
			errno = *errnoRet
		}
		a = a.SetReturnCode(int16(errno))
	}
	return a
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

// libseccompVersion is "2.5.4" for messages.
func libseccompVersion() string {
	major, minor, micro := libseccomp.GetLibraryVersion()
	return fmt.Sprintf("%d.%d.%d", major, minor, micro)
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
func (s *Seccomp) build() (*builtFilter, error) {
	b := &builtFilter{defAct: scmpAction(s.DefaultAction, s.DefaultErrnoRet), maxNr: map[libseccomp.ScmpArch]int{}}
	f, err := libseccomp.NewFilter(b.defAct)
	if err != nil {
		return nil, fmt.Errorf("seccomp.defaultAction %s: libseccomp %s: %w", s.DefaultAction, libseccompVersion(), err)
	}
	b.filter = f
	ok := false
	defer func() {
		if !ok {
			f.Release()
		}
	}()
	// The init stage sets no_new_privs itself before loading the program.
	if err := f.SetNoNewPrivsBit(false); err != nil {
		return nil, fmt.Errorf("seccomp: libseccomp %s: setting the no_new_privs attribute: %w", libseccompVersion(), err)
	}
	// A binary tree over syscall numbers keeps the path short for ~100 rules; older libseccomp
	// lacks it and keeps its default (sorted by priority), which is equally correct.
	_ = f.SetOptimize(2)

	native := nativeArch()
	b.archs = append(b.archs, native)
	for i, name := range s.Architectures {
		a := architectures[name]
		if a.arch == native.arch {
			continue
		}
		if err := f.AddArch(a.arch); err != nil {
			return nil, fmt.Errorf("seccomp.architectures[%d] %s: libseccomp %s cannot add it (%w); remove it from the list", i, name, libseccompVersion(), err)
		}
		b.archs = append(b.archs, a)
	}

	for i, rule := range s.Syscalls {
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
				b.warnings = append(b.warnings, fmt.Sprintf("seccomp.syscalls[%d]: syscall %q is unknown to libseccomp %s on %s; that name is ignored", i, name, libseccompVersion(), native.arch))
				continue
			}
			if act == b.defAct {
				continue
			}
			if err := addRule(f, call, act, rule.Args); err != nil {
				return nil, fmt.Errorf("seccomp.syscalls[%d] %q: libseccomp %s refused the rule (%w); check for another rule giving %s a different action", i, name, libseccompVersion(), err, name)
			}
		}
	}
	ok = true
	return b, nil
}

func addRule(f *libseccomp.ScmpFilter, call libseccomp.ScmpSyscall, act libseccomp.ScmpAction, args []SeccompArg) error {
	if len(args) == 0 {
		return f.AddRule(call, act)
	}
	conds := make([]libseccomp.ScmpCondition, 0, len(args))
	perIndex := map[uint]int{}
	for _, a := range args {
		vals := []uint64{a.Value}
		if a.Op == "SCMP_CMP_MASKED_EQ" {
			vals = append(vals, a.ValueTwo)
		}
		c, err := libseccomp.MakeCondition(a.Index, compareOps[a.Op], vals...)
		if err != nil {
			return err
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

// CompileBPF compiles the seccomp section for the native architecture (plus the listed ones) to
// a raw classic-BPF program: an array of struct sock_filter (8 bytes each, native byte order),
// ready for seccomp(SECCOMP_SET_MODE_FILTER). It returns nil, nil when there is no seccomp
// section.
//
// Unless the default action is permissive (SCMP_ACT_ALLOW, SCMP_ACT_LOG, or ERRNO(ENOSYS)
// already), the program starts with a short stub (the idea of runc's patchbpf): a syscall whose
// number is above the highest one the profile names for that architecture returns ENOSYS
// instead of the default action. Such a syscall is newer than the profile, and libcs fall back
// to an older one on ENOSYS (clone3 to clone, faccessat2 to faccessat...), so a profile keeps
// working on newer kernels and libcs. x32 syscalls on x86_64 bypass the stub.
func (p *Profile) CompileBPF() ([]byte, error) {
	if p.Seccomp == nil {
		return nil, nil
	}
	prog, _, err := p.Seccomp.compile()
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", p.label(), err)
	}
	return prog, nil
}

// compile builds, exports and patches the program, returning it with the build warnings. It
// compiles the canonical form (sorted rules, names, args and architectures), so profiles with
// the same digest get byte-identical programs from the same libseccomp.
func (s *Seccomp) compile() ([]byte, []string, error) {
	b, err := s.canonical().build()
	if err != nil {
		return nil, nil, err
	}
	defer b.filter.Release()
	prog, err := exportBPF(b.filter)
	if err != nil {
		return nil, nil, fmt.Errorf("seccomp: %w", err)
	}
	stub, err := b.enosysStub()
	if err != nil {
		return nil, nil, fmt.Errorf("seccomp: %w", err)
	}
	out := append(encodeBPF(stub), prog...)
	if n := len(out) / 8; n > maxInstructions {
		return nil, nil, fmt.Errorf("seccomp: the program has %d instructions, the kernel accepts at most %d; use fewer argument conditions or rules, or fewer architectures", n, maxInstructions)
	}
	return out, b.warnings, nil
}

func (p *Profile) label() string {
	switch {
	case p.Source != "":
		return p.Source
	case p.Name != "":
		return p.Name
	}
	return "(unnamed)"
}

func exportBPF(f *libseccomp.ScmpFilter) ([]byte, error) {
	fd, err := unix.MemfdCreate("vatrun-seccomp-bpf", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create for the BPF export: %w", err)
	}
	file := os.NewFile(uintptr(fd), "vatrun-seccomp-bpf")
	defer file.Close()
	if err := f.ExportBPF(file); err != nil {
		return nil, fmt.Errorf("libseccomp %s export: %w", libseccompVersion(), err)
	}
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewinding the BPF export: %w", err)
	}
	prog, err := io.ReadAll(file)
	if err != nil {
		return nil, fmt.Errorf("reading the BPF export: %w", err)
	}
	if len(prog) == 0 || len(prog)%8 != 0 {
		return nil, fmt.Errorf("libseccomp %s exported %d bytes, not a whole number of 8-byte instructions", libseccompVersion(), len(prog))
	}
	// The stub leaves the syscall number in the accumulator; that is only safe because
	// libseccomp's program starts by loading the architecture itself.
	first := decodeBPF(prog[:8])[0]
	if first.Code != unix.BPF_LD|unix.BPF_W|unix.BPF_ABS || first.K != 4 {
		return nil, fmt.Errorf("libseccomp %s program does not start by loading seccomp_data.arch (got code %#x k %d); the ENOSYS stub cannot be prepended", libseccompVersion(), first.Code, first.K)
	}
	return prog, nil
}

// enosysStub builds the prefix described at CompileBPF. Layout, with END the first instruction
// of libseccomp's program:
//
//	ld [4]                              ; arch
//	per arch:  jeq AUDIT_ARCH, 0, next  ; next: the following arch's jeq
//	           ld [0]                   ; nr
//	           (x86_64) jge X32_BIT, END, 0
//	           jgt MAX, ENOSYS, END
//	ja END
//	ENOSYS: ret ERRNO|ENOSYS
func (b *builtFilter) enosysStub() ([]unix.SockFilter, error) {
	switch {
	case b.defAct == libseccomp.ActAllow, b.defAct == libseccomp.ActLog,
		b.defAct == libseccomp.ActErrno.SetReturnCode(int16(unix.ENOSYS)):
		return nil, nil
	}
	type block struct {
		audit uint32
		max   int
		x32   bool
	}
	var blocks []block
	length := 1 + 2
	for _, a := range b.archs {
		m, named := b.maxNr[a.arch]
		if a.audit == 0 || !named {
			continue
		}
		bl := block{audit: a.audit, max: m, x32: a.audit == unix.AUDIT_ARCH_X86_64}
		blocks = append(blocks, bl)
		length += 3
		if bl.x32 {
			length++
		}
	}
	if len(blocks) == 0 {
		return nil, nil
	}
	end, enosys := length, length-1
	var out []unix.SockFilter
	off := func(target int) (uint8, error) {
		d := target - (len(out) + 1)
		if d < 0 || d > 255 {
			return 0, fmt.Errorf("ENOSYS stub jump of %d instructions does not fit (too many architectures)", d)
		}
		return uint8(d), nil
	}
	out = append(out, unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4})
	for _, bl := range blocks {
		size := 3
		if bl.x32 {
			size++
		}
		out = append(out, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: uint8(size - 1), K: bl.audit})
		out = append(out, unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0})
		if bl.x32 {
			jt, err := off(end)
			if err != nil {
				return nil, err
			}
			out = append(out, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, Jt: jt, Jf: 0, K: x32SyscallBit})
		}
		jt, err := off(enosys)
		if err != nil {
			return nil, err
		}
		jf, err := off(end)
		if err != nil {
			return nil, err
		}
		out = append(out, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K, Jt: jt, Jf: jf, K: uint32(bl.max)})
	}
	out = append(out, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JA, K: 1})
	out = append(out, unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)})
	if len(out) != length {
		return nil, fmt.Errorf("internal error: ENOSYS stub has %d instructions, planned %d", len(out), length)
	}
	return out, nil
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

// knownArchitectureNames lists the accepted architecture names, sorted.
func knownArchitectureNames() []string {
	names := make([]string, 0, len(architectures))
	for n := range architectures {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
