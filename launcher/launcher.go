// Package launcher is vatrun's Go API: Launch starts a worker in the sandbox its profile
// describes (namespaces, rlimits, seccomp, cgroup v2 leaf), hands it fds 3, 4, … untouched, and
// Wait returns the one death report for it. A Go kernel uses it directly; `vatrun run` is a thin
// command around it.
//
// Any binary that imports this package can launch workers: the sandbox's init stage is a C
// constructor linked into the binary (package sandbox), which re-executes /proc/self/exe.
package launcher

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/launcher/plan"
	"github.com/vatrun/vatrun/report"
	"github.com/vatrun/vatrun/sandbox"
	"github.com/vatrun/vatrun/seccompprofiles"
	"github.com/vatrun/vatrun/seccompprofiles/filter"
)

// Spec says what to launch and how.
type Spec struct {
	// Profile shapes the sandbox (seccompprofiles.Load).
	Profile *seccompprofiles.Profile
	// Path is the worker executable: absolute, relative to the current directory when it has a
	// slash, else looked up in $PATH. Args is its argv (Args[0] included; empty means {Path}).
	Path string
	Args []string
	// Env is the worker's environment; nil means an empty one.
	Env []string
	Dir string
	// ExtraFiles become fds 3, 4, … of the worker (the kernel's command and result pipes), passed
	// as they are: no proxying, no copying. A nil entry is a closed fd.
	ExtraFiles []*os.File
	// CloseExtraFiles: Launch closes ExtraFiles as soon as the sandbox holds them (before the
	// worker's exec), instead of leaving that to the caller.
	CloseExtraFiles bool
	// Stdin, Stdout, Stderr: nil means /dev/null. Consensus profiles always get /dev/null for
	// stdout and stderr (a slow reader must not change the worker's timing).
	Stdin, Stdout, Stderr *os.File
	// MountSources gives the host source of each of the profile's mounts, by target
	// (`vatrun run --mount TARGET=SOURCE`); every declared target needs one, and nothing else.
	MountSources map[string]string
	// Cgroup placement; see CgroupOptions.
	Cgroup CgroupOptions
	// Name identifies the worker in logs (a vat id, say); optional.
	Name   string
	Logger *slog.Logger
}

// Errors Launch wraps, for callers that map them to exit codes.
var (
	// ErrNotFound: the worker executable does not exist.
	ErrNotFound = errors.New("worker not found")
	// ErrNotExecutable: it exists but cannot be executed.
	ErrNotExecutable = errors.New("worker not executable")
	// ErrSetup: the sandbox could not be set up; the worker never ran (fail closed).
	ErrSetup = errors.New("sandbox setup failed")
	// ErrConfig: the spec or profile cannot work on this host as asked.
	ErrConfig = plan.ErrConfig
)

// KilledByVatrun is Report.KilledBy when the launcher itself stopped the worker.
const KilledByVatrun = report.KilledByVatrun

// Worker is one launched worker.
type Worker struct {
	spec Spec
	proc *sandbox.Process
	// plan is the compiled profile, so the death path does no profile work.
	plan    *plan.Plan
	cg      *cgroupLeaf
	limits  map[string]string // limit -> what enforces it (report.LimitsEnforced)
	uid     int               // the worker's host uid and gid (report.WorkerUID, WorkerGID)
	gid     int
	layers  []string  // what confines the worker (report.Isolation)
	ident   *identity // worker and host facts digests (identity.go)
	started time.Time
	log     *slog.Logger
	done    chan struct{}
	cleaned chan struct{}
	report  report.Report

	mu       sync.Mutex
	stops    []stop // signals vatrun sent the worker on someone's behalf, in order
	phase    string
	warnings []string
}

// stop is one signal vatrun sent the worker, and why.
type stop struct {
	sig    syscall.Signal
	reason string
}

