package kernel

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vatrun/vatrun/kernel/policy"
	"github.com/vatrun/vatrun/report"
)

// Unit tests of the reference kernel on the fake Starter (fake_test.go): no processes, no
// sandbox. The same kernel against real workers is in integration_test.go.

type fakeRig struct {
	t       *testing.T
	store   *Store
	starter *fakeStarter
	k       *Kernel
	out     *bytes.Buffer
	mu      sync.Mutex
	slept   []time.Duration
}

func newFakeRig(t *testing.T, path string, pol policy.Config, plans map[string][]fakePlan) *fakeRig {
	t.Helper()
	st, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeRig{t: t, store: st, starter: &fakeStarter{plans: plans}, out: &bytes.Buffer{}}
	r.k, err = New(Config{
		Policy:        pol,
		ProfileDigest: "sha256:test",
		PinDigest:     "sha256:test",
		Starter:       r.starter,
		Out:           r.out,
		Rand:          rand.New(rand.NewPCG(1, 1)),
		Sleep: func(_ context.Context, d time.Duration) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.slept = append(r.slept, d)
			return nil
		},
	}, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	return r
}

func (r *fakeRig) close() {
	if r.k != nil {
		r.k.Close()
		r.k = nil
	}
	if r.store != nil {
		if err := r.store.Close(); err != nil {
			r.t.Error(err)
		}
		r.store = nil
	}
}

func (r *fakeRig) deliver(vat, msg, want string) {
	r.t.Helper()
	got, err := r.k.Deliver(context.Background(), vat, msg)
	if err != nil || got != want {
		r.t.Fatalf("deliver %s %q: %q, %v; want %q\n%s", vat, msg, got, err, want, r.out)
	}
}

func (r *fakeRig) dump() string {
	r.t.Helper()
	d, err := r.store.Dump()
	if err != nil {
		r.t.Fatal(err)
	}
	return string(d)
}

func (r *fakeRig) record(vat string) VatRecord {
	r.t.Helper()
	recs, err := r.store.Vats()
	if err != nil {
		r.t.Fatal(err)
	}
	return recs[vat]
}

func (r *fakeRig) crank() uint64 {
	r.t.Helper()
	c, err := r.store.Crank()
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

func (r *fakeRig) sleeps() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.slept...)
}

func dbPath(t *testing.T) string { return filepath.Join(t.TempDir(), "k.db") }

func soloWith(retries int, haltOnFault bool) policy.Config {
	c := policy.Defaults(policy.Solo)
	c.Retries, c.HaltOnFault = retries, haltOnFault
	return c
}

func TestNewRefusesBadConfig(t *testing.T) {
	st, err := OpenStore(dbPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	}()
	fs := &fakeStarter{}
	for _, c := range []struct {
		cfg  Config
		st   *Store
		want string
	}{
		{Config{Policy: policy.Defaults(policy.Consensus), ProfileDigest: "sha256:aa", PinDigest: "sha256:bb", Starter: fs}, st, "differs from the pinned"},
		{Config{Policy: policy.Defaults(policy.Consensus), ProfileDigest: "sha256:aa", Starter: fs}, st, "--pin-digest sha256:aa"},
		{Config{Policy: policy.Config{}, Starter: fs}, st, `mode ""`},
		{Config{Policy: policy.Config{Mode: policy.Solo, Retries: -1}, Starter: fs}, st, "retries -1"},
		{Config{Policy: policy.Defaults(policy.Solo)}, st, "no worker starter"},
		{Config{Policy: policy.Defaults(policy.Solo), Starter: fs}, nil, "no store"},
	} {
		if _, err := New(c.cfg, c.st); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error saying %q", c.cfg.Policy, err, c.want)
		}
	}
}

