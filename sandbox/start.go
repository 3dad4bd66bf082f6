package sandbox

// #include "prelaunch.h"
import "C"

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Spec says how to start one sandboxed worker.
type Spec struct {
	Config Config // namespaces, limits, filter, mounts; KeepFDs and StatusFD are filled in by Start
	// Path is the worker executable (absolute); Args its argv (Args[0] included).
	Path string
	Args []string
	Env  []string
	Dir  string
	// Stdin, Stdout, Stderr: nil means /dev/null.
	Stdin, Stdout, Stderr *os.File
	// ExtraFiles become fds 3, 4, … of the worker; a nil entry is a closed fd.
	ExtraFiles []*os.File
	// CloseExtraFiles: close ExtraFiles as soon as the init stage holds its copies, so that from
	// then on only the sandbox holds them (vatrun run: a kernel's write must fail with EPIPE the
	// moment the worker is gone, even in start-up).
	CloseExtraFiles bool
	// CgroupFD, when >= 0, is a cgroup v2 directory fd the stage is cloned into
	// (CLONE_INTO_CGROUP): the worker never runs outside it.
	CgroupFD int
}

// SetupError says which step of the sandbox setup failed; the worker never ran.
type SetupError struct {
	Step  string
	Errno syscall.Errno
}

func (e *SetupError) Error() string {
	if e.Errno == 0 {
		return "sandbox setup: " + e.Step
	}
	return fmt.Sprintf("sandbox setup: %s: %v", e.Step, e.Errno)
}

func (e *SetupError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// Exit is how a worker ended.
type Exit struct {
	// Status is the worker's wait status. When Reported is false the stage died before it could
	// report (it was killed), and Status is the stage's own wait status.
	Status   unix.WaitStatus
	Reported bool
	Utime    time.Duration
	Stime    time.Duration
	// CPU is the worker's CPU time as RLIMIT_CPU sees it (its PROF clock, read by the init stage
	// while the worker was a zombie); 0 when unknown, then use
	// Utime+Stime.
	CPU      time.Duration
	MaxRSSKB int64
	// Forwarded: bit N set when the init stage relayed signal N to the worker while it was
	// still alive (valid when Reported).
	Forwarded uint64
	// Wall is the worker's lifetime, from its exec to its death, on the monotonic clock the init
	// stage read at both ends (valid when Reported): it does not stretch when vatrun is slow to
	// notice (stopped, descheduled).
	Wall time.Duration
	// At is when the death was noticed.
	At time.Time
	// Denied lists the syscalls the filter refused with ERRNO while the refusals were recorded
	// (Process.Recording), at most MaxDenied of them; DeniedOver counts the refused calls that did
	// not fit.
	Denied     []Denied
	DeniedOver uint64
}

// Process is a running sandboxed worker.
type Process struct {
	// InitPid is the pid of the init stage in the caller's pid namespace; with a pid namespace
	// the worker is its only child (pid 2 inside), otherwise the worker is its child.
	InitPid int
	// WorkerPid is the worker's pid as the init stage sees it.
	WorkerPid int
	// Recording: the init stage records the syscalls the filter refuses (Config.RecordDenied and
	// the kernel allowed it); RecordWarning says why not when it was asked for and is not.
	Recording     bool
	RecordWarning string
	proc          *os.Process
	execMono      int64 // CLOCK_MONOTONIC at the worker's exec, from the stage
	status        *os.File
	waitOnce      sync.Once
	reaped        chan struct{}
	exit          Exit
	waitErr       error
}

// spawner runs every clone on one locked OS thread that never exits: the stage's parent-death
// signal (PR_SET_PDEATHSIG) fires when the *thread* that forked it exits, so a thread that Go
// might retire would kill workers at random. With this thread, it fires only when the supervisor
// process dies.
var spawner struct {
	once sync.Once
	reqs chan func()
}

func onSpawnerThread(f func()) {
	spawner.once.Do(func() {
		spawner.reqs = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: this goroutine lives as long as the process
			for f := range spawner.reqs {
				f()
			}
		}()
	})
	done := make(chan struct{})
	spawner.reqs <- func() { f(); close(done) }
	<-done
}

