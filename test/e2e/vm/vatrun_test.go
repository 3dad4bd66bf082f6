package vm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const vatrunBin = "/bin/vatrun"

// vatrunHooksBin is vatrun with the fault-injection pauses (VATRUN_TEST_PAUSE) compiled in.
const vatrunHooksBin = "/bin/vatrun-hooks"

// checkOutput is the part of `vatrun check --json` these tests look at.
type checkOutput struct {
	CanRun    bool     `json:"canRun"`
	Problems  []string `json:"problems"`
	HostFacts []struct {
		Name, Value string
	} `json:"hostFacts"`
	Cgroup struct {
		Mode     string
		Self     string
		Parent   string
		Writable bool
		Problem  string
	} `json:"cgroup"`
}

// vatrunCheck runs `vatrun check --json` (consensus profile: cgroup v2 is
// mandatory) and expects this run's delegated parent to be found by default.
func vatrunCheck(t *testing.T, rowName string) {
	needBinary(t, vatrunBin)
	start := time.Now()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(vatrunBin, "check", "--json")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	elapsed := time.Since(start)
	t.Logf("vatrun check --json: %v\n%s%s", err, stdout.String(), stderr.String())
	var out checkOutput
	if jerr := json.Unmarshal(stdout.Bytes(), &out); jerr != nil {
		t.Fatalf("vatrun check --json: not JSON (%v): %v", err, jerr)
	}
	observed := fmt.Sprintf("canRun=%v parent=%s writable=%v", out.CanRun, out.Cgroup.Parent, out.Cgroup.Writable)
	if len(out.Problems) > 0 {
		observed += " problems: " + strings.Join(out.Problems, "; ")
	}
	row(t, rowName, "canRun=true parent="+cgroupParentPath(t)+" writable=true", observed, elapsed)
	if err != nil || !out.CanRun {
		t.Errorf("vatrun check: %v, canRun=%v, problems %q, cgroup problem %q", err, out.CanRun, out.Problems, out.Cgroup.Problem)
	}
	if out.Cgroup.Parent != cgroupParentPath(t) || !out.Cgroup.Writable {
		t.Errorf("vatrun's default cgroup parent = %q (writable %v), want %q (writable)", out.Cgroup.Parent, out.Cgroup.Writable, cgroupParentPath(t))
	}
	// The host facts' cgroup features, read from a real cgroup v2 (the host has none).
	facts := map[string]string{}
	for _, f := range out.HostFacts {
		facts[f.Name] = f.Value
	}
	var got []string
	for _, name := range []string{"cgroup.mode", "cgroup.kill", "cgroup.memoryPeak", "cgroup.memoryOomGroup", "cgroup.memoryEventsLocal", "cgroup.swapAccounting"} {
		got = append(got, name+"="+facts[name])
		want := "yes"
		if name == "cgroup.mode" {
			want = "unified"
		}
		if facts[name] != want {
			t.Errorf("host fact %s = %q, want %q on the VM's cgroup v2", name, facts[name], want)
		}
	}
	if c := facts["cgroup.controllers"]; !strings.Contains(c, "cpu") || !strings.Contains(c, "memory") || !strings.Contains(c, "pids") {
		t.Errorf("host fact cgroup.controllers = %q, want cpu memory pids", c)
	}
	row(t, rowName+"-facts", "cgroup v2 features: unified, all yes", strings.Join(got, " "), 0)
}

// TestVatrunCheck: the vatrun binary runs in the VM and, as root, accepts the host.
func TestVatrunCheck(t *testing.T) {
	vmTest(t)
	vatrunCheck(t, "vatrun-check-root")
}

// TestUnprivVatrunCheck: as uid 1000 in a delegated subtree, with no
// --cgroup-parent and no VATRUN_CGROUP_PARENT, vatrun finds its parent.
func TestUnprivVatrunCheck(t *testing.T) {
	vmTest(t)
	vatrunCheck(t, "vatrun-check-uid1000")
}