// TestLaunchDeliverCommit: a worker per vat, started lazily; each reply committed with its
// transcript entry as one crank; phases told to the worker in order.
func TestLaunchDeliverCommit(t *testing.T) {
	r := newFakeRig(t, dbPath(t), policy.Defaults(policy.Consensus), nil)
	r.deliver("v1", "add:5", "sum:5")
	r.deliver("v2", "add:1", "sum:1")
	r.deliver("v1", "add:2", "sum:7")
	ws := r.starter.workers("v1")
	if len(ws) != 1 || len(r.starter.workers("v2")) != 1 {
		t.Fatalf("%d and %d workers started, want one for each vat", len(ws), len(r.starter.workers("v2")))
	}
	got, phases, _, dead := ws[0].snapshot()
	if !slices.Equal(got, []string{"add:5", "add:2"}) || dead {
		t.Fatalf("v1's worker got %q (dead %v)", got, dead)
	}
	if want := []string{"startup", "idle", "in-delivery", "idle", "in-delivery", "idle"}; !slices.Equal(phases, want) {
		t.Fatalf("phases %q, want %q", phases, want)
	}
	// One crank per delivery (creating a vat's record is not a crank).
	if c := r.crank(); c != 3 {
		t.Fatalf("crank %d, want 3", c)
	}
	if rec := r.record("v1"); rec.State != "sum:7" || rec.Deliveries != 2 || rec.Terminated {
		t.Fatalf("v1 %+v", rec)
	}
	tr, err := r.store.Transcript("v1")
	if err != nil {
		t.Fatal(err)
	}
	if want := []Entry{{"add:5", "sum:5"}, {"add:2", "sum:7"}}; !slices.Equal(tr, want) {
		t.Fatalf("transcript %+v, want %+v", tr, want)
	}
	if !strings.Contains(r.out.String(), `crank 3: vat v1 "add:2" -> "sum:7" (committed)`) {
		t.Fatalf("output:\n%s", r.out)
	}
}

