package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/vatrun/vatrun/launcher"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// sysloopKinds are the loops of bench/csrc/sysloop.c, in its output order.
var sysloopKinds = []string{"getppid", "read", "ioctl"}

func parseSysloop(out []byte) (map[string]float64, error) {
	m := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			return nil, err
		}
		m[f[0]] = v
	}
	for _, k := range sysloopKinds {
		if _, ok := m[k]; !ok {
			return nil, fmt.Errorf("sysloop output %q lacks %s", out, k)
		}
	}
	return m, nil
}

// sysloopMode is one way to run the loop: under a vatrun profile, or as the command wrap(argv)
// (nil for both: no sandbox at all) with files as its fds 5, 6, … (3 and 4 closed).
type sysloopMode struct {
	prof  *seccompprofiles.Profile
	wrap  func(argv []string) []string
	files func() ([]*os.File, error)
}

// sysloopOnce runs the syscall loop one way.
func sysloopOnce(o *options, m sysloopMode) (map[string]float64, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer outR.Close()
	argv := []string{o.sysloop, strconv.Itoa(o.sysIters), "5"}
	var wait func() error
	if m.prof == nil {
		files := []*os.File{devNull, outW, os.Stderr}
		if m.files != nil {
			extra, err := m.files()
			if err != nil {
				outW.Close()
				return nil, err
			}
			for _, f := range extra {
				defer f.Close()
			}
			files = append(files, nil, nil)
			files = append(files, extra...)
		}
		if m.wrap != nil {
			argv = m.wrap(argv)
		}
		p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{Env: workerEnv, Files: files})
		outW.Close()
		if err != nil {
			return nil, err
		}
		wait = func() error {
			st, err := p.Wait()
			if err == nil && !st.Success() {
				err = fmt.Errorf("sysloop: %v", st)
			}
			return err
		}
	} else {
		w, err := launcher.Launch(context.Background(), launcher.Spec{
			Profile: m.prof, Path: argv[0], Args: argv, Env: workerEnv, Stdout: outW, Stderr: os.Stderr,
			Cgroup: launcher.CgroupOptions{Disable: true},
		})
		outW.Close()
		if err != nil {
			return nil, err
		}
		wait = func() error {
			if r := w.Wait(); r.Cause != "exited" {
				return fmt.Errorf("sysloop under %s: %s", m.prof.Name, r.OneLine())
			}
			return nil
		}
	}
	var buf bytes.Buffer
	_, rerr := buf.ReadFrom(outR)
	if err := wait(); err != nil {
		return nil, err
	}
	if rerr != nil {
		return nil, rerr
	}
	return parseSysloop(buf.Bytes())
}

type seccompResult struct {
	modes []string
	// base[mode] is the mode its percentages are against (the same sandbox without a filter).
	base map[string]string
	// ns[mode][kind] is the best round over all launches: on a shared machine, other work only
	// ever adds time, so the minimum is the steadiest estimate of a system call's own cost.
	ns map[string]map[string]float64
}

const (
	modeBare      = "no sandbox"
	modeNoFilter  = "vatrun, no filter (allow all)"
	modeXsnap     = "vatrun, xsnap"
	modeDev       = "vatrun, dev"
	modeBwrap     = "bwrap --unshare-all, no filter"
	modeBwrapDev  = "bwrap --unshare-all --seccomp (the dev filter)"
	bwrapSeccompF = 5 // the fd bwrap reads the filter from
)

// benchSeccomp runs the loop o.sysLaunches times per mode, interleaved. bwrap, the peer, runs
// the same loop with and without the dev profile's compiled filter, so the cost of a filter in
// any seccomp sandbox sits beside vatrun's.
func benchSeccomp(o *options, profs map[string]*seccompprofiles.Profile) (*seccompResult, error) {
	res := &seccompResult{
		modes: []string{modeBare, modeNoFilter, modeXsnap, modeDev},
		base:  map[string]string{modeXsnap: modeNoFilter, modeDev: modeNoFilter},
		ns:    map[string]map[string]float64{},
	}
	run := map[string]sysloopMode{
		modeBare:     {},
		modeNoFilter: {prof: profs["nofilter"]},
		modeXsnap:    {prof: profs["xsnap"]},
		modeDev:      {prof: profs["dev"]},
	}
	if bwrap, err := exec.LookPath("bwrap"); err == nil {
		bpfFile, cleanup, err := writeBPF(profs["dev"])
		if err != nil {
			return nil, err
		}
		defer cleanup()
		common := []string{bwrap, "--unshare-all", "--die-with-parent", "--cap-drop", "ALL", "--ro-bind", "/", "/", "--proc", "/proc", "--dev-bind", "/dev/null", "/dev/null"}
		run[modeBwrap] = sysloopMode{wrap: func(argv []string) []string {
			return append(append(slices.Clone(common), "--"), argv...)
		}}
		run[modeBwrapDev] = sysloopMode{
			wrap: func(argv []string) []string {
				return append(append(slices.Clone(common), "--seccomp", strconv.Itoa(bwrapSeccompF), "--"), argv...)
			},
			files: func() ([]*os.File, error) {
				f, err := os.Open(bpfFile)
				return []*os.File{f}, err
			},
		}
		res.modes = append(res.modes, modeBwrap, modeBwrapDev)
		res.base[modeBwrapDev] = modeBwrap
	}
	all := map[string]map[string][]float64{}
	for range o.sysLaunches {
		for _, m := range res.modes {
			got, err := sysloopOnce(o, run[m])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", m, err)
			}
			if all[m] == nil {
				all[m] = map[string][]float64{}
			}
			for k, v := range got {
				all[m][k] = append(all[m][k], v)
			}
		}
	}
	for m, kinds := range all {
		res.ns[m] = map[string]float64{}
		for k, vs := range kinds {
			res.ns[m][k] = slices.Min(vs)
		}
	}
	return res, nil
}
