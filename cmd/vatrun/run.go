package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/cmd/vatrun/internal/earlysig"
	"github.com/vatrun/vatrun/launcher"
	"github.com/vatrun/vatrun/launcher/plan"
	"github.com/vatrun/vatrun/report"
	"github.com/vatrun/vatrun/sandbox"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// reportSink is where the one JSON report goes.
type reportSink struct {
	f    *os.File
	desc string
}

// write writes the one report and closes the sink. It gives up after timeout: a report fd that
// nobody reads (a full pipe) must not keep vatrun alive forever after the worker is dead, since
// the kernel is waiting for vatrun's exit. The write itself stays blocking (the fd's flags are
// shared with the parent, so they are left alone) and runs in a goroutine that is abandoned on
// timeout; vatrun then exits 123. A report of at most PIPE_BUF (4096) bytes, which is every
// report in practice, is written into a pipe atomically or not at all, so a reader that wakes up
// later never sees half of it.
func (s *reportSink) write(r report.Report, timeout time.Duration) error {
	if s == nil {
		return nil
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	data = append(data, '\n')
	done := make(chan error, 1)
	go func() {
		_, err := s.f.Write(data)
		done <- err
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err = <-done:
	case <-timer.C:
		return fmt.Errorf("write report to %s: not written after %v (nobody reads it: a full pipe?); gave up", s.desc, timeout)
	}
	if err != nil {
		return fmt.Errorf("write report to %s: %w", s.desc, err)
	}
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("close report %s: %w", s.desc, err)
	}
	return nil
}

// openReportFD checks that fd is open for writing, and is none of the worker's fds, before
// anything starts.
func openReportFD(fd int, workerFds []int) (*reportSink, error) {
	if fd < 0 {
		return nil, fmt.Errorf("--report-fd %d: not a file descriptor", fd)
	}
	if fd <= 4 {
		return nil, fmt.Errorf("--report-fd %d: fds 0-4 belong to the worker (stdio, commands, results); pass the report pipe as fd 5 or above", fd)
	}
	if slices.Contains(workerFds, fd) {
		return nil, fmt.Errorf("--report-fd %d: the profile passes fd %d to the worker (fds %v); pass the report pipe above them, e.g. fd %d (Node.js: one more stdio entry)", fd, fd, workerFds, max(workerFds[len(workerFds)-1]+1, 5))
	}
	// Judge the fd as the parent passed it, recorded by the C constructor before the Go runtime
	// ran: the runtime opens (and closes) low fds of its own, e.g. to read the cgroup CPU quota,
	// and one of those must not pass for the caller's report pipe, nor be blamed on the caller.
	if fd < sandbox.MaxInheritedFD && !sandbox.InheritedFD(fd) {
		return nil, fmt.Errorf("--report-fd %d is not open in vatrun (the parent did not pass fd %d): the parent must pass it (shell: %d>FILE; Node.js: stdio[%d] = 'pipe'), or use --report-file", fd, fd, fd, fd)
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return nil, fmt.Errorf("--report-fd %d is not open in vatrun (%v): the parent must pass it (shell: %d>FILE; Node.js: stdio[%d] = 'pipe'), or use --report-file", fd, err, fd, fd)
	}
	if acc := fl & unix.O_ACCMODE; acc != unix.O_WRONLY && acc != unix.O_RDWR {
		return nil, fmt.Errorf("--report-fd %d is open read-only: pass the write end of the report pipe", fd)
	}
	return &reportSink{f: os.NewFile(uintptr(fd), "report-fd"), desc: "fd " + strconv.Itoa(fd)}, nil
}

// openReportFile opens the report file without blocking: a FIFO with no reader is refused at
// once (ENXIO) instead of hanging vatrun before the worker starts.
func openReportFile(path string) (*reportSink, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_CLOEXEC|unix.O_NONBLOCK, 0o644)
	if errors.Is(err, unix.ENXIO) {
		return nil, fmt.Errorf("--report-file %s: a FIFO that nobody reads; open its read end first, or use --report-fd", path)
	}
	if err != nil {
		return nil, fmt.Errorf("--report-file: %w (choose a writable path)", err)
	}
	if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
		f.Close()
		return nil, fmt.Errorf("--report-file %s: %w", path, err)
	}
	return &reportSink{f: f, desc: path}, nil
}