// Start clones the init stage into the requested namespaces (and cgroup), which forks and
// execs the worker inside the sandbox. It returns once the worker's execve succeeded, or a
// *SetupError when a step failed (nothing is left running then).
func Start(spec Spec) (*Process, error) {
	if len(spec.Args) == 0 {
		spec.Args = []string{spec.Path}
	}
	cfg := spec.Config
	if cfg.MountNS() {
		own, err := WorkerRoot(spec.Path)
		if err != nil {
			return nil, &SetupError{Step: err.Error()}
		}
		cfg.Mounts = append(own, cfg.Mounts...)
	}
	cfg.KeepFDs = 3 + len(spec.ExtraFiles)
	cfgFD := cfg.KeepFDs
	cfg.StatusFD = cfgFD + 1
	payload, err := cfg.Encode()
	if err != nil {
		return nil, err
	}
	if len(payload) > 60*1024 {
		// A pipe holds 64 KiB; the largest BPF program (4096 instructions) is 32 KiB.
		return nil, fmt.Errorf("sandbox: config of %d bytes does not fit a pipe", len(payload))
	}

	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox: open %s: %w", os.DevNull, err)
	}
	defer devnull.Close()
	orNull := func(f *os.File) *os.File {
		if f == nil {
			return devnull
		}
		return f
	}
	files := []*os.File{orNull(spec.Stdin), orNull(spec.Stdout), orNull(spec.Stderr)}
	files = append(files, spec.ExtraFiles...)
	sys := sysProcAttr(&cfg, spec.CgroupFD)
	argv := append([]string{"vatrun-init", Marker, strconv.Itoa(cfgFD), spec.Path}, spec.Args...)
	env := spec.Env
	if env == nil {
		env = []string{}
	}
	// vatrun run only (EnableLaunchCache): the launch as a cache entry holds it, to adopt a stage
	// the C constructor started, or to write the entry after an ordinary launch.
	pl, key, dir := takePrelaunched()
	var invBytes []byte
	if pl != nil || key != "" {
		invBytes = invocationOf(&cfg, sys, files, devnull, spec.Dir, payload, argv[3:], env).template().encode()
	}
	if pl != nil {
		why := "the cached launch differs from the launch computed now"
		if bytes.Equal(pl.inv, invBytes) {
			// The same launch. With a cgroup, the waiting stage moves into the worker's leaf
			// before the gate opens, so the worker is forked inside it, as after a clone into
			// the cgroup (CLONE_INTO_CGROUP).
			err := moveIntoCgroup(spec.CgroupFD, pl.pid)
			if err == nil {
				return adopt(pl, spec)
			}
			why = err.Error()
		}
		// Not this launch (or it cannot be placed): the stage never forked a worker. Kill it,
		// drop the entry, and launch the ordinary way.
		pl.discard()
		os.Remove(filepath.Join(dir, key))
		pre.Lock()
		pre.state.Mismatch = why
		pre.Unlock()
	}

	cfgR, err := configPipe(payload)
	if err != nil {
		return nil, err
	}
	defer cfgR.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("sandbox: status pipe: %w", err)
	}
	files = append(files, cfgR, statusW)
	attr := &os.ProcAttr{Dir: spec.Dir, Env: env, Files: files, Sys: sys}

	var proc *os.Process
	onSpawnerThread(func() { proc, err = os.StartProcess("/proc/self/exe", argv, attr) })
	statusW.Close()
	closeExtraFiles(spec)
	if err != nil {
		statusR.Close()
		return nil, fmt.Errorf("sandbox: start the init stage: %w", explainCloneError(err, spec))
	}
	p := &Process{InitPid: proc.Pid, proc: proc, status: statusR, reaped: make(chan struct{})}

	if err := p.awaitExec(); err != nil {
		return nil, err
	}
	if key != "" {
		// vatrun run: next time, the C constructor can start this launch before Go does.
		serr := saveLaunch(key, dir, invBytes, spec.Path, spec.Args[0])
		pre.Lock()
		pre.state.Saved = serr == nil
		if serr != nil {
			pre.state.SaveSkipped = serr.Error()
		}
		pre.Unlock()
	}
	return p, nil
}

