package hostile

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/vatrun/vatrun/report"
)

// TestLimitsWithoutCgroup: without a cgroup v2 leaf (here: --no-cgroup; the host has none) the
// memory limit still binds through RLIMIT_DATA, the xsnap profile's process limit through seccomp
// (no process creation), and the report says, per limit, what held it and what did not.
func TestLimitsWithoutCgroup(t *testing.T) {
	prof := func(name string, limits map[string]any) string {
		return derivedProfile(t, name, func(p map[string]any) {
			for k, v := range limits {
				p["limits"].(map[string]any)[k] = v
			}
			p["name"] = name + "-small"
		})
	}
	for _, c := range []struct {
		profile string
		pids    string
	}{
		{prof("xsnap", map[string]any{"memory": "64M", "stack": "8M"}), "seccomp: no process creation"},
		{prof("solo", map[string]any{"memory": "64M", "stack": "8M"}), "none: no cgroup, and the profile allows process creation"},
	} {
		t.Run(filepath.Base(c.profile), func(t *testing.T) {
			rf := filepath.Join(t.TempDir(), "r.json")
			p := startVatrun(t, procOpts{runArgs: []string{"--profile", c.profile, "--no-cgroup", "--report-file", rf}})
			p.send("alloc:134217728") // 128 MiB, over the 64M limit
			if got := p.reply(); got != "errno:12" {
				t.Errorf("alloc of 128 MiB under a 64M memory limit without cgroup: %q, want errno:12 (ENOMEM from RLIMIT_DATA)", got)
			}
			p.send("alloc:8388608") // 8 MiB fits
			if got := p.reply(); got != "allocated:8388608" {
				t.Errorf("alloc of 8 MiB: %q", got)
			}
			finishClean(t, p)
			r := readReportFile(t, rf)
			if r == nil {
				t.Fatal("no report")
			}
			want := map[string]string{"memory": "RLIMIT_DATA (no cgroup: the private writable memory the worker maps, not what it touches)", "pids": c.pids, "cpuMax": "none: the profile sets no cpu.max quota"}
			for k, v := range want {
				if r.LimitsEnforced[k] != v {
					t.Errorf("limitsEnforced[%s] = %q, want %q (report %v)", k, r.LimitsEnforced[k], v, r.LimitsEnforced)
				}
			}
			if r.Cause != report.CauseExited || !strings.Contains(strings.Join(r.Warnings, " "), "cgroup") {
				t.Errorf("cause %s, warnings %q", r.Cause, r.Warnings)
			}
		})
	}
}
