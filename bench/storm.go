package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stormRound is one storm: n launches started at once, each running the static worker.
type stormRound struct {
	wall time.Duration // first start → last exit
	// peakMem: the largest sum, over all descendants of the bench, of their memory that is not
	// shared with a file (statm resident − shared: heap, stacks, page tables aside), sampled
	// every 10 ms, KiB. (wait4's ru_maxrss is no use here: Linux keeps a child's maximum RSS
	// across execve, so every child reports the RSS of the bench process it was forked from.)
	peakMem int64
	faults  int64 // page faults of all n launch trees
	cpu     time.Duration
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
	stop, peak := make(chan struct{}), make(chan int64)
	go func() {
		var hi int64
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if m := descendantsAnon(os.Getpid()); m > hi {
				hi = m
			}
			select {
			case <-stop:
				peak <- hi
				return
			case <-tick.C:
			}
		}
	}()
	t0 := time.Now()
	close(gate)
	wg.Wait()
	r.wall = time.Since(t0)
	close(stop)
	r.peakMem = <-peak
	return r, first
}

// descendantsAnon sums statm's resident − shared over every descendant of pid, KiB.
func descendantsAnon(pid int) int64 {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	parent := map[int]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		if len(f) > 1 {
			parent[p], _ = strconv.Atoi(f[1])
		}
	}
	isDesc := func(p int) bool {
		for i := 0; i < 64 && p > 1; i++ {
			p = parent[p]
			if p == pid {
				return true
			}
		}
		return false
	}
	page := int64(os.Getpagesize() / 1024)
	var sum int64
	for p := range parent {
		if !isDesc(p) {
			continue
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/statm")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) < 3 {
			continue
		}
		res, _ := strconv.ParseInt(f[1], 10, 64)
		shared, _ := strconv.ParseInt(f[2], 10, 64)
		sum += (res - shared) * page
	}
	return sum
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
	// The long-lived-supervisor prototype (bench/thin.go): its supervisor is a descendant of the
	// bench, so its memory counts in the peak; its CPU and page faults (and its reaped init
	// stages' and workers') are added to each storm's.
	dir, err := os.MkdirTemp("", "vatrun-bench-thin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	sup, err := startThinServer(dir + "/thin.sock")
	if err != nil {
		return nil, err
	}
	defer func() { sup.Process.Kill(); sup.Wait() }()
	modes = append(modes, mode{cmpThin, []string{o.thinBin, dir + "/thin.sock", "--", o.trueBin}, reportPipe})
	for _, m := range modes {
		res.names = append(res.names, m.name)
	}
	for i := -1; i < o.stormRounds; i++ { // one warm-up storm each
		for _, m := range modes {
			c0, f0, _ := supervisorCost(sup.Process.Pid)
			r, err := storm(o.stormN, m.argv, m.extra)
			if err != nil {
				return nil, fmt.Errorf("storm %s: %w", m.name, err)
			}
			if m.name == cmpThin {
				c1, f1, _ := supervisorCost(sup.Process.Pid)
				r.cpu += time.Duration((c1 - c0) * int64(time.Second) / clockTicks)
				r.faults += f1 - f0
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
