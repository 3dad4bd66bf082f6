package main

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/report"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// runLearn runs `vatrun profile learn ARGS... -- worker` with cmds on fd 3 (then EOF) and returns
// its exit code, the worker's replies on fd 4 (raw netstrings) and stderr.
func runLearn(t *testing.T, args []string, cmds ...string) (int, string, string) {
	t.Helper()
	bin, worker := testbin.Vatrun(t), testbin.Worker(t)
	dir := t.TempDir()
	var in strings.Builder
	for _, c := range cmds {
		in.WriteString(netstring(c))
	}
	cmdFile := filepath.Join(dir, "cmds")
	if err := os.WriteFile(cmdFile, []byte(in.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	fd3, err := os.Open(cmdFile)
	if err != nil {
		t.Fatal(err)
	}
	defer fd3.Close()
	fd4, err := os.Create(filepath.Join(dir, "replies"))
	if err != nil {
		t.Fatal(err)
	}
	defer fd4.Close()
	cmd := exec.Command(bin, append(append([]string{"profile", "learn"}, args...), "--", worker)...)
	cmd.ExtraFiles = []*os.File{fd3, fd4}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	code := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatal(err)
		}
		code = ee.ExitCode()
	}
	replies, err := os.ReadFile(fd4.Name())
	if err != nil {
		t.Fatal(err)
	}
	return code, string(replies), stderr.String()
}

func netstring(s string) string { return strconv.Itoa(len(s)) + ":" + s + "," }

// The round trip of issue 8: learn a workload, then run the same workload under the learned
// profile in the full sandbox.
func TestLearnRoundTrip(t *testing.T) {
	workload := []string{"ping", "add:40", "add:2", "sleep:1", "alloc:1048576", "exit:0"}
	out := filepath.Join(t.TempDir(), "learned.json")
	code, replies, stderr := runLearn(t, []string{"--out", out}, workload...)
	if code != 0 {
		t.Fatalf("vatrun profile learn exited %d:\n%s", code, stderr)
	}
	if want := "4:pong,6:sum:40,6:sum:42,5:slept,17:allocated:1048576,"; replies != want {
		t.Fatalf("replies under learn %q, want %q (stderr: %s)", replies, want, stderr)
	}
	prof, err := seccompprofiles.Load(out)
	if err != nil {
		t.Fatalf("learned profile does not load: %v", err)
	}
	if !strings.Contains(stderr, prof.Digest()) {
		t.Errorf("stderr does not name the learned profile's digest %s:\n%s", prof.Digest(), stderr)
	}
	var allowed []string
	for _, r := range prof.Seccomp.Syscalls {
		allowed = append(allowed, r.Names...)
	}
	for _, want := range []string{"execve", "read", "write", "exit_group", "mmap", "clock_nanosleep"} {
		if !slices.Contains(allowed, want) {
			t.Errorf("learned profile lacks %s: %v", want, allowed)
		}
	}
	for _, never := range []string{"socket", "sendmsg", "seccomp", "prctl", "fork", "clone"} {
		if slices.Contains(allowed, never) {
			t.Errorf("learned profile allows %s, which the workload never made: %v", never, allowed)
		}
	}
	xsnap, _ := seccompprofiles.Builtin("xsnap")
	if prof.Limits != xsnap.Limits || prof.Namespaces != xsnap.Namespaces || len(prof.ExitCodes) != len(xsnap.ExitCodes) {
		t.Errorf("learned profile does not keep xsnap's limits, namespaces and exit codes: %+v", prof)
	}
	if s := prof.Seccomp; s.DefaultAction != "SCMP_ACT_ERRNO" || s.DefaultErrnoRet == nil || *s.DefaultErrnoRet != 1 {
		t.Errorf("learned default action %s/%v, want SCMP_ACT_ERRNO/EPERM", s.DefaultAction, s.DefaultErrnoRet)
	}

	t.Run("same workload under vatrun run", func(t *testing.T) {
		h := newHarness(t, []string{"--profile", out})
		h.send(workload[:len(workload)-1]...)
		r := bufio.NewReader(h.replyR)
		var got []string
		for range 5 {
			got = append(got, h.reply(r))
		}
		if strings.Join(got, "|") != "pong|sum:40|sum:42|slept|allocated:1048576" {
			t.Fatalf("replies %q", got)
		}
		h.send("exit:0")
		res := h.await()
		wantDeath(t, res, 0, report.CauseExited, report.ClassClean)
		if res.report.ProfileDigest != prof.Digest() {
			t.Errorf("report digest %s, want the learned profile's %s", res.report.ProfileDigest, prof.Digest())
		}
	})
	t.Run("a syscall outside the learned set fails with EPERM", func(t *testing.T) {
		h := newHarness(t, []string{"--profile", out})
		h.send("syscall:socket")
		if got := h.reply(bufio.NewReader(h.replyR)); got != "errno:1" {
			t.Fatalf("socket under the learned profile: %q, want errno:1", got)
		}
		wantDeath(t, h.finish(), 0, report.CauseExited, report.ClassClean)
	})
}

// The worker under learn sees the fds a kernel gives it, nothing of the learn machinery.
func TestLearnWorkerSeesOnlyItsFds(t *testing.T) {
	code, replies, stderr := runLearn(t, nil, "probe:fds", "probe:seccomp")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if want := "13:fds:0,1,2,3,4,9:seccomp:2,"; replies != want {
		t.Fatalf("replies %q, want %q", replies, want)
	}
}

func TestLearnUnhappyWorker(t *testing.T) {
	code, _, stderr := runLearn(t, nil, "exit:11")
	if code != 1 || !strings.Contains(stderr, "did not exit 0") {
		t.Fatalf("worker exit 11 under learn: exit %d, stderr:\n%s", code, stderr)
	}
	if code, _, stderr := runLearn(t, []string{"--base", "nosuch"}); code != exitUsage || !strings.Contains(stderr, "--base") {
		t.Fatalf("--base nosuch: exit %d, stderr:\n%s", code, stderr)
	}
}
