package hostile

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/internal/testbin"
)

// TestNoTerminalInjection: vatrun run from an operator's terminal (the terminal is vatrun's
// controlling terminal and its stdin, stdout, stderr). The worker runs in a session of its own, so
// TIOCSTI on the terminal it writes to cannot push input into the operator's shell, and it gets
// /dev/null, not the terminal, as stdin. Issue 13 pushed a command into the parent shell this way.
func TestNoTerminalInjection(t *testing.T) {
	if b, err := os.ReadFile("/proc/sys/dev/tty/legacy_tiocsti"); err == nil && strings.TrimSpace(string(b)) == "0" {
		t.Skip("needs dev.tty.legacy_tiocsti=1 (this kernel refuses TIOCSTI to everyone, so the attack cannot be tried)")
	}
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("needs a pseudo-terminal (/dev/ptmx): %v", err)
	}
	defer master.Close()
	var unlock int32
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, master.Fd(), unix.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatalf("unlockpt: %v", e)
	}
	n, err := unix.IoctlGetUint32(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	bin, worker := testbin.Vatrun(t), testbin.Worker(t)
	pipes := testbin.WorkerPipes(t)
	cmdW, replyR := pipes.Commands, pipes.Results
	// dev allows ioctl, so only the session stands between the worker and the terminal.
	cmd := exec.Command(bin, "run", "--profile", "dev", "--no-cgroup", "--", worker)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.ExtraFiles = pipes.WorkerFiles()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pipes.CloseWorkerEnds()
	go func() { // drain what the terminal shows, so nothing blocks on it
		buf := make([]byte, 4096)
		for {
			if _, err := master.Read(buf); err != nil {
				return
			}
		}
	}()
	for _, p := range []string{"probe:tiocsti:2", "probe:tiocsti:0"} {
		fmt.Fprintf(cmdW, "%d:%s,", len(p), p)
	}
	cmdW.Close()
	replies := map[string]string{}
	br := bufio.NewReader(replyR)
	for _, p := range []string{"probe:tiocsti:2", "probe:tiocsti:0"} {
		got, err := readNetstring(br, replyR, 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		replies[p] = got
	}
	cmd.Wait()
	if got := replies["probe:tiocsti:2"]; got != fmt.Sprintf("errno:%d", syscall.EPERM) {
		t.Errorf("TIOCSTI on the operator's terminal (fd 2): %q, want errno:%d (EPERM: not the worker's controlling terminal)", got, syscall.EPERM)
	}
	if got := replies["probe:tiocsti:0"]; got != fmt.Sprintf("errno:%d", syscall.ENOTTY) {
		t.Errorf("TIOCSTI on stdin: %q, want errno:%d (ENOTTY: stdin is /dev/null, not the terminal)", got, syscall.ENOTTY)
	}
}