// TestDeathInDelivery: v1's worker dies on its second message (the first, add:5, is
// committed) while v2 stands by; the policy decides, and the store holds exactly what the
// decision commits.
func TestDeathInDelivery(t *testing.T) {
	const halt, terminate, restart = "halt", "terminate", "restart"
	for _, c := range []struct {
		name    string
		pol     policy.Config
		death   report.Report
		more    []fakePlan // plans for v1's restarted workers
		outcome string
		starts  int // v1's workers
	}{
		{"consensus abort halts", policy.Defaults(policy.Consensus), dies(report.CauseAbort, report.ClassResourceExhaustion), nil, halt, 1},
		{"consensus kill halts", policy.Defaults(policy.Consensus), dies(report.CauseKilled, report.ClassExternal), nil, halt, 1},
		{"consensus clean exit halts", policy.Defaults(policy.Consensus), dies(report.CauseExited, report.ClassClean), nil, halt, 1},
		{"consensus metering fault terminates", policy.Defaults(policy.Consensus), dies(report.CauseMeteringFault, report.ClassDeterministic), nil, terminate, 1},
		{"solo kill restarts", policy.Defaults(policy.Solo), dies(report.CauseKilled, report.ClassExternal), nil, restart, 2},
		{"solo kill restarts twice", policy.Defaults(policy.Solo), dies(report.CauseOOMHost, report.ClassExternal),
			[]fakePlan{{dieAt: 1, death: dies(report.CauseKilled, report.ClassExternal)}}, restart, 3},
		{"solo metering fault terminates", policy.Defaults(policy.Solo), dies(report.CauseMeteringFault, report.ClassDeterministic), nil, terminate, 1},
		{"solo segv retries then terminates", soloWith(1, false), dies(report.CauseSegv, report.ClassResourceExhaustion),
			[]fakePlan{{dieAt: 1, death: dies(report.CauseSegv, report.ClassResourceExhaustion)}}, terminate, 2},
		{"solo segv retried once succeeds", soloWith(1, false), dies(report.CauseSegv, report.ClassResourceExhaustion), nil, restart, 2},
		{"solo no retries terminates", soloWith(0, false), dies(report.CauseSandboxViolation, report.ClassSandboxViolation), nil, terminate, 1},
		{"solo halt-on-fault halts", soloWith(1, true), dies(report.CauseOOMLimit, report.ClassResourceExhaustion), nil, halt, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newFakeRig(t, dbPath(t), c.pol, map[string][]fakePlan{"v1": append([]fakePlan{{dieAt: 1, death: c.death}}, c.more...)})
			r.deliver("v1", "add:5", "sum:5")
			r.deliver("v2", "add:1", "sum:1")
			before, crank := r.dump(), r.crank()

			reply, err := r.k.Deliver(context.Background(), "v1", "add:3")
			ws := r.starter.workers("v1")
			if len(ws) != c.starts {
				t.Errorf("%d workers started for v1, want %d\n%s", len(ws), c.starts, r.out)
			}
			_, _, first, _ := ws[0].snapshot()
			if first.Phase != "in-delivery" || first.Cause != c.death.Cause {
				t.Errorf("first worker's death %s in %q", first.Cause, first.Phase)
			}
			if sl := r.sleeps(); len(sl) != c.starts-1 {
				t.Errorf("slept %v, want one backoff per restart (%d)", sl, c.starts-1)
			} else if len(sl) > 0 && (sl[0] < policy.DefaultBackoff.Base/2 || sl[0] > policy.DefaultBackoff.Base) {
				t.Errorf("first backoff %v, want within [%v, %v]", sl[0], policy.DefaultBackoff.Base/2, policy.DefaultBackoff.Base)
			}
			switch c.outcome {
			case halt:
				var h *HaltError
				if !errors.As(err, &h) || h.Vat != "v1" || h.Report.Cause != c.death.Cause || h.Report.Phase != "in-delivery" {
					t.Fatalf("err %v, want a halt on v1's %s in delivery", err, c.death.Cause)
				}
				if after := r.dump(); after != before {
					t.Fatalf("a halted crank changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
				}
				// Halting stops every worker, the bystander's too.
				if _, _, rep, dead := r.starter.workers("v2")[0].snapshot(); !dead || rep.Cause != report.CauseStopped {
					t.Fatalf("v2's worker after the halt: dead %v, %s", dead, rep.Cause)
				}
			case terminate:
				if !errors.Is(err, ErrTerminated) {
					t.Fatalf("err %v, want v1 terminated", err)
				}
				rec := r.record("v1")
				if !rec.Terminated || rec.State != "sum:5" || rec.Deliveries != 1 || rec.AtCrank != crank+1 || !strings.Contains(rec.Reason, string(lastDeath(ws).Cause)) {
					t.Fatalf("v1's record %+v (crank before %d)", rec, crank)
				}
				if c := r.crank(); c != crank+1 {
					t.Fatalf("crank %d, want %d: the termination is one committed crank", c, crank+1)
				}
				if _, err := r.k.Deliver(context.Background(), "v1", "get"); !errors.Is(err, ErrTerminated) {
					t.Fatalf("delivery to a terminated vat: %v", err)
				}
				if n := len(r.starter.workers("v1")); n != c.starts {
					t.Fatalf("a terminated vat got a worker again (%d started)", n)
				}
				r.deliver("v2", "get", "sum:1")
			case restart:
				if err != nil || reply != "sum:8" {
					t.Fatalf("redelivery: %q, %v; want sum:8\n%s", reply, err, r.out)
				}
				// The last worker was rebuilt by replaying the transcript, then got the delivery.
				if got, _, _, _ := ws[len(ws)-1].snapshot(); !slices.Equal(got, []string{"add:5", "add:3"}) {
					t.Fatalf("restarted worker got %q, want the replay then the delivery", got)
				}
				if c := r.crank(); c != crank+1 {
					t.Fatalf("crank %d, want %d: the redelivered crank committed once", c, crank+1)
				}
				if rec := r.record("v1"); rec.State != "sum:8" || rec.Deliveries != 2 {
					t.Fatalf("v1's record %+v", rec)
				}
			}
		})
	}
}

