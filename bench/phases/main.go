// Command vatrun-bench-phases times, in a fresh process, the first (cold) call of each step
// `vatrun run` takes before it clones the init stage: built-in profile load (JSON parse and
// validation), canonical digest, seccomp compile with libseccomp, and the worker root (ELF walk
// of the worker). It prints one line of microseconds per step and the process's page faults
// (minor, from getrusage) taken in each step. scripts/bench.sh runs it many times; the bench
// reports the medians.
package main

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/sandbox"
	"github.com/vatrun/vatrun/seccompprofiles"
	"github.com/vatrun/vatrun/seccompprofiles/filter"
)

func minflt() int64 {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return ru.Minflt
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: vatrun-bench-phases PROFILE WORKER")
		os.Exit(2)
	}
	type step struct {
		name string
		f    func() error
	}
	var p *seccompprofiles.Profile
	steps := []step{
		{"load", func() (err error) { p, err = seccompprofiles.Load(os.Args[1]); return }},
		{"digest", func() error { p.Digest(); return nil }},
		{"compile", func() error { _, _, err := filter.Compile(p); return err }},
		{"root", func() error { _, err := sandbox.WorkerRoot(os.Args[2]); return err }},
	}
	startFlt := minflt()
	fmt.Printf("init_faults=%d", startFlt)
	for _, s := range steps {
		f0, t0 := minflt(), time.Now()
		if err := s.f(); err != nil {
			fmt.Fprintln(os.Stderr, s.name+":", err)
			os.Exit(1)
		}
		fmt.Printf(" %s=%d,%d", s.name, time.Since(t0).Microseconds(), minflt()-f0)
	}
	fmt.Println()
}
