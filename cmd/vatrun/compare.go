package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/vatrun/vatrun/hostfacts"
)

// Exit codes of `vatrun check --compare`.
const (
	compareSame     = 0 // no fact that can change a worker's outcome differs
	compareRelevant = 1 // at least one outcome-relevant fact (or the profile or worker digest) differs
)

// factsFile is the part of a `vatrun check --json` output that --compare reads.
type factsFile struct {
	ProfileDigest   string           `json:"profileDigest"`
	WorkerDigest    string           `json:"workerDigest"`
	HostFactsDigest string           `json:"hostFactsDigest"`
	HostFacts       []hostfacts.Fact `json:"hostFacts"`
}

// factDiff is one fact whose value differs between the two files.
type factDiff struct {
	Name            string `json:"name"`
	A               string `json:"a"`
	B               string `json:"b"`
	OutcomeRelevant bool   `json:"outcomeRelevant"`
	Why             string `json:"why,omitempty"`
}

type compareResult struct {
	A         string     `json:"a"`
	B         string     `json:"b"`
	Differ    []factDiff `json:"differ"`
	Relevant  int        `json:"relevant"`
	SameFacts int        `json:"same"`
}

const absent = "(absent)"

func readFactsFile(path string) (factsFile, error) {
	var f factsFile
	data, err := os.ReadFile(path)
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return f, fmt.Errorf("%s: not the JSON of `vatrun check --json`: %v", path, err)
	}
	if len(f.HostFacts) == 0 {
		return f, fmt.Errorf("%s: no hostFacts; write it with `vatrun check --json > FILE` (vatrun with host facts)", path)
	}
	return f, nil
}

// compareFacts lists what differs between a and b: the profile and worker digests when both
// files have them, and every host fact. A fact is outcome-relevant when either file, or this
// vatrun, says so.
func compareFacts(a, b factsFile) compareResult {
	var res compareResult
	digest := func(name, x, y, why string) {
		switch {
		case x == y:
			if x != "" {
				res.SameFacts++
			}
		case x == "" || y == "":
			res.Differ = append(res.Differ, factDiff{name, orDefault(x, absent), orDefault(y, absent), false, "only one file has it (vatrun check --worker PATH adds the worker digest): not compared"})
		default:
			res.Differ = append(res.Differ, factDiff{name, x, y, true, why})
		}
	}
	digest("profileDigest", a.ProfileDigest, b.ProfileDigest, "a different sandbox: limits, filter, namespaces or exit-code meanings")
	digest("workerDigest", a.WorkerDigest, b.WorkerDigest, "a different worker: executable, interpreter or shared libraries")
	idx := func(fs []hostfacts.Fact) map[string]hostfacts.Fact {
		m := map[string]hostfacts.Fact{}
		for _, f := range fs {
			m[f.Name] = f
		}
		return m
	}
	ma, mb := idx(a.HostFacts), idx(b.HostFacts)
	names := hostfacts.Names()
	var extra []string
	for _, m := range []map[string]hostfacts.Fact{ma, mb} {
		for n := range m {
			if !slices.Contains(names, n) && !slices.Contains(extra, n) {
				extra = append(extra, n)
			}
		}
	}
	sort.Strings(extra)
	for _, n := range append(names, extra...) {
		fa, okA := ma[n]
		fb, okB := mb[n]
		if !okA && !okB {
			continue
		}
		va, vb := fa.Value, fb.Value
		if !okA {
			va = absent
		}
		if !okB {
			vb = absent
		}
		if okA && okB && va == vb {
			res.SameFacts++
			continue
		}
		why := orDefault(fa.Why, fb.Why)
		rel := fa.OutcomeRelevant || fb.OutcomeRelevant || hostfacts.Relevant(n)
		res.Differ = append(res.Differ, factDiff{n, va, vb, rel, why})
	}
	for _, d := range res.Differ {
		if d.OutcomeRelevant {
			res.Relevant++
		}
	}
	return res
}

// compareMain is `vatrun check --compare A.json B.json`: 0 when no outcome-relevant fact differs,
// 1 when one does, 125 when a file cannot be read.
func compareMain(files []string, asJSON bool, stdout, stderr io.Writer) int {
	if len(files) != 2 {
		fmt.Fprintln(stderr, "vatrun check --compare: want two files: vatrun check --compare A.json B.json (each from vatrun check --json)")
		return exitUsage
	}
	var ff [2]factsFile
	for i, p := range files {
		f, err := readFactsFile(p)
		if err != nil {
			fmt.Fprintf(stderr, "vatrun check --compare: %v\n", err)
			return exitUsage
		}
		ff[i] = f
	}
	res := compareFacts(ff[0], ff[1])
	res.A, res.B = files[0], files[1]
	if asJSON {
		out, _ := json.MarshalIndent(res, "", "  ")
		fmt.Fprintln(stdout, string(out))
	} else {
		printCompare(stdout, res)
	}
	if res.Relevant > 0 {
		return compareRelevant
	}
	return compareSame
}

func printCompare(w io.Writer, r compareResult) {
	fmt.Fprintf(w, "vatrun check --compare\n  A: %s\n  B: %s\n\n", r.A, r.B)
	if len(r.Differ) == 0 {
		fmt.Fprintf(w, "the two hosts agree on all %d facts and digests compared\n", r.SameFacts)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "fact\tA\tB\tcan change the outcome\t")
	for _, d := range r.Differ {
		rel := "no"
		if d.OutcomeRelevant {
			rel = "YES"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Name, clip(d.A), clip(d.B), rel, d.Why)
	}
	tw.Flush()
	fmt.Fprintln(w)
	if r.Relevant > 0 {
		fmt.Fprintf(w, "verdict: %d of %d differences can change a worker's outcome: these validators may disagree (exit %d)\n", r.Relevant, len(r.Differ), compareRelevant)
		return
	}
	fmt.Fprintf(w, "verdict: %d differences, none can change a worker's outcome\n", len(r.Differ))
}

func clip(s string) string {
	if len(s) > 48 && !strings.HasPrefix(s, "sha256:") {
		return s[:45] + "..."
	}
	return s
}