// TestIdleDeath: a worker that dies with no delivery in flight is noticed at once by Idle
// (a halt returns at once; a restart or termination happens within a short idle period).
func TestIdleDeath(t *testing.T) {
	for _, c := range []struct {
		name    string
		pol     policy.Config
		death   report.Report
		outcome string // "halt", "restart", "terminate"
	}{
		{"consensus kill halts", policy.Defaults(policy.Consensus), dies(report.CauseKilled, report.ClassExternal), "halt"},
		// A metering fault outside a delivery is tied to no crank: consensus mode halts.
		{"consensus metering fault halts", policy.Defaults(policy.Consensus), dies(report.CauseMeteringFault, report.ClassDeterministic), "halt"},
		{"solo kill restarts", policy.Defaults(policy.Solo), dies(report.CauseExternalSignal, report.ClassExternal), "restart"},
		{"solo metering fault terminates", policy.Defaults(policy.Solo), dies(report.CauseMeteringFault, report.ClassDeterministic), "terminate"},
		{"solo abort retries", soloWith(1, false), dies(report.CauseAbort, report.ClassResourceExhaustion), "restart"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newFakeRig(t, dbPath(t), c.pol, nil)
			r.deliver("v1", "add:2", "sum:2")
			r.deliver("v1", "add:9", "sum:11")
			before, crank := r.dump(), r.crank()
			w := r.starter.workers("v1")[0]
			go func() {
				time.Sleep(20 * time.Millisecond)
				w.die(c.death)
			}()
			period := 10 * time.Second
			if c.outcome != "halt" {
				period = 300 * time.Millisecond
			}
			start := time.Now()
			err := r.k.Idle(context.Background(), period)
			if el := time.Since(start); c.outcome == "halt" && el > 5*time.Second {
				t.Fatalf("noticed after %v, want at once (well before the 10 s idle period ends)", el)
			}
			if _, _, rep, _ := w.snapshot(); rep.Phase != "idle" {
				t.Fatalf("death in phase %q, want idle", rep.Phase)
			}
			switch c.outcome {
			case "halt":
				var h *HaltError
				if !errors.As(err, &h) || h.Report.Cause != c.death.Cause || !strings.Contains(h.Reason, "idle") {
					t.Fatalf("err %v, want a halt on the idle %s", err, c.death.Cause)
				}
				if r.dump() != before {
					t.Fatal("store changed by an idle death that halted")
				}
			case "terminate":
				if err != nil {
					t.Fatal(err)
				}
				if rec := r.record("v1"); !rec.Terminated || rec.AtCrank != crank+1 || rec.State != "sum:11" {
					t.Fatalf("v1's record %+v", rec)
				}
				if _, err := r.k.Deliver(context.Background(), "v1", "get"); !errors.Is(err, ErrTerminated) {
					t.Fatalf("delivery after the idle termination: %v", err)
				}
			case "restart":
				if err != nil {
					t.Fatalf("%v\n%s", err, r.out)
				}
				ws := r.starter.workers("v1")
				if len(ws) != 2 {
					t.Fatalf("%d workers, want a restart", len(ws))
				}
				if got, _, _, _ := ws[1].snapshot(); !slices.Equal(got, []string{"add:2", "add:9"}) {
					t.Fatalf("restarted worker got %q, want the replay", got)
				}
				if r.dump() != before {
					t.Fatal("an idle restart changed the store")
				}
				r.deliver("v1", "get", "sum:11")
			}
		})
	}
}

