package filter

import (
	"bytes"
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
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/seccompprofiles"
)

// The helper process: the test binary re-executed with helperEnv set. It compiles a profile,
// loads the program on its (locked) thread, runs raw syscalls and prints one line per probe,
// "nr ret errno", then exits 0 or execs a program.
const (
	helperEnv     = "VATRUN_SECCOMP_TEST_HELPER"
	helperProfile = "VATRUN_SECCOMP_TEST_PROFILE" // built-in name or file path
	helperProbes  = "VATRUN_SECCOMP_TEST_PROBES"  // "nr[:a0[:a1...]],..." (decimal)
	helperExec    = "VATRUN_SECCOMP_TEST_EXEC"    // program to exec after the probes
	helperArg     = "VATRUN_SECCOMP_TEST_ARG"     // its argv[1], if set
	helperPad     = "VATRUN_SECCOMP_TEST_PAD"     // that many fictitious architectures in the stub
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(seccompHelper())
	}
	os.Exit(m.Run())
}

func seccompHelper() int {
	p, err := seccompprofiles.Load(os.Getenv(helperProfile))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 90
	}
	prog, err := compileProg(p)
	if pad := os.Getenv(helperPad); pad != "" && err == nil {
		n, _ := strconv.Atoi(pad)
		prog, _, err = compile(p.Seccomp, fakeBlocks(n))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 91
	}
	var probes [][7]uintptr
	if s := os.Getenv(helperProbes); s != "" {
		for _, probe := range strings.Split(s, ",") {
			var call [7]uintptr
			for i, f := range strings.Split(probe, ":") {
				v, err := strconv.ParseUint(f, 0, 64)
				if err != nil {
					fmt.Fprintln(os.Stderr, "helper: bad probe", probe)
					return 92
				}
				call[i] = uintptr(v)
			}
			probes = append(probes, call)
		}
	}
	execPath := os.Getenv(helperExec)
	argv := []string{execPath}
	if a := os.Getenv(helperArg); a != "" {
		argv = append(argv, a)
	}
	env := os.Environ()
	out := make([]byte, 0, 64*len(probes)+64)
	insns := decodeBPF(prog)

	// Nothing below may allocate much or use syscalls outside the profiles' allowlists.
	runtime.LockOSThread()
	_ = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}) // a SIGSYS death must not dump core
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "helper: no_new_privs:", err)
		return 93
	}
	fprog := unix.SockFprog{Len: uint16(len(insns)), Filter: &insns[0]}
	if _, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		fmt.Fprintln(os.Stderr, "helper: seccomp:", errno)
		return 94
	}
	for _, c := range probes {
		r, _, errno := unix.RawSyscall6(c[0], c[1], c[2], c[3], c[4], c[5], c[6])
		out = strconv.AppendUint(out, uint64(c[0]), 10)
		out = append(out, ' ')
		out = strconv.AppendInt(out, int64(r), 10)
		out = append(out, ' ')
		out = strconv.AppendUint(out, uint64(errno), 10)
		out = append(out, '\n')
		// Write after each probe so the lines before a fatal probe survive.
		unix.RawSyscall(unix.SYS_WRITE, 1, uintptr(unsafe.Pointer(&out[0])), uintptr(len(out)))
		out = out[:0]
	}
	if execPath != "" {
		err := syscall.Exec(execPath, argv, env)
		unix.RawSyscall(unix.SYS_WRITE, 2, uintptr(unsafe.Pointer(unsafe.StringData("helper: exec failed\n"))), 20)
		_ = err
		return 95
	}
	return 0
}

type probeResult struct {
	ret   int64
	errno syscall.Errno
}

// runHelper runs the helper under profile and returns each probe's result by syscall number,
// plus the wait status.
func runHelper(t *testing.T, profile string, execPath string, probes ...string) (map[uint64]probeResult, syscall.WaitStatus) {
	t.Helper()
	return runHelperEnv(t, profile, execPath, nil, probes...)
}

func runHelperEnv(t *testing.T, profile string, execPath string, env []string, probes ...string) (map[uint64]probeResult, syscall.WaitStatus) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", helperProfile+"="+profile,
		helperProbes+"="+strings.Join(probes, ","), helperExec+"="+execPath)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running the helper: %v", err)
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Exited() && ws.ExitStatus() >= 90 {
		t.Fatalf("helper setup failed (exit %d): %s", ws.ExitStatus(), stderr.String())
	}
	res := map[uint64]probeResult{}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if line == "" {
			continue
		}
		var nr uint64
		var r probeResult
		if _, err := fmt.Sscanf(line, "%d %d %d", &nr, &r.ret, &r.errno); err != nil {
			t.Fatalf("helper output line %q: %v", line, err)
		}
		res[nr] = r
	}
	return res, ws
}

