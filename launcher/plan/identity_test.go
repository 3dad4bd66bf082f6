package plan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vatrun/vatrun/seccompprofiles"
)

func TestIDMap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "uid_map")
	if err := os.WriteFile(path, []byte("         0          0 4294967295\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := readIDMap(path)
	if err != nil || !idMapped(m, WorkerID) || !idMapped(m, 0) {
		t.Fatalf("the initial namespace's map %v (%v) does not map %d", m, err, WorkerID)
	}
	// A container that maps 65536 ids: the dedicated id is not there, the overflow id is.
	os.WriteFile(path, []byte("0 100000 65536\n"), 0o644)
	if m, err = readIDMap(path); err != nil || idMapped(m, WorkerID) || !idMapped(m, OverflowID) || idMapped(m, 65536) {
		t.Fatalf("map %v (%v)", m, err)
	}
	os.WriteFile(path, []byte("0 1\n"), 0o644)
	if _, err = readIDMap(path); err == nil || !strings.Contains(err.Error(), "bad line") {
		t.Fatalf("a two-field line: %v", err)
	}
}

// TestSandboxWorkerIDs: a root vatrun's plan switches the worker to the dedicated id, an
// unprivileged one leaves the worker its own ids; WorkerIDs says which.
func TestSandboxWorkerIDs(t *testing.T) {
	p, err := seccompprofiles.Load("xsnap")
	if err != nil {
		t.Fatal(err)
	}
	pl, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pl.Sandbox(false, nil)
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := WorkerIDs(cfg)
	if os.Geteuid() == 0 {
		if !cfg.SetIDs || cfg.UID != WorkerID || cfg.GID != WorkerID || uid != WorkerID || gid != WorkerID {
			t.Errorf("root: SetIDs %v uid %d gid %d, WorkerIDs %d %d; want the switch to %d", cfg.SetIDs, cfg.UID, cfg.GID, uid, gid, WorkerID)
		}
		return
	}
	if cfg.SetIDs || uid != os.Getuid() || gid != os.Getgid() {
		t.Errorf("unprivileged: SetIDs %v, WorkerIDs %d %d; want vatrun's own ids", cfg.SetIDs, uid, gid)
	}
}
