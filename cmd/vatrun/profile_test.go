package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// Parse no longer compiles the filter; `profile validate` does, so it still shows the names
// libseccomp does not know as warnings and fails on what libseccomp refuses.
func TestProfileValidateCompiles(t *testing.T) {
	dir := t.TempDir()
	warn := filepath.Join(dir, "warn.json")
	if err := os.WriteFile(warn, []byte(`{"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
		{"names": ["read", "no_such_syscall_xyz"], "action": "SCMP_ACT_ALLOW"}]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := profileMain([]string{"validate", warn}, &stdout, &stderr); code != 0 {
		t.Fatalf("validate: exit %d, stderr %s", code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "ok "+warn+" sha256:") ||
		!strings.Contains(stdout.String(), `  warning: seccomp.syscalls[0]: syscall "no_such_syscall_xyz" is unknown to libseccomp`) {
		t.Errorf("stdout %q, want ok and the unknown-name warning", stdout.String())
	}

	// 4500 distinct argument values (about one instruction each): valid as a profile, but over the kernel's 4096 instructions.
	var rules []string
	for v := range 4500 {
		rules = append(rules, fmt.Sprintf(`{"names": ["ioctl"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 1, "value": %d, "op": "SCMP_CMP_EQ"}]}`, v))
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, []byte(`{"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [`+strings.Join(rules, ",")+`]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	stderr.Reset()
	if code := profileMain([]string{"validate", big}, &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), "the kernel accepts at most 4096") {
		t.Errorf("too long a program: exit %d, stderr %q; want 125 and the 4096-instruction limit", code, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q, want nothing for a profile that does not compile", stdout.String())
	}
}

// `profile show --raw` writes a file that run accepts, with the built-in's digest and name, for
// every built-in (the plain `show` output, {name, digest, profile}, is refused: unknown field).
func TestProfileShowRawIsAProfileFile(t *testing.T) {
	dir := t.TempDir()
	for _, name := range seccompprofiles.BuiltinNames() {
		var stdout, stderr bytes.Buffer
		if code := profileMain([]string{"show", "--raw", name}, &stdout, &stderr); code != 0 {
			t.Fatalf("show --raw %s: exit %d, %s", name, code, stderr.String())
		}
		file := filepath.Join(dir, "my-"+name+".json")
		if err := os.WriteFile(file, stdout.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := seccompprofiles.Load(file)
		if err != nil {
			t.Fatalf("show --raw %s > %s: Load refuses it: %v", name, file, err)
		}
		b, _ := seccompprofiles.Builtin(name)
		if p.Digest() != b.Digest() || p.Name != name || p.Description != b.Description {
			t.Errorf("%s: copy has digest %s name %q, want %s %q and the description", name, p.Digest(), p.Name, b.Digest(), name)
		}
		stdout.Reset()
		if code := profileMain([]string{"validate", file}, &stdout, &stderr); code != 0 {
			t.Errorf("validate the copy of %s: exit %d, %s", name, code, stderr.String())
		}
	}
	// run itself, with the copy of xsnap.
	var stdout, stderr bytes.Buffer
	profileMain([]string{"show", "xsnap", "--raw"}, &stdout, &stderr)
	file := filepath.Join(dir, "mine.json")
	os.WriteFile(file, stdout.Bytes(), 0o644)
	cmd := exec.Command(testbin.Vatrun(t), "run", "--profile", file, "--no-cgroup", "--report-file", filepath.Join(dir, "r.json"), "--", "/bin/true")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("run --profile (show --raw xsnap): %v %s", err, out)
	}
	r, err := os.ReadFile(filepath.Join(dir, "r.json"))
	if err != nil || !strings.Contains(string(r), `"profile":"xsnap"`) || !strings.Contains(string(r), `"cause":"exited"`) {
		t.Errorf("report %s (%v), want profile xsnap and cause exited", r, err)
	}
}

// validate refuses what run refuses, with run's exit code (125) and message: a profile without a
// seccomp section, mounts without a mount namespace.
func TestProfileValidateRefusesWhatRunRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ name, body, msg string }{
		{"null", "null\n", "has no seccomp section"},
		{"no-seccomp", `{"limits": {"memory": "1G"}}`, "has no seccomp section"},
		{"tmp-without-mountns", `{"namespaces": {"mount": false}, "tmp": "1M", "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}`, "no mount namespace"},
	} {
		file := filepath.Join(dir, c.name+".json")
		if err := os.WriteFile(file, []byte(c.body), 0o644); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		if code := profileMain([]string{"validate", file}, &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), c.msg) {
			t.Errorf("validate %s: exit %d, stderr %q; want %d and %q", c.name, code, stderr.String(), exitUsage, c.msg)
		}
		cmd := exec.Command(testbin.Vatrun(t), "run", "--profile", file, "--no-cgroup", "--", "/bin/true")
		var rstderr strings.Builder
		cmd.Stderr = &rstderr
		err := cmd.Run()
		if code, _, _ := testbin.ExitOf(err); code != exitUsage || !strings.Contains(rstderr.String(), c.msg) {
			t.Errorf("run %s: %v, stderr %q; want %d and %q (validate and run must agree)", c.name, err, rstderr.String(), exitUsage, c.msg)
		}
	}
}

// A bad profile exits 125 from every profile subcommand, as from run.
func TestProfileBadProfileExit125(t *testing.T) {
	for _, sub := range []string{"show", "digest", "validate"} {
		var stdout, stderr bytes.Buffer
		if code := profileMain([]string{sub, "no-such-profile"}, &stdout, &stderr); code != exitUsage {
			t.Errorf("profile %s no-such-profile: exit %d, want %d", sub, code, exitUsage)
		}
	}
}

// `profile validate` refuses a consensus profile whose memory limit could fire before the engine's
// allocation meter, naming both numbers, and only warns for any other profile (docs/limits.md).
func TestProfileValidateLimitOrder(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, consensus bool) string {
		p := filepath.Join(dir, name)
		body := fmt.Sprintf(`{"consensus": %v, "limits": {"memory": "1G", "pids": 16},
			"engine": {"allocationLimit": "2G", "overhead": "1G", "stackMargin": "128K"},
			"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}}`, consensus)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var stdout, stderr bytes.Buffer
	if code := profileMain([]string{"validate", write("c.json", true)}, &stdout, &stderr); code != exitUsage ||
		!strings.Contains(stderr.String(), "limits.memory 1G could fire before the engine's allocation meter: the meter trips at engine.allocationLimit 2G") ||
		!strings.Contains(stderr.String(), "raise limits.memory to at least 3G") {
		t.Errorf("consensus: exit %d, stderr %q; want 125 naming 1G, 2G and 3G", code, stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	if code := profileMain([]string{"validate", write("n.json", false)}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "  warning: limits: limits.memory 1G could fire before the engine's allocation meter") {
		t.Errorf("non-consensus: exit %d, stdout %q, stderr %q; want ok with a warning", code, stdout.String(), stderr.String())
	}
}
