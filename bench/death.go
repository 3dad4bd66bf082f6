package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/launcher"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// idleWorker is a test worker started with --ready and no command: it blocks reading fd 3.
type idleWorker struct {
	pp *pingPipes
}

func newIdle() (*idleWorker, error) {
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
	return &idleWorker{pp: &p}, nil
}

// workerUnder finds the worker's host pid: the only child of the init stage, itself the child of
// parent (vatrun run) or parent itself (Go API: the init stage's pid).
func workerUnder(initPid int) (int, error) {
	kids := childrenOf(initPid)
	if len(kids) != 1 {
		return 0, fmt.Errorf("init stage %d has %d children, want 1", initPid, len(kids))
	}
	return kids[0], nil
}

// deathRun: start vatrun run with the idle worker, wait until ready, SIGKILL the worker, time
// until the report fd becomes readable.
func deathRun(o *options) (time.Duration, error) {
	iw, err := newIdle()
	if err != nil {
		return 0, err
	}
	defer iw.pp.close()
	repR, repW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer repR.Close()
	argv := []string{o.vatrun, "run", "--profile", "xsnap", "--no-cgroup", "--report-fd", "5", "--", o.testWorker, "--ready"}
	p, err := os.StartProcess(o.vatrun, argv, &os.ProcAttr{Env: workerEnv,
		Files: []*os.File{devNull, devNull, devNull, iw.pp.cmdR, iw.pp.replyW, repW}})
	repW.Close()
	if err != nil {
		return 0, err
	}
	iw.pp.childSide()
	defer p.Wait()
	if err := iw.pp.awaitReply(readyMsg); err != nil {
		p.Kill()
		return 0, err
	}
	inits := childrenOf(p.Pid)
	if len(inits) != 1 {
		p.Kill()
		return 0, fmt.Errorf("vatrun %d has %d children, want 1", p.Pid, len(inits))
	}
	wpid, err := workerUnder(inits[0])
	if err != nil {
		p.Kill()
		return 0, err
	}
	fds := []unix.PollFd{{Fd: int32(repR.Fd()), Events: unix.POLLIN}}
	t0 := time.Now()
	if err := unix.Kill(wpid, syscall.SIGKILL); err != nil {
		p.Kill()
		return 0, err
	}
	for {
		if _, err := unix.Poll(fds, -1); err == nil || err != unix.EINTR {
			break
		}
	}
	d := time.Since(t0)
	rep, _ := io.ReadAll(repR)
	st, err := p.Wait()
	if err != nil {
		return 0, err
	}
	// vatrun mirrors the worker's wait status: it dies by SIGKILL too.
	if ws, ok := st.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		return 0, fmt.Errorf("vatrun run ended %v after SIGKILL of the worker, want death by SIGKILL (report %s)", st, rep)
	}
	return d, nil
}

// deathGo: the same through the Go API, until Worker.Wait returns.
func deathGo(o *options, prof *seccompprofiles.Profile) (time.Duration, error) {
	iw, err := newIdle()
	if err != nil {
		return 0, err
	}
	defer iw.pp.close()
	w, err := launcher.Launch(context.Background(), launcher.Spec{
		Profile: prof, Path: o.testWorker, Args: []string{o.testWorker, "--ready"}, Env: workerEnv,
		ExtraFiles: []*os.File{iw.pp.cmdR, iw.pp.replyW}, Cgroup: launcher.CgroupOptions{Disable: true},
	})
	if err != nil {
		return 0, err
	}
	iw.pp.childSide()
	if err := iw.pp.awaitReply(readyMsg); err != nil {
		w.Stop("bench")
		w.Wait()
		return 0, err
	}
	wpid, err := workerUnder(w.Pid())
	if err != nil {
		w.Stop("bench")
		w.Wait()
		return 0, err
	}
	t0 := time.Now()
	if err := unix.Kill(wpid, syscall.SIGKILL); err != nil {
		return 0, err
	}
	r := w.Wait()
	d := time.Since(t0)
	if r.Cause != "killed" {
		return 0, fmt.Errorf("report after SIGKILL: %s", r.OneLine())
	}
	return d, nil
}

// deathPlain: the floor, a plain child and os.Process.Wait (pidfd) in this process.
func deathPlain(o *options) (time.Duration, error) {
	iw, err := newIdle()
	if err != nil {
		return 0, err
	}
	defer iw.pp.close()
	argv := []string{o.testWorker, "--ready"}
	p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{Env: workerEnv,
		Files: []*os.File{devNull, devNull, devNull, iw.pp.cmdR, iw.pp.replyW}})
	if err != nil {
		return 0, err
	}
	iw.pp.childSide()
	if err := iw.pp.awaitReply(readyMsg); err != nil {
		p.Kill()
		p.Wait()
		return 0, err
	}
	t0 := time.Now()
	if err := unix.Kill(p.Pid, syscall.SIGKILL); err != nil {
		return 0, err
	}
	if _, err := p.Wait(); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

type deathResult struct {
	plain, run, goAPI dist
}

func benchDeath(o *options, prof *seccompprofiles.Profile) (*deathResult, error) {
	var r deathResult
	for i := -o.warm; i < o.deathRuns; i++ {
		a, err := deathPlain(o)
		if err != nil {
			return nil, fmt.Errorf("plain: %w", err)
		}
		b, err := deathRun(o)
		if err != nil {
			return nil, fmt.Errorf("vatrun run: %w", err)
		}
		c, err := deathGo(o, prof)
		if err != nil {
			return nil, fmt.Errorf("go API: %w", err)
		}
		if i >= 0 {
			r.plain, r.run, r.goAPI = append(r.plain, a), append(r.run, b), append(r.goAPI, c)
		}
	}
	return &r, nil
}
