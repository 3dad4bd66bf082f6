package kernel_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vatrun/vatrun/internal/proctree"
	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/kernel"
	"github.com/vatrun/vatrun/kernel/launchstarter"
	"github.com/vatrun/vatrun/kernel/policy"
	"github.com/vatrun/vatrun/launcher"
	"github.com/vatrun/vatrun/report"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// Integration tests: real workers (the C test worker) through the real launcher
// (kernel/launchstarter); they need namespaces (root, or unprivileged user namespaces) and
// seccomp. The kernel's unit tests, on a fake Starter, are in kernel_test.go.

type rig struct {
	t     *testing.T
	path  string
	store *kernel.Store
	k     *kernel.Kernel
	out   *bytes.Buffer
}

func newRig(t *testing.T, path string, pol policy.Config) *rig {
	t.Helper()
	if _, err := os.Stat("/proc/self/ns/pid"); err != nil {
		t.Skip("needs namespaces")
	}
	// solo, not dev: dev lets the worker signal itself, so a kill from outside would be unknown, not external.
	p, err := seccompprofiles.Load("solo")
	if err != nil {
		t.Fatal(err)
	}
	st, err := kernel.OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	out := &bytes.Buffer{}
	k, err := kernel.New(kernel.Config{
		Policy:        pol,
		ProfileDigest: p.Digest(),
		PinDigest:     p.Digest(),
		Starter:       &launchstarter.Starter{Profile: p, Path: testbin.Worker(t), Cgroup: launcher.CgroupOptions{Disable: true}},
		Out:           out,
		Rand:          rand.New(rand.NewPCG(1, 1)),
		Sleep:         func(context.Context, time.Duration) error { return nil },
	}, st)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, path: path, store: st, k: k, out: out}
	t.Cleanup(r.close)
	return r
}

func (r *rig) close() {
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

func (r *rig) deliver(vat, msg, want string) {
	r.t.Helper()
	got, err := r.k.Deliver(context.Background(), vat, msg)
	if err != nil || got != want {
		r.t.Fatalf("deliver %s %q: %q, %v; want %q\n%s", vat, msg, got, err, want, r.out)
	}
}

// snapshot is the store's logical content and its file's hash.
func (r *rig) snapshot() (string, [32]byte) {
	r.t.Helper()
	d, err := r.store.Dump()
	if err != nil {
		r.t.Fatal(err)
	}
	data, err := os.ReadFile(r.path)
	if err != nil {
		r.t.Fatal(err)
	}
	return string(d), sha256.Sum256(data)
}

// killWorkerSoon SIGKILLs the only worker (grandchild of this test through the init stage)
// after d, from outside the kernel, like a stray kill.
func killWorkerSoon(t *testing.T, d time.Duration, sig syscall.Signal) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(d)
		for _, init := range proctree.Children(os.Getpid()) {
			for _, w := range proctree.Children(init) {
				syscall.Kill(w, sig)
			}
		}
	}()
	return done
}

func TestConsensusCrashMidDeliveryHaltsWithoutCommit(t *testing.T) {
	r := newRig(t, filepath.Join(t.TempDir(), "k.db"), policy.Defaults(policy.Consensus))
	r.deliver("v1", "add:5", "sum:5")
	dump, hash := r.snapshot()
	_, err := r.k.Deliver(context.Background(), "v1", "abort")
	var h *kernel.HaltError
	if !errors.As(err, &h) || h.Report.Cause != report.CauseAbort {
		t.Fatalf("err %v, want a halt on abort", err)
	}
	if h.Report.Phase != "in-delivery" {
		t.Fatalf("phase %q, want in-delivery", h.Report.Phase)
	}
	if d, hh := r.snapshot(); d != dump || hh != hash {
		t.Fatalf("store changed by a crank that halted:\nbefore:\n%s\nafter:\n%s", dump, d)
	}
	// A halted kernel exits right after Close: nothing of any sandbox may outlive it.
	r.close()
	if kids := proctree.Children(os.Getpid()); len(kids) != 0 {
		t.Fatalf("processes left after Close: %v", kids)
	}
}

func TestConsensusMeteringFaultTerminatesVat(t *testing.T) {
	r := newRig(t, filepath.Join(t.TempDir(), "k.db"), policy.Defaults(policy.Consensus))
	r.deliver("v1", "add:1", "sum:1")
	_, err := r.k.Deliver(context.Background(), "v1", "exit:17")
	if !errors.Is(err, kernel.ErrTerminated) {
		t.Fatalf("err %v, want the vat terminated", err)
	}
	recs, err := r.store.Vats()
	if err != nil {
		t.Fatal(err)
	}
	if !recs["v1"].Terminated || !strings.Contains(recs["v1"].Reason, "metering fault") || recs["v1"].Deliveries != 1 {
		t.Fatalf("stored record %+v", recs["v1"])
	}
	if _, err := r.k.Deliver(context.Background(), "v1", "ping"); !errors.Is(err, kernel.ErrTerminated) {
		t.Fatalf("delivery to a terminated vat: %v", err)
	}
}

