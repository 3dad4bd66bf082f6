package report

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// readmeTable returns the rows of the first table after heading in the markdown text md, each
// split into its cells.
func readmeTable(md, heading string) ([][]string, error) {
	_, rest, ok := strings.Cut(md, "\n"+heading+"\n")
	if !ok {
		return nil, fmt.Errorf("no %q heading", heading)
	}
	var rows [][]string
	for _, line := range strings.Split(rest, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			if len(rows) > 0 {
				break // the end of the table
			}
			continue // text before it
		}
		rows = append(rows, tableCells(line))
	}
	if len(rows) < 2 {
		return nil, fmt.Errorf("no table under %q", heading)
	}
	return rows[2:], nil // past the header and the |---| line
}

// tableCells splits "| a | b \| c |" into ["a", "b | c"].
func tableCells(line string) []string {
	line = strings.TrimSuffix(strings.TrimPrefix(line, "|"), "|")
	var cells []string
	var cell strings.Builder
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			cell.WriteByte('|')
			i++
		case line[i] == '|':
			cells = append(cells, strings.TrimSpace(cell.String()))
			cell.Reset()
		default:
			cell.WriteByte(line[i])
		}
	}
	return append(cells, strings.TrimSpace(cell.String()))
}

// readmeRow is how the README writes rule r.
func readmeRow(r rule) string {
	return fmt.Sprintf("| %s | `%s` | %s |", strings.ReplaceAll(r.doc, "|", `\|`), r.cause, r.class)
}

// classificationDoc holds the classification table (the README links to it).
const classificationDoc = "../docs/report.md"

// TestREADMEClassification: the docs' (docs/report.md) classification table is the rules table, row for row and
// in order (evidence, cause, class), so a rule cannot be added, removed, reordered or reworded
// without the README saying so, nor the README without the code.
func TestREADMEClassification(t *testing.T) {
	md, err := os.ReadFile(classificationDoc)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := readmeTable(string(md), "## Classification")
	if err != nil {
		t.Fatalf("%s: %v", classificationDoc, err)
	}
	key := func(cells []string) string { return strings.Join(cells, " | ") }
	want, wantRows := make([]string, len(rules)), make([]string, len(rules))
	documented := map[string]bool{}
	for _, row := range rows {
		documented[key(row)] = true
	}
	coded := map[string]bool{}
	for i, r := range rules {
		want[i] = key([]string{r.doc, "`" + string(r.cause) + "`", string(r.class)})
		wantRows[i] = readmeRow(r)
		coded[want[i]] = true
		if !documented[want[i]] {
			t.Errorf("rule %d %s is not in the README's table (or reads differently there); its row is\n%s",
				i+1, r.name, readmeRow(r))
		}
	}
	got := make([]string, len(rows))
	for i, row := range rows {
		got[i] = key(row)
		if !coded[got[i]] {
			t.Errorf("README classification row %d %q is no rule of classify.go", i+1, got[i])
		}
	}
	if !t.Failed() && strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the README's rows are in another order than the rules; it should read\n%s",
			strings.Join(wantRows, "\n"))
	}
}

// TestRulesCoverCauses: every cause Decode accepts comes out of some rule, and every rule gives a
// known cause and class, so no cause exists only in the schema or only in the table.
func TestRulesCoverCauses(t *testing.T) {
	produced := map[Cause]bool{}
	names := map[string]bool{}
	for _, r := range rules {
		produced[r.cause] = true
		if !r.cause.Valid() || !r.class.Valid() {
			t.Errorf("rule %s gives %s/%s, unknown to Decode", r.name, r.cause, r.class)
		}
		if names[r.name] {
			t.Errorf("two rules named %s", r.name)
		}
		names[r.name] = true
	}
	for c := range knownCauses {
		if !produced[c] {
			t.Errorf("cause %s has no rule", c)
		}
	}
}

// TestTableParser: the README parser itself, on a table with an escaped pipe and text around it.
func TestTableParser(t *testing.T) {
	md := "# x\n### Classification\n\nintro\n\n| evidence | cause | class |\n|---|---|---|\n" +
		"| a \\| b | `c` | d |\n|e|`f`|g|\n\nRows are …\n| not | this | one |\n"
	rows, err := readmeTable(md, "### Classification")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"a | b", "`c`", "d"}, {"e", "`f`", "g"}}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Errorf("rows %q, want %q", rows, want)
	}
	if _, err := readmeTable(md, "### Profiles"); err == nil {
		t.Error("a missing heading parsed")
	}
}

// TestREADMEReportFields: every member of the report's JSON schema is in the schema table of
// docs/report.md (the README links to it), and the table names no member the schema lacks.
func TestREADMEReportFields(t *testing.T) {
	md, err := os.ReadFile(classificationDoc)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := readmeTable("\n"+string(md), "# The death report")
	if err != nil {
		t.Fatalf("%s: %v", classificationDoc, err)
	}
	documented := map[string]bool{}
	for _, row := range rows {
		for _, part := range strings.Split(row[0], "`") {
			if name := strings.TrimSpace(part); name != "" && name != "," {
				documented[name] = true
			}
		}
	}
	for name := range reportFields {
		if !documented[name] {
			t.Errorf("report member %q is not in docs/report.md's schema table", name)
		}
	}
	for name := range documented {
		if !reportFields[name] {
			t.Errorf("docs/report.md's schema table names %q, which is no report member", name)
		}
	}
}
