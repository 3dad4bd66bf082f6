package kernel

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/vatrun/vatrun/report"
)

func rep(cause report.Cause, class report.Class) report.Report {
	r := report.Report{Cause: cause, Class: class, KilledBy: report.KilledByNobody}
	if cause == report.CauseStopped {
		r.KilledBy = report.KilledByVatrun
	}
	return r
}

var classes = []struct {
	cause report.Cause
	class report.Class
}{
	{report.CauseExited, report.ClassClean},
	{report.CauseMeteringFault, report.ClassDeterministic},
	{report.CauseOOMLimit, report.ClassResourceExhaustion},
	{report.CauseCPULimit, report.ClassResourceExhaustion},
	{report.CauseSegv, report.ClassResourceExhaustion},
	{report.CauseSandboxViolation, report.ClassSandboxViolation},
	{report.CauseExternalSignal, report.ClassExternal},
	{report.CauseOOMHost, report.ClassExternal},
	{report.CauseKilled, report.ClassExternal},
	{report.CauseExitCode, report.ClassUnknown},
	{report.CauseSetupFailed, report.ClassLauncherError},
	{report.CauseLauncherDied, report.ClassLauncherError},
	{report.CauseStopped, report.ClassExternal},
}

// TestDecideTable: every class × mode × phase, with a fresh history.
func TestDecideTable(t *testing.T) {
	want := map[Mode]map[report.Class]ActionKind{
		Consensus: {
			report.ClassClean: HaltKernel, report.ClassDeterministic: TerminateVat,
			report.ClassResourceExhaustion: HaltKernel, report.ClassSandboxViolation: HaltKernel,
			report.ClassExternal: HaltKernel, report.ClassUnknown: HaltKernel, report.ClassLauncherError: HaltKernel,
		},
		Solo: {
			report.ClassClean: RestartWorker, report.ClassDeterministic: TerminateVat,
			report.ClassResourceExhaustion: RestartWorker, report.ClassSandboxViolation: RestartWorker,
			report.ClassExternal: RestartWorker, report.ClassUnknown: RestartWorker, report.ClassLauncherError: RestartWorker,
		},
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, mode := range []Mode{Consensus, Solo} {
		for _, phase := range []string{"startup", "in-delivery", "idle"} {
			for _, c := range classes {
				got := Decide(PolicyConfig{Mode: mode}, rep(c.cause, c.class), phase, History{}, rnd)
				w := want[mode][c.class]
				if c.cause == report.CauseStopped {
					w = Continue
				}
				if got.Kind != w {
					t.Errorf("%s/%s/%s: %v, want %s", mode, phase, c.cause, got, w)
				}
				if got.Reason == "" {
					t.Errorf("%s/%s/%s: no reason", mode, phase, c.cause)
				}
			}
		}
	}
}

func TestSoloRetriesStopThenTerminate(t *testing.T) {
	cfg := PolicyConfig{Mode: Solo, Retries: 2, Backoff: Backoff{Base: time.Second, Factor: 2, Cap: time.Minute}}
	r := rep(report.CauseOOMLimit, report.ClassResourceExhaustion)
	var h History
	var kinds []ActionKind
	var delays []time.Duration
	for range 4 {
		a := Decide(cfg, r, "in-delivery", h, nil)
		kinds = append(kinds, a.Kind)
		delays = append(delays, a.After)
		h = h.Note(r, a)
	}
	want := []ActionKind{RestartWorker, RestartWorker, TerminateVat, TerminateVat}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("decisions %v, want %v", kinds, want)
		}
	}
	if delays[0] != time.Second || delays[1] != 2*time.Second {
		t.Fatalf("delays %v, want 1s then 2s without jitter", delays[:2])
	}
}

func TestSoloHaltOption(t *testing.T) {
	a := Decide(PolicyConfig{Mode: Solo, OnFault: SoloHalt}, rep(report.CauseSegv, report.ClassResourceExhaustion), "idle", History{}, nil)
	if a.Kind != HaltKernel {
		t.Fatalf("%v, want halt", a)
	}
	// External deaths still restart under the halt option: they are never the vat's fault.
	a = Decide(PolicyConfig{Mode: Solo, OnFault: SoloHalt}, rep(report.CauseKilled, report.ClassExternal), "idle", History{}, nil)
	if a.Kind != RestartWorker {
		t.Fatalf("%v, want restart", a)
	}
}

func TestExternalNeverTerminates(t *testing.T) {
	cfg := PolicyConfig{Mode: Solo, MaxExternalRestarts: 3, Backoff: Backoff{Base: time.Millisecond, Factor: 2, Cap: time.Second}}
	r := rep(report.CauseExternalSignal, report.ClassExternal)
	var h History
	for i := range 10 {
		a := Decide(cfg, r, "idle", h, nil)
		if a.Kind == TerminateVat {
			t.Fatalf("external death %d terminated the vat", i)
		}
		if i >= 3 && a.Kind != HaltKernel {
			t.Fatalf("restart %d past the bound: %v, want halt", i, a)
		}
		h = h.Note(r, a)
	}
	if h.Faults != 0 {
		t.Fatalf("external deaths consumed the fault budget: %+v", h)
	}
}

func TestBackoffDistributionAndCap(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Factor: 2, Cap: time.Second, Jitter: 0.5}
	rnd := rand.New(rand.NewPCG(42, 7))
	for n := range 8 {
		d := 100 * time.Millisecond << n
		if d > time.Second {
			d = time.Second
		}
		lo, hi := d/2, d
		var sum time.Duration
		const samples = 2000
		minSeen, maxSeen := time.Hour, time.Duration(0)
		for range samples {
			x := b.Delay(n, rnd)
			if x < lo || x > hi {
				t.Fatalf("attempt %d: delay %v outside [%v, %v]", n, x, lo, hi)
			}
			sum += x
			minSeen, maxSeen = min(minSeen, x), max(maxSeen, x)
		}
		// Uniform on [lo, hi]: the mean is near the middle and the samples spread over the range.
		mean := sum / samples
		mid := (lo + hi) / 2
		if diff := mean - mid; diff > d/20 || diff < -d/20 {
			t.Errorf("attempt %d: mean %v, want about %v", n, mean, mid)
		}
		if minSeen > lo+d/20 || maxSeen < hi-d/20 {
			t.Errorf("attempt %d: samples span [%v, %v], want most of [%v, %v]", n, minSeen, maxSeen, lo, hi)
		}
	}
	// Same seed, same delays.
	a, c := rand.New(rand.NewPCG(9, 9)), rand.New(rand.NewPCG(9, 9))
	for n := range 5 {
		if x, y := b.Delay(n, a), b.Delay(n, c); x != y {
			t.Fatalf("seeded delays differ: %v vs %v", x, y)
		}
	}
}
