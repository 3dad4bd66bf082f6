// Package kernel holds the crash policy — what a kernel does when a worker dies — and a small
// reference kernel built on the launcher: vats, each with a worker, a transcript and state in an
// embedded transactional store, and cranks committed atomically or not at all.
//
// The store is go.etcd.io/bbolt: pure Go (no second cgo dependency next to libseccomp), one file,
// ACID transactions with a single writer, which is exactly a kernel's shape (one crank at a time).
package kernel

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/vatrun/vatrun/report"
)

// Mode is the kernel's mode.
type Mode string

const (
	// Consensus: every validator must reach the same outcome, so only deterministic deaths
	// (metering faults) may change state; anything else halts the kernel without committing.
	Consensus Mode = "consensus"
	// Solo: a single-node kernel; restart or terminate under a bounded, randomized backoff.
	Solo Mode = "solo"
)

// ActionKind is what the kernel does about a death.
type ActionKind string

const (
	// Continue: nothing to do (the kernel itself stopped the worker).
	Continue ActionKind = "continue"
	// TerminateVat: a committed, deterministic outcome: the vat is gone, with a reason.
	TerminateVat ActionKind = "terminate-vat"
	// RestartWorker: after a delay, start a new worker and replay the vat's transcript.
	RestartWorker ActionKind = "restart-worker"
	// HaltKernel: stop at once without committing the crank; the supervisor restarts the kernel,
	// which resumes from the last commit.
	HaltKernel ActionKind = "halt-kernel"
)

// Action is the policy's decision.
type Action struct {
	Kind   ActionKind
	Reason string
	// After is how long to wait before RestartWorker.
	After time.Duration
}

func (a Action) String() string {
	if a.Kind == RestartWorker {
		return fmt.Sprintf("%s after %v: %s", a.Kind, a.After.Round(time.Millisecond), a.Reason)
	}
	return fmt.Sprintf("%s: %s", a.Kind, a.Reason)
}

// Backoff is a randomized exponential backoff: attempt n (0-based) waits a duration drawn
// uniformly from [d·(1−Jitter), d] where d = min(Base·Factor^n, Cap).
type Backoff struct {
	Base   time.Duration
	Factor float64
	Cap    time.Duration
	Jitter float64 // 0 (none) … 1 (full jitter)
}

// DefaultBackoff: 1 s, doubling, capped at 60 s, half jitter.
var DefaultBackoff = Backoff{Base: time.Second, Factor: 2, Cap: time.Minute, Jitter: 0.5}

// Delay is the wait before attempt n.
func (b Backoff) Delay(n int, rnd *rand.Rand) time.Duration {
	d := float64(b.Base)
	for i := 0; i < n && d < float64(b.Cap); i++ {
		d *= b.Factor
	}
	if d > float64(b.Cap) {
		d = float64(b.Cap)
	}
	lo := d * (1 - b.Jitter)
	if b.Jitter <= 0 || rnd == nil {
		return time.Duration(d)
	}
	return time.Duration(lo + rnd.Float64()*(d-lo))
}

// SoloOnFault says what solo mode does with resource exhaustion, sandbox violations and unknown
// deaths.
type SoloOnFault string

const (
	// SoloRestart: retry up to Retries times with backoff, then terminate the vat (default).
	SoloRestart SoloOnFault = "restart"
	// SoloHalt: halt as consensus mode does.
	SoloHalt SoloOnFault = "halt"
)

// PolicyConfig configures Decide.
type PolicyConfig struct {
	Mode Mode
	// OnFault is solo mode's reaction to resource exhaustion, sandbox violations and unknown
	// deaths (default SoloRestart).
	OnFault SoloOnFault
	// Retries per vat per kernel process for those deaths (default 1).
	Retries int
	// MaxExternalRestarts bounds restarts after external deaths per vat per kernel process
	// (default 10). External causes never terminate a vat: past the bound the kernel halts, so a
	// supervisor (and an operator) sees a machine that keeps killing workers.
	MaxExternalRestarts int
	Backoff             Backoff
}