func probe(nr uintptr, args ...uintptr) string {
	s := strconv.FormatUint(uint64(nr), 10)
	for _, a := range args {
		s += ":" + strconv.FormatUint(uint64(a), 10)
	}
	return s
}

func wantErrno(t *testing.T, res map[uint64]probeResult, nr uintptr, name string, want syscall.Errno) {
	t.Helper()
	r, ok := res[uint64(nr)]
	if !ok {
		t.Errorf("%s (nr %d): no result from the helper", name, nr)
		return
	}
	if r.errno != want {
		t.Errorf("%s (nr %d): ret %d errno %d (%v), want errno %d (%v)", name, nr, r.ret, r.errno, r.errno, want, want)
	}
}

const nrUnassigned = 1000 // no architecture has a syscall 1000

func requireAmd64(t *testing.T) {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skip("syscall numbers in this test are x86_64's")
	}
}

func TestFilterXsnapLoaded(t *testing.T) {
	requireAmd64(t)
	res, ws := runHelper(t, "xsnap", "",
		probe(unix.SYS_GETPPID),
		probe(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM, 0),
		probe(unix.SYS_IOCTL, 0, 0x541B, 0), // FIONREAD
		probe(unix.SYS_PRLIMIT64, 1, unix.RLIMIT_NOFILE, 0, 0),
		probe(unix.SYS_CLONE3, 0, 0),
		probe(unix.SYS_PIDFD_SEND_SIGNAL, 0, 0, 0, 0),
		probe(nrUnassigned),
	)
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("helper status %v, want exit 0", ws)
	}
	if r := res[unix.SYS_GETPPID]; r.errno != 0 || r.ret != int64(os.Getpid()) {
		t.Errorf("getppid under xsnap: ret %d errno %v, want %d (allowed)", r.ret, r.errno, os.Getpid())
	}
	// Below the highest named syscall: the default action, EPERM.
	wantErrno(t, res, unix.SYS_SOCKET, "socket", unix.EPERM)
	wantErrno(t, res, unix.SYS_IOCTL, "ioctl FIONREAD (only TCGETS/TIOCGWINSZ allowed)", unix.EPERM)
	wantErrno(t, res, unix.SYS_PRLIMIT64, "prlimit64 on another pid", unix.EPERM)
	// Above it: ENOSYS from the stub, so libc falls back (clone3 -> clone).
	wantErrno(t, res, unix.SYS_CLONE3, "clone3", unix.ENOSYS)
	wantErrno(t, res, unix.SYS_PIDFD_SEND_SIGNAL, "pidfd_send_signal", unix.ENOSYS)
	wantErrno(t, res, nrUnassigned, "syscall 1000", unix.ENOSYS)
}

func TestFilterConsensusKillsWithSIGSYS(t *testing.T) {
	requireAmd64(t)
	res, ws := runHelper(t, "consensus", "",
		probe(unix.SYS_GETPPID),
		probe(unix.SYS_CLONE3, 0, 0),
		probe(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM, 0),
		probe(unix.SYS_GETPID), // never reached
	)
	if !ws.Signaled() || ws.Signal() != unix.SIGSYS {
		t.Fatalf("helper status %v (results %v), want death by SIGSYS at socket()", ws, res)
	}
	if r := res[unix.SYS_GETPPID]; r.errno != 0 {
		t.Errorf("getppid under consensus: errno %v, want allowed", r.errno)
	}
	// A syscall newer than the profile gets ENOSYS, not the KILL_PROCESS default.
	wantErrno(t, res, unix.SYS_CLONE3, "clone3", unix.ENOSYS)
	if _, ok := res[unix.SYS_SOCKET]; ok {
		t.Errorf("socket returned %v under consensus; it must kill", res[unix.SYS_SOCKET])
	}
	if _, ok := res[unix.SYS_GETPID]; ok {
		t.Errorf("the helper kept running after socket()")
	}
}

func TestFilterDevDenylist(t *testing.T) {
	requireAmd64(t)
	res, ws := runHelper(t, "dev", "",
		probe(unix.SYS_PTRACE, ^uintptr(0), 0, 0, 0), // request -1: EIO without the filter
		probe(unix.SYS_UNSHARE, 0),                   // succeeds without the filter
		probe(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM, 0),
	)
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("helper status %v, want exit 0", ws)
	}
	wantErrno(t, res, unix.SYS_PTRACE, "ptrace", unix.EPERM)
	wantErrno(t, res, unix.SYS_UNSHARE, "unshare", unix.EPERM)
	if r := res[unix.SYS_SOCKET]; r.errno != 0 || r.ret < 0 {
		t.Errorf("socket under dev: ret %d errno %v, want a descriptor", r.ret, r.errno)
	}
}

