package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	if code := profileMain([]string{"validate", big}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "the kernel accepts at most 4096") {
		t.Errorf("too long a program: exit %d, stderr %q; want 1 and the 4096-instruction limit", code, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q, want nothing for a profile that does not compile", stdout.String())
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
	if code := profileMain([]string{"validate", write("c.json", true)}, &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "limits.memory 1G could fire before the engine's allocation meter: the meter trips at engine.allocationLimit 2G") ||
		!strings.Contains(stderr.String(), "raise limits.memory to at least 3G") {
		t.Errorf("consensus: exit %d, stderr %q; want 1 naming 1G, 2G and 3G", code, stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	if code := profileMain([]string{"validate", write("n.json", false)}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "  warning: limits: limits.memory 1G could fire before the engine's allocation meter") {
		t.Errorf("non-consensus: exit %d, stdout %q, stderr %q; want ok with a warning", code, stdout.String(), stderr.String())
	}
}
