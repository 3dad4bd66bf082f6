// Package policy is the crash policy — what a kernel does when one of its workers dies — as one
// table in code (regime × death × phase → action), with a retry budget and a randomized backoff
// applied after the lookup. It is pure and imports only report and the standard library: no cgo,
// no launcher, no store.
package policy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/vatrun/vatrun/report"
)

// Mode is the kernel's mode.
type Mode string

const (
	// Consensus: every validator must reach the same outcome, so only deterministic deaths
	// (metering faults during a delivery) may change state; anything else halts the kernel
	// without committing.
	Consensus Mode = "consensus"
	// Solo: a single-node kernel; restart or terminate under a bounded, randomized backoff.
	Solo Mode = "solo"
)

// Phase is what the kernel was doing with the worker when it died.
type Phase string

const (
	// Startup: the worker was being started and its transcript replayed.
	Startup Phase = "startup"
	// InDelivery: a crank was in flight (a command sent, its reply not yet received).
	InDelivery Phase = "in-delivery"
	// Idle: no delivery in flight.
	Idle Phase = "idle"
	// AnyPhase in a table row matches every phase, including an unknown one ("": the kernel did
	// not say).
	AnyPhase Phase = ""
)

// Phases are the phases a kernel reports, in the order a worker goes through them.
var Phases = []Phase{Startup, InDelivery, Idle}

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
	// Budget is the budget a RestartWorker draws on (History.Note counts it).
	Budget Budget
}

func (a Action) String() string {
	if a.Kind == RestartWorker {
		return fmt.Sprintf("%s after %v: %s", a.Kind, a.After.Round(time.Millisecond), a.Reason)
	}
	return fmt.Sprintf("%s: %s", a.Kind, a.Reason)
}

// Backoff is a randomized exponential backoff: attempt n (0-based) waits a duration drawn
// uniformly from [d·(1−Jitter), d] where d = min(Base·Factor^n, Cap). Every field means what it
// says at zero: the zero Backoff waits nothing, Jitter 0 is no jitter, Cap 0 caps at 0.
type Backoff struct {
	Base   time.Duration
	Factor float64
	Cap    time.Duration
	Jitter float64 // 0 (none) … 1 (full jitter)
}

// DefaultBackoff: 1 s, doubling, capped at 60 s, half jitter.
var DefaultBackoff = Backoff{Base: time.Second, Factor: 2, Cap: time.Minute, Jitter: 0.5}

// Validate rejects a backoff that cannot mean anything sensible.
func (b Backoff) Validate() error {
	switch {
	case b.Base < 0 || b.Cap < 0:
		return fmt.Errorf("backoff: negative duration (base %v, cap %v)", b.Base, b.Cap)
	case b.Cap < b.Base:
		return fmt.Errorf("backoff: cap %v below base %v", b.Cap, b.Base)
	case b.Base > 0 && b.Factor < 1:
		return fmt.Errorf("backoff: factor %v, want at least 1", b.Factor)
	case b.Jitter < 0 || b.Jitter > 1:
		return fmt.Errorf("backoff: jitter %v, want 0…1", b.Jitter)
	}
	return nil
}

// Delay is the wait before attempt n. Without a random source it is the upper bound d.
func (b Backoff) Delay(n int, rnd *rand.Rand) time.Duration {
	d := float64(b.Base)
	for i := 0; i < n && d < float64(b.Cap); i++ {
		d *= b.Factor
	}
	if d > float64(b.Cap) {
		d = float64(b.Cap)
	}
	if b.Jitter <= 0 || rnd == nil {
		return time.Duration(d)
	}
	lo := d * (1 - b.Jitter)
	return time.Duration(lo + rnd.Float64()*(d-lo))
}

// Defaults of the budgets, used by Defaults and the `vatrun kernel` flags.
const (
	// DefaultRetries is solo mode's retries per vat per kernel process after resource
	// exhaustion, sandbox violations, launcher errors and unknown deaths.
	DefaultRetries = 1
	// DefaultMaxExternalRestarts bounds solo mode's restarts after external deaths per vat per
	// kernel process.
	DefaultMaxExternalRestarts = 10
)