// TestIdleDeathBeforeDelivery: a worker found dead when the next delivery starts died idle;
// the crank is not blamed for it (a consensus metering fault halts rather than terminates).
func TestIdleDeathBeforeDelivery(t *testing.T) {
	r := newFakeRig(t, dbPath(t), policy.Defaults(policy.Consensus), nil)
	r.deliver("v1", "add:2", "sum:2")
	before := r.dump()
	w := r.starter.workers("v1")[0]
	w.die(dies(report.CauseMeteringFault, report.ClassDeterministic))
	_, err := r.k.Deliver(context.Background(), "v1", "add:1")
	var h *HaltError
	if !errors.As(err, &h) || !strings.Contains(h.Reason, "idle") {
		t.Fatalf("err %v, want a halt for an idle death", err)
	}
	if got, _, _, _ := w.snapshot(); len(got) != 1 {
		t.Fatalf("the dead worker was sent %q", got)
	}
	if r.dump() != before {
		t.Fatal("store changed")
	}
}

// TestReplyThenDeath: a reply written just before the worker's death completes the crank
// (committed); the death is then handled as an idle one.
func TestReplyThenDeath(t *testing.T) {
	r := newFakeRig(t, dbPath(t), policy.Defaults(policy.Solo), map[string][]fakePlan{
		"v1": {{dieAt: 1, replyFirst: true, death: dies(report.CauseKilled, report.ClassExternal)}},
	})
	r.deliver("v1", "add:1", "sum:1")
	r.deliver("v1", "add:2", "sum:3")
	if c := r.crank(); c != 2 {
		t.Fatalf("crank %d, want 2 (two deliveries)", c)
	}
	if !strings.Contains(r.out.String(), "worker died (idle)") {
		t.Fatalf("the death after the reply was not handled as idle:\n%s", r.out)
	}
	r.deliver("v1", "get", "sum:3")
	if n := len(r.starter.workers("v1")); n != 2 {
		t.Fatalf("%d workers, want one restart", n)
	}
}

// TestStartupDeath: a restarted kernel replays each vat's transcript; a death during the replay
// goes through the policy with phase startup.
func TestStartupDeath(t *testing.T) {
	path := dbPath(t)
	r := newFakeRig(t, path, policy.Defaults(policy.Solo), nil)
	r.deliver("v1", "add:4", "sum:4")
	r.deliver("v1", "add:5", "sum:9")
	r.close()
	committed := func() string {
		st, err := OpenStore(path)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := st.Close(); err != nil {
				t.Error(err)
			}
		}()
		d, err := st.Dump()
		if err != nil {
			t.Fatal(err)
		}
		return string(d)
	}()

	t.Run("consensus halts", func(t *testing.T) {
		r := newFakeRig(t, path, policy.Defaults(policy.Consensus), map[string][]fakePlan{"v1": {{dieAt: 1, death: dies(report.CauseSegv, report.ClassResourceExhaustion)}}})
		var h *HaltError
		if err := r.k.Start(context.Background()); !errors.As(err, &h) || h.Report.Phase != "startup" {
			t.Fatalf("err %v, want a halt in startup", err)
		}
		if r.dump() != committed {
			t.Fatal("store changed")
		}
	})
	t.Run("solo restarts", func(t *testing.T) {
		r := newFakeRig(t, path, policy.Defaults(policy.Solo), map[string][]fakePlan{"v1": {{dieAt: 0, death: dies(report.CauseKilled, report.ClassExternal)}}})
		if err := r.k.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		ws := r.starter.workers("v1")
		if len(ws) != 2 {
			t.Fatalf("%d workers, want 2", len(ws))
		}
		if got, _, _, _ := ws[1].snapshot(); !slices.Equal(got, []string{"add:4", "add:5"}) {
			t.Fatalf("second worker got %q, want the whole replay", got)
		}
		r.deliver("v1", "get", "sum:9")
	})
	t.Run("replay divergence halts", func(t *testing.T) {
		st, err := OpenStore(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.CommitDelivery("v1", Entry{Delivery: "add:1", Reply: "sum:999"}); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		r := newFakeRig(t, path, policy.Defaults(policy.Solo), nil)
		var h *HaltError
		if err := r.k.Start(context.Background()); !errors.As(err, &h) || !strings.Contains(h.Reason, `transcript says "sum:999"`) {
			t.Fatalf("err %v, want a divergence halt", err)
		}
		if _, _, rep, dead := r.starter.workers("v1")[0].snapshot(); !dead || rep.Cause != report.CauseStopped {
			t.Fatalf("the diverged worker was not stopped: dead %v %s", dead, rep.Cause)
		}
	})
}

