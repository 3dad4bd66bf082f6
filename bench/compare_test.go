package main

import (
	"fmt"
	"strings"
	"testing"
)

// The comparison's ratios are medians over bwrap's medians, and skipped launchers say why.
func TestCompareSectionRatios(t *testing.T) {
	ms := func(xs ...int64) []int64 {
		for i := range xs {
			xs[i] *= 1e6
		}
		return xs
	}
	c := &compareResult{Runs: 3, Warm: 1, Rows: []*cmpRow{
		{Name: cmpBwrap, Wall: ms(4, 5, 6), CPU: []int64{1000, 2000, 3000}, Faults: []int64{100, 100, 100}, MaxRSSKiB: []int64{2048, 2048, 2048}},
		{Name: cmpNsjail, Skipped: "not measured: no package"},
		{Name: cmpVatrun, Wall: ms(10, 11, 9), CPU: []int64{9000, 8000, 7000}, Faults: []int64{600, 650, 700}, MaxRSSKiB: []int64{6144, 6144, 6144}},
	}}
	r := &results{cmp: c, machine: machine{nproc: 2, model: "test cpu"}}
	var b strings.Builder
	r.compareSection(func(f string, a ...any) { b.WriteString(fmt.Sprintf(f, a...)) })
	out := b.String()
	for _, want := range []string{
		"| bwrap | 5.00 ms | 6.00 ms | 1.00× | 2.00 ms | 1.00× | 100 | 1.00× | 2.00 MiB | 1.00× |",
		"| vatrun run | 10.0 ms | 11.0 ms | 2.00× | 8.00 ms | 4.00× | 650 | 6.50× | 6.00 MiB | 3.00× |",
		"| nsjail | not measured: no package |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("section lacks %q:\n%s", want, out)
		}
	}
}

func TestQuantileInt(t *testing.T) {
	xs := []int64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	if got := quantileInt(xs, 0.5); got != 5 {
		t.Errorf("median = %d, want 5", got)
	}
	if got := quantileInt(xs, 0.9); got != 9 {
		t.Errorf("p90 = %d, want 9", got)
	}
	if got := quantileInt(nil, 0.5); got != 0 {
		t.Errorf("empty median = %d, want 0", got)
	}
}