// workerEnv is the profile's environment for the worker: nothing of vatrun's own but the names
// the profile passes through (and, in a binary built with the vatrun_testhooks tag only, the
// test hook's variable: testhooks.go).
func workerEnv(p *seccompprofiles.Profile) []string {
	return append(plan.WorkerEnv(p, os.LookupEnv), testHookEnv()...)
}

// workerStdin is vatrun's stdin for the worker, unless it is a terminal: a worker gets no
// terminal to read from (the kernel passes 'ignore' anyway; a terminal here is an operator's
// shell), so it gets /dev/null (nil) instead.
func workerStdin() *os.File {
	if _, err := unix.IoctlGetTermios(0, unix.TCGETS); err == nil {
		return nil
	}
	return os.Stdin
}

// inheritedFile is fd as the parent passed it, or nil when the parent left it closed.
func inheritedFile(fd int) *os.File {
	if !sandbox.InheritedFD(fd) {
		return nil
	}
	return os.NewFile(uintptr(fd), "fd"+strconv.Itoa(fd))
}

// workerFiles are the worker's fds 3, 4, … up to the highest of the profile's fds: each fd the
// profile lists and the parent passed, at its own number; nil (closed in the worker) for the rest.
// Nil when the parent passed none of them.
func workerFiles(fds []int) []*os.File {
	if len(fds) == 0 {
		return nil
	}
	files := make([]*os.File, fds[len(fds)-1]-2)
	any := false
	for _, fd := range fds {
		if f := inheritedFile(fd); f != nil {
			files[fd-3] = f
			any = true
		}
	}
	if !any {
		return nil
	}
	return files
}

// runOptions are `vatrun run`'s flags, checked.
type runOptions struct {
	profile       string
	reportFD      int
	reportFile    string
	cgParent      string
	noCgroup      bool
	name          string
	grace         time.Duration
	reportTimeout time.Duration
	mounts        map[string]string
	worker        []string
}

const runUsage = "usage: vatrun run --profile NAME|PATH [--report-fd N | --report-file F] [flags] -- WORKER [ARGS...]"

// parseRun reads and checks the flags; ok false means the command is over with code.
func parseRun(c *cmdline, args []string) (o runOptions, code int, ok bool) {
	fs := c.fs
	fs.StringVar(&o.profile, "profile", "", "sandbox profile: a built-in name (vatrun profile list) or a JSON file (required)")
	fs.IntVar(&o.reportFD, "report-fd", -1, "write the JSON death report to this inherited fd (5 or above)")
	fs.StringVar(&o.reportFile, "report-file", "", "write the JSON death report to this file (not -: stdout is the worker's). Without --report-fd or --report-file the report is not written: on a terminal, its one-line form goes to stderr; otherwise --log-level info logs that it was dropped")
	cgParent := cgroupParentFlag(fs, "cgroup v2 parent for the worker's leaf")
	fs.BoolVar(&o.noCgroup, "no-cgroup", false, "do not use cgroups (refused by consensus profiles)")
	fs.StringVar(&o.name, "name", "", "worker identity for logs (e.g. the vat id)")
	fs.DurationVar(&o.grace, "kill-grace", 10*time.Second, "after forwarding SIGTERM/SIGINT/SIGHUP/SIGQUIT to the worker, SIGKILL it if it is still alive after this long")
	fs.DurationVar(&o.reportTimeout, "report-timeout", 5*time.Second, "give up writing the report (exit 123) when it cannot be written within this long (a report pipe nobody reads)")
	o.mounts = map[string]string{}
	fs.Func("mount", "TARGET=SOURCE: the host path for one of the profile's mounts (repeat for each)", func(v string) error {
		target, source, ok := strings.Cut(v, "=")
		if !ok || target == "" || source == "" {
			return fmt.Errorf("want TARGET=SOURCE, e.g. /data=/srv/validator/data")
		}
		if _, dup := o.mounts[target]; dup {
			return fmt.Errorf("%s is given twice", target)
		}
		o.mounts[target] = source
		return nil
	})
	c.logFlags("debug, info (one line per launch and per death), warn, error", true)
	if code, ok := c.parse(args); !ok {
		return o, code, false
	}
	o.worker = fs.Args()
	o.cgParent = *cgParent
	given := c.given()
	switch {
	case o.profile == "":
		return o, c.fail(exitUsage, "--profile is required (built-in: %v, or a JSON file)", seccompprofiles.BuiltinNames()), false
	case len(o.worker) == 0:
		return o, c.fail(exitUsage, "no worker given: vatrun run --profile %s -- WORKER [ARGS...]", o.profile), false
	case given["report-fd"] && o.reportFD < 0:
		return o, c.fail(exitUsage, "--report-fd %d: not a file descriptor; pass the report pipe as fd 5 or above", o.reportFD), false
	case o.grace < 0:
		return o, c.fail(exitUsage, "--kill-grace %v: negative; give how long to wait after a forwarded stop signal, e.g. 10s", o.grace), false
	case o.reportTimeout <= 0:
		return o, c.fail(exitUsage, "--report-timeout %v: must be positive, e.g. 5s", o.reportTimeout), false
	case o.reportFile == "-":
		// stdout is the worker's stdout too (a SwingSet kernel reads it as the worker's log), so
		// a report there could not be told from the worker's output: refused, not guessed.
		return o, c.fail(exitUsage, "--report-file -: stdout is shared with the worker, so the report is not written there; use --report-fd N (e.g. --report-fd 5 5>report.json) or --report-file FILE"), false
	case o.reportFD >= 0 && o.reportFile != "":
		return o, c.fail(exitUsage, "give --report-fd or --report-file, not both"), false
	}
	return o, 0, true
}

