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