// Config configures Decide. Its zero value is the strictest policy there is (an invalid mode
// decides as Consensus does, budgets of zero allow no restart, the zero Backoff waits nothing);
// Defaults gives the documented defaults.
type Config struct {
	Mode Mode
	// HaltOnFault makes solo mode halt, as consensus mode does, on resource exhaustion, sandbox
	// violations, launcher errors and unknown deaths instead of retrying them.
	HaltOnFault bool
	// Retries per vat per kernel process for those deaths before the vat is terminated
	// (0: terminate at the first).
	Retries int
	// MaxExternalRestarts bounds restarts after external deaths per vat per kernel process
	// (0: halt at the first). External causes never terminate a vat: past the bound the kernel
	// halts, so a supervisor (and an operator) sees a machine that keeps killing workers.
	MaxExternalRestarts int
	Backoff             Backoff
}

// Defaults is mode's configuration with the documented defaults.
func Defaults(mode Mode) Config {
	return Config{Mode: mode, Retries: DefaultRetries, MaxExternalRestarts: DefaultMaxExternalRestarts, Backoff: DefaultBackoff}
}

// Validate rejects an unknown mode, negative budgets and a nonsensical backoff.
func (c Config) Validate() error {
	var errs []error
	if c.Mode != Consensus && c.Mode != Solo {
		errs = append(errs, fmt.Errorf("mode %q: want %s or %s", c.Mode, Consensus, Solo))
	}
	if c.Retries < 0 {
		errs = append(errs, fmt.Errorf("retries %d: want 0 or more", c.Retries))
	}
	if c.MaxExternalRestarts < 0 {
		errs = append(errs, fmt.Errorf("max external restarts %d: want 0 or more", c.MaxExternalRestarts))
	}
	if err := c.Backoff.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("crash policy: %w", err)
	}
	return nil
}

// Regime is a column of the table: the mode and, in solo mode, what faults do.
type Regime string

const (
	RegimeConsensus Regime = "consensus"
	RegimeSolo      Regime = "solo"
	RegimeSoloHalt  Regime = "solo-halt-on-fault"
)

// Regimes are the table's columns.
var Regimes = []Regime{RegimeConsensus, RegimeSolo, RegimeSoloHalt}

// Regime is c's column; anything but Solo decides as Consensus does (the safe side).
func (c Config) Regime() Regime {
	switch {
	case c.Mode != Solo:
		return RegimeConsensus
	case c.HaltOnFault:
		return RegimeSoloHalt
	}
	return RegimeSolo
}

// Death is the table's death key: a report class, or Stopped when the kernel itself had
// vatrun stop the worker.
type Death string

const (
	Stopped            Death = "stopped-by-kernel"
	Deterministic      Death = Death(report.ClassDeterministic)
	Clean              Death = Death(report.ClassClean)
	External           Death = Death(report.ClassExternal)
	ResourceExhaustion Death = Death(report.ClassResourceExhaustion)
	SandboxViolation   Death = Death(report.ClassSandboxViolation)
	Unknown            Death = Death(report.ClassUnknown)
	LauncherError      Death = Death(report.ClassLauncherError)
)

// Deaths are the table's death keys, in the order docs/kernel.md lists them.
var Deaths = []Death{Stopped, Deterministic, Clean, External, ResourceExhaustion, SandboxViolation, Unknown, LauncherError}

// DeathOf is r's death key. A class the table does not know (a newer report, or none) is
// Unknown.
func DeathOf(r report.Report) Death {
	if r.Cause == report.CauseStopped && r.KilledBy == report.KilledByVatrun {
		return Stopped
	}
	d := Death(r.Class)
	for _, k := range Deaths {
		if k == d && k != Stopped {
			return d
		}
	}
	return Unknown
}

// Budget is what bounds a row's RestartWorker; it is applied after the lookup.
type Budget string

