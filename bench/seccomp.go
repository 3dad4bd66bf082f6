package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
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

// sysloopOnce runs the syscall loop under prof (nil: no sandbox at all).
func sysloopOnce(o *options, prof *seccompprofiles.Profile) (map[string]float64, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer outR.Close()
	argv := []string{o.sysloop, strconv.Itoa(o.sysIters), "5"}
	var wait func() error
	if prof == nil {
		p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{Env: workerEnv, Files: []*os.File{devNull, outW, os.Stderr}})
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
			Profile: prof, Path: argv[0], Args: argv, Env: workerEnv, Stdout: outW, Stderr: os.Stderr,
			Cgroup: launcher.CgroupOptions{Disable: true},
		})
		outW.Close()
		if err != nil {
			return nil, err
		}
		wait = func() error {
			if r := w.Wait(); r.Cause != "exited" {
				return fmt.Errorf("sysloop under %s: %s", prof.Name, r.OneLine())
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
	// ns[mode][kind] is the best round over all launches: on a shared machine, other work only
	// ever adds time, so the minimum is the steadiest estimate of a system call's own cost.
	ns map[string]map[string]float64
}

// benchSeccomp runs the loop o.sysLaunches times per mode, interleaved.
func benchSeccomp(o *options, profs map[string]*seccompprofiles.Profile) (*seccompResult, error) {
	res := &seccompResult{
		modes: []string{"no sandbox", "vatrun, no seccomp section", "vatrun, xsnap", "vatrun, dev"},
		ns:    map[string]map[string]float64{},
	}
	prof := map[string]*seccompprofiles.Profile{
		"no sandbox":                 nil,
		"vatrun, no seccomp section": profs["nofilter"],
		"vatrun, xsnap":              profs["xsnap"],
		"vatrun, dev":                profs["dev"],
	}
	all := map[string]map[string][]float64{}
	for range o.sysLaunches {
		for _, m := range res.modes {
			got, err := sysloopOnce(o, prof[m])
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
