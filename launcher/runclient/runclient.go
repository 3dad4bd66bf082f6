// Package runclient is for Go kernels that spawn `vatrun run` as a separate process instead of
// calling launcher.Launch in their own process. It passes vatrun a report pipe, reads the one
// JSON death report from it, and when vatrun died without writing one (it was SIGKILLed, the OOM
// killer chose it, it crashed), it still returns a report: cause "launcher-died", so the kernel's
// crash policy always has a classified death to act on.
//
//	c := runclient.Command("/usr/bin/vatrun", []string{"--profile", "consensus"}, "xsnap-worker", "-l", "1000")
//	c.ExtraFiles = []*os.File{cmdR, replyW} // the worker's fds 3 and 4
//	if err := c.Start(); err != nil { … }
//	r, err := c.Wait()
//
// When vatrun dies, its worker dies with it (the init stage's parent-death signal and pid
// namespace), and the kernel also sees the worker's fd 4 reach EOF.
package runclient

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"github.com/vatrun/vatrun/report"
)

// maxReport bounds what is read from the report pipe (a real report is about 1 KiB).
const maxReport = 1 << 20

// Cmd is one `vatrun run` process. Set the embedded exec.Cmd's ExtraFiles (the worker's fds 3,
// 4, …), Stdin, Stdout, Stderr and Env before Start; Start appends the report pipe.
type Cmd struct {
	*exec.Cmd
	runArgs, worker []string
	reportR         *os.File
	reportFD        int
	read            chan readResult
}

type readResult struct {
	data []byte
	err  error
}

// Command prepares `vatrun run RUNARGS... --report-fd N -- WORKER...`; N is chosen at Start.
// runArgs must not contain --report-fd or --report-file.
func Command(vatrun string, runArgs []string, worker ...string) *Cmd {
	return &Cmd{Cmd: exec.Command(vatrun), runArgs: runArgs, worker: worker}
}

// ReportFD is the fd number vatrun gets the report pipe on (valid after Start).
func (c *Cmd) ReportFD() int { return c.reportFD }

// Start creates the report pipe, passes it as the fd after ExtraFiles, and starts vatrun.
func (c *Cmd) Start() error {
	if c.read != nil {
		return errors.New("runclient: already started")
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("runclient: report pipe: %w", err)
	}
	// vatrun takes the report on fd 5 or above: fds 3 and 4 are the worker's (closed if not given).
	given := len(c.ExtraFiles)
	for len(c.ExtraFiles) < 2 {
		c.ExtraFiles = append(c.ExtraFiles, nil)
	}
	c.reportFD = 3 + len(c.ExtraFiles)
	c.ExtraFiles = append(c.ExtraFiles, w)
	args := append([]string{c.Path, "run"}, c.runArgs...)
	args = append(args, "--report-fd", strconv.Itoa(c.reportFD), "--")
	c.Args = append(args, c.worker...)
	err = c.Cmd.Start()
	w.Close() // vatrun holds the only write end now: EOF means it is gone
	c.ExtraFiles = c.ExtraFiles[:given]
	if err != nil {
		r.Close()
		return fmt.Errorf("runclient: start vatrun: %w", err)
	}
	c.reportR = r
	c.read = make(chan readResult, 1)
	go func() {
		data, err := io.ReadAll(io.LimitReader(r, maxReport))
		r.Close()
		c.read <- readResult{data, err}
	}()
	return nil
}

// Wait waits for vatrun to exit and returns the worker's death report. When vatrun wrote none
// (or an unreadable one), the report has cause "launcher-died": class "external" when vatrun was
// killed by a signal (nothing the worker did is known), "launcher-error" when vatrun exited
// without a report (a setup or report-writing failure it explained on its stderr). The error is
// non-nil only when vatrun could not be waited for at all.
func (c *Cmd) Wait() (report.Report, error) {
	if c.read == nil {
		return report.Report{}, errors.New("runclient: not started")
	}
	res := <-c.read
	werr := c.Cmd.Wait()
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) {
		return report.Report{}, fmt.Errorf("runclient: wait for vatrun: %w", werr)
	}
	var why string
	switch {
	case res.err != nil:
		why = "reading its report pipe failed: " + res.err.Error()
	case len(res.data) == 0:
		why = "it wrote no report"
	default:
		r, err := report.Decode(res.data)
		if err == nil {
			return r, nil
		}
		why = "its report is unreadable: " + err.Error()
	}
	return LauncherDied(c.Process.Pid, c.ProcessState, why), nil
}

// LauncherDied is the report for a worker whose vatrun (pid) ended with state and left no
// usable report; why says what was wrong with the report. It is classified by report's rules
// table like every other death: cause launcher-died, class external when a signal killed vatrun,
// else launcher-error.
func LauncherDied(pid int, state *os.ProcessState, why string) report.Report {
	d := &report.LauncherDeath{Pid: pid, Why: why}
	if state != nil {
		d.StatusKnown = true
		if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			d.Signal = int(ws.Signal())
		} else {
			d.ExitCode = state.ExitCode()
		}
	}
	return report.Build(report.Evidence{Launcher: d})
}
