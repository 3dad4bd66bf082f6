package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/vatrun/vatrun/launcher"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// idleRun is one `vatrun run` with an idle test worker.
type idleRun struct {
	iw         *idleWorker
	proc       *os.Process
	initPid    int
	workerPid  int
	repR       *os.File
	reportDone chan []byte
}

func startIdleRun(o *options) (*idleRun, error) { return startIdle(o, "") }

// startIdle starts `vatrun run`, or with thinSock the prototype's thin client of the supervisor
// listening there (whose init stage is the supervisor's child, not the client's).
func startIdle(o *options, thinSock string) (*idleRun, error) {
	iw, err := newIdle()
	if err != nil {
		return nil, err
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		iw.pp.close()
		return nil, err
	}
	argv := []string{o.vatrun, "run", "--profile", "xsnap", "--no-cgroup", "--report-fd", "5", "--", o.testWorker, "--ready"}
	if thinSock != "" {
		argv = []string{o.thinBin, thinSock, "--", o.testWorker, "--ready"}
	}
	p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{Env: workerEnv,
		Files: []*os.File{devNull, devNull, devNull, iw.pp.cmdR, iw.pp.replyW, repW}})
	repW.Close()
	if err != nil {
		iw.pp.close()
		repR.Close()
		return nil, err
	}
	iw.pp.childSide()
	r := &idleRun{iw: iw, proc: p, repR: repR, reportDone: make(chan []byte, 1)}
	go func() { b, _ := io.ReadAll(repR); r.reportDone <- b }()
	if err := iw.pp.awaitReply(readyMsg); err != nil {
		r.stop()
		return nil, err
	}
	if thinSock != "" {
		return r, nil
	}
	inits := childrenOf(p.Pid)
	if len(inits) != 1 {
		r.stop()
		return nil, fmt.Errorf("vatrun %d has %d children", p.Pid, len(inits))
	}
	r.initPid = inits[0]
	if r.workerPid, err = workerUnder(r.initPid); err != nil {
		r.stop()
		return nil, err
	}
	return r, nil
}

// stop closes the worker's fd 3 (EOF: it exits 0) and waits for vatrun.
func (r *idleRun) stop() error {
	r.iw.pp.close()
	st, err := r.proc.Wait()
	<-r.reportDone
	r.repR.Close()
	if err != nil {
		return err
	}
	if !st.Success() {
		return fmt.Errorf("vatrun run: %v", st)
	}
	return nil
}

type memResult struct {
	one                         struct{ vatrun, init, worker procMem }
	n                           int
	vatrunSum, initSum, workers procMem
	goN                         int
	goDelta                     int64 // KiB of this process's RSS for goN idle workers via the Go API
	goInits                     procMem
	goGoroutines                int
	idle                        *idleResult
	// The long-lived-supervisor prototype (bench/thin.go): thinN live workers, each with its
	// thin client; the supervisor's PSS growth over them, and its init stages.
	thinN                       int
	thinClients, thinInits      procMem
	thinSupBefore, thinSupAfter procMem
}

