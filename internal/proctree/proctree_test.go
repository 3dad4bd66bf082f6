package proctree

import (
	"fmt"
	"os/exec"
	"slices"
	"testing"
)

func TestChildrenAndGrandchildren(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 5 & echo $!; wait")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Skipf("needs sh: %v", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var sleepPid int
	if _, err := fmt.Fscan(out, &sleepPid); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(Children(cmd.Process.Pid), sleepPid) {
		t.Fatalf("Children(%d) = %v, want it to contain %d", cmd.Process.Pid, Children(cmd.Process.Pid), sleepPid)
	}
	if got := Grandchildren(cmd.Process.Pid); len(got) != 0 {
		t.Fatalf("Grandchildren of sh = %v, want none", got)
	}
	if Children(1<<30) != nil {
		t.Fatal("Children of a missing pid is not empty")
	}
}
