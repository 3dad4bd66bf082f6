package policy

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

// The README's policy table is generated from the code's table (through Lookup, so row order
// and phases count) and this test fails when the README is out of date; -update rewrites it:
//
//	go test ./kernel/policy -run TestREADMETable -update
var update = flag.Bool("update", false, "rewrite the README's policy table from the code")

const (
	readmePath  = "../../docs/kernel.md" // the README links to it
	tableBegin  = "<!-- policy table: generated from kernel/policy's table; go test ./kernel/policy -run TestREADMETable -update -->\n"
	tableEnd    = "<!-- end of policy table -->\n"
	regimeLabel = "| death | consensus mode | solo mode | solo mode, `--solo-policy halt` |\n|---|---|---|---|\n"
)

var deathLabel = map[Death]string{
	Stopped:            "the kernel stopped it",
	Deterministic:      "metering fault (`deterministic`)",
	Clean:              "clean exit nobody asked for (`clean`)",
	External:           "signals, stray kill, host OOM (`external`)",
	ResourceExhaustion: "`resource-exhaustion`",
	SandboxViolation:   "`sandbox-violation`",
	Unknown:            "`unknown`, or a class the policy does not know",
	LauncherError:      "`launcher-error`",
}

func kindText(k ActionKind) string {
	switch k {
	case Continue:
		return "continue"
	case TerminateVat:
		return "terminate the vat (committed, with its reason)"
	case HaltKernel:
		return "**halt without committing**"
	}
	return string(k)
}

func rowText(r Row) string {
	then := map[ActionKind]string{TerminateVat: "terminate the vat", HaltKernel: "halt"}[r.Exhausted]
	switch r.Budget {
	case FaultRetries:
		return fmt.Sprintf("retry `--retries` times (default %d) per vat per process after a randomized backoff, then %s", DefaultRetries, then)
	case ExternalRestarts:
		return fmt.Sprintf("restart and replay after a randomized backoff, never terminate; %s past `--max-external-restarts` (default %d) per vat per process", then, DefaultMaxExternalRestarts)
	}
	return kindText(r.Kind)
}

// readmeTable renders the table: a row per death, a column per regime, a cell naming the
// phases when they differ.
func readmeTable() string {
	var b strings.Builder
	b.WriteString(regimeLabel)
	for _, d := range Deaths {
		fmt.Fprintf(&b, "| %s |", deathLabel[d])
		for _, regime := range Regimes {
			var texts []string
			phases := map[string][]string{}
			for _, p := range []Phase{InDelivery, Startup, Idle} {
				row, ok := Lookup(regime, d, p)
				txt := "(no row)"
				if ok {
					txt = rowText(row)
				}
				if _, seen := phases[txt]; !seen {
					texts = append(texts, txt)
				}
				phases[txt] = append(phases[txt], string(p))
			}
			if len(texts) == 1 {
				fmt.Fprintf(&b, " %s |", texts[0])
				continue
			}
			var parts []string
			for _, txt := range texts {
				parts = append(parts, fmt.Sprintf("%s (%s)", txt, strings.Join(phases[txt], ", ")))
			}
			fmt.Fprintf(&b, " %s |", strings.Join(parts, "; "))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestREADMETable(t *testing.T) {
	data, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	begin := bytes.Index(data, []byte(tableBegin))
	end := bytes.Index(data, []byte(tableEnd))
	if begin < 0 || end < begin {
		t.Fatalf("%s: no policy table between %q and %q", readmePath, tableBegin, tableEnd)
	}
	have := string(data[begin+len(tableBegin) : end])
	want := readmeTable()
	if have == want {
		return
	}
	if *update {
		out := append(append(append([]byte(nil), data[:begin+len(tableBegin)]...), want...), data[end:]...)
		if err := os.WriteFile(readmePath, out, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the policy table in %s", readmePath)
		return
	}
	t.Errorf("the README's policy table differs from the code's; run go test ./kernel/policy -run TestREADMETable -update\nREADME:\n%s\ncode:\n%s", have, want)
}

// TestREADMETableShowsEveryRow: the rendering drops nothing (each row's reaction appears).
func TestREADMETableShowsEveryRow(t *testing.T) {
	got := readmeTable()
	for _, r := range table {
		if !strings.Contains(got, rowText(r)) {
			t.Errorf("row %+v: %q not in the rendered table", r, rowText(r))
		}
	}
	if strings.Contains(got, "(no row)") {
		t.Errorf("a cell has no row:\n%s", got)
	}
}
