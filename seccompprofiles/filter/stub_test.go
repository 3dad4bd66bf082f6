package filter

import (
	"encoding/binary"
	"runtime"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/seccompprofiles"
)

// fakeBlocks are n stub blocks for architectures no kernel reports (audit values without the
// 64-bit or little-endian flags that every real AUDIT_ARCH_* has), placed after the real ones:
// they lengthen the stub so that the real blocks' jumps to ENOSYS and to libseccomp's program
// are farther than a conditional jump reaches.
func fakeBlocks(n int) []stubBlock {
	out := make([]stubBlock, n)
	for i := range out {
		out[i] = stubBlock{audit: 0x1000 + uint32(i), max: 1}
	}
	return out
}

// seccompData is struct seccomp_data as a classic-BPF "packet" for x/net/bpf's VM, which loads
// words big-endian: each 32-bit word is stored so that the VM reads the value the kernel's
// native load would.
func seccompData(arch uint32, nr int32, args ...uint64) []byte {
	native := make([]byte, 64)
	binary.NativeEndian.PutUint32(native[0:], uint32(nr))
	binary.NativeEndian.PutUint32(native[4:], arch)
	for i, a := range args {
		binary.NativeEndian.PutUint64(native[16+8*i:], a)
	}
	out := make([]byte, 64)
	for off := 0; off < 64; off += 4 {
		binary.BigEndian.PutUint32(out[off:], binary.NativeEndian.Uint32(native[off:]))
	}
	return out
}

