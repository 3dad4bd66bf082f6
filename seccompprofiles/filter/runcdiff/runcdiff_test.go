//go:build cgo && seccomp

package runcdiff

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/seccompprofiles"
	"github.com/vatrun/vatrun/seccompprofiles/filter"
)

// The helper: the test binary re-executed with envImpl set ("vatrun", "runc", or "none": no
// filter, to see whether a probe can run here at all). On a fresh
// locked thread it loads the profile's filter as that implementation builds it, makes one
// syscall and writes "ret errno", then ends the process with exit_group. Only that thread is
// filtered (neither implementation uses TSYNC), so when the filter kills the thread alone the
// main goroutine notices that no answer came and says so.
const (
	envImpl    = "RUNCDIFF_IMPL"
	envProfile = "RUNCDIFF_PROFILE" // built-in name or file
	envProbe   = "RUNCDIFF_PROBE"   // "64:nr:a0:a1:a2" or "32:nr:a0:a1:a2" (i386 via int $0x80)
)

func TestMain(m *testing.M) {
	if impl := os.Getenv(envImpl); impl != "" {
		os.Exit(helper(impl))
	}
	os.Exit(m.Run())
}

// runcConfig converts the profile's seccomp section (OCI shape: its JSON is a
// specs.LinuxSeccomp) to runc's configuration the way runc does for a container's config.json.
func runcConfig(p *seccompprofiles.Profile) (*configs.Seccomp, error) {
	data, err := json.Marshal(p.Seccomp)
	if err != nil {
		return nil, fmt.Errorf("encode the seccomp section: %w", err)
	}
	var oci specs.LinuxSeccomp
	if err := json.Unmarshal(data, &oci); err != nil {
		return nil, fmt.Errorf("decode as specs.LinuxSeccomp: %w", err)
	}
	cfg, err := specconv.SetupSeccomp(&oci)
	if err != nil {
		return nil, fmt.Errorf("runc specconv.SetupSeccomp: %w", err)
	}
	return cfg, nil
}

func helper(impl string) int {
	p, err := seccompprofiles.Load(os.Getenv(envProfile))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 90
	}
	var call [5]uintptr
	f := strings.Split(os.Getenv(envProbe), ":")
	for i, s := range f[1:] {
		v, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper: bad probe", f)
			return 90
		}
		call[i] = uintptr(v)
	}
	compat := f[0] == "32"
	var prog []byte
	var cfg *configs.Seccomp
	switch impl {
	case "vatrun":
		prog, _, err = filter.Compile(p)
	case "runc":
		cfg, err = runcConfig(p)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 91
	}
	_ = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{})
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "helper: no_new_privs:", err)
		return 92
	}
	loadErr := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the filter stays on this thread
		switch impl {
		case "none": // no filter: is the probe possible on this machine at all?
		case "runc":
			if _, err := seccomp.InitSeccomp(cfg); err != nil {
				loadErr <- err
				return
			}
		default:
			insns := make([]unix.SockFilter, len(prog)/8)
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&insns[0])), len(prog)), prog)
			fprog := unix.SockFprog{Len: uint16(len(insns)), Filter: &insns[0]}
			if _, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
				loadErr <- errno
				return
			}
		}
		// From here on: raw syscalls only (write and exit_group are allowed by every profile).
		var ret int64
		var errno uint64
		if compat {
			r := int32(int80(call[0], call[1], call[2], call[3]))
			if r < 0 && r > -4096 {
				ret, errno = -1, uint64(-r)
			} else {
				ret = int64(r)
			}
		} else {
			r, _, e := unix.RawSyscall6(call[0], call[1], call[2], call[3], call[4], 0, 0)
			ret, errno = int64(r), uint64(e)
		}
		var buf [64]byte
		out := strconv.AppendInt(buf[:0], ret, 10)
		out = append(out, ' ')
		out = strconv.AppendUint(out, errno, 10)
		out = append(out, '\n')
		unix.RawSyscall(unix.SYS_WRITE, 1, uintptr(unsafe.Pointer(&out[0])), uintptr(len(out)))
		unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
	}()
	select {
	case err := <-loadErr:
		fmt.Fprintln(os.Stderr, "helper: load the filter:", err)
		return 93
	case <-time.After(2 * time.Second):
		fmt.Println("thread killed")
		return 0
	}
}