// solo and dev: clone with any namespace flag is refused (the flags are clone's first argument,
// which a filter can read); clone3, whose flags are in memory, gets ENOSYS so that libc falls
// back to clone. Each probe's other flags are chosen so that the kernel itself would reject the
// call (EINVAL) if the filter let it through: nothing is created either way.
func TestFilterNoNamespaceFlags(t *testing.T) {
	requireAmd64(t)
	// CLONE_THREAD without CLONE_SIGHAND is EINVAL in the kernel.
	const invalid = unix.CLONE_THREAD
	for _, profile := range []string{"solo", "dev"} {
		t.Run(profile, func(t *testing.T) {
			var probes []string
			flags := []uintptr{unix.CLONE_NEWNS, unix.CLONE_NEWCGROUP, unix.CLONE_NEWUTS, unix.CLONE_NEWIPC,
				unix.CLONE_NEWUSER, unix.CLONE_NEWPID, unix.CLONE_NEWNET, unix.CLONE_NEWTIME}
			for _, f := range flags {
				probes = append(probes, probe(unix.SYS_CLONE, invalid|f, 0, 0, 0, 0))
			}
			probes = append(probes, probe(unix.SYS_CLONE3, 0, 0))
			res, _ := runHelper(t, profile, "", probes...)
			// runHelper keys results by syscall number: every clone probe must have been refused,
			// which the last one recorded shows; check them one by one through separate runs.
			wantErrno(t, res, unix.SYS_CLONE3, "clone3", unix.ENOSYS)
			for _, f := range flags {
				one, _ := runHelper(t, profile, "", probe(unix.SYS_CLONE, invalid|f, 0, 0, 0, 0))
				wantErrno(t, one, unix.SYS_CLONE, fmt.Sprintf("clone with flag %#x", f), unix.EPERM)
			}
			// Without a namespace flag the filter lets clone through (the kernel says EINVAL).
			plain, _ := runHelper(t, profile, "", probe(unix.SYS_CLONE, invalid, 0, 0, 0, 0))
			wantErrno(t, plain, unix.SYS_CLONE, "clone without namespace flags", unix.EINVAL)
		})
	}
	dev, _ := runHelper(t, "dev", "", probe(unix.SYS_IO_URING_SETUP, 1, 0))
	wantErrno(t, dev, unix.SYS_IO_URING_SETUP, "io_uring_setup under dev", unix.EPERM)
}

// A custom profile from a file: an explicit errno and a rule on a syscall above the others.
func TestFilterCustomProfileFile(t *testing.T) {
	requireAmd64(t)
	x, _ := seccompprofiles.Builtin("xsnap")
	x.Name = ""
	x.Seccomp.Syscalls = append(x.Seccomp.Syscalls,
		seccompprofiles.SeccompSyscall{Names: []string{"socket"}, Action: specs.ActErrno, ErrnoRet: ptr(uint(unix.EACCES))},
		seccompprofiles.SeccompSyscall{Names: []string{"close_range"}, Action: specs.ActErrno, ErrnoRet: ptr(uint(unix.EXDEV))})
	c, err := x.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "custom.json")
	if err := os.WriteFile(path, c, 0o600); err != nil {
		t.Fatal(err)
	}
	res, _ := runHelper(t, path, "",
		probe(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM, 0),
		probe(unix.SYS_CLONE3, 0, 0),
		probe(unix.SYS_CLOSE_RANGE, 1000, 1001, 0),
		probe(unix.SYS_OPENAT2, 0, 0, 0, 0),
	)
	wantErrno(t, res, unix.SYS_SOCKET, "socket", unix.EACCES)
	// close_range (436) is now the highest named: clone3 (435) is below it and gets the
	// default, openat2 (437) is above it.
	wantErrno(t, res, unix.SYS_CLOSE_RANGE, "close_range", unix.EXDEV)
	wantErrno(t, res, unix.SYS_CLONE3, "clone3", unix.EPERM)
	wantErrno(t, res, unix.SYS_OPENAT2, "openat2", unix.ENOSYS)
}

// The xsnap and consensus allowlists are enough for a dynamically linked C program to start
// and exit: the helper loads the filter and execs /bin/true.
func TestFilterExecTrue(t *testing.T) {
	if _, err := os.Stat("/bin/true"); err != nil {
		t.Skip("no /bin/true")
	}
	for _, name := range []string{"xsnap", "consensus", "solo"} {
		t.Run(name, func(t *testing.T) {
			_, ws := runHelper(t, name, "/bin/true")
			if !ws.Exited() || ws.ExitStatus() != 0 {
				t.Fatalf("/bin/true under %s: status %v (signal %v), want exit 0", name, ws, ws.Signal())
			}
		})
	}
}

