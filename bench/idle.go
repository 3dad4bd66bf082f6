package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// procCPU is what /proc says a process has used so far: CPU time (utime+stime, clock ticks)
// and context switches (voluntary: it slept; involuntary: it was preempted). A process that
// wakes up while idle (timers, a runtime's background threads) shows switches here.
type procCPU struct {
	ticks, vol, invol int64
}

func readCPU(pid int) (procCPU, error) {
	var c procCPU
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return c, err
	}
	// Fields after the command (which may hold spaces) start after the last ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return c, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	c.ticks = ut + st
	// Switches of every thread of the process.
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return c, err
	}
	for _, t := range tasks {
		s, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(s), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			switch k {
			case "voluntary_ctxt_switches":
				c.vol += n
			case "nonvoluntary_ctxt_switches":
				c.invol += n
			}
		}
	}
	return c, nil
}

func (c procCPU) sub(o procCPU) procCPU {
	return procCPU{c.ticks - o.ticks, c.vol - o.vol, c.invol - o.invol}
}

// idleResult: CPU use of `vatrun run` supervisors and their init stages while their workers
// sleep, summed over n of them and a window of dur.
type idleResult struct {
	n          int
	dur        time.Duration
	sup, stage procCPU
	threads    int // OS threads of one supervisor
}

// watchIdle samples the supervisors and init stages of runs at the start and end of dur.
func watchIdle(runs []*idleRun, dur time.Duration) (*idleResult, error) {
	res := &idleResult{n: len(runs), dur: dur}
	before := make([][2]procCPU, len(runs))
	for i, r := range runs {
		var err error
		if before[i][0], err = readCPU(r.proc.Pid); err != nil {
			return nil, err
		}
		if before[i][1], err = readCPU(r.initPid); err != nil {
			return nil, err
		}
	}
	time.Sleep(dur)
	for i, r := range runs {
		a, err := readCPU(r.proc.Pid)
		if err != nil {
			return nil, err
		}
		b, err := readCPU(r.initPid)
		if err != nil {
			return nil, err
		}
		d, e := a.sub(before[i][0]), b.sub(before[i][1])
		res.sup = procCPU{res.sup.ticks + d.ticks, res.sup.vol + d.vol, res.sup.invol + d.invol}
		res.stage = procCPU{res.stage.ticks + e.ticks, res.stage.vol + e.vol, res.stage.invol + e.invol}
	}
	if len(runs) > 0 {
		if t, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", runs[0].proc.Pid)); err == nil {
			res.threads = len(t)
		}
	}
	return res, nil
}

// perSec is a count per process per second over the window.
func (r *idleResult) perSec(x int64) float64 {
	return float64(x) / float64(r.n) / r.dur.Seconds()
}