// ResolvePath finds the worker executable the way Launch does, with ErrNotFound or
// ErrNotExecutable when it can't be run.
func ResolvePath(path string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("%w: no worker given (vatrun run [flags] -- WORKER [ARGS...])", ErrNotFound)
	}
	if !filepath.IsAbs(path) {
		if filepath.Base(path) == path {
			found, err := exec.LookPath(path)
			if err != nil {
				if errors.Is(err, exec.ErrNotFound) {
					return "", fmt.Errorf("%w: %q is not in $PATH; give an absolute path", ErrNotFound, path)
				}
				return "", fmt.Errorf("%w: %q: %v", ErrNotExecutable, path, err)
			}
			path = found
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return "", fmt.Errorf("%w: %q: %v", ErrNotFound, path, err)
		}
		path = abs
	}
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%w: %s does not exist", ErrNotFound, path)
		}
		return "", fmt.Errorf("%w: %s: %v", ErrNotExecutable, path, err)
	}
	if st.IsDir() {
		return "", fmt.Errorf("%w: %s is a directory", ErrNotExecutable, path)
	}
	if err := unix.Access(path, unix.X_OK); err != nil || st.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%w: %s has no execute permission for this user (chmod +x it)", ErrNotExecutable, path)
	}
	// The file itself, not a link to it: the minimal root binds the worker at its own path, where
	// an absolute link (a worker linked into /usr/local/bin) would point into the new root, not the
	// host's; and the worker digest is of what runs. argv[0] stays what the caller gave.
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("%w: %s: resolve its links: %v", ErrNotFound, path, err)
	}
	return real, nil
}

// execFailure says whether the sandbox failed at the worker's own execve in a way a shell reports
// as 126 (ENOEXEC: no #! and not an ELF the kernel can load; EACCES) or 127 (ENOENT: a missing
// ELF interpreter or #! interpreter), rather than as a sandbox setup failure.
func execFailure(err error) error {
	var se *sandbox.SetupError
	if !errors.As(err, &se) || !strings.HasPrefix(se.Step, "execve ") {
		return nil
	}
	switch se.Errno {
	case syscall.ENOEXEC, syscall.EACCES, syscall.ETXTBSY, syscall.EISDIR, syscall.ELIBBAD:
		return ErrNotExecutable
	case syscall.ENOENT, syscall.ENOTDIR, syscall.ELIBACC:
		return ErrNotFound
	}
	return nil
}

