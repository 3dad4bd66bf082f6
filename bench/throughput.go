package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vatrun/vatrun/launcher"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// usage is what must come back to baseline after a burst of launches.
type usage struct {
	fds, goroutines, children, zombies, threads int
}

func (u usage) String() string {
	return fmt.Sprintf("fds %d, goroutines %d, child processes %d (zombies %d), OS threads %d",
		u.fds, u.goroutines, u.children, u.zombies, u.threads)
}

func measureUsage() usage {
	var u usage
	ents, _ := os.ReadDir("/proc/self/fd")
	u.fds = len(ents) - 1 // ReadDir's own fd
	u.goroutines = runtime.NumGoroutine()
	self := os.Getpid()
	for _, c := range childrenOf(self) {
		u.children++
		if _, st, ok := statOf(c); ok && st == 'Z' {
			u.zombies++
		}
	}
	st, _ := os.ReadFile("/proc/self/status")
	u.threads = int(statusField(string(st), "Threads:"))
	return u
}

type tputResult struct {
	perConc  map[int]float64 // launches reaped per second
	best     int
	before   usage
	after    usage
	leakFree bool
}

// benchThroughput launches and reaps the static worker for dur at each concurrency, through the
// Go API with the full sandbox minus cgroups, then checks that fds, goroutines and child
// processes are back to their baseline.
func benchThroughput(o *options, prof *seccompprofiles.Profile) (*tputResult, error) {
	res := &tputResult{perConc: map[int]float64{}}
	runtime.GC()
	res.before = measureUsage()
	for _, c := range o.concs {
		var n atomic.Int64
		var firstErr error
		var mu sync.Mutex
		deadline := time.Now().Add(o.tputDur)
		var wg sync.WaitGroup
		t0 := time.Now()
		for range c {
			wg.Go(func() {
				for time.Now().Before(deadline) {
					w, err := launcher.Launch(context.Background(), launcher.Spec{
						Profile: prof, Path: o.trueBin, Env: workerEnv,
						Cgroup: launcher.CgroupOptions{Disable: true},
					})
					if err == nil {
						if r := w.Wait(); r.Cause != "exited" {
							err = fmt.Errorf("%s", r.OneLine())
						}
					}
					if err != nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
						return
					}
					n.Add(1)
				}
			})
		}
		wg.Wait()
		if firstErr != nil {
			return nil, fmt.Errorf("concurrency %d: %w", c, firstErr)
		}
		res.perConc[c] = float64(n.Load()) / time.Since(t0).Seconds()
		if res.best == 0 || res.perConc[c] > res.perConc[res.best] {
			res.best = c
		}
	}
	// Goroutines that deliver a report finish just after Wait returns: give them a moment.
	for i := 0; i < 50; i++ {
		runtime.GC()
		res.after = measureUsage()
		if res.after.fds == res.before.fds && res.after.goroutines == res.before.goroutines && res.after.children == res.before.children {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.leakFree = res.after.fds == res.before.fds && res.after.goroutines == res.before.goroutines &&
		res.after.children == 0 && res.after.zombies == 0
	return res, nil
}
