package launcher

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vatrun/vatrun/hostfacts"
	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/seccompprofiles"
)

func TestReportCarriesDigests(t *testing.T) {
	w, c := launchWorker(t, context.Background(), profile(t, "xsnap"))
	c.cmdW.Close()
	r := w.Wait()
	want, _, err := hostfacts.WorkerDigest(testbin.Worker(t))
	if err != nil {
		t.Fatal(err)
	}
	if r.WorkerDigest != want || r.HostFactsDigest != hostfacts.HostDigest() || r.ProfileDigest == "" {
		t.Errorf("digests: profile %q worker %q (want %q) host %q (want %q)", r.ProfileDigest, r.WorkerDigest, want, r.HostFactsDigest, hostfacts.HostDigest())
	}
}

func TestPinsRefuseLaunch(t *testing.T) {
	pinned := func(p seccompprofiles.Pins) *seccompprofiles.Profile {
		q := profile(t, "xsnap")
		q.Pins = &p
		if err := q.Validate(); err != nil {
			t.Fatal(err)
		}
		return q
	}
	right, _, _ := hostfacts.WorkerDigest(testbin.Worker(t))
	wrong := "sha256:" + strings.Repeat("0", 64)
	for _, c := range []struct {
		pins seccompprofiles.Pins
		fact string
	}{
		{seccompprofiles.Pins{WorkerDigest: wrong}, "workerDigest"},
		{seccompprofiles.Pins{WorkerDigest: right, KernelMin: "999.1"}, "kernelMin"},
		{seccompprofiles.Pins{Facts: map[string]string{hostfacts.VMOvercommit: "7"}}, hostfacts.VMOvercommit},
	} {
		_, err := Launch(context.Background(), Spec{Profile: pinned(c.pins), Path: testbin.Worker(t), Cgroup: CgroupOptions{Disable: true}})
		var pe *PinError
		if !errors.As(err, &pe) || !errors.Is(err, ErrConfig) || pe.Fact != c.fact {
			t.Errorf("pins %+v: error %v, want a PinError for %s wrapping ErrConfig", c.pins, err, c.fact)
		}
		if err := CheckPins(pinned(c.pins), testbin.Worker(t)); err == nil {
			t.Errorf("CheckPins(%+v) passed", c.pins)
		}
	}
	// Pins that hold: the worker runs.
	w, conn := launchWorker(t, context.Background(), pinned(seccompprofiles.Pins{WorkerDigest: right, KernelMin: "3.0"}))
	if got := conn.call(t, "ping"); got != "pong" {
		t.Fatalf("reply %q", got)
	}
	conn.cmdW.Close()
	if r := w.Wait(); r.WorkerDigest != right {
		t.Errorf("workerDigest %q, want %q", r.WorkerDigest, right)
	}
}

func BenchmarkLaunchWait(b *testing.B) {
	p, err := seccompprofiles.Load("xsnap")
	if err != nil {
		b.Fatal(err)
	}
	worker := testbin.Worker(b)
	for b.Loop() {
		w, err := Launch(context.Background(), Spec{Profile: p, Path: worker, Args: []string{"w", "--exit-at-start", "0"}, Cgroup: CgroupOptions{Disable: true}})
		if err != nil {
			b.Fatal(err)
		}
		w.Wait()
	}
}
