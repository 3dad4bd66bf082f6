package policy

import (
	"math/rand/v2"
	"strings"
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

// classes are one report per cause the classifier produces, with its class.
var classes = []struct {
	cause report.Cause
	class report.Class
}{
	{report.CauseExited, report.ClassClean},
	{report.CauseMeteringFault, report.ClassDeterministic},
	{report.CauseOOMLimit, report.ClassResourceExhaustion},
	{report.CauseCPULimit, report.ClassResourceExhaustion},
	{report.CauseSegv, report.ClassResourceExhaustion},
	{report.CauseAbort, report.ClassResourceExhaustion},
	{report.CausePidsLimit, report.ClassResourceExhaustion},
	{report.CauseSandboxViolation, report.ClassSandboxViolation},
	{report.CauseExternalSignal, report.ClassExternal},
	{report.CauseOOMHost, report.ClassExternal},
	{report.CauseKilled, report.ClassExternal},
	{report.CauseExitCode, report.ClassUnknown},
	{report.CauseSetupFailed, report.ClassLauncherError},
	{report.CauseLauncherDied, report.ClassLauncherError},
	{report.CauseStopped, report.ClassExternal},
}

// TestDecideFollowsDesignCard: every mode × solo option × cause × phase with a fresh history
// and the default budgets, against expectations written from the design card's prose (not
// from the table).
func TestDecideFollowsDesignCard(t *testing.T) {
	want := func(mode Mode, haltOnFault bool, cause report.Cause, class report.Class, phase Phase) ActionKind {
		switch {
		case cause == report.CauseStopped:
			return Continue // the kernel asked
		case class == report.ClassDeterministic && mode == Consensus && phase != InDelivery:
			return HaltKernel // a metering fault outside a delivery is tied to no crank
		case class == report.ClassDeterministic:
			return TerminateVat
		case mode == Consensus:
			return HaltKernel
		case class == report.ClassExternal || class == report.ClassClean:
			return RestartWorker // never the vat's fault, whatever the solo option
		case haltOnFault:
			return HaltKernel
		}
		return RestartWorker
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	n := 0
	for _, mode := range []Mode{Consensus, Solo} {
		for _, haltOnFault := range []bool{false, true} {
			cfg := Defaults(mode)
			cfg.HaltOnFault = haltOnFault
			for _, phase := range append([]Phase{AnyPhase}, Phases...) {
				for _, c := range classes {
					got := Decide(cfg, rep(c.cause, c.class), phase, History{}, rnd)
					if w := want(mode, haltOnFault, c.cause, c.class, phase); got.Kind != w {
						t.Errorf("%s halt=%v %q %s: %v, want %s", mode, haltOnFault, phase, c.cause, got, w)
					}
					if !strings.Contains(got.Reason, string(c.cause)) || !strings.Contains(got.Reason, string(phase)) {
						t.Errorf("%s %q %s: reason %q names neither the cause nor the phase", mode, phase, c.cause, got.Reason)
					}
					if got.Kind == RestartWorker && (got.After < DefaultBackoff.Base/2 || got.After > DefaultBackoff.Base) {
						t.Errorf("%s %q %s: first restart after %v, want within [%v, %v]", mode, phase, c.cause, got.After, DefaultBackoff.Base/2, DefaultBackoff.Base)
					}
					n++
				}
			}
		}
	}
	if n != 2*2*4*len(classes) {
		t.Fatalf("checked %d cases", n)
	}
}

// TestTableComplete: every regime × death × phase has a row, no row is shadowed by an earlier
// one, and budgets come with what happens when they are used up.
func TestTableComplete(t *testing.T) {
	used := map[int]bool{}
	for _, regime := range Regimes {
		for _, death := range Deaths {
			for _, phase := range append([]Phase{AnyPhase}, Phases...) {
				row, ok := Lookup(regime, death, phase)
				if !ok {
					t.Errorf("no row for %s / %s / %q", regime, death, phase)
					continue
				}
				for i, r := range table {
					if r == row {
						used[i] = true
						break
					}
				}
			}
		}
	}
	for i, r := range table {
		if !used[i] {
			t.Errorf("row %d %+v is never the first match", i, r)
		}
		if r.Reason == "" {
			t.Errorf("row %d has no reason", i)
		}
		if (r.Budget == NoBudget) != (r.Exhausted == "") || (r.Budget == NoBudget) == (r.Kind == RestartWorker) {
			t.Errorf("row %d %+v: a restart needs a budget and an action for when it is used up, nothing else has one", i, r)
		}
	}
}

// TestPhaseOnlyMattersForConsensusMeteringFaults: the one place the table depends on the phase.
func TestPhaseOnlyMattersForConsensusMeteringFaults(t *testing.T) {
	for _, regime := range Regimes {
		for _, death := range Deaths {
			kinds := map[ActionKind][]Phase{}
			for _, phase := range Phases {
				row, _ := Lookup(regime, death, phase)
				kinds[row.Kind] = append(kinds[row.Kind], phase)
			}
			if (len(kinds) > 1) != (regime == RegimeConsensus && death == Deterministic) {
				t.Errorf("%s / %s: %v", regime, death, kinds)
			}
		}
	}
}

func TestDeathOf(t *testing.T) {
	for _, c := range []struct {
		r    report.Report
		want Death
	}{
		{rep(report.CauseStopped, report.ClassExternal), Stopped},
		// Stopped without vatrun having done it is someone else's kill.
		{report.Report{Cause: report.CauseStopped, Class: report.ClassExternal, KilledBy: report.KilledByNobody}, External},
		{rep(report.CauseAbort, report.ClassResourceExhaustion), ResourceExhaustion},
		{report.Report{Cause: "new-cause", Class: "a-class-from-the-future"}, Unknown},
		{report.Report{}, Unknown},
		// A worker cannot smuggle in the table's own key.
		{report.Report{Cause: report.CauseKilled, Class: report.Class(Stopped)}, Unknown},
	} {
		if got := DeathOf(c.r); got != c.want {
			t.Errorf("%+v: %s, want %s", c.r, got, c.want)
		}
	}
}

func TestSoloRetriesStopThenTerminate(t *testing.T) {
	cfg := Config{Mode: Solo, Retries: 2, Backoff: Backoff{Base: time.Second, Factor: 2, Cap: time.Minute}}
	r := rep(report.CauseOOMLimit, report.ClassResourceExhaustion)
	var h History
	var kinds []ActionKind
	var delays []time.Duration
	for range 4 {
		a := Decide(cfg, r, InDelivery, h, nil)
		kinds = append(kinds, a.Kind)
		delays = append(delays, a.After)
		h = h.Note(a)
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
	if h != (History{Faults: 2}) {
		t.Fatalf("history %+v, want 2 faults", h)
	}
}

// TestZeroMeansWhatItSays: budgets of zero allow no restart, the zero backoff waits nothing.
func TestZeroMeansWhatItSays(t *testing.T) {
	a := Decide(Config{Mode: Solo}, rep(report.CauseSegv, report.ClassResourceExhaustion), Idle, History{}, nil)
	if a.Kind != TerminateVat || !strings.Contains(a.Reason, "retry budget of 0 used up") {
		t.Errorf("Retries 0: %v, want terminate at once", a)
	}
	a = Decide(Config{Mode: Solo}, rep(report.CauseKilled, report.ClassExternal), Idle, History{}, nil)
	if a.Kind != HaltKernel {
		t.Errorf("MaxExternalRestarts 0: %v, want halt at once", a)
	}
	a = Decide(Config{Mode: Solo, Retries: 3}, rep(report.CauseSegv, report.ClassResourceExhaustion), Idle, History{Faults: 2}, rand.New(rand.NewPCG(3, 3)))
	if a.Kind != RestartWorker || a.After != 0 || !strings.Contains(a.Reason, "restart 3 of 3") {
		t.Errorf("zero backoff: %v, want the third restart at once", a)
	}
	// The zero Config is the strictest policy: consensus.
	if a := Decide(Config{}, rep(report.CauseKilled, report.ClassExternal), Idle, History{}, nil); a.Kind != HaltKernel {
		t.Errorf("zero config: %v, want halt", a)
	}
}

func TestValidate(t *testing.T) {
	for _, m := range []Mode{Consensus, Solo} {
		if err := Defaults(m).Validate(); err != nil {
			t.Errorf("Defaults(%s): %v", m, err)
		}
	}
	if err := (Config{Mode: Solo}).Validate(); err != nil {
		t.Errorf("zero solo config: %v", err)
	}
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, `mode ""`},
		{Config{Mode: "quorum"}, `mode "quorum"`},
		{Config{Mode: Solo, Retries: -1}, "retries -1"},
		{Config{Mode: Solo, MaxExternalRestarts: -2}, "max external restarts -2"},
		{Config{Mode: Solo, Backoff: Backoff{Base: time.Second, Factor: 2}}, "cap 0s below base 1s"},
		{Config{Mode: Solo, Backoff: Backoff{Base: time.Second, Cap: time.Minute, Factor: 0.5}}, "factor 0.5"},
		{Config{Mode: Solo, Backoff: Backoff{Jitter: 1.5}}, "jitter 1.5"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error saying %q", c.cfg, err, c.want)
		}
	}
}

func TestSoloHaltOption(t *testing.T) {
	cfg := Defaults(Solo)
	cfg.HaltOnFault = true
	a := Decide(cfg, rep(report.CauseSegv, report.ClassResourceExhaustion), Idle, History{}, nil)
	if a.Kind != HaltKernel {
		t.Fatalf("%v, want halt", a)
	}
	// External deaths still restart under the halt option: they are never the vat's fault.
	a = Decide(cfg, rep(report.CauseKilled, report.ClassExternal), Idle, History{}, nil)
	if a.Kind != RestartWorker {
		t.Fatalf("%v, want restart", a)
	}
}

func TestExternalNeverTerminates(t *testing.T) {
	cfg := Config{Mode: Solo, Retries: 5, MaxExternalRestarts: 3, Backoff: Backoff{Base: time.Millisecond, Factor: 2, Cap: time.Second}}
	r := rep(report.CauseExternalSignal, report.ClassExternal)
	var h History
	for i := range 10 {
		a := Decide(cfg, r, Idle, h, nil)
		if a.Kind == TerminateVat {
			t.Fatalf("external death %d terminated the vat", i)
		}
		if (i >= 3) != (a.Kind == HaltKernel) {
			t.Fatalf("external death %d: %v, want restarts up to the bound of 3, then halt", i, a)
		}
		h = h.Note(a)
	}
	if h != (History{External: 3}) {
		t.Fatalf("history %+v, want 3 external restarts and no faults", h)
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
