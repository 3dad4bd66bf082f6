package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// dist is a set of latency samples.
type dist []time.Duration

func (d dist) sorted() dist {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

// quantile is the nearest-rank q-quantile (q in (0, 1]).
func (d dist) quantile(q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := d.sorted()
	i := int(q*float64(len(s))+0.999999) - 1
	i = max(0, min(i, len(s)-1))
	return s[i]
}

func (d dist) median() time.Duration { return d.quantile(0.5) }

// medianInt is the nearest-rank median of xs (0 when empty).
func medianInt(xs []int64) int64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)+1)/2-1]
}
func (d dist) p99() time.Duration { return d.quantile(0.99) }

// ms formats a duration in milliseconds with 3 significant-ish digits.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}

func mib(kb int64) string { return fmt.Sprintf("%.2f MiB", float64(kb)/1024) }

// procMem is a process's memory as /proc reports it, in KiB.
type procMem struct{ RSS, PSS, USS int64 }

func (m *procMem) add(o procMem) { m.RSS += o.RSS; m.PSS += o.PSS; m.USS += o.USS }

// readMem reads VmRSS from status and Pss/Private_* from smaps_rollup.
func readMem(pid int) (procMem, error) {
	var m procMem
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	m.RSS = statusField(string(st), "VmRSS:")
	roll, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return m, err
	}
	m.PSS = statusField(string(roll), "Pss:")
	m.USS = statusField(string(roll), "Private_Clean:") + statusField(string(roll), "Private_Dirty:")
	return m, nil
}

func statusField(text, key string) int64 {
	for line := range strings.SplitSeq(text, "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				return v
			}
		}
	}
	return 0
}

// childrenOf lists the pids whose parent is pid (this kernel has no /proc/PID/task/TID/children).
func childrenOf(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, ok := statOf(c); ok && ppid == pid {
			out = append(out, c)
		}
	}
	return out
}

// statOf returns a process's parent pid and state letter from /proc/PID/stat.
func statOf(pid int) (ppid int, state byte, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0, 0, false
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 2 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return ppid, f[0][0], err == nil
}

// pct is part as a percentage of whole ("23%").
func pct(part, whole time.Duration) string {
	if whole <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(part)/float64(whole))
}
