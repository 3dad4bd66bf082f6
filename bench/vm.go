package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// vmRow is one launcher measured inside the e2e VM (test/e2e/vm/bench_test.go), where cgroup v2
// is real: the host cannot give vatrun its cgroup leaves.
type vmRow struct {
	name, cmd   string
	median, p99 time.Duration
	samples     int
}

type vmResult struct {
	rows []vmRow
	// skipped says why there are no VM figures.
	skipped string
}

// readVMResults parses the E2E-BENCH lines of a VM run's results.log:
//
//	E2E-BENCH name|median ns|p99 ns|samples|command
func readVMResults(path string) (*vmResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("VM results: %w", err)
	}
	defer f.Close()
	res := &vmResult{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "E2E-BENCH ")
		if !ok {
			continue
		}
		f := strings.SplitN(line, "|", 5)
		if len(f) != 5 {
			return nil, fmt.Errorf("VM results %s: bad line %q", path, line)
		}
		med, err1 := strconv.ParseInt(f[1], 10, 64)
		p99, err2 := strconv.ParseInt(f[2], 10, 64)
		n, err3 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("VM results %s: bad numbers in %q", path, line)
		}
		res.rows = append(res.rows, vmRow{name: f[0], median: time.Duration(med), p99: time.Duration(p99), samples: n, cmd: f[4]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("VM results %s: %w", path, err)
	}
	if len(res.rows) == 0 {
		return nil, fmt.Errorf("VM results %s: no E2E-BENCH lines (did TestBenchSpawn run?)", path)
	}
	return res, nil
}

func (r *vmResult) row(name string) *vmRow {
	for i := range r.rows {
		if r.rows[i].name == name {
			return &r.rows[i]
		}
	}
	return nil
}