const (
	// NoBudget: the row's action as is.
	NoBudget Budget = ""
	// FaultRetries: restart while History.Faults < Config.Retries, then the row's Exhausted.
	FaultRetries Budget = "fault-retries"
	// ExternalRestarts: restart while History.External < Config.MaxExternalRestarts, then the
	// row's Exhausted.
	ExternalRestarts Budget = "external-restarts"
)

// Row is one line of the reaction table.
type Row struct {
	Regime Regime
	Death  Death
	// Phase is the phase the row is for; AnyPhase matches every phase.
	Phase Phase
	Kind  ActionKind
	// Budget bounds a RestartWorker; Exhausted is the action once it is used up.
	Budget    Budget
	Exhausted ActionKind
	Reason    string
}

const (
	notDeterministic = "not deterministic, so no validator may commit an outcome for it"
	notVatsFault     = "not the vat's fault, restart and replay"
	retryFault       = "may be the vat's fault: bounded, slowed retries, then terminate"
)

// table is the crash policy. Rows are looked up in order and the first match wins, so a row for
// one phase comes before the regime's AnyPhase row for the same death.
//
// Phase matters in one place: in consensus mode a metering fault is a deterministic outcome
// only during a delivery (the meters run on a delivery's work). The same exit during startup
// (a replay of deliveries that all succeeded before) or while idle is tied to no crank, and a
// termination committed whenever one validator happens to notice it would split validators,
// so it halts like any other non-deterministic death. Every other decision depends on the
// regime and the death alone; the phase is only named in the reason.
var table = []Row{
	{Regime: RegimeConsensus, Death: Stopped, Kind: Continue, Reason: "stopped on purpose"},
	{Regime: RegimeConsensus, Death: Deterministic, Phase: InDelivery, Kind: TerminateVat, Reason: "metering fault, a deterministic outcome of the delivery"},
	{Regime: RegimeConsensus, Death: Deterministic, Kind: HaltKernel, Reason: "metering fault outside a delivery is tied to no crank, so no validator may commit an outcome for it"},
	{Regime: RegimeConsensus, Death: Clean, Kind: HaltKernel, Reason: notDeterministic},
	{Regime: RegimeConsensus, Death: External, Kind: HaltKernel, Reason: notDeterministic},
	{Regime: RegimeConsensus, Death: ResourceExhaustion, Kind: HaltKernel, Reason: notDeterministic},
	{Regime: RegimeConsensus, Death: SandboxViolation, Kind: HaltKernel, Reason: notDeterministic},
	{Regime: RegimeConsensus, Death: Unknown, Kind: HaltKernel, Reason: notDeterministic},
	{Regime: RegimeConsensus, Death: LauncherError, Kind: HaltKernel, Reason: notDeterministic},

	{Regime: RegimeSolo, Death: Stopped, Kind: Continue, Reason: "stopped on purpose"},
	{Regime: RegimeSolo, Death: Deterministic, Kind: TerminateVat, Reason: "metering fault"},
	{Regime: RegimeSolo, Death: Clean, Kind: RestartWorker, Budget: ExternalRestarts, Exhausted: HaltKernel, Reason: notVatsFault},
	{Regime: RegimeSolo, Death: External, Kind: RestartWorker, Budget: ExternalRestarts, Exhausted: HaltKernel, Reason: notVatsFault},
	{Regime: RegimeSolo, Death: ResourceExhaustion, Kind: RestartWorker, Budget: FaultRetries, Exhausted: TerminateVat, Reason: retryFault},
	{Regime: RegimeSolo, Death: SandboxViolation, Kind: RestartWorker, Budget: FaultRetries, Exhausted: TerminateVat, Reason: retryFault},
	{Regime: RegimeSolo, Death: Unknown, Kind: RestartWorker, Budget: FaultRetries, Exhausted: TerminateVat, Reason: retryFault},
	{Regime: RegimeSolo, Death: LauncherError, Kind: RestartWorker, Budget: FaultRetries, Exhausted: TerminateVat, Reason: retryFault},

	{Regime: RegimeSoloHalt, Death: Stopped, Kind: Continue, Reason: "stopped on purpose"},
	{Regime: RegimeSoloHalt, Death: Deterministic, Kind: TerminateVat, Reason: "metering fault"},
	{Regime: RegimeSoloHalt, Death: Clean, Kind: RestartWorker, Budget: ExternalRestarts, Exhausted: HaltKernel, Reason: notVatsFault},
	{Regime: RegimeSoloHalt, Death: External, Kind: RestartWorker, Budget: ExternalRestarts, Exhausted: HaltKernel, Reason: notVatsFault},
	{Regime: RegimeSoloHalt, Death: ResourceExhaustion, Kind: HaltKernel, Reason: "solo policy is halt"},
	{Regime: RegimeSoloHalt, Death: SandboxViolation, Kind: HaltKernel, Reason: "solo policy is halt"},
	{Regime: RegimeSoloHalt, Death: Unknown, Kind: HaltKernel, Reason: "solo policy is halt"},
	{Regime: RegimeSoloHalt, Death: LauncherError, Kind: HaltKernel, Reason: "solo policy is halt"},
}