func TestSoloRetryThenTerminate(t *testing.T) {
	r := newRig(t, filepath.Join(t.TempDir(), "k.db"), policy.Config{Mode: policy.Solo, Retries: 1})
	r.deliver("v1", "add:3", "sum:3")
	_, err := r.k.Deliver(context.Background(), "v1", "abort")
	if !errors.Is(err, kernel.ErrTerminated) || !strings.Contains(err.Error(), "retry budget of 1 used up") {
		t.Fatalf("err %v\n%s", err, r.out)
	}
	if n := strings.Count(r.out.String(), "restart-worker"); n != 1 {
		t.Fatalf("%d restarts, want exactly 1:\n%s", n, r.out)
	}
	recs, err := r.store.Vats()
	if err != nil {
		t.Fatal(err)
	}
	if !recs["v1"].Terminated || recs["v1"].State != "sum:3" {
		t.Fatalf("record %+v", recs["v1"])
	}
}

func TestSoloExternalKillMidDeliveryRestartsAndRedelivers(t *testing.T) {
	r := newRig(t, filepath.Join(t.TempDir(), "k.db"), policy.Defaults(policy.Solo))
	r.deliver("v1", "add:4", "sum:4")
	done := killWorkerSoon(t, 150*time.Millisecond, syscall.SIGKILL)
	r.deliver("v1", "sleep:600", "slept")
	<-done
	if !strings.Contains(r.out.String(), "cause=killed") || !strings.Contains(r.out.String(), "restart-worker") {
		t.Fatalf("no external death and restart in:\n%s", r.out)
	}
	// The restarted worker was rebuilt by replay.
	r.deliver("v1", "get", "sum:4")
	tr, err := r.store.Transcript("v1")
	if err != nil {
		t.Fatal(err)
	}
	if len(tr) != 3 || tr[1].Delivery != "sleep:600" {
		t.Fatalf("transcript %+v", tr)
	}
}

func TestIdleDeathNoticedAtOnce(t *testing.T) {
	t.Run("consensus halts", func(t *testing.T) {
		r := newRig(t, filepath.Join(t.TempDir(), "k.db"), policy.Defaults(policy.Consensus))
		r.deliver("v1", "add:2", "sum:2")
		dump, hash := r.snapshot()
		start := time.Now()
		killWorkerSoon(t, 100*time.Millisecond, syscall.SIGTERM)
		err := r.k.Idle(context.Background(), 10*time.Second)
		var h *kernel.HaltError
		if !errors.As(err, &h) || h.Report.Cause != report.CauseExternalSignal || h.Report.Phase != "idle" {
			t.Fatalf("err %v, want a halt on the idle SIGTERM", err)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Fatalf("noticed after %v, want at once (well before the 10 s idle period ends)", el)
		}
		if d, hh := r.snapshot(); d != dump || hh != hash {
			t.Fatal("store changed by an idle death in consensus mode")
		}
	})
	t.Run("solo restarts and replays", func(t *testing.T) {
		r := newRig(t, filepath.Join(t.TempDir(), "k.db"), policy.Defaults(policy.Solo))
		r.deliver("v1", "add:2", "sum:2")
		r.deliver("v1", "add:9", "sum:11")
		killWorkerSoon(t, 100*time.Millisecond, syscall.SIGKILL)
		if err := r.k.Idle(context.Background(), time.Second); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(r.out.String(), "(idle)") || !strings.Contains(r.out.String(), "replayed 2 deliveries") {
			t.Fatalf("no idle death and replay in:\n%s", r.out)
		}
		r.deliver("v1", "get", "sum:11")
	})
}

func TestRestartedKernelResumesFromLastCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	r := newRig(t, path, policy.Defaults(policy.Consensus))
	r.deliver("v1", "add:20", "sum:20")
	r.deliver("v2", "add:1", "sum:1")
	r.deliver("v1", "add:22", "sum:42")
	if _, err := r.k.Deliver(context.Background(), "v1", "abort"); err == nil {
		t.Fatal("abort did not halt")
	}
	r.close()

	r2 := newRig(t, path, policy.Defaults(policy.Consensus))
	if err := r2.k.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	r2.deliver("v1", "get", "sum:42")
	r2.deliver("v2", "get", "sum:1")
	if c, err := r2.store.Crank(); err != nil || c != 5 {
		t.Fatalf("crank %d, %v; want 5 (3 before the halt, 2 after)", c, err)
	}
}

func TestReplayDivergenceHalts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	r := newRig(t, path, policy.Defaults(policy.Solo))
	r.deliver("v1", "add:5", "sum:5")
	r.close()
	// Corrupt the transcript's recorded reply: replay must refuse to continue.
	st, err := kernel.OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CommitDelivery("v1", kernel.Entry{Delivery: "add:1", Reply: "sum:999"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	r2 := newRig(t, path, policy.Defaults(policy.Solo))
	var h *kernel.HaltError
	if err := r2.k.Start(context.Background()); !errors.As(err, &h) || !strings.Contains(h.Reason, "replay diverged at delivery 2") {
		t.Fatalf("err %v, want a divergence halt", err)
	}
}