// Launch starts the worker in its sandbox and returns once it has exec'd. On error nothing is
// left running and no cgroup is left behind. Cancelling ctx stops the worker (cause "stopped").
func Launch(ctx context.Context, spec Spec) (*Worker, error) {
	// The profile becomes a plan once per digest (package plan); from here on only the plan is read.
	pl, err := plan.Compile(spec.Profile)
	if err != nil {
		return nil, err
	}
	if spec.Logger == nil {
		spec.Logger = slog.New(slog.DiscardHandler)
	}
	log := spec.Logger
	for _, w := range pl.Warnings {
		log.Warn("seccomp filter: "+w, "profile", pl.Name)
	}
	for _, w := range pl.LimitWarnings {
		log.Warn("limits: "+w, "profile", pl.Name)
	}
	path, err := ResolvePath(spec.Path)
	if err != nil {
		return nil, err
	}
	// The worker and host facts digests for the report, computed while the sandbox is set up
	// (at once when the profile pins them).
	ident := startIdentity(path, pl.Pins != nil)
	if err := ident.checkPins(pl.Name, pl.Pins, path); err != nil {
		return nil, err
	}
	args := spec.Args
	if len(args) == 0 {
		args = []string{spec.Path}
	}
	stdout, stderr := spec.Stdout, spec.Stderr
	if pl.Consensus {
		stdout, stderr = nil, nil
	}

	cfg, cg, limits, warnings, err := prepareSandbox(spec, pl, path)
	if err != nil {
		return nil, err
	}
	cgFD := -1
	if cg != nil {
		cgFD = cg.fd()
	}
	started := time.Now()
	proc, err := sandbox.Start(sandbox.Spec{
		Config:          cfg,
		Path:            path,
		Args:            args,
		Env:             spec.Env,
		Dir:             spec.Dir,
		Stdin:           spec.Stdin,
		Stdout:          stdout,
		Stderr:          stderr,
		ExtraFiles:      spec.ExtraFiles,
		CloseExtraFiles: spec.CloseExtraFiles,
		CgroupFD:        cgFD,
	})
	if err != nil {
		if cg != nil {
			cg.teardown(log)
		}
		if kind := execFailure(err); kind != nil {
			return nil, explainExecFailure(kind, path, err)
		}
		if hint := execveFilterHint(spec.Profile, err); hint != "" {
			return nil, fmt.Errorf("%w: %w; %s", ErrSetup, err, hint)
		}
		return nil, fmt.Errorf("%w: %w", ErrSetup, explainSetup(err))
	}
	uid, gid := plan.WorkerIDs(cfg)
	if proc.RecordWarning != "" {
		warnings = append(warnings, "seccomp: "+proc.RecordWarning)
	}
	w := &Worker{
		uid:      uid,
		gid:      gid,
		plan:     pl,
		limits:   limits,
		layers:   isolationLayers(cfg),
		ident:    ident,
		spec:     spec,
		proc:     proc,
		cg:       cg,
		started:  started,
		log:      log,
		done:     make(chan struct{}),
		cleaned:  make(chan struct{}),
		warnings: warnings,
	}
	log.Info("worker launched", "worker", spec.Name, "path", path, "pid", proc.InitPid,
		"profile", pl.Name, "profileDigest", pl.Digest, "cgroup", cg.path(),
		"userns", cfg.UserNS, "uid", uid, "gid", gid, "startup", time.Since(started))
	go w.reap()
	if ctx.Done() != nil {
		go func() {
			select {
			case <-ctx.Done():
				w.Stop("context canceled: " + context.Cause(ctx).Error())
			case <-w.done:
			}
		}()
	}
	return w, nil
}

// prepareSandbox makes the worker's cgroup leaf (or says why there is none) and the init stage's
// config for this launch, and says what holds each limit. On error nothing is left behind.
func prepareSandbox(spec Spec, pl *plan.Plan, path string) (sandbox.Config, *cgroupLeaf, map[string]string, []string, error) {
	log := spec.Logger
	cg, warnings, err := setupCgroup(spec, pl)
	if err != nil {
		return sandbox.Config{}, nil, nil, nil, err
	}
	cfg, err := pl.Sandbox(cg != nil, spec.MountSources)
	if err == nil {
		cfg, err = chooseIsolation(pl, cfg, path, probedRefusals)
	}
	if err != nil {
		if cg != nil {
			cg.teardown(log)
		}
		return sandbox.Config{}, nil, nil, nil, err
	}
	limits := pl.Enforcement(cg != nil)
	if cg == nil {
		// Info, not a warning on every launch: the report says it too (limitsEnforced,
		// warnings), and `vatrun check` tells an operator once.
		log.Info("no cgroup v2 leaf: the profile's limits hold only as far as rlimits and seccomp can hold them",
			"worker", spec.Name, "memory", limits["memory"], "pids", limits["pids"], "cpuMax", limits["cpuMax"])
	}
	return cfg, cg, limits, warnings, nil
}

// Pid is the pid vatrun waits for: the init stage when the worker has its own pid namespace
// (the worker is its only child, pid 2 inside), else the stage that forked the worker.
func (w *Worker) Pid() int { return w.proc.InitPid }

// Done is closed when the worker is dead and its report is ready.
func (w *Worker) Done() <-chan struct{} { return w.done }

// Wait blocks until the worker is dead and returns its report.
func (w *Worker) Wait() report.Report {
	<-w.done
	return w.report
}

// SetPhase records what the kernel was doing with the worker ("startup", "in-delivery",
// "idle"); the report carries the phase at death.
func (w *Worker) SetPhase(phase string) {
	w.mu.Lock()
	w.phase = phase
	w.mu.Unlock()
}

