package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vatrun/vatrun/hostfacts"
	"github.com/vatrun/vatrun/internal/testbin"
)

// factsJSON is a `vatrun check --json` output with the given facts changed.
func factsJSON(t *testing.T, dir, name string, change map[string]string) string {
	t.Helper()
	src := hostfacts.Source{
		Root:              "/nonexistent-fake-host", // every file "unknown": the same on both sides
		Uname:             func() (string, string, error) { return "6.1.0-18-amd64", "x86_64", nil },
		LibseccompVersion: func() string { return "2.5.4" },
		SeccompFlags:      func() string { return "tsync" },
		PageSize:          func() int { return 4096 },
	}
	facts := hostfacts.Gather(src)
	for i := range facts {
		if v, ok := change[facts[i].Name]; ok {
			facts[i].Value = v
		}
	}
	res := checkResult{Profile: "consensus", ProfileDigest: "sha256:aa", HostFacts: facts, HostFactsDigest: facts.Digest()}
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCompareOneRelevantOneIrrelevant(t *testing.T) {
	dir := t.TempDir()
	a := factsJSON(t, dir, "a.json", map[string]string{hostfacts.VMOvercommit: "0", hostfacts.CPUModel: "AMD EPYC 7763"})
	b := factsJSON(t, dir, "b.json", map[string]string{hostfacts.VMOvercommit: "2", hostfacts.CPUModel: "Intel(R) Xeon(R) Gold 6338"})

	var out, errOut bytes.Buffer
	code := realMain([]string{"check", "--compare", "--json", a, b}, &out, &errOut)
	if code != compareRelevant {
		t.Fatalf("exit %d, want %d; stderr %s", code, compareRelevant, errOut.String())
	}
	var res compareResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	got := map[string]factDiff{}
	for _, d := range res.Differ {
		got[d.Name] = d
	}
	if len(got) != 2 {
		t.Fatalf("differences %+v, want exactly vm.overcommit_memory and cpu.model", res.Differ)
	}
	if d := got[hostfacts.VMOvercommit]; !d.OutcomeRelevant || d.A != "0" || d.B != "2" || d.Why == "" {
		t.Errorf("overcommit: %+v", d)
	}
	if d := got[hostfacts.CPUModel]; d.OutcomeRelevant || d.A != "AMD EPYC 7763" {
		t.Errorf("cpu.model: %+v", d)
	}
	if res.Relevant != 1 {
		t.Errorf("relevant %d, want 1", res.Relevant)
	}

	// The table says the same.
	out.Reset()
	if code := realMain([]string{"check", "--compare", a, b}, &out, &errOut); code != compareRelevant {
		t.Fatalf("table mode exit %d", code)
	}
	text := out.String()
	if !regexp.MustCompile(`(?m)^vm\.overcommit_memory\s+0\s+2\s+YES\b`).MatchString(text) ||
		!regexp.MustCompile(`(?m)^cpu\.model\s+AMD EPYC 7763\s+Intel\(R\) Xeon\(R\) Gold 6338\s+no\b`).MatchString(text) {
		t.Errorf("table:\n%s", text)
	}
	t.Logf("\n%s", text)
}

func TestCompareIrrelevantOnlyAndSame(t *testing.T) {
	dir := t.TempDir()
	a := factsJSON(t, dir, "a.json", map[string]string{hostfacts.CPUCount: "2"})
	b := factsJSON(t, dir, "b.json", map[string]string{hostfacts.CPUCount: "64"})
	var out, errOut bytes.Buffer
	if code := realMain([]string{"check", "--compare", a, b}, &out, &errOut); code != compareSame {
		t.Errorf("only cpu.count differs: exit %d, want 0\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "cpu.count") || !strings.Contains(out.String(), "none can change") {
		t.Errorf("output:\n%s", out.String())
	}
	out.Reset()
	if code := realMain([]string{"check", "--compare", a, a}, &out, &errOut); code != compareSame || !strings.Contains(out.String(), "agree") {
		t.Errorf("same file: exit %d\n%s", code, out.String())
	}
}

func TestCompareBadInput(t *testing.T) {
	dir := t.TempDir()
	good := factsJSON(t, dir, "good.json", nil)
	notJSON := filepath.Join(dir, "bad.json")
	os.WriteFile(notJSON, []byte("kernel 6.1\n"), 0o644)
	noFacts := filepath.Join(dir, "nofacts.json")
	os.WriteFile(noFacts, []byte(`{"profile": "x"}`), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{good, filepath.Join(dir, "missing.json")}, "missing.json"},
		{[]string{good, notJSON}, "not the JSON of `vatrun check --json`"},
		{[]string{noFacts, good}, "no hostFacts"},
		{[]string{good}, "want two files"},
	} {
		var out, errOut bytes.Buffer
		code := realMain(append([]string{"check", "--compare"}, c.args...), &out, &errOut)
		if code != exitUsage || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 125 and %q", c.args, code, errOut.String(), c.want)
		}
	}
}

