// Package kernel is a small reference kernel: vats, each with a worker started through a
// Starter, a transcript and state in a bbolt Store, cranks committed atomically or not at all,
// and the crash policy (package kernel/policy) applied to every worker death.
//
// The store is go.etcd.io/bbolt: pure Go (no second cgo dependency next to libseccomp), one file,
// ACID transactions with a single writer, which is exactly a kernel's shape (one crank at a time).
// Real workers come from kernel/launchstarter; this package does not import the launcher, and its
// unit tests drive it through a fake Starter.
package kernel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vatrun/vatrun/kernel/policy"
	"github.com/vatrun/vatrun/report"
)

// Handle is one running worker as the kernel sees it. kernel/launchstarter implements it with
// the launcher; this package's unit tests with a fake.
type Handle interface {
	// Send writes one command (a netstring) to the worker's fd 3.
	Send(msg []byte) error
	// Replies yields the worker's replies from fd 4; it is closed when fd 4 closes.
	Replies() <-chan []byte
	// Done is closed when the worker is dead and Wait's report is ready.
	Done() <-chan struct{}
	Wait() report.Report
	// Cleaned is closed after Done once nothing of the worker's sandbox is left (processes
	// reaped, cgroup leaf removed).
	Cleaned() <-chan struct{}
	SetPhase(phase string)
	Stop(reason string)
	Signal(sig syscall.Signal) error
}

// Starter starts a worker for a vat.
type Starter interface {
	Start(ctx context.Context, vat string) (Handle, error)
}

// Config configures a Kernel. Policy.Mode must be set (policy.Consensus or policy.Solo); the
// other policy fields mean what they say at zero (see policy.Config, and policy.Defaults). The
// nil Logger, Out, Rand and Sleep are injection points with the obvious defaults: discard,
// discard, a time-seeded source, a timer.
type Config struct {
	Policy policy.Config
	// ProfileDigest is the digest of the profile the workers run under; in consensus mode it
	// must equal PinDigest.
	ProfileDigest string
	PinDigest     string
	Starter       Starter
	Logger        *slog.Logger
	// Out receives one human line per decision (crank committed, death, action).
	Out io.Writer
	// Rand jitters the backoff; Sleep waits (both injectable for tests).
	Rand  *rand.Rand
	Sleep func(ctx context.Context, d time.Duration) error
}

// HaltError is returned when the policy halts the kernel: nothing of the crank in flight was
// committed; the supervisor restarts the kernel, which resumes from the last commit.
type HaltError struct {
	Vat    string
	Reason string
	Report report.Report
}

func (e *HaltError) Error() string {
	return fmt.Sprintf("kernel halted (vat %s): %s", e.Vat, e.Reason)
}

// ErrTerminated is wrapped when a delivery goes to a terminated vat.
var ErrTerminated = errors.New("vat terminated")

type vat struct {
	id   string
	h    Handle
	busy atomic.Bool
}

type death struct {
	vat *vat
}

// Kernel is the reference kernel: it owns the store and one worker per live vat.
type Kernel struct {
	cfg     Config
	store   *Store
	vats    map[string]*vat
	history map[string]policy.History
	deaths  chan death
	mu      sync.Mutex
	stopped map[Handle]bool
	all     []Handle // every worker started, for Close to wait on their cleanup
	outErr  bool     // a write to Out failed (logged once)
}