// Signal forwards sig to the worker (through the init stage, which relays SIGTERM, SIGINT,
// SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM and SIGWINCH). It does not mark the death as
// caused by vatrun; Forward does.
func (w *Worker) Signal(sig syscall.Signal) error {
	return w.proc.Signal(sig)
}

// Forward relays sig to the worker on behalf of someone who asked vatrun to stop (vatrun got
// SIGTERM, say): if the worker dies of sig, the report says cause "stopped", killedBy "vatrun",
// with reason. A worker that had already exited, or dies of something else, keeps its own cause.
func (w *Worker) Forward(sig syscall.Signal, reason string) error {
	w.markKilled(sig, reason)
	return w.proc.Signal(sig)
}

func (w *Worker) markKilled(sig syscall.Signal, reason string) {
	w.mu.Lock()
	w.stops = append(w.stops, stop{sig, reason})
	w.mu.Unlock()
}

// relayed keeps the stops that reached the worker alive: SIGKILL (sent to the init stage or the
// cgroup, never relayed) and the signals whose bit the init stage set in forwarded.
func relayed(stops []stop, forwarded uint64) []stop {
	var out []stop
	for _, s := range stops {
		if s.sig == syscall.SIGKILL || (s.sig > 0 && s.sig < 64 && forwarded&(1<<uint(s.sig)) != 0) {
			out = append(out, s)
		}
	}
	return out
}

// stopEvidence says what vatrun sent the worker: the reason given is the first stop's whose
// signal is the one the worker died of, else the first stop's.
func stopEvidence(stops []stop, deathSig int) (killedBy, reason string, sigs []int) {
	if len(stops) == 0 {
		return "", "", nil
	}
	reason = stops[0].reason
	matched := false
	for _, s := range stops {
		sigs = append(sigs, int(s.sig))
		if !matched && int(s.sig) == deathSig {
			reason, matched = s.reason, true
		}
	}
	return KilledByVatrun, reason, sigs
}

// Stop kills the worker and everything it started (cgroup.kill when it has a cgroup, else
// SIGKILL to the init stage, which takes its pid namespace with it). The report says cause
// "stopped" with reason. Stop does not wait; Wait does.
func (w *Worker) Stop(reason string) {
	select {
	case <-w.done:
		return
	default:
	}
	w.markKilled(syscall.SIGKILL, reason)
	if w.cg != nil {
		if err := w.cg.kill(); err == nil {
			return
		} else {
			w.log.Warn("cgroup kill failed; killing the init stage", "worker", w.spec.Name, "err", err)
		}
	}
	if err := w.proc.Signal(syscall.SIGKILL); err != nil {
		w.log.Warn("kill init stage", "worker", w.spec.Name, "err", err)
	}
}