// Table is a copy of the reaction table, in lookup order.
func Table() []Row { return append([]Row(nil), table...) }

// Lookup is the first row for regime, death and phase.
func Lookup(regime Regime, death Death, phase Phase) (Row, bool) {
	for _, r := range table {
		if r.Regime == regime && r.Death == death && (r.Phase == AnyPhase || r.Phase == phase) {
			return r, true
		}
	}
	return Row{}, false
}

// History is one vat's restarts in this kernel process (not persisted: a restarted kernel gets
// a fresh budget, as the seed issue asks).
type History struct {
	// Faults counts restarts granted from the FaultRetries budget, External those from the
	// ExternalRestarts budget.
	Faults   int
	External int
}

// Note records a decision in the history.
func (h History) Note(a Action) History {
	if a.Kind != RestartWorker {
		return h
	}
	switch a.Budget {
	case FaultRetries:
		h.Faults++
	case ExternalRestarts:
		h.External++
	}
	return h
}

// Decide is the crash policy: a pure function of the configuration, the death report, the
// phase the kernel was in, the vat's history and a random source (for the backoff's jitter; nil
// means none). It never looks at a clock or at the machine. It looks up the table's row for
// (cfg.Regime(), DeathOf(r), phase), then applies the row's budget: within it a RestartWorker
// waits cfg.Backoff's delay for the attempt, past it the row's Exhausted action is taken.
func Decide(cfg Config, r report.Report, phase Phase, h History, rnd *rand.Rand) Action {
	death := DeathOf(r)
	what := fmt.Sprintf("worker died (%s/%s", r.Cause, r.Class)
	if phase != AnyPhase {
		what += ", " + string(phase)
	}
	what += ")"
	row, ok := Lookup(cfg.Regime(), death, phase)
	if !ok {
		// The table test proves every regime × death × phase has a row; halting is the safe
		// answer should one ever be missing.
		return Action{Kind: HaltKernel, Reason: what + ": no policy row for it"}
	}
	reason := row.Reason
	if death == Deterministic && r.ExitMeaning != "" {
		reason += " (" + r.ExitMeaning + ")"
	}
	var used, limit int
	switch row.Budget {
	case NoBudget:
		return Action{Kind: row.Kind, Reason: what + ": " + reason}
	case FaultRetries:
		used, limit = h.Faults, cfg.Retries
		if used >= limit {
			return Action{Kind: row.Exhausted, Reason: fmt.Sprintf("%s: retry budget of %d used up", what, limit)}
		}
	case ExternalRestarts:
		used, limit = h.External, cfg.MaxExternalRestarts
		if used >= limit {
			return Action{Kind: row.Exhausted, Reason: fmt.Sprintf("%s: %d restarts after external deaths in this kernel process (the bound); something keeps killing workers", what, used)}
		}
	}
	a := Action{Kind: row.Kind, Budget: row.Budget, Reason: fmt.Sprintf("%s: %s (restart %d of %d)", what, reason, used+1, limit)}
	if a.Kind == RestartWorker {
		a.After = cfg.Backoff.Delay(used, rnd)
	}
	return a
}