func runMain(args []string, stdout, stderr io.Writer) int {
	c := newCmdline("vatrun run", runUsage, stdout, stderr)
	o, code, ok := parseRun(c, args)
	if !ok {
		return code
	}
	log, err := c.logger()
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	defer c.close()
	prof, err := seccompprofiles.Load(o.profile)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	var sink *reportSink
	switch {
	case o.reportFD >= 0:
		sink, err = openReportFD(o.reportFD, prof.Fds)
	case o.reportFile != "":
		sink, err = openReportFile(o.reportFile)
	}
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	// Descriptors that our parent left without close-on-exec (the report fd among them) must not
	// reach the init stage; the worker's own fds are passed explicitly, at their numbers.
	files := workerFiles(prof.Fds)
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		log.Debug("close_range cloexec", "err", err)
	}
	spec := launcher.Spec{
		Profile:      prof,
		Path:         o.worker[0], // resolved by Launch (not found: 127, not executable: 126)
		Args:         o.worker,
		Env:          workerEnv(prof),
		Dir:          "/",
		MountSources: o.mounts,
		ExtraFiles:   files,
		// vatrun keeps no copy of the kernel's pipes: only the sandbox holds them, from the
		// moment the init stage exists.
		CloseExtraFiles: true,
		Stdin:           workerStdin(),
		Stdout:          os.Stdout,
		Stderr:          os.Stderr,
		Cgroup:          launcher.CgroupOptions{Parent: o.cgParent, Disable: o.noCgroup},
		Name:            o.name,
		Logger:          log,
	}

	// The stop signals are caught from package init on (earlysig), so none is lost before the
	// worker exists; one that came early is relayed to the worker as soon as it runs.
	sigs := earlysig.Stops
	if sigs == nil { // runMain called from a test, not as `vatrun run`
		sigs = make(chan os.Signal, 8)
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
	}
	defer signal.Stop(sigs)

	// The C-first launch: adopt a stage the C constructor started from the launch cache (when
	// it is exactly this launch), or write this launch there for next time (sandbox/prelaunch.go).
	sandbox.EnableLaunchCache(launchCacheFiles(o)...)

	testPause("before-launch", stderr)
	w, err := launcher.Launch(context.Background(), spec)
	if lc := sandbox.LaunchCacheState(); lc.State != "" {
		log.Debug("launch cache", "state", lc.State, "why", lc.Why, "used", lc.Used, "mismatch", lc.Mismatch, "saved", lc.Saved, "saveSkipped", lc.SaveSkipped)
	}
	if err != nil {
		return launchFailed(c, err, prof, sink, o.reportTimeout)
	}
	// Warm the JSON encoder's type cache while the worker runs: the report then goes out in
	// microseconds after the death instead of paying for reflection on the death path.
	go json.Marshal(report.Report{Cgroup: &report.CgroupEvidence{}, Warnings: []string{""}})

	r := supervise(w, sigs, o, log)
	testPause("before-report", stderr)
	werr := sink.write(r, o.reportTimeout)
	if sink == nil {
		noReportDestination(stderr, r, log)
	}
	// The report went out as soon as the death was known; exit only once the sandbox is gone
	// (init stage reaped, cgroup leaf removed).
	<-w.Cleaned()
	if werr != nil {
		return c.fail(exitReportLost, "%v (the worker's own status was: %s)", werr, r.OneLine())
	}
	if r.ExitCode == nil && r.Signal > 0 {
		// Mirror the wait status exactly: the parent sees death by the worker's signal, as it
		// would without vatrun (Node: exit(null, 'SIGKILL'), not 137).
		// A stop signal arriving now (xsnap's library sends SIGTERM on EOF of fd 4) must not end
		// vatrun by itself: ignore them all; DieBySignal restores the default action of the
		// mirrored signal only.
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
		sandbox.DieBySignal(r.Signal)
	}
	return launcher.ExitStatus(r)
}