// interpret runs a compiled program (raw sock_filter bytes) on one seccomp_data.
func interpret(t *testing.T, prog []byte, data []byte) uint32 {
	t.Helper()
	insns := decodeBPF(prog)
	raw := make([]bpf.RawInstruction, len(insns))
	for i, in := range insns {
		raw[i] = bpf.RawInstruction{Op: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	dis, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("the program has instructions x/net/bpf cannot decode: %v", dis)
	}
	vm, err := bpf.NewVM(dis)
	if err != nil {
		t.Fatalf("x/net/bpf VM refuses the program: %v", err)
	}
	n, err := vm.Run(data)
	if err != nil {
		t.Fatalf("VM run: %v", err)
	}
	return uint32(n)
}

const (
	retAllow  = unix.SECCOMP_RET_ALLOW
	retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	retEPERM  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
)

// The assembler alone: both targets of a conditional jump 300 instructions away (two
// trampolines), one far and one next (one trampoline), and an unconditional jump farther than
// 255, each checked by running the program.
func TestAssemblerLongJumps(t *testing.T) {
	pad := func(p *program, n int) {
		for range n {
			p.insn(bpf.LoadConstant{Dst: bpf.RegX, Val: 7})
		}
	}
	var p program
	p.insn(bpf.LoadAbsolute{Off: offNr, Size: 4})
	p.jumpIf(bpf.JumpEqual, 1, "one", "notone")
	pad(&p, 300)
	p.label("one")
	p.insn(bpf.RetConstant{Val: 10})
	pad(&p, 300)
	p.label("notone")
	p.jumpIf(bpf.JumpGreaterThan, 5, "", "small") // true: the next instruction; false: far
	p.jump("big")
	pad(&p, 300)
	p.label("small")
	p.insn(bpf.RetConstant{Val: 20})
	pad(&p, 10)
	p.label("big")
	p.insn(bpf.RetConstant{Val: 30})
	insns, err := p.assemble()
	if err != nil {
		t.Fatal(err)
	}
	if want := 1 + 3 + 300 + 1 + 300 + 2 + 1 + 300 + 1 + 10 + 1; len(insns) != want {
		t.Errorf("%d instructions, want %d (three trampolines)", len(insns), want)
	}
	ja := uint16(unix.BPF_JMP | unix.BPF_JA)
	if insns[1].Jt != 0 || insns[1].Jf != 1 || insns[2].Code != ja || insns[3].Code != ja {
		t.Errorf("far jeq: %+v then %+v %+v, want jt 0 jf 1 to two unconditional jumps", insns[1], insns[2], insns[3])
	}
	prog := encodeBPF(insns)
	for _, c := range []struct {
		nr   int32
		want uint32
	}{{1, 10}, {0, 20}, {5, 20}, {6, 30}, {1000, 30}} {
		if got := interpret(t, prog, seccompData(0, c.nr)); got != c.want {
			t.Errorf("nr %d: returned %d, want %d", c.nr, got, c.want)
		}
	}

	var bad program
	bad.jumpIf(bpf.JumpEqual, 1, "nowhere", "")
	if _, err := bad.assemble(); err == nil {
		t.Error("a jump to an undefined label assembled")
	}
}

// The whole compiled program, interpreted: the stub gives ENOSYS above the highest syscall the
// profile names and lets everything else through to libseccomp's program, whether its jumps are
// short or go through trampolines (100 fictitious architectures push ENOSYS and END ~400
// instructions away from the real blocks).
func TestStubInterpreted(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("syscall numbers in this test are x86_64's")
	}
	x, _ := seccompprofiles.Builtin("xsnap")
	short, _, err := compile(x.Seccomp, nil)
	if err != nil {
		t.Fatal(err)
	}
	long, _, err := compile(x.Seccomp, fakeBlocks(100))
	if err != nil {
		t.Fatal(err)
	}
	stubLen := len(long)/8 - (len(short)/8 - 7)
	if stubLen < 300 {
		t.Fatalf("padded stub is %d instructions: too short to need long jumps", stubLen)
	}
	// The real x86_64 block's jge (x32 bit) and jgt (max) cannot reach END or ENOSYS directly.
	in := decodeBPF(long)
	if in[3].Code != unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K || in[4].Code != unix.BPF_JMP|unix.BPF_JA {
		t.Errorf("x32 check %+v %+v: want a jge to a trampoline", in[3], in[4])
	}
	const i386 = unix.AUDIT_ARCH_I386
	cases := []struct {
		name string
		data []byte
		want uint32
	}{
		{"read", seccompData(unix.AUDIT_ARCH_X86_64, unix.SYS_READ), retAllow},
		{"socket (named by no rule: default EPERM)", seccompData(unix.AUDIT_ARCH_X86_64, unix.SYS_SOCKET, unix.AF_INET), retEPERM},
		{"ioctl FIONREAD (argument condition)", seccompData(unix.AUDIT_ARCH_X86_64, unix.SYS_IOCTL, 0, 0x541B), retEPERM},
		{"clone3 (newer than the profile)", seccompData(unix.AUDIT_ARCH_X86_64, unix.SYS_CLONE3), retENOSYS},
		{"syscall 1000", seccompData(unix.AUDIT_ARCH_X86_64, 1000), retENOSYS},
		{"x32 read (bypasses the stub; a foreign arch gets the default action)", seccompData(unix.AUDIT_ARCH_X86_64, x32SyscallBit), retEPERM},
		{"i386 (not in the profile: the default action)", seccompData(i386, 3), retEPERM},
		{"a fictitious arch of the padding", seccompData(0x1000+50, 1000), retENOSYS},
	}
	for _, c := range cases {
		got := interpret(t, long, c.data)
		if c.name == "a fictitious arch of the padding" {
			if got != c.want {
				t.Errorf("%s: long program returned %#x, want %#x", c.name, got, c.want)
			}
			continue
		}
		if s := interpret(t, short, c.data); s != got || s != c.want {
			t.Errorf("%s: short program %#x, long program %#x, want %#x", c.name, s, got, c.want)
		}
	}
}

// The padded program, loaded by the kernel in a child: the trampolines hold there too.
func TestFilterLongJumpLoaded(t *testing.T) {
	requireAmd64(t)
	for _, profile := range []string{"xsnap", "consensus"} {
		res, ws := runHelperEnv(t, profile, "", []string{helperPad + "=100"},
			probe(unix.SYS_GETPPID),
			probe(unix.SYS_CLONE3, 0, 0),
			probe(nrUnassigned),
		)
		if !ws.Exited() || ws.ExitStatus() != 0 {
			t.Fatalf("%s: helper status %v, want exit 0", profile, ws)
		}
		if r := res[unix.SYS_GETPPID]; r.errno != 0 {
			t.Errorf("%s: getppid errno %v, want allowed", profile, r.errno)
		}
		wantErrno(t, res, unix.SYS_CLONE3, profile+": clone3", unix.ENOSYS)
		wantErrno(t, res, nrUnassigned, profile+": syscall 1000", unix.ENOSYS)
	}
	res, ws := runHelperEnv(t, "xsnap", "", []string{helperPad + "=100"}, probe(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM, 0))
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("helper status %v", ws)
	}
	wantErrno(t, res, unix.SYS_SOCKET, "xsnap: socket", unix.EPERM)
}
