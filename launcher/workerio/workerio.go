// Package workerio is the kernel↔worker fd contract in one type: the worker reads commands on
// fd 3 and writes results on fd 4 (xsnap's 7 and 8 are snapshot pipes the kernel adds itself).
// New makes both pipes; WorkerFiles are what goes into launcher.Spec.ExtraFiles (or
// exec.Cmd.ExtraFiles) so that they arrive as fds 3 and 4; the kernel keeps Commands and Results.
package workerio

import (
	"fmt"
	"os"
)

// Pipes are the two pipes between a kernel and one worker.
type Pipes struct {
	// Commands is the kernel's write end of the worker's fd 3.
	Commands *os.File
	// Results is the kernel's read end of the worker's fd 4.
	Results *os.File

	cmdR, resW *os.File // the worker's ends
}

// New makes the command and result pipes (close-on-exec on every end; the launcher passes the
// worker's ends explicitly).
func New() (*Pipes, error) {
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("worker pipes: command pipe (fd 3): %w", err)
	}
	resR, resW, err := os.Pipe()
	if err != nil {
		cmdR.Close()
		cmdW.Close()
		return nil, fmt.Errorf("worker pipes: result pipe (fd 4): %w", err)
	}
	return &Pipes{Commands: cmdW, Results: resR, cmdR: cmdR, resW: resW}, nil
}

// WorkerFiles are the worker's ends, in fd order: [fd 3 (commands, read), fd 4 (results, write)].
func (p *Pipes) WorkerFiles() []*os.File { return []*os.File{p.cmdR, p.resW} }

// CloseWorkerEnds closes this process's copies of the worker's ends once the worker (or the
// sandbox) holds them, so that the kernel sees EOF on Results and EPIPE on Commands as soon as the
// worker is gone. Safe to call twice.
func (p *Pipes) CloseWorkerEnds() {
	p.cmdR.Close()
	p.resW.Close()
}

// Close closes every end.
func (p *Pipes) Close() {
	p.CloseWorkerEnds()
	p.Commands.Close()
	p.Results.Close()
}
