package main

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// stormRound is one storm: n launches started at once, each running the static worker.
type stormRound struct {
	wall time.Duration // first start → last exit
	// maxRSS: the sum over the n launches of each launch tree's peak RSS (wait4's ru_maxrss:
	// the largest process of the tree), KiB — an upper bound of what the storm held at once.
	maxRSS int64
	faults int64 // page faults of all n launch trees
	cpu    time.Duration
}

type stormResult struct {
	n      int
	rounds map[string][]stormRound
	names  []string
}

// storm starts n copies of argv at once and waits for them all.
func storm(n int, argv []string, extra func() ([]*os.File, func() error, error)) (stormRound, error) {
	var r stormRound
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			files := []*os.File{devNull, devNull, devNull}
			var done func() error
			if extra != nil {
				ex, d, err := extra()
				if err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
					return
				}
				files = append(files, nil, nil)
				files = append(files, ex...)
				done = d
			}
			p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{Env: workerEnv, Files: files})
			if err == nil {
				var st *os.ProcessState
				if st, err = p.Wait(); err == nil && !st.Success() {
					err = fmt.Errorf("%v: %v", argv, st)
				}
				if err == nil {
					ru := st.SysUsage().(*syscall.Rusage)
					mu.Lock()
					r.maxRSS += ru.Maxrss
					r.faults += ru.Minflt + ru.Majflt
					r.cpu += st.UserTime() + st.SystemTime()
					mu.Unlock()
				}
			}
			if done != nil {
				done()
			}
			if err != nil {
				mu.Lock()
				first = err
				mu.Unlock()
			}
		}()
	}
	t0 := time.Now()
	close(gate)
	wg.Wait()
	r.wall = time.Since(t0)
	return r, first
}

// benchStorm: o.stormN concurrent `vatrun run` launches against as many concurrent bwrap
// launches (same isolation), o.stormRounds storms each, interleaved.
func benchStorm(o *options, bwrapArgv func([]string) []string, bpfFile string) (*stormResult, error) {
	res := &stormResult{n: o.stormN, rounds: map[string][]stormRound{}}
	type mode struct {
		name  string
		argv  []string
		extra func() ([]*os.File, func() error, error)
	}
	modes := []mode{
		{"plain fork/exec", []string{o.trueBin}, nil},
		{"vatrun run", []string{o.vatrun, "run", "--profile", "xsnap", "--no-cgroup", "--report-fd", "5", "--", o.trueBin}, reportPipe},
	}
	if bwrapArgv != nil {
		modes = append(modes, mode{"bwrap", bwrapArgv([]string{o.trueBin}), openForChild(bpfFile)})
	}
	for _, m := range modes {
		res.names = append(res.names, m.name)
	}
	for i := -1; i < o.stormRounds; i++ { // one warm-up storm each
		for _, m := range modes {
			r, err := storm(o.stormN, m.argv, m.extra)
			if err != nil {
				return nil, fmt.Errorf("storm %s: %w", m.name, err)
			}
			if i >= 0 {
				res.rounds[m.name] = append(res.rounds[m.name], r)
			}
		}
	}
	return res, nil
}

// median of one field over the rounds of a mode.
func (s *stormResult) med(name string, f func(stormRound) int64) int64 {
	var xs []int64
	for _, r := range s.rounds[name] {
		xs = append(xs, f(r))
	}
	return medianInt(xs)
}