// closeExtraFiles closes the caller's copies of the worker's extra fds once the sandbox holds
// its own (Spec.CloseExtraFiles).
func closeExtraFiles(spec Spec) {
	if !spec.CloseExtraFiles {
		return
	}
	for _, f := range spec.ExtraFiles {
		if f != nil {
			f.Close()
		}
	}
}

// invocationOf is the clone and exec Start makes (argv: the worker's path, then its argv), in
// the form prelaunch.c starts it.
func invocationOf(cfg *Config, sys *syscall.SysProcAttr, files []*os.File, devnull *os.File, dir string, payload []byte, argv, env []string) invocation {
	inv := invocation{
		flags: uint64(sys.Cloneflags), setgroupsDeny: cfg.UserNS && !sys.GidMappingsEnableSetgroups,
		uidMap: idMap(sys.UidMappings), gidMap: idMap(sys.GidMappings),
		dir: dir, config: payload, argv: argv, env: env,
	}
	for _, f := range files {
		switch f {
		case nil:
			inv.fds = append(inv.fds, C.VR_FD_CLOSED)
		case devnull:
			inv.fds = append(inv.fds, C.VR_FD_DEVNULL)
		default:
			inv.fds = append(inv.fds, int32(f.Fd()))
		}
	}
	return inv
}

// moveIntoCgroup moves the waiting stage (pid) into the cgroup directory cgroupFD (none when
// negative).
func moveIntoCgroup(cgroupFD, pid int) error {
	if cgroupFD < 0 {
		return nil
	}
	fd, err := unix.Openat(cgroupFD, "cgroup.procs", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("move the waiting stage into the worker's cgroup: %w", err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(strconv.Itoa(pid))); err != nil {
		return fmt.Errorf("move the waiting stage into the worker's cgroup: %w", err)
	}
	return nil
}

// adopt lets the stage the C constructor started fork the worker, and supervises it as if Start
// had cloned it.
func adopt(pl *prelaunched, spec Spec) (*Process, error) {
	proc, err := os.FindProcess(pl.pid)
	if err != nil { // cannot happen on Linux
		pl.discard()
		return nil, fmt.Errorf("sandbox: adopt the init stage %d: %w", pl.pid, err)
	}
	closeExtraFiles(spec)
	p := &Process{InitPid: pl.pid, proc: proc, status: pl.status, reaped: make(chan struct{})}
	// A stage that already failed its setup has reported it and exited: the write then fails
	// (EPIPE) and awaitExec reads the failure, as after an ordinary clone.
	pl.gate.Write([]byte{'g'})
	pl.gate.Close()
	pre.Lock()
	pre.state.Used = true
	pre.Unlock()
	if err := p.awaitExec(); err != nil {
		return nil, err
	}
	return p, nil
}

// configPipe writes the encoded config into a pipe and returns its read end, the init stage's
// config fd (the whole config fits the pipe's buffer, so the write never blocks).
func configPipe(payload []byte) (*os.File, error) {
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("sandbox: config pipe: %w", err)
	}
	_, err = cfgW.Write(payload)
	cfgW.Close()
	if err != nil {
		cfgR.Close()
		return nil, fmt.Errorf("sandbox: write config: %w", err)
	}
	return cfgR, nil
}

