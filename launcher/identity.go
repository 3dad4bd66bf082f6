package launcher

import (
	"fmt"
	"sort"

	"github.com/vatrun/vatrun/hostfacts"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// identity is what the report says the worker is (its digest) and where it ran (the host facts
// digest). Host facts are gathered once per process and a worker's digest once per version of its
// files (hostfacts caches both), in the background while the sandbox is set up, so the launch path
// does not wait for them; the report does. A profile with pins needs them before the launch.
type identity struct {
	done      chan struct{}
	worker    string
	workerErr error
	facts     hostfacts.Facts
	host      string
}

func startIdentity(path string, now bool) *identity {
	id := &identity{done: make(chan struct{})}
	run := func() {
		defer close(id.done)
		id.facts = hostfacts.Host()
		id.host = hostfacts.HostDigest()
		id.worker, _, id.workerErr = hostfacts.WorkerDigest(path)
	}
	if now {
		run()
	} else {
		go run()
	}
	return id
}

func (id *identity) wait() (worker, host string) {
	<-id.done
	return id.worker, id.host
}

// PinError says which of the profile's pins does not hold: the fact, the value the profile
// wants, and the value found. It wraps ErrConfig (`vatrun run` exits 125).
type PinError struct {
	Profile, Fact, Want, Found string
}

func (e *PinError) Error() string {
	return fmt.Sprintf("%v: profile %q pins %s %s, found %s; refusing to start the worker", ErrConfig, e.Profile, e.Fact, e.Want, e.Found)
}

func (e *PinError) Unwrap() error { return ErrConfig }

// checkPins refuses a launch when one of the profile's pins does not hold (the first one, in the
// order workerDigest, kernelMin, facts by name).
func (id *identity) checkPins(profile string, pins *seccompprofiles.Pins, path string) error {
	if pins == nil {
		return nil
	}
	<-id.done
	fail := func(fact, want, found string) error {
		return &PinError{Profile: profile, Fact: fact, Want: want, Found: found}
	}
	if pins.WorkerDigest != "" {
		switch {
		case id.workerErr != nil:
			return fail("workerDigest", pins.WorkerDigest, "none: "+id.workerErr.Error())
		case id.worker != pins.WorkerDigest:
			return fail("workerDigest", pins.WorkerDigest, id.worker+" for "+path)
		}
	}
	if pins.KernelMin != "" {
		rel, _ := id.facts.Get(hostfacts.KernelRelease)
		if ok, err := hostfacts.KernelAtLeast(rel.Value, pins.KernelMin); err != nil || !ok {
			return fail("kernelMin", pins.KernelMin, "kernel.release "+rel.Value)
		}
	}
	names := make([]string, 0, len(pins.Facts))
	for k := range pins.Facts {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		f, ok := id.facts.Get(k)
		if !ok {
			return fail(k, fmt.Sprintf("%q", pins.Facts[k]), "no such host fact")
		}
		if f.Value != pins.Facts[k] {
			return fail(k, fmt.Sprintf("%q", pins.Facts[k]), fmt.Sprintf("%q", f.Value))
		}
	}
	return nil
}

// CheckPins says whether the profile's pins hold on this host for the worker at path, as Launch
// checks them (a *PinError when one does not). With path "", a workerDigest pin is not checked.
func CheckPins(p *seccompprofiles.Profile, path string) error {
	if p.Pins == nil {
		return nil
	}
	pins := p.Pins
	if path == "" && pins.WorkerDigest != "" {
		q := *pins
		q.WorkerDigest = ""
		pins = &q
	}
	return startIdentity(path, true).checkPins(p.Name, pins, path)
}