func (w *Worker) reap() {
	ex, err := w.proc.WaitExit()
	w.mu.Lock()
	warnings := append([]string(nil), w.warnings...)
	ev := report.Evidence{ExitCodes: w.plan.ExitMeanings(), SelfSignals: w.plan.SelfSignals, MemoryStandIn: w.plan.MemoryStandIn(w.cg != nil)}
	stops := append([]stop(nil), w.stops...)
	phase := w.phase
	w.mu.Unlock()

	if err != nil {
		// Only a broken wait gets here; say so rather than guess.
		ev.SetupError = err.Error()
	} else {
		ws := ex.Status
		ev.Exited = ws.Exited()
		if ev.Exited {
			ev.ExitCode = ws.ExitStatus()
		} else if ws.Signaled() {
			ev.Signal = int(ws.Signal())
			ev.CoreDumped = ws.CoreDump()
		}
		ev.CPUSeconds = (ex.Utime + ex.Stime).Seconds()
		if ex.CPU > 0 {
			ev.CPUSeconds = ex.CPU.Seconds()
		}
		if ex.Reported {
			// A signal the init stage did not relay (the worker was already dead) was no stop.
			stops = relayed(stops, ex.Forwarded)
			ev.Denied, ev.DeniedOverflow = deniedEvidence(ex.Denied), ex.DeniedOver
		} else {
			warnings = append(warnings, fmt.Sprintf("the init stage died (%s) before it could report the worker's own status; the worker died with it", sandbox.DescribeStatus(ws)))
		}
	}
	deathSig := -1
	if !ev.Exited {
		deathSig = ev.Signal
	}
	ev.KilledBy, ev.KillReason, ev.StopSignals = stopEvidence(stops, deathSig)
	ev.RlimitCPUHard = w.plan.CPUHard
	if w.cg != nil {
		cgev, notes, cgerr := w.cg.evidence()
		warnings = append(warnings, notes...)
		if cgerr != nil {
			warnings = append(warnings, "cgroup evidence unavailable: "+cgerr.Error())
		} else {
			ev.Cgroup = &cgev
			if !ex.Reported && ev.CPUSeconds == 0 {
				ev.CPUSeconds = float64(cgev.CPUUsageUsec) / 1e6
			}
		}
	}
	r := report.Build(ev)
	r.Phase = phase
	r.ProfileName = w.plan.Name
	r.ProfileDigest = w.plan.Digest
	r.WorkerDigest, r.HostFactsDigest = w.ident.wait()
	switch {
	case ex.Wall > 0: // the init stage's monotonic clock, at the exec and at the death
		r.WallTime = ex.Wall.Seconds()
	case !ex.At.IsZero():
		r.WallTime = ex.At.Sub(w.started).Seconds()
	default:
		r.WallTime = time.Since(w.started).Seconds()
	}
	r.Pid = w.proc.InitPid
	r.WorkerUID, r.WorkerGID = &w.uid, &w.gid
	r.LimitsEnforced = w.limits
	r.Isolation = w.layers
	r.Warnings = warnings
	w.report = r
	// The report is ready: tell the kernel now, then clean up (the init stage exits right after
	// reporting; the cgroup leaf is killed and removed once it is empty).
	close(w.done)
	w.log.Info("worker died", "worker", w.spec.Name, "pid", r.Pid, "cause", r.Cause, "class", r.Class,
		"profileDigest", r.ProfileDigest, "detail", r.Detail)
	for _, d := range r.DeniedSyscalls {
		w.log.Debug("the seccomp filter refused a syscall", "worker", w.spec.Name, "syscall", d.Name, "nr", d.Nr,
			"errno", d.Errno, "count", d.Count, "firstArgs", strings.Join(d.Args, " "))
	}
	if w.cg != nil {
		w.cg.teardown(w.log)
	}
	<-w.proc.Reaped()
	close(w.cleaned)
}

// Cleaned is closed after Done once the sandbox is gone: the init stage reaped and the cgroup
// leaf removed.
func (w *Worker) Cleaned() <-chan struct{} { return w.cleaned }

// ExitStatus is the shell-style status of r: the worker's own exit code, or 128+signal. (vatrun
// run itself does not exit 128+signal: it dies by the worker's signal, sandbox.DieBySignal.)
func ExitStatus(r report.Report) int {
	switch {
	case r.ExitCode != nil:
		return *r.ExitCode
	case r.Signal > 0:
		return 128 + r.Signal
	}
	return 1
}

// deniedEvidence names the refused syscalls the init stage recorded (libseccomp's resolver), the
// one refused last first: a worker that dies of a refusal usually dies of the latest one (node's
// epoll_create1 after nine harmless capget).
func deniedEvidence(ds []sandbox.Denied) []report.DeniedSyscall {
	ds = append([]sandbox.Denied(nil), ds...)
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].Last > ds[j].Last })
	var out []report.DeniedSyscall
	for _, d := range ds {
		name, arch := filter.SyscallName(d.Nr, d.Arch)
		args := make([]string, len(d.Args))
		for i, a := range d.Args {
			args[i] = fmt.Sprintf("%#x", a)
		}
		out = append(out, report.DeniedSyscall{Name: name, Nr: d.Nr, Arch: arch, Errno: d.Errno, Count: d.Count, Args: args})
	}
	return out
}