// sysProcAttr is how the init stage is cloned: into cfg's namespaces (and a user namespace
// mapping the caller to itself), its own process group, the cgroup when cgroupFD >= 0, with
// SIGKILL as its parent-death signal.
func sysProcAttr(cfg *Config, cgroupFD int) *syscall.SysProcAttr {
	sys := &syscall.SysProcAttr{
		Cloneflags: cfg.Namespaces,
		Pdeathsig:  syscall.SIGKILL,
		Setpgid:    true,
	}
	if cfg.UserNS {
		sys.Cloneflags |= syscall.CLONE_NEWUSER
		sys.UidMappings = []syscall.SysProcIDMap{{ContainerID: os.Getuid(), HostID: os.Getuid(), Size: 1}}
		sys.GidMappings = []syscall.SysProcIDMap{{ContainerID: os.Getgid(), HostID: os.Getgid(), Size: 1}}
		sys.GidMappingsEnableSetgroups = false
		if cfg.SetIDs {
			// A root vatrun (only it may map other ids): the worker's ids exist in the namespace
			// too, and the stage may drop its groups and switch to them.
			if int(cfg.UID) != os.Getuid() {
				sys.UidMappings = append(sys.UidMappings, syscall.SysProcIDMap{ContainerID: int(cfg.UID), HostID: int(cfg.UID), Size: 1})
			}
			if int(cfg.GID) != os.Getgid() {
				sys.GidMappings = append(sys.GidMappings, syscall.SysProcIDMap{ContainerID: int(cfg.GID), HostID: int(cfg.GID), Size: 1})
			}
			sys.GidMappingsEnableSetgroups = true
		}
		// The stage keeps, across its own execve, the two capabilities it needs inside the new
		// user namespace (mounts and hostname; emptying the bounding set). The worker's side of
		// the fork clears the ambient set and the bounding set, so the worker execs with none.
		sys.AmbientCaps = []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_SETPCAP}
	}
	if cgroupFD >= 0 {
		sys.UseCgroupFD = true
		sys.CgroupFD = cgroupFD
	}
	return sys
}

// awaitExec reads the init stage's first status message: the worker exec'd (nil), or a
// *SetupError saying which step failed (the stage is reaped then).
func (p *Process) awaitExec() error {
	m, err := p.readMsg()
	switch {
	case err == nil && m.Type == MsgExecOK:
		p.WorkerPid = m.A
		p.execMono = m.Mono
		p.Recording = m.Flags&ExecRecording != 0
		p.RecordWarning = m.Text
		return nil
	case err == nil && m.Type == MsgSetupFailed:
		p.Wait()
		return &SetupError{Step: m.Text, Errno: syscall.Errno(m.A)}
	}
	// The stage died (or spoke nonsense) before the worker started.
	p.proc.Kill()
	ex, _ := p.Wait()
	if err == nil {
		err = fmt.Errorf("unexpected status message type %d", m.Type)
	}
	return &SetupError{Step: fmt.Sprintf("init stage ended before the worker started (%s; %v)", DescribeStatus(ex.Status), err)}
}

// CloneError is the kernel's (or an inherited seccomp filter's) refusal of the clone that
// creates the init stage: no namespace, no user namespace or no CLONE_INTO_CGROUP. The launcher
// names the precise cause (hostfacts.JudgeUserNS), as vatrun check does.
type CloneError struct {
	Errno    syscall.Errno
	UserNS   bool // the clone asked for a user namespace
	IntoCgrp bool // the clone asked for CLONE_INTO_CGROUP (clone3)
}

func (e *CloneError) Error() string {
	what := "namespaces"
	if e.UserNS {
		what = "namespaces (with a user namespace)"
	}
	if e.IntoCgrp {
		what += " or the cgroup (CLONE_INTO_CGROUP, clone3)"
	}
	return fmt.Sprintf("the kernel refused to create the %s: %v (vatrun check names the cause)", what, e.Errno)
}

func (e *CloneError) Unwrap() error { return e.Errno }

func explainCloneError(err error, spec Spec) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err
	}
	switch errno {
	case syscall.EPERM, syscall.EINVAL, syscall.ENOSPC, syscall.EUSERS, syscall.ENOSYS, syscall.EACCES:
		return &CloneError{Errno: errno, UserNS: spec.Config.UserNS, IntoCgrp: spec.CgroupFD >= 0}
	}
	return err
}

func (p *Process) readMsg() (Msg, error) {
	buf := make([]byte, MsgSize)
	if _, err := io.ReadFull(p.status, buf); err != nil {
		return Msg{}, err
	}
	return DecodeMsg(buf)
}

