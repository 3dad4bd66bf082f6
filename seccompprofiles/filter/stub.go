package filter

import (
	"fmt"

	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// x32SyscallBit marks x32 syscalls on x86_64 (__X32_SYSCALL_BIT).
const x32SyscallBit = 0x40000000

// Offsets in struct seccomp_data.
const (
	offNr   = 0
	offArch = 4
)

// stubBlock is one architecture's check in the ENOSYS stub.
type stubBlock struct {
	audit uint32 // AUDIT_ARCH_*
	max   uint32 // highest syscall number the profile names on that architecture
	x32   bool   // x86_64: numbers with the x32 bit set skip the check
}

// stubBlocks lists, for each architecture of the filter whose audit arch is known and for which
// the profile names at least one syscall, the check the stub makes.
func (b *builtFilter) stubBlocks() []stubBlock {
	var blocks []stubBlock
	for _, a := range b.archs {
		m, named := b.maxNr[a.arch]
		if a.audit == 0 || !named {
			continue
		}
		blocks = append(blocks, stubBlock{audit: a.audit, max: uint32(m), x32: a.audit == unix.AUDIT_ARCH_X86_64})
	}
	return blocks
}

// enosysStub builds the prefix described at Compile, for a filter whose default action is defAct.
// With END the first instruction of libseccomp's program, symbolically:
//
//	    ld [4]                                 ; arch
//	    per block:  jeq AUDIT_ARCH, -, NEXT_i    ; NEXT_i: the following block
//	                ld [0]                       ; nr
//	                (x86_64) jge X32_BIT, END, -
//	                jgt MAX, ENOSYS, END
//	    NEXT_i:
//	    ja END
//	ENOSYS: ret ERRNO|ENOSYS
//	END:
//
// ("-": the next instruction). The assembler resolves the labels; a conditional jump farther
// than a jump offset reaches (255) goes through an unconditional jump placed right after it.
func enosysStub(defAct libseccomp.ScmpAction, blocks []stubBlock) ([]unix.SockFilter, error) {
	switch {
	case defAct == libseccomp.ActAllow, defAct == libseccomp.ActLog,
		defAct == libseccomp.ActErrno.SetReturnCode(int16(unix.ENOSYS)):
		return nil, nil
	}
	if len(blocks) == 0 {
		return nil, nil
	}
	const end, enosys = "end", "enosys"
	var p program
	p.insn(bpf.LoadAbsolute{Off: offArch, Size: 4})
	for i, bl := range blocks {
		next := fmt.Sprintf("next%d", i)
		p.jumpIf(bpf.JumpEqual, bl.audit, "", next)
		p.insn(bpf.LoadAbsolute{Off: offNr, Size: 4})
		if bl.x32 {
			p.jumpIf(bpf.JumpGreaterOrEqual, x32SyscallBit, end, "")
		}
		p.jumpIf(bpf.JumpGreaterThan, bl.max, enosys, end)
		p.label(next)
	}
	p.jump(end)
	p.label(enosys)
	p.insn(bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)})
	p.label(end)
	return p.assemble()
}

// program is a classic-BPF program with symbolic jump targets: labels instead of offsets.
type program struct {
	items []item
}

// item is a label (no instruction), a plain instruction, an unconditional jump, or a conditional
// jump. A conditional jump target "" is the next item.
type item struct {
	label string

	insn bpf.Instruction

	jumpTo string // unconditional jump: target label

	cond   bool
	test   bpf.JumpTest
	val    uint32
	jt, jf string
	// farT, farF: the target is out of a conditional jump's reach; the jump goes to an
	// unconditional jump right after it (the true one first).
	farT, farF bool
}

func (p *program) label(name string) { p.items = append(p.items, item{label: name}) }

func (p *program) insn(in bpf.Instruction) { p.items = append(p.items, item{insn: in}) }

func (p *program) jump(to string) { p.items = append(p.items, item{jumpTo: to}) }