func benchMem(o *options, prof *seccompprofiles.Profile) (*memResult, error) {
	var res memResult
	// One worker.
	r, err := startIdleRun(o)
	if err != nil {
		return nil, err
	}
	time.Sleep(300 * time.Millisecond)
	res.one.vatrun, _ = readMem(r.proc.Pid)
	res.one.init, _ = readMem(r.initPid)
	res.one.worker, _ = readMem(r.workerPid)
	if err := r.stop(); err != nil {
		return nil, err
	}

	// N concurrent `vatrun run`.
	res.n = o.concurrent
	var runs []*idleRun
	stopAll := func() error {
		var first error
		for _, r := range runs {
			if err := r.stop(); err != nil && first == nil {
				first = err
			}
		}
		runs = nil
		return first
	}
	for range res.n {
		r, err := startIdleRun(o)
		if err != nil {
			stopAll()
			return nil, fmt.Errorf("%d concurrent vatrun run: %w", len(runs), err)
		}
		runs = append(runs, r)
	}
	time.Sleep(500 * time.Millisecond)
	if o.idleDur > 0 {
		logf("memory: watching %d idle supervisors for %v", len(runs), o.idleDur)
		if res.idle, err = watchIdle(runs, o.idleDur); err != nil {
			stopAll()
			return nil, err
		}
	}
	for _, r := range runs {
		m, _ := readMem(r.proc.Pid)
		res.vatrunSum.add(m)
		m, _ = readMem(r.initPid)
		res.initSum.add(m)
		m, _ = readMem(r.workerPid)
		res.workers.add(m)
	}
	if err := stopAll(); err != nil {
		return nil, err
	}

	// N workers through the prototype: one supervisor, a thin client each.
	if err := benchThinMem(o, &res); err != nil {
		return nil, fmt.Errorf("prototype: %w", err)
	}

	// N workers through the Go API, in this process.
	res.goN = o.concurrent
	runtime.GC()
	debug.FreeOSMemory()
	self := os.Getpid()
	before, _ := readMem(self)
	g0 := runtime.NumGoroutine()
	type live struct {
		w  *launcher.Worker
		iw *idleWorker
	}
	var ws []live
	defer func() {
		for _, l := range ws {
			l.iw.pp.close()
			l.w.Wait()
		}
	}()
	for range res.goN {
		iw, err := newIdle()
		if err != nil {
			return nil, err
		}
		w, err := launcher.Launch(context.Background(), launcher.Spec{
			Profile: prof, Path: o.testWorker, Args: []string{o.testWorker, "--ready"}, Env: workerEnv,
			ExtraFiles: []*os.File{iw.pp.cmdR, iw.pp.replyW}, Cgroup: launcher.CgroupOptions{Disable: true},
		})
		if err != nil {
			iw.pp.close()
			return nil, err
		}
		iw.pp.childSide()
		ws = append(ws, live{w, iw})
		if err := iw.pp.awaitReply(readyMsg); err != nil {
			return nil, err
		}
	}
	time.Sleep(300 * time.Millisecond)
	runtime.GC()
	debug.FreeOSMemory()
	after, _ := readMem(self)
	res.goDelta = after.RSS - before.RSS
	res.goGoroutines = runtime.NumGoroutine() - g0
	for _, l := range ws {
		m, _ := readMem(l.w.Pid())
		res.goInits.add(m)
	}
	for _, l := range ws {
		l.iw.pp.close()
		if r := l.w.Wait(); r.Cause != "exited" {
			return nil, fmt.Errorf("idle worker (Go API): %s", r.OneLine())
		}
	}
	ws = nil
	return &res, nil
}

// benchThinMem measures o.concurrent live workers launched through the prototype's supervisor.
func benchThinMem(o *options, res *memResult) error {
	dir, err := os.MkdirTemp("", "vatrun-bench-thin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock := dir + "/thin.sock"
	sup, err := startThinServer(sock)
	if err != nil {
		return err
	}
	defer func() { sup.Process.Kill(); sup.Wait() }()
	time.Sleep(300 * time.Millisecond)
	res.thinSupBefore, _ = readMem(sup.Process.Pid)
	var runs []*idleRun
	defer func() {
		for _, r := range runs {
			r.stop()
		}
	}()
	res.thinN = o.concurrent
	for range res.thinN {
		r, err := startIdle(o, sock)
		if err != nil {
			return fmt.Errorf("%d live workers: %w", len(runs), err)
		}
		runs = append(runs, r)
	}
	time.Sleep(500 * time.Millisecond)
	res.thinSupAfter, _ = readMem(sup.Process.Pid)
	for _, r := range runs {
		m, _ := readMem(r.proc.Pid)
		res.thinClients.add(m)
	}
	for _, pid := range childrenOf(sup.Process.Pid) {
		m, _ := readMem(pid)
		res.thinInits.add(m)
	}
	for _, r := range runs {
		if err := r.stop(); err != nil {
			runs = nil
			return err
		}
	}
	runs = nil
	return nil
}
