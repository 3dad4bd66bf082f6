package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vatrun/vatrun/cgroup"
	"github.com/vatrun/vatrun/hostfacts"
)

// TestCheckTableStaysNarrow: long texts (a probe error, refusals with fixes, a cgroup problem,
// a fact's why) never widen check's table: cells are capped and the texts are wrapped below it.
// (Issue 23: one cell held the whole probe error and the table was ~300 columns.)
func TestCheckTableStaysNarrow(t *testing.T) {
	long := strings.Repeat("a long explanation of what went wrong ", 12)
	r := checkResult{
		Profile: "xsnap", ProfileDigest: "sha256:" + strings.Repeat("0", 64), Kernel: "6.1.0",
		User:   "uid 1000",
		Cgroup: cgroup.Host{Mode: cgroup.ModeHybrid, Problem: long, Fix: long},
		Where: hostfacts.Where{InContainer: true, Runtime: hostfacts.RuntimeDocker, Seccomp: 2, SeccompFilters: 1,
			MaskedProc: []string{"/proc/kcore"}},
		SandboxProbe: probeResult{Error: long, Namespaces: "pid net ipc uts mount user"},
		Refusals:     []hostfacts.Refusal{{Cause: hostfacts.CauseSeccomp, Problem: long, Fixes: []hostfacts.Fix{{Runtime: "docker", How: long}}}},
		Launch:       launchPlan{Refused: long, UserNS: true},
		Problems:     []string{long, long},
		HostFacts:    hostfacts.Facts{{Name: "kernel.release", Value: long, Why: long, OutcomeRelevant: true}},
	}
	var b bytes.Buffer
	printCheck(&b, r)
	for _, line := range strings.Split(b.String(), "\n") {
		if n := len([]rune(line)); n > 110 {
			t.Errorf("a line of %d columns: %q", n, line)
		}
	}
	for _, want := range []string{"refused: a long explanation", "fix (docker): a long", "verdict: profile xsnap CANNOT run here"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
}
