package kernel

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/vatrun/vatrun/report"
)

// fakeStarter is a Starter whose workers speak the test worker's protocol in memory
// (add:N → sum:S, get → sum:S) and die on command: a plan per start says on which message (or
// never), and the test can kill a worker at any time (an idle death).
type fakeStarter struct {
	mu sync.Mutex
	// plans are consumed one per Start of the vat's worker; none left means it never dies on
	// its own.
	plans    map[string][]fakePlan
	started  []*fakeWorker
	startErr error
}

// fakePlan: the worker dies instead of answering its dieAt'th message (0-based, counting the
// replay), or after answering it when replyFirst.
type fakePlan struct {
	dieAt      int
	death      report.Report
	replyFirst bool
}

func (s *fakeStarter) Start(_ context.Context, vat string) (Handle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.startErr != nil {
		return nil, s.startErr
	}
	w := &fakeWorker{vat: vat, replies: make(chan []byte, 1), done: make(chan struct{}), plan: fakePlan{dieAt: -1}}
	if p := s.plans[vat]; len(p) > 0 {
		w.plan, s.plans[vat] = p[0], p[1:]
	}
	s.started = append(s.started, w)
	return w, nil
}

// workers are the workers started for vat, in order.
func (s *fakeStarter) workers(vat string) []*fakeWorker {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*fakeWorker
	for _, w := range s.started {
		if w.vat == vat {
			out = append(out, w)
		}
	}
	return out
}

type fakeWorker struct {
	vat     string
	replies chan []byte
	done    chan struct{}
	plan    fakePlan

	mu       sync.Mutex
	sum      int
	received []string
	phases   []string
	phase    string
	dead     bool
	rep      report.Report
}

// dies is a report as the classifier would write it.
func dies(cause report.Cause, class report.Class) report.Report {
	r := report.Report{Cause: cause, Class: class, KilledBy: report.KilledByNobody}
	if cause == report.CauseStopped {
		r.KilledBy = report.KilledByVatrun
	}
	return r
}

func (w *fakeWorker) Send(msg []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dead {
		return fmt.Errorf("write fd 3: %w", syscall.EPIPE)
	}
	n := len(w.received)
	w.received = append(w.received, string(msg))
	if n == w.plan.dieAt && !w.plan.replyFirst {
		w.dieLocked(w.plan.death)
		return nil
	}
	cmd, arg, _ := strings.Cut(string(msg), ":")
	switch cmd {
	case "add":
		x, err := strconv.Atoi(arg)
		if err != nil {
			return fmt.Errorf("fake worker: %q: %w", msg, err)
		}
		w.sum += x
	case "get":
	default:
		return fmt.Errorf("fake worker: unknown command %q", msg)
	}
	w.replies <- []byte("sum:" + strconv.Itoa(w.sum))
	if n == w.plan.dieAt {
		w.dieLocked(w.plan.death)
	}
	return nil
}

// die kills the worker from outside the kernel; false if it was already dead.
func (w *fakeWorker) die(r report.Report) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dieLocked(r)
}

func (w *fakeWorker) dieLocked(r report.Report) bool {
	if w.dead {
		return false
	}
	w.dead = true
	r.Phase = w.phase
	w.rep = r
	close(w.replies)
	close(w.done)
	return true
}

func (w *fakeWorker) Replies() <-chan []byte   { return w.replies }
func (w *fakeWorker) Done() <-chan struct{}    { return w.done }
func (w *fakeWorker) Cleaned() <-chan struct{} { return w.done }

func (w *fakeWorker) Wait() report.Report {
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rep
}

func (w *fakeWorker) SetPhase(p string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.phase = p
	w.phases = append(w.phases, p)
}

func (w *fakeWorker) Stop(reason string) {
	r := dies(report.CauseStopped, report.ClassExternal)
	r.KillReason = reason
	w.die(r)
}

func (w *fakeWorker) Signal(sig syscall.Signal) error {
	if !w.die(report.Report{Cause: report.CauseExternalSignal, Class: report.ClassExternal, KilledBy: report.KilledByNobody, Signal: int(sig)}) {
		return errors.New("fake worker: already dead")
	}
	return nil
}

func (w *fakeWorker) snapshot() (received, phases []string, rep report.Report, dead bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.received...), append([]string(nil), w.phases...), w.rep, w.dead
}
