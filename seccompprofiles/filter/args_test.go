package filter

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/seccompprofiles"
)

// The built-ins' argument rules and bad-architecture action, interpreted: each case is a syscall
// with the arguments that would let a worker make the kernel signal, block or charge someone on
// its behalf (docs/seccomp-arguments.md), and what each built-in must answer. deny is the
// profile's refusal: its default action (xsnap, solo: EPERM; consensus: KILL_PROCESS) or, under
// dev, its EPERM denylist rule.
func TestBuiltinArgumentRules(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("syscall numbers in this test are x86_64's")
	}
	const (
		allow = iota
		deny
	)
	x64 := uint32(unix.AUDIT_ARCH_X86_64)
	type tc struct {
		name string
		data []byte
		want map[string]int // profile -> allow/deny
	}
	all := func(v int) map[string]int {
		return map[string]int{"xsnap": v, "consensus": v, "solo": v, "dev": v}
	}
	restricted := func(v, dev int) map[string]int {
		return map[string]int{"xsnap": v, "consensus": v, "solo": v, "dev": dev}
	}
	fcntl := func(cmd, arg uint64) []byte { return seccompData(x64, unix.SYS_FCNTL, 3, cmd, arg) }
	mmap := func(flags uint64) []byte { return seccompData(x64, unix.SYS_MMAP, 0, 4096, 3, flags, ^uint64(0), 0) }
	madvise := func(advice uint64) []byte { return seccompData(x64, unix.SYS_MADVISE, 0, 4096, advice) }
	ioctl := func(req uint64) []byte { return seccompData(x64, unix.SYS_IOCTL, 3, req, 0) }
	clone := func(flags uint64) []byte { return seccompData(x64, unix.SYS_CLONE, flags) }
	cases := []tc{
		{"fcntl F_GETFL (xsnap's fdopen)", fcntl(unix.F_GETFL, 0), all(allow)},
		{"fcntl F_SETFL O_APPEND (xsnap's fdopen \"ab\")", fcntl(unix.F_SETFL, unix.O_RDWR|unix.O_APPEND), all(allow)},
		{"fcntl F_SETFL O_NONBLOCK", fcntl(unix.F_SETFL, unix.O_NONBLOCK), all(allow)},
		{"fcntl F_GETFD", fcntl(unix.F_GETFD, 0), all(allow)},
		{"fcntl F_DUPFD_CLOEXEC", fcntl(unix.F_DUPFD_CLOEXEC, 10), all(allow)},
		{"fcntl F_SETFL O_ASYNC", fcntl(unix.F_SETFL, unix.O_ASYNC), all(deny)},
		{"fcntl F_SETFL O_ASYNC|O_NONBLOCK", fcntl(unix.F_SETFL, unix.O_ASYNC|unix.O_NONBLOCK), all(deny)},
		{"fcntl F_SETOWN", fcntl(unix.F_SETOWN, 2), all(deny)},
		{"fcntl F_SETOWN_EX", fcntl(unix.F_SETOWN_EX, 0), all(deny)},
		{"fcntl F_SETSIG SIGKILL", fcntl(unix.F_SETSIG, uint64(unix.SIGKILL)), all(deny)},
		{"fcntl F_SETLEASE F_WRLCK", fcntl(unix.F_SETLEASE, unix.F_WRLCK), all(deny)},
		{"fcntl F_NOTIFY", fcntl(unix.F_NOTIFY, 0x80000000), all(deny)},
		{"fcntl F_SETPIPE_SZ", fcntl(unix.F_SETPIPE_SZ, 1<<20), all(deny)},
		{"fcntl F_SETLK", fcntl(unix.F_SETLK, 0), all(deny)},
		{"fcntl F_SETLKW", fcntl(unix.F_SETLKW, 0), all(deny)},
		{"fcntl F_OFD_SETLK", fcntl(unix.F_OFD_SETLK, 0), all(deny)},
		{"fcntl F_OFD_SETLKW", fcntl(unix.F_OFD_SETLKW, 0), all(deny)},
		{"fcntl F_GETLK", fcntl(unix.F_GETLK, 0), restricted(deny, allow)},
		{"fcntl with garbage in the upper half of cmd", fcntl(1<<32|unix.F_GETFL, 0), restricted(deny, allow)},
		{"mmap MAP_PRIVATE|MAP_ANONYMOUS", mmap(unix.MAP_PRIVATE | unix.MAP_ANONYMOUS), all(allow)},
		{"mmap MAP_PRIVATE|MAP_DENYWRITE (ld.so)", mmap(unix.MAP_PRIVATE | unix.MAP_DENYWRITE | unix.MAP_FIXED), all(allow)},
		{"mmap MAP_SHARED|MAP_ANONYMOUS", mmap(unix.MAP_SHARED | unix.MAP_ANONYMOUS), restricted(deny, allow)},
		{"mmap MAP_SHARED (a file, /dev/zero)", mmap(unix.MAP_SHARED), restricted(deny, allow)},
		{"mmap MAP_SHARED_VALIDATE", mmap(unix.MAP_SHARED_VALIDATE), restricted(deny, allow)},
		{"madvise MADV_DONTNEED", madvise(unix.MADV_DONTNEED), all(allow)},
		{"madvise MADV_FREE", madvise(unix.MADV_FREE), all(allow)},
		{"madvise MADV_MERGEABLE (KSM)", madvise(unix.MADV_MERGEABLE), restricted(deny, allow)},
		{"madvise MADV_PAGEOUT", madvise(unix.MADV_PAGEOUT), restricted(deny, allow)},
		{"madvise MADV_HWPOISON", madvise(unix.MADV_HWPOISON), restricted(deny, allow)},
		{"ioctl TCGETS", ioctl(unix.TCGETS), all(allow)},
		{"ioctl FIOSETOWN", ioctl(0x8901), all(deny)},
		{"ioctl SIOCSPGRP", ioctl(unix.SIOCSPGRP), all(deny)},
		{"ioctl FIOASYNC", ioctl(0x5452), all(deny)},
		{"inotify_init1", seccompData(x64, unix.SYS_INOTIFY_INIT1, 0), all(deny)},
		{"flock", seccompData(x64, unix.SYS_FLOCK, 3, unix.LOCK_SH), all(deny)},
		{"x32 getpid", seccompData(x64, 0x40000000|unix.SYS_GETPID), all(deny)},
		{"i386 getpid via int $0x80", seccompData(unix.AUDIT_ARCH_I386, 20), all(deny)},
		{"i386 kill", seccompData(unix.AUDIT_ARCH_I386, 37, 0, uint64(unix.SIGKILL)), all(deny)},
	}
	soloOnly := []tc{
		{"clone fork (SIGCHLD)", clone(unix.CLONE_CHILD_SETTID | unix.CLONE_CHILD_CLEARTID | uint64(unix.SIGCHLD)), nil},
		{"clone thread (no exit signal)", clone(unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD | unix.CLONE_SYSVSEM | unix.CLONE_SETTLS), nil},
		{"clone posix_spawn (CLONE_VM|CLONE_VFORK|SIGCHLD)", clone(unix.CLONE_VM | unix.CLONE_VFORK | uint64(unix.SIGCHLD)), nil},
		{"clone exit signal SIGKILL", clone(uint64(unix.SIGKILL)), nil},
		{"clone exit signal SIGXCPU", clone(unix.CLONE_CHILD_SETTID | uint64(unix.SIGXCPU)), nil},
		{"clone CLONE_NEWUSER|SIGCHLD", clone(unix.CLONE_NEWUSER | uint64(unix.SIGCHLD)), nil},
	}
	soloWant := []int{allow, allow, allow, deny, deny, deny}

	for _, name := range seccompprofiles.BuiltinNames() {
		p, _ := seccompprofiles.Builtin(name)
		prog, _, err := Compile(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		denied := map[string]uint32{
			"xsnap": retEPERM, "solo": retEPERM, "dev": retEPERM, "consensus": unix.SECCOMP_RET_KILL_PROCESS,
		}[name]
		expect := func(c tc, want int) {
			got := interpret(t, prog, c.data)
			w := uint32(retAllow)
			if want == deny {
				w = denied
			}
			if got != w {
				t.Errorf("%s, %s: filter returns %#x, want %#x", name, c.name, got, w)
			}
		}
		for _, c := range cases {
			want, ok := c.want[name]
			if !ok {
				t.Fatalf("case %q has no expectation for built-in %s", c.name, name)
			}
			expect(c, want)
		}
		if name == "solo" {
			for i, c := range soloOnly {
				expect(c, soloWant[i])
			}
		}
	}
}
