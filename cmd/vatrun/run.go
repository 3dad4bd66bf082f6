package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
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

// testPause is a fault-injection hook for the host tests only (test/hostile): when
// $VATRUN_TEST_PAUSE names stage, vatrun says so on stderr and sleeps (at most 30 s), so a test
// can SIGKILL it at exactly that point. Stages: before-launch (nothing forked yet) and
// before-report (the worker is reaped, the report not yet written); the init stage itself
// handles in-setup (stage.c, between fork and exec). Not for production use.
func testPause(stage string, stderr io.Writer) {
	if os.Getenv("VATRUN_TEST_PAUSE") != stage {
		return
	}
	fmt.Fprintf(stderr, "vatrun-test-pause %s pid=%d\n", stage, os.Getpid())
	time.Sleep(30 * time.Second)
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
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return nil, fmt.Errorf("--report-fd %d is not open in vatrun (%v): the parent must pass it (Node.js: stdio[%d] = 'pipe'), or use --report-file", fd, err, fd)
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

// workerEnv is the profile's environment for the worker (nothing of vatrun's own but the names
// the profile passes through), plus the test-only VATRUN_TEST_PAUSE hook when it is set (see
// testPause; stage.c reads it from the worker's environment for the in-setup stage).
func workerEnv(p *seccompprofiles.Profile) []string {
	env := p.WorkerEnv(os.LookupEnv)
	if v, ok := os.LookupEnv("VATRUN_TEST_PAUSE"); ok {
		env = append(env, "VATRUN_TEST_PAUSE="+v)
	}
	return env
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

func runMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vatrun run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	profileName := fs.String("profile", "", "sandbox profile: a built-in name (vatrun profile list) or a JSON file (required)")
	reportFD := fs.Int("report-fd", -1, "write the JSON death report to this inherited fd (5 or above)")
	reportFile := fs.String("report-file", "", "write the JSON death report to this file")
	cgParent := cgroupParentFlag(fs, "cgroup v2 parent for the worker's leaf")
	noCgroup := fs.Bool("no-cgroup", false, "do not use cgroups (refused by consensus profiles)")
	name := fs.String("name", "", "worker identity for logs (e.g. the vat id)")
	grace := fs.Duration("kill-grace", 10*time.Second, "after forwarding SIGTERM/SIGINT/SIGHUP/SIGQUIT to the worker, SIGKILL it if it is still alive after this long")
	reportTimeout := fs.Duration("report-timeout", 5*time.Second, "give up writing the report (exit 123) when it cannot be written within this long (a report pipe nobody reads)")
	mounts := map[string]string{}
	fs.Func("mount", "TARGET=SOURCE: the host path for one of the profile's mounts (repeat for each)", func(v string) error {
		target, source, ok := strings.Cut(v, "=")
		if !ok || target == "" || source == "" {
			return fmt.Errorf("want TARGET=SOURCE, e.g. /data=/srv/validator/data")
		}
		if _, dup := mounts[target]; dup {
			return fmt.Errorf("%s is given twice", target)
		}
		mounts[target] = source
		return nil
	})
	logFormat := fs.String("log-format", "text", "log format on stderr: text or json")
	logLevel := fs.String("log-level", "warn", "log level: debug, info (one line per launch and per death), warn, error")
	logFile := fs.String("log-file", "", "append logs to this file instead of stderr (which vatrun shares with the worker and the kernel)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: vatrun run --profile NAME|PATH [--report-fd N | --report-file F] [flags] -- WORKER [ARGS...]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "vatrun run: "+format+"\n", a...)
		return code
	}
	logOut := stderr
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return fail(exitUsage, "--log-file: %v (choose a writable path)", err)
		}
		defer f.Close()
		logOut = f
	}
	log, err := newLogger(logOut, *logFormat, *logLevel)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	if *profileName == "" {
		return fail(exitUsage, "--profile is required (built-in: %v, or a JSON file)", seccompprofiles.BuiltinNames())
	}
	worker := fs.Args()
	if len(worker) == 0 {
		return fail(exitUsage, "no worker given: vatrun run --profile %s -- WORKER [ARGS...]", *profileName)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if given["report-fd"] && *reportFD < 0 {
		return fail(exitUsage, "--report-fd %d: not a file descriptor; pass the report pipe as fd 5 or above", *reportFD)
	}
	if *grace < 0 {
		return fail(exitUsage, "--kill-grace %v: negative; give how long to wait after a forwarded stop signal, e.g. 10s", *grace)
	}
	if *reportTimeout <= 0 {
		return fail(exitUsage, "--report-timeout %v: must be positive, e.g. 5s", *reportTimeout)
	}
	if *reportFD >= 0 && *reportFile != "" {
		return fail(exitUsage, "give --report-fd or --report-file, not both")
	}
	prof, err := seccompprofiles.Load(*profileName)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	path, code, err := resolveWorker(worker[0])
	if err != nil {
		return fail(code, "%v", err)
	}
	var sink *reportSink
	switch {
	case *reportFD >= 0:
		sink, err = openReportFD(*reportFD, prof.Fds)
	case *reportFile != "":
		sink, err = openReportFile(*reportFile)
	}
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	// Descriptors that our parent left without close-on-exec (the report fd among them) must not
	// reach the init stage; the worker's own fds are passed explicitly, at their numbers.
	files := workerFiles(prof.Fds)
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		log.Debug("close_range cloexec", "err", err)
	}

	spec := launcher.Spec{
		Profile:      prof,
		Path:         path,
		Args:         worker,
		Env:          workerEnv(prof),
		Dir:          "/",
		MountSources: mounts,
		ExtraFiles:   files,
		// vatrun keeps no copy of the kernel's pipes: only the sandbox holds them, from the
		// moment the init stage exists.
		CloseExtraFiles: true,
		Stdin:           workerStdin(),
		Stdout:          os.Stdout,
		Stderr:          os.Stderr,
		Cgroup:          launcher.CgroupOptions{Parent: *cgParent, Disable: *noCgroup},
		Name:            *name,
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

	testPause("before-launch", stderr)
	w, err := launcher.Launch(context.Background(), spec)
	if err != nil {
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
			if werr := sink.write(r, *reportTimeout); werr != nil {
				fmt.Fprintf(stderr, "vatrun run: %v\n", werr)
			}
		}
		return fail(code, "%v", err)
	}

	// Warm the JSON encoder's type cache while the worker runs: the report then goes out in
	// microseconds after the death instead of paying for reflection on the death path.
	go json.Marshal(report.Report{Cgroup: &report.CgroupEvidence{}, Warnings: []string{""}})

	var killTimer <-chan time.Time
	for {
		select {
		case s := <-sigs:
			sig := s.(syscall.Signal)
			reason := "vatrun received " + unix.SignalName(sig)
			log.Info("forwarding signal to worker", "worker", *name, "signal", unix.SignalName(sig))
			if err := w.Forward(sig, reason); err != nil {
				log.Warn("forward signal", "err", err)
			}
			if killTimer == nil {
				killTimer = time.After(*grace)
			}
			continue
		case <-killTimer:
			w.Stop(fmt.Sprintf("worker still alive %v after a forwarded stop signal", *grace))
			continue
		case <-w.Done():
		}
		break
	}
	r := w.Wait()
	testPause("before-report", stderr)
	werr := sink.write(r, *reportTimeout)
	// The report went out as soon as the death was known; exit only once the sandbox is gone
	// (init stage reaped, cgroup leaf removed).
	<-w.Cleaned()
	if werr != nil {
		return fail(exitReportLost, "%v (the worker's own status was: %s)", werr, r.OneLine())
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
