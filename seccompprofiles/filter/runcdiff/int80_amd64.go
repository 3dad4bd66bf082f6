//go:build cgo && seccomp

package runcdiff

// int80 makes a 32-bit (i386) system call with `int $0x80`: the kernel reports it to seccomp
// with AUDIT_ARCH_I386 and i386 syscall numbers. It returns eax (a negated errno on failure).
func int80(nr, a1, a2, a3 uintptr) uintptr
