package hostile

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vatrun/vatrun/internal/testbin"
	"github.com/vatrun/vatrun/report"
)

// The syscalls a profile refuses with an errno are named in the report (deniedSyscalls), by a seccomp
// listener the init stage answers with the very errno the filter would have returned
// (docs/sandbox.md, "Refused syscalls").

func deniedByName(r *report.Report, name string) *report.DeniedSyscall {
	for i := range r.DeniedSyscalls {
		if r.DeniedSyscalls[i].Name == name {
			return &r.DeniedSyscalls[i]
		}
	}
	return nil
}

// An xsnap worker whose socket() gets EPERM and which then aborts: the report names the refused
// call, its count and first arguments, the detail says the abort came after it, and the cause and
// class are the abort's. Allowed calls (the worker's reads and writes) are not recorded.
func TestDeniedNamedAfterAbort(t *testing.T) {
	a := startArgs(t, "xsnap")
	a.send("syscall:socket")
	if got := a.reply(); got != "errno:1" {
		t.Fatalf("socket under xsnap: %q, want errno:1 (EPERM, as without the listener)", got)
	}
	a.send("ping")
	if got := a.reply(); got != "pong" {
		t.Fatalf("ping: %q", got)
	}
	a.send("abort")
	r := a.finish(t)
	if r.Cause != report.CauseAbort || r.Class != report.ClassResourceExhaustion {
		t.Errorf("cause/class %s/%s, want abort/resource-exhaustion (the record is detail only)", r.Cause, r.Class)
	}
	if len(r.DeniedSyscalls) != 1 {
		t.Fatalf("deniedSyscalls %+v, want only socket (allowed calls are not recorded); warnings %q", r.DeniedSyscalls, r.Warnings)
	}
	d := r.DeniedSyscalls[0]
	if d.Name != "socket" || d.Count != 1 || d.Errno != int(syscall.EPERM) || len(d.Args) != 6 || d.Args[0] != "0x2" || d.Args[1] != "0x1" {
		t.Errorf("denied %+v, want socket ×1, errno 1, args AF_INET (0x2), SOCK_STREAM (0x1), …", d)
	}
	if !strings.Contains(r.Detail, "aborted after the seccomp filter refused socket (1×, EPERM)") {
		t.Errorf("detail %q does not name the refused socket", r.Detail)
	}
}

// A rule's errnoRet reaches the worker unchanged through the listener (EACCES), and a clean exit's
// detail says nothing of it, while the report still lists it.
func TestDeniedErrnoRet(t *testing.T) {
	prof := derivedProfile(t, "xsnap", func(p map[string]any) {
		sc := p["seccomp"].(map[string]any)
		sc["syscalls"] = append(sc["syscalls"].([]any), map[string]any{
			"names": []string{"socket"}, "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
		})
	})
	a := startArgs(t, prof)
	a.send("syscall:socket")
	if got := a.reply(); got != "errno:13" {
		t.Fatalf("socket under a rule with errnoRet 13: %q, want errno:13", got)
	}
	r := a.finish(t)
	if r.Cause != report.CauseExited {
		t.Fatalf("cause %s, want exited", r.Cause)
	}
	if d := deniedByName(r, "socket"); d == nil || d.Errno != int(syscall.EACCES) || d.Count != 1 {
		t.Errorf("deniedSyscalls %+v, want socket ×1 with errno 13", r.DeniedSyscalls)
	}
	if strings.Contains(r.Detail, "refused") {
		t.Errorf("a clean exit's detail mentions refusals: %q", r.Detail)
	}
}

// Under the consensus filter (default KILL_PROCESS) a forbidden call still kills with SIGSYS: only
// ERRNO returns are turned into notifications.
func TestDeniedConsensusStillKills(t *testing.T) {
	cons := derivedProfile(t, "consensus", func(p map[string]any) { p["consensus"] = false })
	a := startArgs(t, cons)
	a.send("syscall:socket")
	if got := a.tryReply(5 * time.Second); got != "" {
		t.Fatalf("socket under consensus replied %q, want a SIGSYS death", got)
	}
	r := a.finish(t)
	if r.Cause != report.CauseSandboxViolation || r.SignalName != "SIGSYS" {
		t.Errorf("cause %s signal %s, want sandbox-violation by SIGSYS", r.Cause, r.SignalName)
	}
	if len(r.DeniedSyscalls) != 0 {
		t.Errorf("deniedSyscalls %+v under a KILL filter", r.DeniedSyscalls)
	}
}

// Hostile: four threads make 20000 refused calls and then 64 distinct refused syscall numbers. The
// init stage answers every one (the worker gets each errno, nothing hangs), counts them exactly,
// keeps the record bounded (32 syscalls, the rest counted in deniedOverflow), and the report stays
// small.
func TestDeniedStorm(t *testing.T) {
	a := startArgs(t, "solo")
	a.send("deny:5000:4")
	if got := a.tryReply(60 * time.Second); got != "denied:20000 errno:1" {
		t.Fatalf("storm: %q, want denied:20000 errno:1", got)
	}
	a.send("deny-distinct:64")
	if got := a.tryReply(10 * time.Second); got != "denied:64 errno:38" {
		t.Fatalf("distinct: %q, want denied:64 errno:38 (ENOSYS, as the stub returns)", got)
	}
	a.send("ping")
	if got := a.tryReply(10 * time.Second); got != "pong" {
		t.Fatalf("ping after the storm: %q", got)
	}
	r := a.finish(t)
	if len(r.DeniedSyscalls) != 32 {
		t.Errorf("%d deniedSyscalls, want the cap of 32", len(r.DeniedSyscalls))
	}
	d := deniedByName(r, "socket")
	if d == nil || d.Count != 20000 {
		t.Errorf("socket record %+v, want count 20000", d)
	}
	var total uint64
	for _, d := range r.DeniedSyscalls {
		total += d.Count
	}
	// 20000 socket + 64 distinct (+ a few clone3 ENOSYS from the thread starts).
	if total+r.DeniedOverflow < 20064 || r.DeniedOverflow < 64-31 {
		t.Errorf("recorded %d + overflow %d, want at least 20064 in all and at least 33 over", total, r.DeniedOverflow)
	}
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 16<<10 {
		t.Errorf("report of %d bytes after the storm, want it bounded under 16 KiB", len(data))
	}
}