// A C program like the xsnap worker (malloc, clock, signals, nanosleep, abort) runs under the
// xsnap and consensus filters both dynamically and statically linked; abort() still delivers
// SIGABRT (rt_sigprocmask, gettid, tgkill are allowed), which the death report classifies.
func TestFilterCProgram(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler")
	}
	dir := t.TempDir()
	bins := map[string][]string{"dynamic": nil, "static": {"-static"}}
	for link, flags := range bins {
		out := filepath.Join(dir, "cprog-"+link)
		args := append([]string{"-O1", "-o", out, "testdata/cprog.c"}, flags...)
		if msg, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
			if link == "static" {
				t.Logf("static link unavailable, skipping it: %v: %s", err, msg)
				delete(bins, link)
				continue
			}
			t.Fatalf("cc %v: %v: %s", args, err, msg)
		}
	}
	for link := range bins {
		for _, profile := range []string{"xsnap", "consensus"} {
			t.Run(link+"/"+profile, func(t *testing.T) {
				bin := filepath.Join(dir, "cprog-"+link)
				_, ws := runHelper(t, profile, bin)
				if !ws.Exited() || ws.ExitStatus() != 7 {
					t.Errorf("run: status %v (signal %v), want exit 7 (main ran to the end)", ws, ws.Signal())
				}
				_, ws = runHelperEnv(t, profile, bin, []string{helperArg + "=abort"})
				if !ws.Signaled() || ws.Signal() != unix.SIGABRT {
					t.Errorf("abort: status %v (exited %v code %d), want death by SIGABRT", ws, ws.Exited(), ws.ExitStatus())
				}
			})
		}
	}
}

func TestCompileBPFShape(t *testing.T) {
	requireAmd64(t)
	x, _ := seccompprofiles.Builtin("xsnap")
	prog, err := compileProg(x)
	if err != nil {
		t.Fatal(err)
	}
	insns := decodeBPF(prog)
	// ld arch; jeq x86_64; ld nr; jge x32 bit; jgt max; ja; ret ENOSYS; libseccomp's program.
	if len(insns) < 8 {
		t.Fatalf("program has %d instructions", len(insns))
	}
	rseq, _ := libseccomp.GetSyscallFromName("rseq")
	if insns[1].K != unix.AUDIT_ARCH_X86_64 || insns[3].K != x32SyscallBit || insns[4].K != uint32(rseq) {
		t.Errorf("stub = %+v, want arch x86_64, x32 bit, max = rseq (%d), the highest xsnap names", insns[:7], rseq)
	}
	if want := (unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)}); insns[6] != want {
		t.Errorf("insn 6 = %+v, want %+v", insns[6], want)
	}
	if insns[7].Code != unix.BPF_LD|unix.BPF_W|unix.BPF_ABS || insns[7].K != 4 {
		t.Errorf("libseccomp's program should follow the stub, got %+v", insns[7])
	}

	d, _ := seccompprofiles.Builtin("dev")
	prog, err = compileProg(d)
	if err != nil {
		t.Fatal(err)
	}
	if in := decodeBPF(prog); in[1].Code == unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K && in[2].K == 0 && in[2].Code == unix.BPF_LD|unix.BPF_W|unix.BPF_ABS && len(in) > 3 && in[4].Code == unix.BPF_JMP|unix.BPF_JGT|unix.BPF_K {
		t.Errorf("dev (default allow) must not get the ENOSYS stub: %+v", in[:5])
	}

	none := seccompprofiles.Default()
	if prog, err := compileProg(none); prog != nil || err != nil {
		t.Errorf("no seccomp section: got %d bytes, %v; want nil, nil", len(prog), err)
	}
}

func TestCompileBPFTooLong(t *testing.T) {
	p := seccompprofiles.Default()
	p.Seccomp = &seccompprofiles.Seccomp{DefaultAction: specs.ActErrno}
	// Every distinct argument value is its own comparison in the program.
	for v := range 5000 {
		p.Seccomp.Syscalls = append(p.Seccomp.Syscalls, seccompprofiles.SeccompSyscall{
			Names: []string{"ioctl"}, Action: specs.ActAllow,
			Args: []seccompprofiles.SeccompArg{{Index: 1, Value: uint64(v), Op: specs.OpEqualTo}},
		})
	}
	_, err := compileProg(p)
	if err == nil || !strings.Contains(err.Error(), "the kernel accepts at most 4096") {
		t.Fatalf("err = %v, want the 4096-instruction limit", err)
	}
}

// compileProg is Compile without the warnings.
func compileProg(p *seccompprofiles.Profile) ([]byte, error) {
	prog, _, err := Compile(p)
	return prog, err
}

func ptr[T any](v T) *T { return &v }

func BenchmarkCompileBPF(b *testing.B) {
	p, _ := seccompprofiles.Builtin("xsnap")
	for b.Loop() {
		if _, err := compileProg(p); err != nil {
			b.Fatal(err)
		}
	}
}
