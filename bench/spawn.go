package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/vatrun/vatrun/launcher"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// workerEnv is the environment every worker gets, whatever launches it.
var workerEnv = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}

var devNull *os.File

const (
	pingCmd   = "4:ping,"
	pingReply = "4:pong,"
	readyMsg  = "5:ready,"
)

// kind is what a spawn sample measures.
type kind int

const (
	// kindTrue: start → the static worker's exit reaped (the launcher's wait/report returned).
	kindTrue kind = iota
	// kindPing: start → the test worker's reply to its first netstring read on fd 4.
	kindPing
)

// pingPipes are the worker's fd 3 (a "4:ping," already queued) and fd 4.
type pingPipes struct {
	cmdR, cmdW, replyR, replyW *os.File
}

func newPingPipes() (*pingPipes, error) {
	var p pingPipes
	var err error
	if p.cmdR, p.cmdW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if p.replyR, p.replyW, err = os.Pipe(); err != nil {
		p.cmdR.Close()
		p.cmdW.Close()
		return nil, err
	}
	if _, err := io.WriteString(p.cmdW, pingCmd); err != nil {
		p.close()
		return nil, err
	}
	return &p, nil
}

// childSide closes the ends that now belong to the child.
func (p *pingPipes) childSide() { p.cmdR.Close(); p.replyW.Close() }

func (p *pingPipes) close() {
	for _, f := range []*os.File{p.cmdR, p.cmdW, p.replyR, p.replyW} {
		f.Close()
	}
}

// awaitReply reads exactly want from the reply pipe.
func (p *pingPipes) awaitReply(want string) error {
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(p.replyR, buf); err != nil {
		return fmt.Errorf("reading the worker's reply: %w", err)
	}
	if string(buf) != want {
		return fmt.Errorf("worker replied %q, want %q", buf, want)
	}
	return nil
}

// extMode launches a worker through an external command (or directly).
type extMode struct {
	name string
	// argv wraps the worker's argv; nil runs the worker directly.
	argv func(worker []string) []string
	// extra opens the fds 5, 6, … the command needs; done is called after the run.
	extra func() (files []*os.File, done func() error, err error)
	// okExit is the exit code a clean run ends with (0).
	okExit int
	// faults collects each sample's page faults: the launcher's and those of every descendant
	// it waited for (wait4's rusage: the init stage and the worker of a sandbox), so the
	// figure covers the whole launch tree.
	faults []int64
}

// sample runs one worker through m and times it.
func (m *extMode) sample(k kind, worker []string) (time.Duration, error) {
	argv := worker
	if m.argv != nil {
		argv = m.argv(worker)
	}
	files := []*os.File{devNull, devNull, devNull}
	var pp *pingPipes
	if k == kindPing {
		var err error
		if pp, err = newPingPipes(); err != nil {
			return 0, err
		}
		defer pp.close()
		files = append(files, pp.cmdR, pp.replyW)
	}
	var done func() error
	if m.extra != nil {
		extra, d, err := m.extra()
		if err != nil {
			return 0, err
		}
		done = d
		for len(files) < 5 {
			files = append(files, nil)
		}
		files = append(files, extra...)
	}
	t0 := time.Now()
	p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{Env: workerEnv, Files: files})
	if done != nil {
		defer done()
	}
	if err != nil {
		return 0, err
	}
	var d time.Duration
	if pp != nil {
		pp.childSide()
		if err := pp.awaitReply(pingReply); err != nil {
			p.Kill()
			p.Wait()
			return 0, fmt.Errorf("%s: %w", m.name, err)
		}
		d = time.Since(t0)
		pp.cmdW.Close() // EOF: the worker exits 0
	}
	st, err := p.Wait()
	if pp == nil {
		d = time.Since(t0)
	}
	if err != nil {
		return 0, err
	}
	if st.ExitCode() != m.okExit {
		return 0, fmt.Errorf("%s %v: %v", m.name, argv, st)
	}
	if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
		m.faults = append(m.faults, ru.Minflt+ru.Majflt)
	}
	return d, nil
}

// goMode launches through the Go API in this process.
type goMode struct {
	name    string
	profile *seccompprofiles.Profile
}

func (m *goMode) sample(k kind, worker []string) (time.Duration, error) {
	spec := launcher.Spec{
		Profile: m.profile,
		Path:    worker[0],
		Args:    worker,
		Env:     workerEnv,
		Cgroup:  launcher.CgroupOptions{Disable: true},
	}
	var pp *pingPipes
	if k == kindPing {
		var err error
		if pp, err = newPingPipes(); err != nil {
			return 0, err
		}
		defer pp.close()
		spec.ExtraFiles = []*os.File{pp.cmdR, pp.replyW}
	}
	t0 := time.Now()
	w, err := launcher.Launch(context.Background(), spec)
	if err != nil {
		return 0, err
	}
	var d time.Duration
	if pp != nil {
		pp.childSide()
		if err := pp.awaitReply(pingReply); err != nil {
			w.Stop("bench: bad reply")
			w.Wait()
			return 0, fmt.Errorf("%s: %w", m.name, err)
		}
		d = time.Since(t0)
		pp.cmdW.Close()
	}
	r := w.Wait()
	if pp == nil {
		d = time.Since(t0)
	}
	if r.Cause != "exited" {
		return 0, fmt.Errorf("%s: %s", m.name, r.OneLine())
	}
	return d, nil
}

type sampler interface {
	sample(k kind, worker []string) (time.Duration, error)
}

// pipeOnFD returns a pipe whose write end goes to the child; done drains and closes the read end.
func reportPipe() ([]*os.File, func() error, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	return []*os.File{w}, func() error {
		w.Close()
		_, err := io.Copy(io.Discard, r)
		r.Close()
		return err
	}, nil
}

// openForChild opens path for a child to read as an extra fd.
func openForChild(path string) func() ([]*os.File, func() error, error) {
	return func() ([]*os.File, func() error, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, err
		}
		return []*os.File{f}, f.Close, nil
	}
}

// collect takes n samples of every mode, interleaved so drift hits all modes alike, after warm
// warm-up runs each.
func collect(modes []sampler, names []string, k kind, worker []string, n, warm int) (map[string]dist, error) {
	out := map[string]dist{}
	for i := -warm; i < n; i++ {
		for j, m := range modes {
			d, err := m.sample(k, worker)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", names[j], err)
			}
			if i >= 0 {
				out[names[j]] = append(out[names[j]], d)
			}
		}
	}
	return out, nil
}
