package hostile

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestMinimalRoot: the worker sees nothing of the host: no host files (a root-only secret, the
// host's /etc), no devices beyond null zero full random urandom (no block devices, kmsg, console,
// ttys, kvm, fuse, userfaultfd), no /sys, no /dev/shm, no host unix sockets, a read-only root, for
// root and for an unprivileged vatrun (user namespace), under the xsnap and dev profiles.
func TestMinimalRoot(t *testing.T) {
	dir := sharedDir(t)
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("validator key"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "host.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Errorf("a worker connected to the host socket %s", sock)
			c.Close()
		}
	}()
	enoent := fmt.Sprintf("errno:%d", syscall.ENOENT)
	want := map[string]string{
		"probe:open:" + secret:           enoent,
		"probe:open:/etc/shadow":         enoent,
		"probe:open:/etc/passwd":         enoent,
		"probe:open:/root":               enoent,
		"probe:open:/home":               enoent,
		"probe:open:/sys/kernel":         enoent,
		"probe:openrw:/dev/loop0":        enoent,
		"probe:openrw:/dev/loop-control": enoent,
		"probe:openrw:/dev/kmsg":         enoent,
		"probe:openrw:/dev/console":      enoent,
		"probe:openrw:/dev/tty":          enoent,
		"probe:openrw:/dev/tty1":         enoent,
		"probe:openrw:/dev/kvm":          enoent,
		"probe:openrw:/dev/fuse":         enoent,
		"probe:openrw:/dev/userfaultfd":  enoent,
		"probe:openrw:/dev/shm":          enoent,
		"probe:openrw:/dev/mem":          enoent,
		"probe:openrw:/dev/null":         "ok",
		"probe:open:/dev/urandom":        "ok",
		// /proc: masked files are /dev/null (opening them read-write works and reads nothing;
		// the real ones are 0400 and would fail), /proc/sys is read-only (and root's: the worker is
		// never root, a root vatrun's runs as another uid, docs/worker-identity.md, so the
		// permission check, made before the read-only mount's, says EACCES).
		"probe:openrw:/proc/timer_list":          "ok",
		"probe:openrw:/proc/kmsg":                "ok",
		"probe:openrw:/proc/sys/kernel/hostname": fmt.Sprintf("errno:%d", syscall.EACCES),
		"probe:write:/vatrun-escape":             fmt.Sprintf("errno:%d", syscall.EROFS),
		"probe:write:/dev/vatrun-escape":         fmt.Sprintf("errno:%d", syscall.EROFS),
	}
	for _, profile := range []string{"xsnap", "dev"} {
		for _, asNobody := range []bool{false, true} {
			who := "root"
			if asNobody {
				who = "nobody"
			}
			t.Run(profile+"/"+who, func(t *testing.T) {
				w := map[string]string{}
				for k, v := range want {
					w[k] = v
				}
				if profile == "dev" { // xsnap's allowlist has no socket()
					w["probe:connect:"+sock] = enoent
				}
				var order []string
				for k := range w {
					order = append(order, k)
				}
				p := startVatrun(t, procOpts{runArgs: []string{"--profile", profile, "--no-cgroup"}, asNobody: asNobody})
				probes(t, p, w, order)
				finishClean(t, p)
			})
		}
	}
}

// TestInitStageUnreachable: the init stage (pid 1 of the worker's pid namespace) holds the status
// pipe on which it tells vatrun how the worker died. A worker that could write to it (through
// /proc/1/fd) or to the stage's memory would write its own death report. Opening any of the
// stage's fds or its memory is refused (the stage keeps capabilities the worker lacks, so the
// kernel denies the ptrace-class access), as root and unprivileged.
func TestInitStageUnreachable(t *testing.T) {
	for _, profile := range []string{"xsnap", "dev"} {
		for _, asNobody := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/nobody=%v", profile, asNobody), func(t *testing.T) {
				p := startVatrun(t, procOpts{runArgs: []string{"--profile", profile, "--no-cgroup"}, asNobody: asNobody})
				var probes []string
				for fd := range 16 {
					probes = append(probes, fmt.Sprintf("probe:openrw:/proc/1/fd/%d", fd))
				}
				probes = append(probes, "probe:openrw:/proc/1/mem", "probe:open:/proc/1/environ")
				for _, pr := range probes {
					p.send(pr)
					if got := p.reply(); got == "ok" {
						t.Errorf("%s: ok, want it refused (the worker could forge its own death report)", pr)
					}
				}
				finishClean(t, p)
			})
		}
	}
}