// Hostile: while threads of the worker make refused calls without pause, vatrun is stopped: the init
// stage still relays the stop (the notification path never blocks it) and reports.
func TestDeniedStopDuringStorm(t *testing.T) {
	a := startArgs(t, "solo")
	a.send("deny:0:4")
	if got := a.tryReply(10 * time.Second); got != "storming" {
		t.Fatalf("storm: %q", got)
	}
	time.Sleep(300 * time.Millisecond)
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { a.exit(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("vatrun did not stop within 20 s while the worker stormed refused calls")
	}
	r := readReportFile(t, a.reportPath)
	if r == nil {
		t.Fatalf("no report (stderr: %s)", a.stderrText())
	}
	if r.Cause != report.CauseStopped {
		t.Errorf("cause %s (%s), want stopped", r.Cause, r.Detail)
	}
	if d := deniedByName(r, "socket"); d == nil || d.Count == 0 {
		t.Errorf("deniedSyscalls %+v, want the storm's socket calls", r.DeniedSyscalls)
	}
}

// Hostile: the init stage is SIGKILLed while four threads of the worker make refused calls (some
// of them waiting for its answer): nothing of the sandbox survives it, and vatrun still reports.
func TestDeniedInitStageKilledDuringStorm(t *testing.T) {
	a := startArgs(t, "solo")
	a.send("deny:0:4")
	if got := a.tryReply(10 * time.Second); got != "storming" {
		t.Fatalf("storm: %q", got)
	}
	time.Sleep(200 * time.Millisecond)
	sandbox := descendants(a.cmd.Process.Pid)
	if len(sandbox) != 2 {
		t.Fatalf("vatrun's descendants %v, want the init stage and the worker", sandbox)
	}
	// The init stage is vatrun's only child; the worker is its child.
	if err := syscall.Kill(sandbox[0].pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { a.exit(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("vatrun did not end within 20 s after its init stage was killed during a storm")
	}
	if left := goneWithin(sandbox, 5*time.Second); len(left) != 0 {
		t.Fatalf("still alive 5 s after the init stage was killed: %v", left)
	}
	if r := readReportFile(t, a.reportPath); r == nil {
		t.Fatalf("no report (stderr: %s)", a.stderrText())
	}
}

// The list puts the syscall refused last first, whatever the counts: a worker that dies of a refusal
// usually dies of the latest one (node aborts on epoll_create1 after nine harmless capget).
func TestDeniedLatestFirst(t *testing.T) {
	a := startArgs(t, "xsnap")
	for _, c := range []string{"syscall:socket", "syscall:socket", "syscall:socket", "syscall:mount"} {
		a.send(c)
		if got := a.reply(); got != "errno:1" {
			t.Fatalf("%s: %q, want errno:1", c, got)
		}
	}
	a.send("abort")
	r := a.finish(t)
	if len(r.DeniedSyscalls) != 2 || r.DeniedSyscalls[0].Name != "mount" || r.DeniedSyscalls[1].Name != "socket" || r.DeniedSyscalls[1].Count != 3 {
		t.Fatalf("deniedSyscalls %+v, want mount (refused last) then socket ×3", r.DeniedSyscalls)
	}
	if !strings.Contains(r.Detail, "refused mount (1×, EPERM), socket (3×, EPERM)") {
		t.Errorf("detail %q", r.Detail)
	}
}

// When the kernel refuses the listener (here: the whole vatrun runs under `vatrun profile learn`,
// whose filter already has one, so the kernel answers EBUSY), the worker runs under plain ERRNO:
// the same EPERM, no record, and a warning that says why.
func TestDeniedFallbackUnderOuterListener(t *testing.T) {
	dir := sharedDir(t)
	cmds := filepath.Join(dir, "cmds")
	if err := os.WriteFile(cmds, []byte("14:syscall:socket,"), 0o644); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(cmds)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	replies, err := os.Create(filepath.Join(dir, "replies"))
	if err != nil {
		t.Fatal(err)
	}
	defer replies.Close()
	rf := filepath.Join(dir, "report.json")
	bin := testbin.Vatrun(t)
	cmd := exec.Command(bin, "profile", "learn", "--out", filepath.Join(dir, "learned.json"), "--",
		bin, "run", "--profile", "xsnap", "--no-cgroup", "--report-file", rf, "--", testbin.Worker(t))
	cmd.ExtraFiles = []*os.File{in, replies}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vatrun profile learn -- vatrun run: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "replies"))
	if err != nil || string(got) != "7:errno:1," {
		t.Fatalf("reply %q (%v), want errno:1 (EPERM, as with the listener)", got, err)
	}
	r := readReportFile(t, rf)
	if r == nil {
		t.Fatal("no report")
	}
	if len(r.DeniedSyscalls) != 0 {
		t.Errorf("deniedSyscalls %+v without a listener", r.DeniedSyscalls)
	}
	warned := false
	for _, w := range r.Warnings {
		warned = warned || strings.Contains(w, "refused syscalls are not recorded: the kernel refused a seccomp listener")
	}
	if !warned {
		t.Errorf("warnings %q do not say the refusals went unrecorded", r.Warnings)
	}
}