// launchCacheFiles are the files `vatrun run` reads besides the worker's closure: a profile file,
// the --mount sources. A launch-cache entry re-checks each before it is used.
func launchCacheFiles(o runOptions) []string {
	var files []string
	if _, builtin := seccompprofiles.Builtin(o.profile); !builtin {
		files = append(files, o.profile)
	}
	for _, target := range slices.Sorted(maps.Keys(o.mounts)) {
		files = append(files, o.mounts[target])
	}
	return files
}

// noReportDestination says where the report went when the run had no --report-fd or
// --report-file: nowhere. An operator at a terminal gets the one-line form on stderr; a stderr
// that is not a terminal is shared with the worker and with whoever started vatrun (a SwingSet
// kernel), so there it is only logged, at info level (not printed at the default warn level).
func noReportDestination(stderr io.Writer, r report.Report, log *slog.Logger) {
	if f, ok := stderr.(*os.File); ok {
		if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			fmt.Fprintf(stderr, "vatrun run: report not written (no --report-fd or --report-file): %s\n", r.OneLine())
			return
		}
	}
	log.Info("report not written: no --report-fd or --report-file", "cause", string(r.Cause), "class", string(r.Class))
}

// launchFailed maps a launch error to vatrun's exit code; a sandbox that could not be set up
// also gets its report (the kernel learns why its worker never ran).
func launchFailed(c *cmdline, err error, prof *seccompprofiles.Profile, sink *reportSink, timeout time.Duration) int {
	code := exitSetupFailed
	switch {
	case errors.Is(err, launcher.ErrNotFound):
		code = exitNotFound
	case errors.Is(err, launcher.ErrNotExecutable):
		code = exitNotExecutable
	case errors.Is(err, launcher.ErrConfig):
		code = exitUsage
	}
	if code == exitSetupFailed {
		r := report.Build(report.Evidence{SetupError: err.Error()})
		r.ProfileName, r.ProfileDigest = prof.Name, prof.Digest()
		if werr := sink.write(r, timeout); werr != nil {
			fmt.Fprintf(c.stderr, "%s: %v\n", c.name, werr)
		}
	}
	return c.fail(code, "%v", err)
}

// supervise relays stop signals to the worker until it dies (SIGKILL after the grace period
// that follows the first one) and returns its report.
func supervise(w *launcher.Worker, sigs <-chan os.Signal, o runOptions, log *slog.Logger) report.Report {
	var killTimer <-chan time.Time
	for {
		select {
		case s := <-sigs:
			sig := s.(syscall.Signal)
			reason := "vatrun received " + unix.SignalName(sig)
			log.Info("forwarding signal to worker", "worker", o.name, "signal", unix.SignalName(sig))
			if err := w.Forward(sig, reason); err != nil {
				log.Warn("forward signal", "err", err)
			}
			if killTimer == nil {
				killTimer = time.After(o.grace)
			}
		case <-killTimer:
			w.Stop(fmt.Sprintf("worker still alive %v after a forwarded stop signal", o.grace))
		case <-w.Done():
			return w.Wait()
		}
	}
}
