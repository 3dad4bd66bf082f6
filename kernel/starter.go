package kernel

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"syscall"

	"github.com/vatrun/vatrun/internal/netstring"
	"github.com/vatrun/vatrun/launcher"
	"github.com/vatrun/vatrun/report"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// MaxMessage bounds one worker reply.
const MaxMessage = 1 << 20

// LauncherStarter starts vat workers through the launcher: commands on the worker's fd 3, replies
// on its fd 4.
type LauncherStarter struct {
	Profile *seccompprofiles.Profile
	Path    string
	Args    []string
	Cgroup  launcher.CgroupOptions
	// Output receives the worker's stdout and stderr in solo mode (captured for debugging);
	// consensus profiles always send them to /dev/null.
	Output *os.File
	Logger *slog.Logger
}

type launched struct {
	w       *launcher.Worker
	cmdW    *os.File
	replies chan []byte
}

// Start launches one worker for vat.
func (s *LauncherStarter) Start(ctx context.Context, vat string) (Handle, error) {
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("vat %s: command pipe: %w", vat, err)
	}
	replyR, replyW, err := os.Pipe()
	if err != nil {
		cmdR.Close()
		cmdW.Close()
		return nil, fmt.Errorf("vat %s: reply pipe: %w", vat, err)
	}
	w, err := launcher.Launch(ctx, launcher.Spec{
		Profile:    s.Profile,
		Path:       s.Path,
		Args:       append([]string{s.Path}, s.Args...),
		ExtraFiles: []*os.File{cmdR, replyW},
		Stdout:     s.Output,
		Stderr:     s.Output,
		Cgroup:     s.Cgroup,
		Name:       vat,
		Logger:     s.Logger,
	})
	// Our copies of the worker's ends: closing them lets fd 4 reach EOF when the worker dies.
	cmdR.Close()
	replyW.Close()
	if err != nil {
		cmdW.Close()
		replyR.Close()
		return nil, err
	}
	l := &launched{w: w, cmdW: cmdW, replies: make(chan []byte, 1)}
	go func() {
		defer close(l.replies)
		defer replyR.Close()
		r := netstring.NewReader(replyR, MaxMessage)
		for {
			msg, err := r.Read()
			if err != nil {
				return
			}
			l.replies <- msg
		}
	}()
	go func() {
		<-w.Done()
		cmdW.Close()
	}()
	return l, nil
}

func (l *launched) Send(msg []byte) error           { return netstring.Write(l.cmdW, msg) }
func (l *launched) Replies() <-chan []byte          { return l.replies }
func (l *launched) Done() <-chan struct{}           { return l.w.Done() }
func (l *launched) Wait() report.Report             { return l.w.Wait() }
func (l *launched) Cleaned() <-chan struct{}        { return l.w.Cleaned() }
func (l *launched) SetPhase(p string)               { l.w.SetPhase(p) }
func (l *launched) Stop(reason string)              { l.w.Stop(reason) }
func (l *launched) Signal(sig syscall.Signal) error { return l.w.Signal(sig) }
