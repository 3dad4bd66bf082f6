// Package launchstarter starts the reference kernel's vat workers through the launcher (the
// sandbox, cgo and libseccomp): kernel.Starter for real workers, kept out of package kernel so
// that the kernel and its tests can run on fakes.
package launchstarter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"

	"github.com/vatrun/vatrun/internal/netstring"
	"github.com/vatrun/vatrun/kernel"
	"github.com/vatrun/vatrun/launcher"
	"github.com/vatrun/vatrun/launcher/workerio"
	"github.com/vatrun/vatrun/report"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// MaxMessage bounds one worker reply.
const MaxMessage = 1 << 20

// Starter starts vat workers through the launcher: commands on the worker's fd 3, replies on
// its fd 4.
type Starter struct {
	Profile *seccompprofiles.Profile
	Path    string
	Args    []string
	Cgroup  launcher.CgroupOptions
	// Output receives the worker's stdout and stderr in solo mode (captured for debugging);
	// consensus profiles always send them to /dev/null.
	Output *os.File
	Logger *slog.Logger
}

var _ kernel.Starter = (*Starter)(nil)

type launched struct {
	w       *launcher.Worker
	cmdW    *os.File
	replies chan []byte
	log     *slog.Logger
}

// closeAll closes files and joins the errors, each named.
func closeAll(files ...*os.File) error {
	var errs []error
	for _, f := range files {
		if err := f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", f.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// Start launches one worker for vat.
func (s *Starter) Start(ctx context.Context, vat string) (kernel.Handle, error) {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pipes, err := workerio.New()
	if err != nil {
		return nil, fmt.Errorf("vat %s: %w", vat, err)
	}
	cmdW, replyR := pipes.Commands, pipes.Results
	w, err := launcher.Launch(ctx, launcher.Spec{
		Profile:    s.Profile,
		Path:       s.Path,
		Args:       append([]string{s.Path}, s.Args...),
		ExtraFiles: pipes.WorkerFiles(),
		Stdout:     s.Output,
		Stderr:     s.Output,
		Cgroup:     s.Cgroup,
		Name:       vat,
		Logger:     s.Logger,
	})
	// Our copies of the worker's ends: closing them lets fd 4 reach EOF when the worker dies.
	cerr := closeAll(pipes.WorkerFiles()...)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("launch worker: %w", err), cerr, closeAll(cmdW, replyR))
	}
	if cerr != nil {
		// The worker runs, but without our ends closed its death would not reach fd 4's EOF.
		w.Stop("kernel error")
		w.Wait()
		return nil, errors.Join(fmt.Errorf("vat %s: %w", vat, cerr), closeAll(cmdW, replyR))
	}
	l := &launched{w: w, cmdW: cmdW, replies: make(chan []byte, 1), log: log.With("vat", vat)}
	go l.readReplies(replyR)
	go func() {
		<-w.Done()
		if err := cmdW.Close(); err != nil {
			l.log.Warn("closing the command pipe of a dead worker", "err", err)
		}
	}()
	return l, nil
}

// readReplies forwards netstrings from fd 4 until it closes (the worker died) or goes bad.
func (l *launched) readReplies(replyR *os.File) {
	defer close(l.replies)
	defer func() {
		if err := replyR.Close(); err != nil {
			l.log.Warn("closing the reply pipe", "err", err)
		}
	}()
	r := netstring.NewReader(replyR, MaxMessage)
	for {
		msg, err := r.Read()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				// The kernel sees the closed channel as the worker's end; its report says why.
				l.log.Warn("reading a worker reply", "err", err)
			}
			return
		}
		l.replies <- msg
	}
}

func (l *launched) Send(msg []byte) error {
	if err := netstring.Write(l.cmdW, msg); err != nil {
		return fmt.Errorf("send to worker: %w", err)
	}
	return nil
}

func (l *launched) Replies() <-chan []byte          { return l.replies }
func (l *launched) Done() <-chan struct{}           { return l.w.Done() }
func (l *launched) Wait() report.Report             { return l.w.Wait() }
func (l *launched) Cleaned() <-chan struct{}        { return l.w.Cleaned() }
func (l *launched) SetPhase(p string)               { l.w.SetPhase(p) }
func (l *launched) Stop(reason string)              { l.w.Stop(reason) }
func (l *launched) Signal(sig syscall.Signal) error { return l.w.Signal(sig) }
