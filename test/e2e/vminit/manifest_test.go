package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseManifest(t *testing.T) {
	m, err := parseManifest(strings.NewReader(`
# comment
watchdog=3m
module=/lib/modules/a.ko
module=/lib/modules/b.ko
hostroot=/host
run name=root uid=0 parent=/e2e-root cgroup=/e2e-root/tests timeout=2m env=A=b=c /e2e/vm.test -test.v -test.skip ^TestUnpriv
run name=u1000 uid=1000 /e2e/vm.test
`))
	if err != nil {
		t.Fatal(err)
	}
	if m.Watchdog != 3*time.Minute || len(m.Runs) != 2 || m.HostRoot != "/host" ||
		strings.Join(m.Modules, ",") != "/lib/modules/a.ko,/lib/modules/b.ko" {
		t.Fatalf("got %+v", m)
	}
	r := m.Runs[0]
	if r.Name != "root" || r.UID != 0 || r.Parent != "/e2e-root" || r.Cgroup != "/e2e-root/tests" ||
		r.Timeout != 2*time.Minute || strings.Join(r.Env, ",") != "A=b=c" ||
		strings.Join(r.Argv, " ") != "/e2e/vm.test -test.v -test.skip ^TestUnpriv" {
		t.Errorf("run 0 = %+v", r)
	}
	if r := m.Runs[1]; r.UID != 1000 || r.Timeout != 10*time.Minute || r.Cgroup != "" {
		t.Errorf("run 1 = %+v", r)
	}
}

func TestParseManifestErrors(t *testing.T) {
	for _, in := range []string{
		"bogus",
		"watchdog=x",
		"run uid=0 /x",                 // no name
		"run name=a",                   // no argv
		"run name=a uid=-1 /x",         // bad uid
		"run name=a parent=rel /x",     // relative cgroup
		"run name=a cgroup=/a/../b /x", // unclean cgroup
		"run name=a what=1 /x",         // unknown option
		"run name=a /x\nrun name=a /y", // duplicate
		"run name=a timeout=0s /x",     // bad timeout
		"run name=a env=NOVALUE /x",    // bad env
		"run name=a noequals /x",       // not key=value
		"module=rel.ko",                // relative module
		"hostroot=/",                   // the VM's own root
		"hostroot=/a/../b",             // unclean
	} {
		if _, err := parseManifest(strings.NewReader(in)); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

// TestGuard checks that vminit refuses to run on a host (not pid 1).
func TestGuard(t *testing.T) {
	if err := guard(); err == nil {
		t.Fatal("guard accepted a process that is not pid 1")
	}
}
