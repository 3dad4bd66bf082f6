package hostile

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vatrun/vatrun/internal/testbin"
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
			delete(p, "engine") // 64M is below xsnap's meter on purpose
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
			want := map[string]string{"pids": c.pids, "cpuMax": "none: no cgroup"}
			for k, v := range want {
				if r.LimitsEnforced[k] != v {
					t.Errorf("limitsEnforced[%s] = %q, want %q (report %v)", k, r.LimitsEnforced[k], v, r.LimitsEnforced)
				}
			}
			// Whether it adds that shared memory escapes it depends on the filter's mmap rule
			// (TestSharedMemoryWithoutCgroup).
			if m := r.LimitsEnforced["memory"]; !strings.HasPrefix(m, "RLIMIT_DATA (no cgroup: the private writable memory the worker maps, not what it touches") {
				t.Errorf("limitsEnforced[memory] = %q", m)
			}
			if r.Cause != report.CauseExited || !strings.Contains(strings.Join(r.Warnings, " "), "cgroup") {
				t.Errorf("cause %s, warnings %q", r.Cause, r.Warnings)
			}
		})
	}
}

// sharedMemoryProfile is the built-in xsnap profile with a 64M memory limit and its own mmap rule:
// args nil allows any flags, else the rule's conditions.
func sharedMemoryProfile(t *testing.T, args []map[string]any) string {
	return derivedProfile(t, "xsnap", func(p map[string]any) {
		p["limits"].(map[string]any)["memory"] = "64M"
		delete(p, "engine")
		sc := p["seccomp"].(map[string]any)
		var rules []any
		for _, r := range sc["syscalls"].([]any) {
			rule := r.(map[string]any)
			var names []any
			for _, n := range rule["names"].([]any) {
				if n != "mmap" {
					names = append(names, n)
				}
			}
			if len(names) > 0 {
				rule["names"] = names
				rules = append(rules, rule)
			}
		}
		mmap := map[string]any{"names": []string{"mmap"}, "action": "SCMP_ACT_ALLOW"}
		if args != nil {
			mmap["args"] = args
		}
		sc["syscalls"] = append(rules, mmap)
	})
}

// TestSharedMemoryWithoutCgroup: RLIMIT_DATA, the stand-in for memory.max without a cgroup, does
// not count MAP_SHARED|MAP_ANONYMOUS memory. Under a profile whose filter allows shared mappings
// the worker maps and touches twice its memory limit, and the report's limitsEnforced and
// `vatrun check` say that the bound does not hold for shared memory; under a filter that allows
// mmap only with MAP_SHARED clear (SCMP_CMP_MASKED_EQ, value 1 = the mask, valueTwo 0) the mapping
// is refused and the text says the filter allows no shared memory. (Before issue 22 the report
// said RLIMIT_DATA held the limit while the worker held 128 MiB under a 64M limit.)
func TestSharedMemoryWithoutCgroup(t *testing.T) {
	shared := sharedMemoryProfile(t, nil)
	private := sharedMemoryProfile(t, []map[string]any{{"index": 3, "value": 1, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}})
	for _, u := range users() {
		for _, c := range []struct {
			name, profile, reply, memory string
		}{
			{"shared allowed", shared, "mapped:134217728", "which does NOT bound shared memory"},
			{"private only", private, "errno:1", "the profile's filter allows no shared memory"},
		} {
			t.Run(u.name+"/"+c.name, func(t *testing.T) {
				rf := filepath.Join(sharedDir(t), "r.json")
				p := startVatrun(t, procOpts{asNobody: u.asNobody, runArgs: []string{"--profile", c.profile, "--no-cgroup", "--report-file", rf}})
				p.send("alloc:134217728") // private: RLIMIT_DATA refuses it either way
				if got := p.reply(); got != "errno:12" {
					t.Errorf("private alloc of 128 MiB under 64M: %q, want errno:12", got)
				}
				p.send("mmapshared:134217728") // 128 MiB shared, touched
				if got := p.reply(); got != c.reply {
					t.Errorf("shared mapping of 128 MiB under a 64M limit: %q, want %q", got, c.reply)
				}
				finishClean(t, p)
				r := readReportFile(t, rf)
				if r == nil {
					t.Fatal("no report")
				}
				if m := r.LimitsEnforced["memory"]; !strings.Contains(m, c.memory) || !strings.HasPrefix(m, "RLIMIT_DATA") {
					t.Errorf("limitsEnforced[memory] = %q, want it to say %q", m, c.memory)
				}
			})
		}
	}
	out, _ := exec.Command(testbin.Vatrun(t), "check", "--profile", shared, "--json").Output()
	var res struct{ Memory string }
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("vatrun check --json: %v\n%s", err, out)
	}
	if cgroupUsable(t) {
		if res.Memory != "cgroup memory.max" {
			t.Errorf("vatrun check: memory %q with a usable cgroup", res.Memory)
		}
	} else if !strings.Contains(res.Memory, "does NOT bound shared memory") {
		t.Errorf("vatrun check: memory %q, want it to say the bound does not hold for shared memory", res.Memory)
	}
}

// cgroupUsable says whether `vatrun check` finds a usable cgroup v2 here.
func cgroupUsable(t *testing.T) bool {
	out, _ := exec.Command(testbin.Vatrun(t), "check", "--profile", "dev", "--json").Output()
	var res struct {
		Cgroup struct {
			Mode    string
			Problem string
		}
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("vatrun check --json: %v\n%s", err, out)
	}
	return res.Cgroup.Mode == "unified" && res.Cgroup.Problem == ""
}
