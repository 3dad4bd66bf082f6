package filter

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/sandbox"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// The init stage finds the errno of each refused call by running the original program on the
// call's seccomp_data (sandbox.EvalBPF, in C). It must agree with what the built-in profiles say,
// including the ENOSYS stub, a foreign architecture and argument-conditioned rules.
func TestInitStageEvaluatorAgreesWithProfiles(t *testing.T) {
	if nativeArch().audit != unix.AUDIT_ARCH_X86_64 {
		t.Skip("the cases below use x86_64 syscall numbers")
	}
	const (
		allow  = unix.SECCOMP_RET_ALLOW
		eperm  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		enosys = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
		kill   = unix.SECCOMP_RET_KILL_PROCESS
	)
	cases := []struct {
		profile string
		nr      uint32
		arch    uint32
		args    [6]uint64
		want    uint32
	}{
		{"xsnap", unix.SYS_READ, unix.AUDIT_ARCH_X86_64, [6]uint64{}, allow},
		{"xsnap", unix.SYS_SOCKET, unix.AUDIT_ARCH_X86_64, [6]uint64{2, 1}, eperm},
		{"xsnap", 1000, unix.AUDIT_ARCH_X86_64, [6]uint64{}, enosys},       // the stub: newer than the profile
		{"xsnap", unix.SYS_READ, unix.AUDIT_ARCH_I386, [6]uint64{}, eperm}, // an architecture it does not list
		{"solo", unix.SYS_CLONE3, unix.AUDIT_ARCH_X86_64, [6]uint64{}, enosys},
		{"solo", unix.SYS_FCNTL, unix.AUDIT_ARCH_X86_64, [6]uint64{0, unix.F_GETFL}, allow},
		{"solo", unix.SYS_FCNTL, unix.AUDIT_ARCH_X86_64, [6]uint64{0, unix.F_SETOWN}, eperm},
		{"dev", unix.SYS_PTRACE, unix.AUDIT_ARCH_X86_64, [6]uint64{}, eperm},
		{"dev", unix.SYS_SOCKET, unix.AUDIT_ARCH_X86_64, [6]uint64{2, 1}, allow},
		{"consensus", unix.SYS_SOCKET, unix.AUDIT_ARCH_X86_64, [6]uint64{2, 1}, kill},
	}
	progs := map[string][]byte{}
	for _, c := range cases {
		prog, ok := progs[c.profile]
		if !ok {
			p, found := seccompprofiles.BuiltinParsed(c.profile)
			if !found {
				t.Fatalf("no built-in %s", c.profile)
			}
			var err error
			if prog, _, err = Compile(p); err != nil {
				t.Fatal(err)
			}
			progs[c.profile] = prog
		}
		data := make([]byte, 64) // struct seccomp_data
		binary.NativeEndian.PutUint32(data[0:], c.nr)
		binary.NativeEndian.PutUint32(data[4:], c.arch)
		for i, a := range c.args {
			binary.NativeEndian.PutUint64(data[16+8*i:], a)
		}
		got, ok := sandbox.EvalBPF(prog, data)
		if !ok || got != c.want {
			t.Errorf("%s: nr %d arch %#x args %v: evaluator %#x (ok %v), want %#x", c.profile, c.nr, c.arch, c.args[:2], got, ok, c.want)
		}
	}
}

// SyscallName resolves with libseccomp, and says so when it cannot.
func TestSyscallName(t *testing.T) {
	if nativeArch().audit != unix.AUDIT_ARCH_X86_64 {
		t.Skip("x86_64 numbers")
	}
	if n, a := SyscallName(unix.SYS_SOCKET, unix.AUDIT_ARCH_X86_64); n != "socket" || a != "" {
		t.Errorf("socket: %q %q", n, a)
	}
	if n, a := SyscallName(102, unix.AUDIT_ARCH_I386); n != "socketcall" || a != "SCMP_ARCH_X86" {
		t.Errorf("i386 102: %q %q", n, a)
	}
	if n, _ := SyscallName(1000, unix.AUDIT_ARCH_X86_64); n != "syscall 1000" {
		t.Errorf("1000: %q", n)
	}
}