func (c *Config) defaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x7661747275))
	}
	if c.Sleep == nil {
		c.Sleep = func(ctx context.Context, d time.Duration) error {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// New checks the configuration and opens nothing yet; Start relaunches the stored vats.
func New(cfg Config, store *Store) (*Kernel, error) {
	cfg.defaults()
	if err := cfg.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	if store == nil {
		return nil, errors.New("kernel: no store")
	}
	if cfg.Policy.Mode == policy.Consensus {
		if cfg.PinDigest == "" {
			return nil, fmt.Errorf("kernel: consensus mode needs the profile digest pinned (--pin-digest %s), so every validator provably runs the same sandbox", cfg.ProfileDigest)
		}
		if cfg.PinDigest != cfg.ProfileDigest {
			return nil, fmt.Errorf("kernel: profile digest %s differs from the pinned %s: refusing to start in consensus mode", cfg.ProfileDigest, cfg.PinDigest)
		}
	}
	if cfg.Starter == nil {
		return nil, errors.New("kernel: no worker starter")
	}
	return &Kernel{cfg: cfg, store: store, vats: map[string]*vat{}, history: map[string]policy.History{},
		deaths: make(chan death, 64), stopped: map[Handle]bool{}}, nil
}

// say writes one human line to Out; a failed write is logged once (the decisions themselves are
// also logged, so the kernel goes on).
func (k *Kernel) say(format string, a ...any) {
	if _, err := fmt.Fprintf(k.cfg.Out, format+"\n", a...); err != nil && !k.outErr {
		k.outErr = true
		k.cfg.Logger.Warn("kernel: writing to its output failed; further lines are dropped silently", "err", err)
	}
}

// Start relaunches a worker for every live vat in the store and replays its transcript.
func (k *Kernel) Start(ctx context.Context) error {
	recs, err := k.store.Vats()
	if err != nil {
		return fmt.Errorf("kernel: start: %w", err)
	}
	crank, err := k.store.Crank()
	if err != nil {
		return fmt.Errorf("kernel: start: %w", err)
	}
	k.say("kernel: resuming at crank %d with %d vat(s)", crank, len(recs))
	for id, r := range recs {
		if r.Terminated {
			k.say("vat %s: terminated at crank %d (%s)", id, r.AtCrank, r.Reason)
			continue
		}
		if err := k.launch(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// launch starts (or restarts) vat id's worker and replays its transcript, applying the policy
// to deaths during startup.
func (k *Kernel) launch(ctx context.Context, id string) error {
	for {
		err := k.launchOnce(ctx, id)
		var d *startupDeath
		if !errors.As(err, &d) {
			return err
		}
		act, err := k.decide(ctx, id, d.report, policy.Startup)
		if err != nil {
			return err
		}
		if act.Kind != policy.RestartWorker {
			return nil
		}
	}
}

type startupDeath struct{ report report.Report }

func (e *startupDeath) Error() string { return "worker died during startup: " + e.report.OneLine() }

func (k *Kernel) launchOnce(ctx context.Context, id string) error {
	h, err := k.cfg.Starter.Start(ctx, id)
	if err != nil {
		return fmt.Errorf("kernel: start worker for vat %s: %w", id, err)
	}
	k.all = append(k.all, h)
	v := &vat{id: id, h: h}
	v.busy.Store(true)
	h.SetPhase(string(policy.Startup))
	entries, err := k.store.Transcript(id)
	if err != nil {
		k.stop(h, "kernel error")
		return fmt.Errorf("kernel: replay vat %s: %w", id, err)
	}
	for i, e := range entries {
		reply, dead := k.roundTrip(ctx, v, []byte(e.Delivery))
		if dead && ctx.Err() != nil {
			k.stop(h, "kernel cancelled")
			return fmt.Errorf("kernel: replay vat %s: %w", id, ctx.Err())
		}
		if dead {
			return &startupDeath{report: h.Wait()}
		}
		if string(reply) != e.Reply {
			k.stop(h, "replay diverged")
			return &HaltError{Vat: id, Reason: fmt.Sprintf("replay diverged at delivery %d (%q): transcript says %q, worker said %q", i+1, e.Delivery, e.Reply, reply)}
		}
	}
	if len(entries) > 0 {
		k.say("vat %s: worker started, replayed %d deliveries", id, len(entries))
	}
	k.vats[id] = v
	h.SetPhase(string(policy.Idle))
	v.busy.Store(false)
	go k.watch(v, h)
	return nil
}

// watch notices a worker's death at once, whatever the kernel is doing.
func (k *Kernel) watch(v *vat, h Handle) {
	<-h.Done()
	k.mu.Lock()
	stopped := k.stopped[h]
	k.mu.Unlock()
	if stopped {
		return // the kernel stopped it on purpose
	}
	// Always report: a death the delivery in flight handles is dropped later because the vat's
	// worker was replaced; a death just after a completed crank must not be lost.
	if !v.busy.Load() {
		k.cfg.Logger.Warn("worker died while idle", "vat", v.id, "cause", h.Wait().Cause)
	}
	k.deaths <- death{vat: v}
}

// roundTrip sends msg and waits for the reply, or the worker's death, or another vat's idle
// death (which in consensus mode must halt at once). dead reports the worker died.
func (k *Kernel) roundTrip(ctx context.Context, v *vat, msg []byte) (reply []byte, dead bool) {
	if err := v.h.Send(msg); err != nil {
		// A worker that cannot take a command is dying (its fd 3 closed); its report says why.
		k.cfg.Logger.Info("send failed, waiting for the worker's death", "vat", v.id, "err", err)
		select {
		case <-v.h.Done():
		case <-ctx.Done():
		}
		return nil, true
	}
	select {
	case r, ok := <-v.h.Replies():
		if !ok {
			<-v.h.Done()
			return nil, true
		}
		return r, false
	case <-v.h.Done():
		// fd 4 may still hold a reply written just before the death: then the crank is
		// complete and the death is an idle one, handled after the commit.
		if r, ok := <-v.h.Replies(); ok {
			return r, false
		}
		return nil, true
	case <-ctx.Done():
		return nil, true
	}
}

// Deliver runs one crank: msg to vat's worker, its reply committed with the transcript entry
// atomically. A worker death aborts the crank (nothing written) and the policy decides.
func (k *Kernel) Deliver(ctx context.Context, id, msg string) (string, error) {
	if err := k.handleIdleDeaths(ctx); err != nil {
		return "", err
	}
	recs, err := k.store.Vats()
	if err != nil {
		return "", fmt.Errorf("kernel: deliver to vat %s: %w", id, err)
	}
	if r, ok := recs[id]; ok && r.Terminated {
		return "", fmt.Errorf("vat %s: %w at crank %d (%s)", id, ErrTerminated, r.AtCrank, r.Reason)
	}
	if _, ok := recs[id]; !ok {
		if err := k.store.EnsureVat(id); err != nil {
			return "", fmt.Errorf("kernel: deliver to vat %s: %w", id, err)
		}
	}
	for {
		v := k.vats[id]
		if v == nil {
			if err := k.launch(ctx, id); err != nil {
				return "", err
			}
			if v = k.vats[id]; v == nil {
				return "", fmt.Errorf("vat %s: %w", id, ErrTerminated)
			}
		}
		select {
		case <-v.h.Done():
			// It died while idle, before this delivery (its watcher's notice may still be on
			// the way): an idle death, whatever this crank was about to do.
			act, err := k.idleDeath(ctx, v)
			if err != nil {
				return "", err
			}
			if act.Kind == policy.TerminateVat {
				return "", fmt.Errorf("vat %s: %w: %s", id, ErrTerminated, act.Reason)
			}
			if k.vats[id] == nil {
				// The relaunch's own startup death terminated the vat.
				return "", fmt.Errorf("vat %s: %w", id, ErrTerminated)
			}
			continue
		default:
		}
		v.busy.Store(true)
		v.h.SetPhase(string(policy.InDelivery))
		reply, dead := k.roundTrip(ctx, v, []byte(msg))
		if !dead {
			if err := k.store.CommitDelivery(id, Entry{Delivery: msg, Reply: string(reply)}); err != nil {
				return "", fmt.Errorf("kernel: %w", err)
			}
			crank, err := k.store.Crank()
			if err != nil {
				return string(reply), fmt.Errorf("kernel: after committing vat %s's crank: %w", id, err)
			}
			k.say("crank %d: vat %s %q -> %q (committed)", crank, id, msg, reply)
			v.h.SetPhase(string(policy.Idle))
			v.busy.Store(false)
			if err := k.handleIdleDeaths(ctx); err != nil {
				return string(reply), err
			}
			return string(reply), nil
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("kernel: deliver to vat %s: %w", id, ctx.Err())
		}
		delete(k.vats, id)
		act, err := k.decide(ctx, id, v.h.Wait(), policy.InDelivery)
		if err != nil {
			return "", err
		}
		if act.Kind == policy.TerminateVat {
			return "", fmt.Errorf("vat %s: %w: %s", id, ErrTerminated, act.Reason)
		}
		// RestartWorker (the wait already happened) or Continue: launch again and redeliver.
	}
}

// decide applies the policy to a death and carries out the action (terminate, wait before
// restart, halt). The crank in flight has already been abandoned.
func (k *Kernel) decide(ctx context.Context, id string, r report.Report, phase policy.Phase) (policy.Action, error) {
	h := k.history[id]
	act := policy.Decide(k.cfg.Policy, r, phase, h, k.cfg.Rand)
	k.history[id] = h.Note(act)
	k.say("vat %s: worker died (%s): %s", id, phase, r.OneLine())
	k.say("vat %s: policy (%s): %s", id, k.cfg.Policy.Mode, act)
	k.cfg.Logger.Info("crash policy", "vat", id, "phase", phase, "cause", r.Cause, "class", r.Class, "action", act.Kind, "reason", act.Reason)
	switch act.Kind {
	case policy.HaltKernel:
		k.stopAll("kernel halting")
		return act, &HaltError{Vat: id, Reason: act.Reason, Report: r}
	case policy.TerminateVat:
		if v := k.vats[id]; v != nil {
			k.stop(v.h, "vat terminated")
			delete(k.vats, id)
		}
		if err := k.store.Terminate(id, act.Reason); err != nil {
			return act, fmt.Errorf("kernel: %w", err)
		}
		crank, err := k.store.Crank()
		if err != nil {
			return act, fmt.Errorf("kernel: after terminating vat %s: %w", id, err)
		}
		k.say("crank %d: vat %s terminated (committed): %s", crank, id, act.Reason)
	case policy.RestartWorker:
		if err := k.cfg.Sleep(ctx, act.After); err != nil {
			return act, fmt.Errorf("kernel: waiting %v to restart vat %s's worker: %w", act.After, id, err)
		}
	}
	return act, nil
}

func (k *Kernel) handleIdleDeaths(ctx context.Context) error {
	for {
		select {
		case d := <-k.deaths:
			if k.vats[d.vat.id] != d.vat {
				continue // already replaced
			}
			if _, err := k.idleDeath(ctx, d.vat); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// idleDeath applies the policy to the death of v's worker with no delivery in flight, and
// relaunches it when the policy says so.
func (k *Kernel) idleDeath(ctx context.Context, v *vat) (policy.Action, error) {
	delete(k.vats, v.id)
	act, err := k.decide(ctx, v.id, v.h.Wait(), policy.Idle)
	if err != nil {
		return act, err
	}
	if act.Kind == policy.RestartWorker || act.Kind == policy.Continue {
		if err := k.launch(ctx, v.id); err != nil {
			return act, err
		}
	}
	return act, nil
}

// Idle lets time pass with every worker idle, reacting at once to deaths.
func (k *Kernel) Idle(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case dd := <-k.deaths:
			k.deaths <- dd
			if err := k.handleIdleDeaths(ctx); err != nil {
				return err
			}
		case <-t.C:
			return k.handleIdleDeaths(ctx)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Signal sends sig to vat's worker from outside the policy (a test and demo hook standing in
// for an operator's kill or a reboot).
func (k *Kernel) Signal(id string, sig syscall.Signal) error {
	v := k.vats[id]
	if v == nil {
		return fmt.Errorf("kernel: vat %s has no worker", id)
	}
	if err := v.h.Signal(sig); err != nil {
		return fmt.Errorf("kernel: signal vat %s's worker: %w", id, err)
	}
	return nil
}

func (k *Kernel) stop(h Handle, reason string) {
	k.mu.Lock()
	k.stopped[h] = true
	k.mu.Unlock()
	h.Stop(reason)
	h.Wait()
}

func (k *Kernel) stopAll(reason string) {
	for id, v := range k.vats {
		k.stop(v.h, reason)
		delete(k.vats, id)
	}
}

// Close stops every worker and waits until every sandbox it ever started is gone (a dead
// worker's cgroup leaf is removed just after its report is handed out): the kernel process may
// exit right after Close without leaving anything behind.
func (k *Kernel) Close() {
	k.stopAll("kernel shutting down")
	for _, h := range k.all {
		<-h.Cleaned()
	}
	k.all = nil
}