// WaitExit blocks until the worker is dead and says how it ended. When the init stage reported
// the death it returns at once and the stage (which exits right after) is reaped in the
// background: Reaped is closed then. It may be called more than once.
func (p *Process) WaitExit() (Exit, error) {
	p.waitOnce.Do(func() {
		m, merr := p.readMsg()
		var denied []Denied
		for merr == nil && m.Type == MsgDenied && len(denied) < MaxDenied {
			denied = append(denied, Denied{Nr: m.A, Arch: m.Arch, Errno: m.Errno, Count: m.Count, Args: m.Args, Last: m.Last})
			m, merr = p.readMsg()
		}
		noticed := time.Now()
		p.status.Close()
		if merr == nil && m.Type == MsgExited {
			p.exit = Exit{Status: unix.WaitStatus(m.A), Reported: true, Utime: m.Utime, Stime: m.Stime, CPU: m.CPU, MaxRSSKB: m.MaxRSSKB, Forwarded: m.Forwarded, At: noticed,
				Denied: denied, DeniedOver: m.Count}
			if p.execMono > 0 && m.Mono >= p.execMono {
				p.exit.Wall = time.Duration(m.Mono - p.execMono)
			}
			go func() {
				p.proc.Wait()
				close(p.reaped)
			}()
			return
		}
		st, err := p.proc.Wait()
		close(p.reaped)
		if err != nil {
			p.waitErr = fmt.Errorf("sandbox: wait for init stage %d: %w", p.InitPid, err)
			return
		}
		ws, _ := st.Sys().(syscall.WaitStatus)
		ru, _ := st.SysUsage().(*syscall.Rusage)
		ex := Exit{Status: unix.WaitStatus(ws), At: time.Now()}
		if ru != nil {
			ex.Utime = time.Duration(ru.Utime.Nano())
			ex.Stime = time.Duration(ru.Stime.Nano())
			ex.MaxRSSKB = ru.Maxrss
		}
		p.exit = ex
	})
	return p.exit, p.waitErr
}

// Reaped is closed once the init stage has been reaped (after WaitExit).
func (p *Process) Reaped() <-chan struct{} { return p.reaped }

// Wait is WaitExit followed by the init stage's reaping: nothing of the sandbox is left running.
func (p *Process) Wait() (Exit, error) {
	ex, err := p.WaitExit()
	<-p.reaped
	return ex, err
}

// Signal sends sig to the init stage, which forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1,
// SIGUSR2, SIGALRM and SIGWINCH to the worker. SIGKILL kills the stage and, with a pid
// namespace, every process in it.
func (p *Process) Signal(sig syscall.Signal) error {
	if err := p.proc.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("sandbox: signal init stage %d: %w", p.InitPid, err)
	}
	return nil
}

// DescribeStatus says how a wait status ended, for messages ("exit status 3", "killed by SIGKILL").
func DescribeStatus(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return "killed by " + unix.SignalName(ws.Signal())
	}
	return fmt.Sprintf("wait status %#x", uint32(ws))
}

// ProbeUserNS clones a child into a new user namespace and returns the clone's errno (0: the
// kernel allowed it). The child is never a program: it execs a path that cannot exist
// (/dev/null/…), so an ENOTDIR or ENOENT from the child means the clone itself worked. This is
// the same clone(2) a launch makes (Go's forkExec with CLONE_NEWUSER), so a seccomp filter that
// inspects clone's flags judges both alike.
func ProbeUserNS() syscall.Errno {
	pid, err := syscall.ForkExec("/dev/null/vatrun-userns-probe", []string{"vatrun-userns-probe"}, &syscall.ProcAttr{
		Sys: &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, Pdeathsig: syscall.SIGKILL},
	})
	if err == nil { // cannot happen: the path does not exist
		var ws syscall.WaitStatus
		syscall.Wait4(pid, &ws, 0, nil)
		return 0
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return syscall.EINVAL
	}
	if errno == syscall.ENOTDIR || errno == syscall.ENOENT {
		return 0
	}
	return errno
}