// TestStartErrorAndStoreErrorsReturned: failures reach the caller with context.
func TestStartErrorAndStoreErrorsReturned(t *testing.T) {
	r := newFakeRig(t, dbPath(t), policy.Defaults(policy.Solo), nil)
	r.starter.startErr = errors.New("no such worker")
	_, err := r.k.Deliver(context.Background(), "v1", "add:1")
	if err == nil || !strings.Contains(err.Error(), "start worker for vat v1: no such worker") {
		t.Fatalf("err %v", err)
	}
	r.starter.startErr = nil
	r.deliver("v1", "add:1", "sum:1")
	if err := r.store.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = r.k.Deliver(context.Background(), "v1", "add:1")
	if err == nil || !strings.Contains(err.Error(), "deliver to vat v1") || !strings.Contains(err.Error(), "database not open") {
		t.Fatalf("delivery on a closed store: %v", err)
	}
	r.store = nil
}

func lastDeath(ws []*fakeWorker) report.Report {
	_, _, rep, _ := ws[len(ws)-1].snapshot()
	return rep
}

// TestIdleDeathThenStartupDeathTerminates: a worker found dead before a delivery is restarted;
// when the restart dies in startup and the budget is gone, the vat is terminated and no
// further worker is started for it.
func TestIdleDeathThenStartupDeathTerminates(t *testing.T) {
	r := newFakeRig(t, dbPath(t), soloWith(1, false), map[string][]fakePlan{
		"v1": {{dieAt: -1}, {dieAt: 0, death: dies(report.CauseSegv, report.ClassResourceExhaustion)}},
	})
	r.deliver("v1", "add:2", "sum:2")
	r.starter.workers("v1")[0].die(dies(report.CauseAbort, report.ClassResourceExhaustion))
	_, err := r.k.Deliver(context.Background(), "v1", "add:1")
	if !errors.Is(err, ErrTerminated) {
		t.Fatalf("err %v, want v1 terminated\n%s", err, r.out)
	}
	if n := len(r.starter.workers("v1")); n != 2 {
		t.Fatalf("%d workers started, want 2 (the first and one retry)\n%s", n, r.out)
	}
	if rec := r.record("v1"); !rec.Terminated || rec.State != "sum:2" || !strings.Contains(rec.Reason, "retry budget of 1 used up") {
		t.Fatalf("v1's record %+v", rec)
	}
}

// TestSignalFromOutside: Kernel.Signal reaches the vat's worker (an external death, restarted
// in solo mode); a vat without a worker is an error naming it.
func TestSignalFromOutside(t *testing.T) {
	r := newFakeRig(t, dbPath(t), policy.Defaults(policy.Solo), nil)
	if err := r.k.Signal("v9", syscall.SIGTERM); err == nil || !strings.Contains(err.Error(), "vat v9 has no worker") {
		t.Fatalf("signal to a vat without a worker: %v", err)
	}
	r.deliver("v1", "add:3", "sum:3")
	if err := r.k.Signal("v1", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := r.k.Idle(context.Background(), 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	ws := r.starter.workers("v1")
	if len(ws) != 2 {
		t.Fatalf("%d workers, want a restart after the signal\n%s", len(ws), r.out)
	}
	if _, _, rep, _ := ws[0].snapshot(); rep.Cause != report.CauseExternalSignal || rep.Signal != int(syscall.SIGTERM) || rep.Phase != "idle" {
		t.Fatalf("first worker's death %+v", rep)
	}
	r.deliver("v1", "get", "sum:3")
}
