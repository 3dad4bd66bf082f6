package proctree

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
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

func TestHolding(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	other, otherW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	defer otherW.Close()
	cmd := exec.Command("sleep", "5")
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Skipf("needs sleep: %v", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	w.Close()
	held := Holding(cmd.Process.Pid, r)
	if len(held) != 1 || !strings.HasPrefix(held[0], "3 -> pipe:[") {
		t.Errorf("Holding(child, r) = %q, want the child's fd 3 (the pipe's write end)", held)
	}
	if held := Holding(cmd.Process.Pid, other); len(held) != 0 {
		t.Errorf("Holding(child, another pipe) = %q, want nothing", held)
	}
}

func TestAlive(t *testing.T) {
	if !Alive(os.Getpid()) {
		t.Error("Alive(self) = false")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Skipf("needs true: %v", err)
	}
	pid := cmd.Process.Pid
	for i := 0; i < 500 && Alive(pid); i++ { // a zombie until reaped: not alive
		time.Sleep(10 * time.Millisecond)
	}
	if Alive(pid) {
		t.Errorf("Alive(%d) = true for an exited, unreaped child", pid)
	}
	cmd.Wait()
	if Alive(pid) {
		t.Errorf("Alive(%d) = true after it was reaped", pid)
	}
}
