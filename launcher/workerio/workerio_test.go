package workerio

import (
	"errors"
	"io"
	"syscall"
	"testing"
)

func TestPipesCarryBothWays(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	fds := p.WorkerFiles()
	if len(fds) != 2 {
		t.Fatalf("%d worker files, want 2", len(fds))
	}
	// What the kernel writes on Commands, the worker reads on its fd 3; what it writes on fd 4,
	// the kernel reads on Results.
	if _, err := p.Commands.Write([]byte("4:ping,")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := io.ReadFull(fds[0], buf); err != nil || string(buf) != "4:ping," {
		t.Fatalf("fd 3 read %q, %v", buf, err)
	}
	if _, err := fds[1].Write([]byte("4:pong,")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(p.Results, buf); err != nil || string(buf) != "4:pong," {
		t.Fatalf("results read %q, %v", buf, err)
	}
}

// Once the worker's ends are closed (the worker is gone), the kernel sees EOF and EPIPE.
func TestWorkerGoneMeansEOFAndEPIPE(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.CloseWorkerEnds()
	p.CloseWorkerEnds() // twice is harmless
	if n, err := p.Results.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("results: %d, %v; want EOF", n, err)
	}
	if _, err := p.Commands.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("commands: %v; want EPIPE", err)
	}
}
