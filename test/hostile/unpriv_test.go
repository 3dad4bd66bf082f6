package hostile

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/vatrun/vatrun/internal/testbin"
)

// TestUnprivileged re-runs this package's tests as nobody when the suite runs as root, so the
// storm (smaller), the stage kills, the report faults, the setup faults and the escape probes
// also go through the user-namespace path of an unprivileged vatrun and launcher.
func TestUnprivileged(t *testing.T) {
	if os.Getenv("VATRUN_UNPRIV_CHILD") != "" {
		t.Skip("already the unprivileged re-run")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to nobody (this run is already unprivileged)")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := sharedDir(t)
	os.Chmod(dir, 0o755)
	copyPath := filepath.Join(dir, "hostile.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(copyPath, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(copyPath, "-test.v", "-test.count=1", "-test.run", "^Test(LaunchStorm|Kill|Report|Setup|Consensus|Escape|Args|Denied)")
	cmd.Dir = dir
	cmd.Env = []string{"VATRUN_UNPRIV_CHILD=1", "PATH=/usr/bin:/bin",
		"VATRUN_BIN=" + testbin.Vatrun(t), "VATRUN_HOOKS_BIN=" + testbin.VatrunHooks(t), "VATRUN_TESTWORKER=" + testbin.Worker(t)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("unprivileged run failed: %v\n%s", err, out)
	}
	// Only the setuid test may skip (making a setuid binary owned by someone else needs root).
	for _, m := range regexp.MustCompile(`--- SKIP: (\S+)`).FindAllStringSubmatch(string(out), -1) {
		if m[1] != "TestEscapeSetuidExec" {
			t.Errorf("unprivileged run skipped %s:\n%s", m[1], out)
		}
	}
	for _, name := range []string{"TestLaunchStorm", "TestKillVatrunAtEveryStage", "TestReportPipeFull", "TestSetupSeccompRejected", "TestSetupRlimitRefused", "TestEscapeInheritedFds", "TestEscapeUnprivilegedView", "TestArgsAsyncSignalNotExternal", "TestArgsLeaseRefused", "TestArgsForeignArchFollowsDefault", "TestEscapeWorkerIdentity"} {
		if !strings.Contains(string(out), "--- PASS: "+name+" ") {
			t.Errorf("unprivileged run did not pass %s:\n%s", name, out)
		}
	}
	if testing.Verbose() {
		t.Logf("unprivileged run:\n%s", out)
	}
}