// The real `vatrun check --json` output is what --compare reads; the same host agrees with itself.
func TestCheckJSONHasFactsAndCompares(t *testing.T) {
	bin := testbin.Vatrun(t)
	out, err := exec.Command(bin, "check", "--profile", "dev", "--json", "--worker", testbin.Worker(t)).Output()
	if len(out) == 0 {
		t.Fatalf("vatrun check --json: %v", err)
	}
	var res checkResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.HostFacts) != len(hostfacts.Names()) || !strings.HasPrefix(res.HostFactsDigest, "sha256:") || !strings.HasPrefix(res.WorkerDigest, "sha256:") {
		t.Fatalf("facts %d, digest %q, worker %q", len(res.HostFacts), res.HostFactsDigest, res.WorkerDigest)
	}
	p := filepath.Join(t.TempDir(), "host.json")
	os.WriteFile(p, out, 0o644)
	cmd := exec.Command(bin, "check", "--compare", p, p)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("compare with itself: %v\n%s", err, msg)
	}
	text, _ := exec.Command(bin, "check", "--profile", "dev").Output()
	for _, want := range []string{"host facts, each with why it matters (digest", "vm.overcommit_memory", "kernel.release", "why it matters"} {
		if !bytes.Contains(text, []byte(want)) {
			t.Errorf("check's table lacks %q:\n%s", want, text)
		}
	}
}

// pinnedProfile is the xsnap profile with pins added, as a file.
func pinnedProfile(t *testing.T, pins map[string]any) string {
	t.Helper()
	out, err := exec.Command(testbin.Vatrun(t), "profile", "show", "xsnap").Output()
	if err != nil {
		t.Fatal(err)
	}
	var shown struct{ Profile map[string]any }
	if err := json.Unmarshal(out, &shown); err != nil {
		t.Fatal(err)
	}
	shown.Profile["name"] = "xsnap-pinned"
	shown.Profile["pins"] = pins
	data, _ := json.Marshal(shown.Profile)
	p := filepath.Join(t.TempDir(), "pinned.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunPinnedWorkerDigest(t *testing.T) {
	worker := testbin.Worker(t)
	want, _, err := hostfacts.WorkerDigest(worker)
	if err != nil {
		t.Fatal(err)
	}
	prof := pinnedProfile(t, map[string]any{"workerDigest": want, "facts": map[string]string{"mm.pageSize": hostfactsValue(t, hostfacts.PageSize)}})

	// The right worker runs, and its report carries the three digests.
	res := run(t, prof, "ping")
	if res.code != 0 || res.report == nil {
		t.Fatalf("pinned, right worker: exit %d, stderr %s", res.code, res.stderr)
	}
	r := res.report
	if r.WorkerDigest != want || r.HostFactsDigest != hostfacts.HostDigest() || !strings.HasPrefix(r.ProfileDigest, "sha256:") {
		t.Errorf("report digests: profile %q worker %q (want %q) host %q (want %q)", r.ProfileDigest, r.WorkerDigest, want, r.HostFactsDigest, hostfacts.HostDigest())
	}

	// A different worker binary (one byte more: it still runs) is refused before anything starts.
	other := filepath.Join(t.TempDir(), "vatrun-testworker")
	data, _ := os.ReadFile(worker)
	os.WriteFile(other, append(data, 0), 0o755)
	found, _, _ := hostfacts.WorkerDigest(other)
	cmd := exec.Command(testbin.Vatrun(t), "run", "--profile", prof, "--", other)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	code, _, err := testbin.ExitOf(cmd.Run())
	if err != nil {
		t.Fatal(err)
	}
	msg := strings.TrimSpace(stderr.String())
	if code != exitUsage || strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "pins workerDigest "+want) || !strings.Contains(msg, "found "+found) {
		t.Errorf("different worker: exit %d, want %d, one line naming the pin, wanted and found value; stderr:\n%s", code, exitUsage, msg)
	}
	t.Logf("refusal: %s", msg)
}

func hostfactsValue(t *testing.T, name string) string {
	f, ok := hostfacts.Host().Get(name)
	if !ok {
		t.Fatalf("no fact %s", name)
	}
	return f.Value
}

func TestRunPinnedFactsRefused(t *testing.T) {
	for _, c := range []struct {
		pins map[string]any
		want string
	}{
		{map[string]any{"facts": map[string]string{"mm.pageSize": "65536"}}, `pins mm.pageSize "65536", found "` + hostfactsValue(t, hostfacts.PageSize) + `"`},
		{map[string]any{"kernelMin": "999.0"}, "pins kernelMin 999.0, found kernel.release " + hostfactsValue(t, hostfacts.KernelRelease)},
	} {
		prof := pinnedProfile(t, c.pins)
		cmd := exec.Command(testbin.Vatrun(t), "run", "--profile", prof, "--", testbin.Worker(t))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		code, _, err := testbin.ExitOf(cmd.Run())
		if err != nil {
			t.Fatal(err)
		}
		if code != exitUsage || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("pins %v: exit %d, stderr %q; want %d and %q", c.pins, code, stderr.String(), exitUsage, c.want)
		}
	}
	// A pin that holds lets the worker run; `vatrun check` agrees.
	prof := pinnedProfile(t, map[string]any{"kernelMin": "3.0"})
	if res := run(t, prof, "ping"); res.code != 0 {
		t.Errorf("kernelMin 3.0: exit %d, %s", res.code, res.stderr)
	}
	out, _ := exec.Command(testbin.Vatrun(t), "check", "--profile", pinnedProfile(t, map[string]any{"kernelMin": "999.0"})).Output()
	if !bytes.Contains(out, []byte("pins kernelMin 999.0")) || !bytes.Contains(out, []byte("CANNOT run here")) {
		t.Errorf("check with an unmet pin:\n%s", out)
	}
}