func (p *program) jumpIf(test bpf.JumpTest, val uint32, jt, jf string) {
	p.items = append(p.items, item{cond: true, test: test, val: val, jt: jt, jf: jf})
}

func (it *item) size() int {
	switch {
	case it.cond:
		n := 1
		if it.farT {
			n++
		}
		if it.farF {
			n++
		}
		return n
	case it.label != "":
		return 0
	}
	return 1
}

// layout gives each item's position and each label's, for the current far flags.
func (p *program) layout() ([]int, map[string]int, error) {
	pos := make([]int, len(p.items))
	labels := map[string]int{}
	n := 0
	for i := range p.items {
		pos[i] = n
		if l := p.items[i].label; l != "" {
			if _, dup := labels[l]; dup {
				return nil, nil, fmt.Errorf("BPF assembler: label %q defined twice", l)
			}
			labels[l] = n
		}
		n += p.items[i].size()
	}
	return pos, labels, nil
}

// target is where jump target name of item i (at position at, size size) lands.
func target(name string, at, size int, labels map[string]int) (int, error) {
	if name == "" {
		return at + size, nil
	}
	t, ok := labels[name]
	if !ok {
		return 0, fmt.Errorf("BPF assembler: jump to undefined label %q", name)
	}
	if t <= at {
		return 0, fmt.Errorf("BPF assembler: jump to label %q goes backwards", name)
	}
	return t, nil
}

// assemble resolves the labels and encodes the program. Marking a jump far only ever grows the
// program, so the loop ends (at worst with every conditional jump far).
func (p *program) assemble() ([]unix.SockFilter, error) {
	var pos []int
	var labels map[string]int
	for {
		var err error
		pos, labels, err = p.layout()
		if err != nil {
			return nil, err
		}
		changed := false
		for i := range p.items {
			it := &p.items[i]
			if !it.cond {
				continue
			}
			t, err := target(it.jt, pos[i], it.size(), labels)
			if err != nil {
				return nil, err
			}
			f, err := target(it.jf, pos[i], it.size(), labels)
			if err != nil {
				return nil, err
			}
			if !it.farT && t-(pos[i]+1) > 255 {
				it.farT, changed = true, true
			}
			if !it.farF && f-(pos[i]+1) > 255 {
				it.farF, changed = true, true
			}
		}
		if !changed {
			break
		}
	}
	var out []bpf.Instruction
	for i := range p.items {
		it := &p.items[i]
		at := pos[i]
		switch {
		case it.cond:
			t, _ := target(it.jt, at, it.size(), labels)
			f, _ := target(it.jf, at, it.size(), labels)
			// Positions: the jump at `at`, then its trampolines (true first, then false).
			tramp := at + 1
			var trampolines []bpf.Instruction
			skipT, skipF := t-(at+1), f-(at+1)
			if it.farT {
				skipT = tramp - (at + 1)
				trampolines = append(trampolines, bpf.Jump{Skip: uint32(t - (tramp + 1))})
				tramp++
			}
			if it.farF {
				skipF = tramp - (at + 1)
				trampolines = append(trampolines, bpf.Jump{Skip: uint32(f - (tramp + 1))})
			}
			if skipT > 255 || skipF > 255 {
				return nil, fmt.Errorf("BPF assembler: internal error: conditional jump of %d/%d instructions left short", skipT, skipF)
			}
			out = append(out, bpf.JumpIf{Cond: it.test, Val: it.val, SkipTrue: uint8(skipT), SkipFalse: uint8(skipF)})
			out = append(out, trampolines...)
		case it.jumpTo != "":
			t, err := target(it.jumpTo, at, 1, labels)
			if err != nil {
				return nil, err
			}
			out = append(out, bpf.Jump{Skip: uint32(t - (at + 1))})
		case it.label != "":
		default:
			out = append(out, it.insn)
		}
	}
	raw, err := bpf.Assemble(out)
	if err != nil {
		return nil, fmt.Errorf("BPF assembler: %w", err)
	}
	insns := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		insns[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return insns, nil
}
