package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// xsnapResult: the real xsnap worker (npm @agoric/xsnap 0.15.0, built by test/swingset/setup.sh)
// started, asked one trivial evaluate and closed through xsnap's own JS API, plain spawn vs
// js/'s makeVatrunSpawn; and a SwingSet kernel's boot and deliveries with heap snapshots (the
// baseline test of test/swingset), plain vs vatrun.
type xsnapResult struct {
	skipped       string
	plain, vatrun dist
	reports       int
	// kernel: per mode ("plain", "xsnap"), the baseline test's timings, one map per run.
	kernel        map[string][]map[string]float64
	kernelWorkers map[string]int
	kernelRuns    int
	kernelSkipped string
	deliveries    [2]int
}

func swingsetDir(o *options) string { return filepath.Join(o.repo, "test", "swingset") }

func benchXsnap(o *options) (*xsnapResult, error) {
	res := &xsnapResult{}
	dir := swingsetDir(o)
	node, err := exec.LookPath("node")
	if err != nil {
		res.skipped = "node is not installed (apt-get install nodejs)"
		return res, nil
	}
	worker := filepath.Join(dir, "node_modules/@agoric/xsnap/xsnap-native/xsnap/build/bin/lin/release/xsnap-worker")
	if _, err := os.Stat(worker); err != nil {
		res.skipped = "xsnap-worker is not built: run test/swingset/setup.sh (scripts/bench.sh does)"
		return res, nil
	}
	cmd := exec.Command(node, filepath.Join(o.repo, "bench", "xsnap.mjs"), dir, o.vatrun, strconv.Itoa(o.xsnapRuns))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("bench/xsnap.mjs: %w", err)
	}
	var got struct {
		Plain, Vatrun []float64
		Reports       int
	}
	if err := json.Unmarshal(out, &got); err != nil {
		return nil, fmt.Errorf("bench/xsnap.mjs output %q: %w", out, err)
	}
	for _, v := range got.Plain {
		res.plain = append(res.plain, time.Duration(v*float64(time.Millisecond)))
	}
	for _, v := range got.Vatrun {
		res.vatrun = append(res.vatrun, time.Duration(v*float64(time.Millisecond)))
	}
	res.reports = got.Reports
	if res.reports != len(res.vatrun)+3 {
		return nil, fmt.Errorf("bench/xsnap.mjs: %d vatrun reports for %d runs", res.reports, len(res.vatrun)+3)
	}
	if o.kernelRuns > 0 {
		logf("SwingSet kernel: %d runs of the baseline scenario (plain, vatrun xsnap)", o.kernelRuns)
		if err := benchKernel(o, node, res); err != nil {
			return nil, err
		}
	} else {
		res.kernelSkipped = "-kernel-runs 0"
	}
	return res, nil
}

var timingsRe = regexp.MustCompile(`^# (\S+)\s+boot (\d+) ms, (\d+) deliveries (\d+) ms, phase 1 (\d+) ms; restart (\d+) ms, (\d+) deliveries (\d+) ms, phase 2 (\d+) ms; (\d+) workers`)

// benchKernel runs test/swingset's baseline scenario (which asserts that plain and vatrun give
// the same kernel state) and collects the timings it prints.
func benchKernel(o *options, node string, res *xsnapResult) error {
	res.kernel = map[string][]map[string]float64{}
	res.kernelWorkers = map[string]int{}
	// One warm-up run first (not counted): the first run of the scenario warms the bundle cache,
	// Node's compile cache and the page cache, and the test always runs plain spawn first.
	for i := -1; i < o.kernelRuns; i++ {
		cmd := exec.Command(node, "--test", "--test-concurrency=1", "baseline.test.mjs")
		cmd.Dir = swingsetDir(o)
		cmd.Env = append(os.Environ(), "VATRUN_BIN="+o.vatrun, "VATRUN_SWINGSET_PROFILES=xsnap", "VATRUN_SWINGSET_ONLY=baseline")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("test/swingset baseline.test.mjs: %w\n%s", err, tail(string(out), 40))
		}
		n := 0
		if i < 0 {
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			m := timingsRe.FindStringSubmatch(strings.TrimSpace(line))
			if m == nil {
				continue
			}
			f := func(i int) float64 { x, _ := strconv.ParseFloat(m[i], 64); return x }
			res.kernel[m[1]] = append(res.kernel[m[1]], map[string]float64{
				"boot": f(2), "deliveries1": f(4), "phase1": f(5), "restart": f(6), "deliveries2": f(8), "phase2": f(9),
			})
			res.deliveries = [2]int{int(f(3)), int(f(7))}
			res.kernelWorkers[m[1]] = int(f(10))
			n++
		}
		if n != 2 {
			return fmt.Errorf("test/swingset baseline.test.mjs: %d timing lines, want 2 (plain, xsnap)\n%s", n, tail(string(out), 40))
		}
	}
	res.kernelRuns = o.kernelRuns
	return nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// kernelMed is the median of one timing over the runs of mode.
func (x *xsnapResult) kernelMed(mode, key string) float64 {
	var d dist
	for _, m := range x.kernel[mode] {
		d = append(d, time.Duration(m[key]*float64(time.Millisecond)))
	}
	return float64(d.median()) / float64(time.Millisecond)
}
