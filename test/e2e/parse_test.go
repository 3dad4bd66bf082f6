package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// runResult is one "=== VMRUN BEGIN/END" section of the VM's results channel.
type runResult struct {
	Name     string
	Output   []byte // between the markers
	Exit     int
	Seconds  float64
	TimedOut bool
	Ended    bool // the END marker was seen
	EndLine  string
}

// vmResults is everything init reported.
type vmResults struct {
	BootUptime string // guest uptime when init started
	HostRoot   string // "uptime=… seconds=…" of the 9p mount (HOSTROOT marker), if any
	Runs       map[string]*runResult
	Order      []string
	Done       bool
	Fatal      []string
}

const markerPrefix = "=== VMRUN "

// parseResults splits the results channel into runs. Lines are cut at '\n';
// a '\r' before it (a console in cooked mode) is dropped.
func parseResults(b []byte) *vmResults {
	res := &vmResults{Runs: map[string]*runResult{}}
	var cur *runResult
	for _, raw := range strings.SplitAfter(string(b), "\n") {
		nl := strings.HasSuffix(raw, "\n")
		text := strings.TrimSuffix(strings.TrimSuffix(raw, "\n"), "\r")
		// A program that ends without a newline leaves init's marker mid-line.
		i := strings.Index(text, markerPrefix)
		before := text
		if i >= 0 {
			before, text = text[:i], text[i:]
		}
		if cur != nil && (before != "" || (i < 0 && nl)) {
			cur.Output = append(cur.Output, before...)
			if i >= 0 || nl {
				cur.Output = append(cur.Output, '\n')
			}
		}
		if i < 0 {
			continue
		}
		f := strings.Fields(strings.TrimPrefix(text, markerPrefix))
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "BOOT":
			if len(f) > 1 {
				res.BootUptime = strings.TrimPrefix(f[1], "uptime=")
			}
		case "BEGIN":
			if len(f) < 2 {
				continue
			}
			cur = &runResult{Name: f[1]}
			res.Runs[cur.Name] = cur
			res.Order = append(res.Order, cur.Name)
		case "END":
			if len(f) < 2 || res.Runs[f[1]] == nil {
				continue
			}
			r := res.Runs[f[1]]
			r.Ended, r.EndLine = true, text
			for _, kv := range f[2:] {
				k, v, _ := strings.Cut(kv, "=")
				switch k {
				case "exit":
					r.Exit, _ = strconv.Atoi(v)
				case "seconds":
					r.Seconds, _ = strconv.ParseFloat(v, 64)
				case "timeout":
					r.TimedOut = true
				}
			}
			cur = nil
		case "HOSTROOT":
			res.HostRoot = strings.Join(f[1:], " ")
		case "DONE":
			res.Done = true
		case "FATAL":
			res.Fatal = append(res.Fatal, strings.TrimPrefix(text, markerPrefix+"FATAL "))
		}
	}
	return res
}

// testEvent is one line of `go tool test2json` output.
type testEvent struct {
	Action  string
	Test    string
	Elapsed float64
	Output  string
}

// vmTest is what a VM-side top-level test reported.
type vmTest struct {
	Name    string
	Action  string // pass, fail, skip; "" if it never finished
	Elapsed time.Duration
	Output  strings.Builder // its own and its subtests' output
}

// vmRun is a parsed run: its top-level tests in order, the rows they
// printed, and output that belongs to no test (package-level failures, panics).
type vmRun struct {
	Tests   []*vmTest
	byName  map[string]*vmTest
	Rows    []tableRow
	Loose   strings.Builder
	Package string // pass or fail, from the binary's last line
}

type tableRow struct {
	Run, Case, Expected, Observed string
	Seconds                       float64
	Test                          string
}

// decodeRun converts a run's -test.v=test2json output with `go tool test2json`.
func decodeRun(goBin, runName string, out []byte) (*vmRun, error) {
	cmd := exec.Command(goBin, "tool", "test2json", "-t")
	cmd.Stdin = bytes.NewReader(out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	js, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go tool test2json: %w: %s", err, stderr.String())
	}
	return decodeEvents(runName, js)
}

func decodeEvents(runName string, js []byte) (*vmRun, error) {
	r := &vmRun{byName: map[string]*vmTest{}}
	sc := bufio.NewScanner(bytes.NewReader(js))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var ev testEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("decode test2json event %q: %w", sc.Text(), err)
		}
		if ev.Test == "" {
			switch ev.Action {
			case "output":
				r.Loose.WriteString(ev.Output)
				r.collectRow(runName, "", ev.Output)
			case "pass", "fail":
				r.Package = ev.Action
			}
			continue
		}
		top, _, _ := strings.Cut(ev.Test, "/")
		tt := r.byName[top]
		if tt == nil {
			tt = &vmTest{Name: top}
			r.byName[top] = tt
			r.Tests = append(r.Tests, tt)
		}
		switch ev.Action {
		case "output":
			tt.Output.WriteString(ev.Output)
			r.collectRow(runName, top, ev.Output)
		case "pass", "fail", "skip":
			if ev.Test == top {
				tt.Action = ev.Action
				tt.Elapsed = time.Duration(ev.Elapsed * float64(time.Second))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read test2json output: %w", err)
	}
	return r, nil
}

// collectRow picks up "E2E-ROW case|expected|observed|seconds" lines.
func (r *vmRun) collectRow(runName, test, output string) {
	_, rest, ok := strings.Cut(output, "E2E-ROW ")
	if !ok {
		return
	}
	f := strings.Split(strings.TrimRight(rest, "\r\n"), "|")
	if len(f) != 4 {
		return
	}
	secs, _ := strconv.ParseFloat(strings.TrimSpace(f[3]), 64)
	r.Rows = append(r.Rows, tableRow{Run: runName, Case: f[0], Expected: f[1], Observed: f[2], Seconds: secs, Test: test})
}

// formatTable renders rows with the outcome of the test that printed each.
func formatTable(rows []tableRow, outcome func(run, test string) string) string {
	head := []string{"run", "case", "expected", "observed", "time", "result"}
	cells := [][]string{head}
	for _, r := range rows {
		cells = append(cells, []string{r.Run, r.Case, r.Expected, r.Observed, fmt.Sprintf("%.2fs", r.Seconds), outcome(r.Run, r.Test)})
	}
	width := make([]int, len(head))
	for _, row := range cells {
		for i, c := range row {
			width[i] = max(width[i], len(c))
		}
	}
	var b strings.Builder
	for n, row := range cells {
		for i, c := range row {
			if i > 0 {
				b.WriteString(" | ")
			}
			fmt.Fprintf(&b, "%-*s", width[i], c)
		}
		b.WriteString("\n")
		if n == 0 {
			for i, w := range width {
				if i > 0 {
					b.WriteString("-+-")
				}
				b.WriteString(strings.Repeat("-", w))
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}