// outcome runs one probe under one implementation: the helper's line, "thread killed", or the
// signal that killed the process.
func outcome(t *testing.T, impl, profile, probe string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envImpl+"="+impl, envProfile+"="+profile, envProbe+"="+probe)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%s %s %s: %v", impl, profile, probe, err)
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case ws.Signaled() && ws.Signal() == unix.SIGSEGV && impl == "none":
		return "fault (no i386 emulation)"
	case ws.Signaled():
		return "killed by " + unix.SignalName(ws.Signal())
	case ws.ExitStatus() == 2 && impl == "none" && strings.Contains(stderr.String(), "unexpected fault address"):
		return "fault (no i386 emulation)"
	case ws.ExitStatus() != 0:
		t.Fatalf("%s %s %s: helper exit %d: %s", impl, profile, probe, ws.ExitStatus(), stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// errnoOut is the helper line of a syscall failing with e.
func errnoOut(e syscall.Errno) string { return fmt.Sprintf("-1 %d", e) }

const customProfile = `{
  "name": "runcdiff-custom",
  "seccomp": {
    "defaultAction": "SCMP_ACT_ERRNO",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
    "syscalls": [
      {"names": ["getppid", "write", "exit_group", "exit", "futex", "rt_sigreturn", "rt_sigprocmask",
                 "sched_yield", "nanosleep", "mmap", "munmap", "madvise", "sigaltstack", "gettid",
                 "tgkill", "getpid", "clock_gettime", "epoll_pwait", "read", "close", "openat", "fcntl"],
       "action": "SCMP_ACT_ALLOW"},
      {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
      {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 1, "value": 21505, "op": "SCMP_CMP_EQ"}]}
    ]
  }
}`

type probeCase struct {
	name  string
	probe string
	// want is the outcome both implementations must give, per profile (absent: only that they
	// agree).
	want map[string]string
	// fd: a success returns a new fd, whose number depends on what the implementation left open,
	// or an address (mmap); either is spelled "fd".
	fd bool
	// badArch, per profile: the probe is a syscall of an architecture the profile does not list,
	// where vatrun deliberately differs from runc. runc leaves libseccomp's bad-architecture
	// action (KILL_THREAD: "thread killed"); vatrun gives the profile's default action (EPERM
	// under a permissive default), so a worker cannot pick a SIGSYS death. The value is vatrun's
	// outcome; runc's must be "thread killed".
	badArch map[string]string
}

// normalize spells a successful fd-returning probe "fd".
func (c probeCase) normalize(out string) string {
	if ret, errno, ok := strings.Cut(out, " "); c.fd && ok && errno == "0" && !strings.HasPrefix(ret, "-") {
		return "fd"
	}
	return out
}

func p64(nr uintptr, args ...uintptr) string {
	s := "64:" + strconv.FormatUint(uint64(nr), 10)
	for _, a := range args {
		s += ":" + strconv.FormatUint(uint64(a), 10)
	}
	return s
}

// i386 syscall numbers.
const (
	i386Getppid    = 64
	i386Socketcall = 102 // the multiplexer: socketcall(SYS_SOCKET=1, args)
	i386Socket     = 359 // the direct syscall (Linux 4.3+)
)

// i386SocketWant is what the custom profile's errno rule for "socket" (EACCES) gives a direct
// i386 socket call (359) on this machine. It depends on the libseccomp linked here, not on a
// constant: a libseccomp that resolves "socket" on x86 to the direct syscall puts 359 in the
// filter (the rule's EACCES); one that knows it only as a socketcall multiplexer (a negative
// pseudo-number) leaves 359 out, and 359 is above the highest i386 syscall the profile names, so
// both implementations' stubs answer ENOSYS ("newer than the profile").
func i386SocketWant(t *testing.T) string {
	t.Helper()
	nr, err := libseccomp.GetSyscallFromNameByArch("socket", libseccomp.ArchX86)
	if err != nil {
		t.Fatalf("libseccomp cannot resolve socket on x86: %v", err)
	}
	t.Logf("libseccomp resolves socket on x86 to %d", int(nr))
	if int(nr) == i386Socket {
		return errnoOut(unix.EACCES)
	}
	return errnoOut(unix.ENOSYS)
}

// TestDifferentialAgainstRunc loads vatrun's filter and runc's for the same profile (the
// built-ins and a custom one listing x86_64 and i386) and makes the same syscalls under each:
// every outcome must be identical, and the ones that define the design (ENOSYS above the
// profile's syscalls, the default action, an errno rule) must be what the profile says.
func TestDifferentialAgainstRunc(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the probes use x86_64 and i386 syscall numbers")
	}
	custom := filepath.Join(t.TempDir(), "custom.json")
	if err := os.WriteFile(custom, []byte(customProfile), 0o644); err != nil {
		t.Fatal(err)
	}
	ppid := strconv.Itoa(os.Getpid()) + " 0"
	enosys, eperm, eacces := errnoOut(unix.ENOSYS), errnoOut(unix.EPERM), errnoOut(unix.EACCES)
	// The built-ins list no architecture but the native one: an i386 syscall gets their default
	// action from vatrun (EPERM under dev's permissive default).
	builtinBadArch := map[string]string{"xsnap": eperm, "consensus": "killed by SIGSYS", "solo": eperm, "dev": eperm}
	cases := []probeCase{
		{name: "getppid (allowed)", probe: p64(unix.SYS_GETPPID), want: map[string]string{"xsnap": ppid, "solo": ppid, "dev": ppid, "consensus": ppid, custom: ppid}},
		{name: "socket (default action; custom: errno rule EACCES)", probe: p64(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM, 0),
			want: map[string]string{"xsnap": eperm, "consensus": "killed by SIGSYS", "dev": "fd", custom: eacces}, fd: true},
		{name: "ioctl FIONREAD (argument condition fails: default)", probe: p64(unix.SYS_IOCTL, 0, 0x541B, 0),
			want: map[string]string{"xsnap": eperm, custom: eperm}},
		{name: "mknodat (below the highest named: default)", probe: p64(unix.SYS_MKNODAT, 0, 0, 0), want: map[string]string{custom: eperm}},
		{name: "clone3 (newer than the profile)", probe: p64(unix.SYS_CLONE3, 0, 0), want: map[string]string{"xsnap": enosys, "consensus": enosys, custom: enosys}},
		{name: "io_uring_setup (newer; dev denies it by rule)", probe: p64(unix.SYS_IO_URING_SETUP, 1, 0), want: map[string]string{"xsnap": enosys, "dev": eperm, custom: enosys}},
		{name: "syscall 1000 (unassigned)", probe: p64(1000), want: map[string]string{"xsnap": enosys, "consensus": enosys, "solo": enosys, custom: enosys}},
		// Argument rules (docs/seccomp-arguments.md): both implementations read the same
		// conditions, SCMP_CMP_MASKED_EQ's value as the mask and valueTwo as the datum.
		{name: "fcntl F_GETFL (allowed command)", probe: p64(unix.SYS_FCNTL, 1, unix.F_GETFL), want: map[string]string{"xsnap": "1 0", "consensus": "1 0", "solo": "1 0", "dev": "1 0"}},
		{name: "fcntl F_SETOWN (refused command)", probe: p64(unix.SYS_FCNTL, 1, unix.F_SETOWN, 0), want: map[string]string{"xsnap": eperm, "consensus": "killed by SIGSYS", "solo": eperm, "dev": eperm}},
		{name: "fcntl F_SETFL O_ASYNC (masked argument)", probe: p64(unix.SYS_FCNTL, 1, unix.F_SETFL, unix.O_ASYNC), want: map[string]string{"xsnap": eperm, "consensus": "killed by SIGSYS", "solo": eperm, "dev": eperm}},
		{name: "mmap MAP_SHARED|MAP_ANONYMOUS (masked flags)", probe: p64(unix.SYS_MMAP, 0, 4096, unix.PROT_READ, unix.MAP_SHARED|unix.MAP_ANONYMOUS),
			want: map[string]string{"xsnap": eperm, "consensus": "killed by SIGSYS", "solo": eperm, "dev": "fd"}, fd: true},
		{name: "mmap MAP_PRIVATE|MAP_ANONYMOUS", probe: p64(unix.SYS_MMAP, 0, 4096, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS),
			want: map[string]string{"xsnap": "fd", "consensus": "fd", "solo": "fd", "dev": "fd"}, fd: true},
		{name: "x32 getpid (x32 ABI, not in any profile)", probe: p64(0x40000000 | unix.SYS_GETPID),
			badArch: map[string]string{"xsnap": eperm, "consensus": "killed by SIGSYS", "solo": eperm, "dev": eperm, custom: eperm}},
		{name: "i386 getppid via int $0x80", probe: "32:" + strconv.Itoa(i386Getppid), want: map[string]string{custom: ppid}, badArch: builtinBadArch},
		{name: "i386 socket via int $0x80", probe: "32:" + strconv.Itoa(i386Socket) + ":1:1:0", want: map[string]string{custom: i386SocketWant(t)}, badArch: builtinBadArch},
		// socketcall(SYS_SOCKET, NULL): the rule matches on the multiplexer's first argument
		// before the kernel reads the (NULL) argument block, so EACCES from the filter either way.
		{name: "i386 socketcall(SYS_SOCKET) via int $0x80", probe: "32:" + strconv.Itoa(i386Socketcall) + ":1:0", want: map[string]string{custom: eacces}, badArch: builtinBadArch},
		{name: "i386 syscall 1000 via int $0x80", probe: "32:1000", want: map[string]string{custom: enosys}, badArch: builtinBadArch},
	}
	// int $0x80 needs the kernel's i386 emulation; some (virtual) machines fault on it even with
	// CONFIG_IA32_EMULATION. Then the i386 probes cannot run here: the foreign-architecture
	// path is covered by the filter package's interpreted tests instead.
	if got := outcome(t, "none", "dev", "32:"+strconv.Itoa(i386Getppid)); got != ppid {
		t.Logf("i386 syscalls via int $0x80 do not work on this machine without any filter (%s): skipping the i386 probes", got)
		var native []probeCase
		for _, c := range cases {
			if !strings.HasPrefix(c.probe, "32:") {
				native = append(native, c)
			}
		}
		cases = native
	}
	profiles := append(seccompprofiles.BuiltinNames(), custom)
	for _, prof := range profiles {
		for _, c := range cases {
			ours := c.normalize(outcome(t, "vatrun", prof, c.probe))
			theirs := c.normalize(outcome(t, "runc", prof, c.probe))
			label := prof
			if prof == custom {
				label = "custom"
			}
			t.Logf("%-9s %-52s vatrun %-18q runc %q", label, c.name, ours, theirs)
			if want, ok := c.badArch[prof]; ok {
				if ours != want {
					t.Errorf("%s, %s (foreign architecture): vatrun %q, want the profile's default action %q", label, c.name, ours, want)
				}
				if theirs != "thread killed" {
					t.Errorf("%s, %s (foreign architecture): runc %q, want \"thread killed\" (libseccomp's bad-architecture default)", label, c.name, theirs)
				}
				continue
			}
			if ours != theirs {
				t.Errorf("%s, %s: vatrun %q, runc %q", label, c.name, ours, theirs)
			}
			if want, ok := c.want[prof]; ok && ours != want {
				t.Errorf("%s, %s: vatrun %q, want %q", label, c.name, ours, want)
			}
		}
	}
}