// withDefaults fills zero fields.
func (c PolicyConfig) withDefaults() PolicyConfig {
	if c.OnFault == "" {
		c.OnFault = SoloRestart
	}
	if c.Retries == 0 {
		c.Retries = 1
	}
	if c.Retries < 0 {
		c.Retries = 0
	}
	if c.MaxExternalRestarts == 0 {
		c.MaxExternalRestarts = 10
	}
	if c.Backoff == (Backoff{}) {
		c.Backoff = DefaultBackoff
	}
	return c
}

// History is one vat's deaths in this kernel process (not persisted: a restarted kernel gets a
// fresh budget, as the seed issue asks).
type History struct {
	// Faults counts restarts already granted for resource exhaustion, sandbox violations and
	// unknown deaths; External counts restarts after external deaths.
	Faults   int
	External int
}

// Decide is the crash policy: a pure function of the configuration, the death report, the
// phase the kernel was in ("startup", "in-delivery", "idle"), the vat's history and a random
// source (for the backoff's jitter). It never looks at a clock or at the machine.
//
//	class / cause                          consensus        solo
//	stopped (the kernel asked)             continue         continue
//	metering fault (deterministic)         terminate vat    terminate vat
//	clean exit the kernel did not ask for  halt             restart (like external)
//	external (signals, host OOM, killed)   halt             restart with backoff, never terminate;
//	                                                        halt past MaxExternalRestarts
//	resource exhaustion, sandbox           halt             retry Retries times with backoff, then
//	violation, unknown, launcher error                      terminate; or halt (OnFault=halt)
func Decide(cfg PolicyConfig, r report.Report, phase string, h History, rnd *rand.Rand) Action {
	cfg = cfg.withDefaults()
	what := fmt.Sprintf("worker died (%s/%s", r.Cause, r.Class)
	if phase != "" {
		what += ", " + phase
	}
	what += ")"
	if r.Cause == report.CauseStopped && r.KilledBy == report.KilledByVatrun {
		return Action{Kind: Continue, Reason: what + ": stopped on purpose"}
	}
	if r.Class == report.ClassDeterministic {
		return Action{Kind: TerminateVat, Reason: what + ": " + meteringReason(r)}
	}
	if cfg.Mode != Solo {
		return Action{Kind: HaltKernel, Reason: what + ": not deterministic, so no validator may commit an outcome for it"}
	}
	switch r.Class {
	case report.ClassExternal, report.ClassClean:
		if h.External >= cfg.MaxExternalRestarts {
			return Action{Kind: HaltKernel, Reason: fmt.Sprintf("%s: %d restarts after external deaths in this kernel process; something keeps killing workers", what, h.External)}
		}
		return Action{Kind: RestartWorker, After: cfg.Backoff.Delay(h.External, rnd), Reason: what + ": not the vat's fault, restart and replay"}
	}
	if cfg.OnFault == SoloHalt {
		return Action{Kind: HaltKernel, Reason: what + ": solo policy is halt"}
	}
	if h.Faults >= cfg.Retries {
		return Action{Kind: TerminateVat, Reason: fmt.Sprintf("%s: retry budget of %d used up", what, cfg.Retries)}
	}
	return Action{Kind: RestartWorker, After: cfg.Backoff.Delay(h.Faults, rnd), Reason: fmt.Sprintf("%s: retry %d of %d", what, h.Faults+1, cfg.Retries)}
}

func meteringReason(r report.Report) string {
	if r.ExitMeaning != "" {
		return "metering fault: " + r.ExitMeaning
	}
	return "metering fault"
}

// Note records a decision in the history.
func (h History) Note(r report.Report, a Action) History {
	if a.Kind != RestartWorker {
		return h
	}
	if r.Class == report.ClassExternal || r.Class == report.ClassClean {
		h.External++
	} else {
		h.Faults++
	}
	return h
}
