package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/launcher"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// The long-lived-supervisor prototype (section 8): one Go process launches every worker through
// the Go API, and each `vatrun run` is replaced by a tiny static client (bench/csrc/thin.c) that
// hands it its argv and fds over a unix socket and mirrors the worker's wait status. It exists to
// measure what such a design would cost per worker (CPU, page faults, memory), against bwrap and
// against `vatrun run`: it is not a product (no authentication beyond the socket's mode, no
// per-client profile choice, no signal relay).

// thinServer is `vatrun-bench -thin-server SOCKET`: it serves launches until killed.
func thinServer(sock string) int {
	xsnap, _ := seccompprofiles.Builtin("xsnap")
	os.Remove(sock)
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: sock, Net: "unixpacket"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "thin server:", err)
		return 1
	}
	os.Chmod(sock, 0o600)
	fmt.Println("ready")
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			fmt.Fprintln(os.Stderr, "thin server:", err)
			return 1
		}
		go thinServe(c, xsnap)
	}
}

func thinServe(c *net.UnixConn, prof *seccompprofiles.Profile) {
	defer c.Close()
	buf := make([]byte, 65536)
	oob := make([]byte, unix.CmsgSpace(10*4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil || n < 4 {
		fmt.Fprintln(os.Stderr, "thin server: read request:", n, err)
		return
	}
	fds := map[int]*os.File{}
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil && len(msgs) == 1 {
		got, _ := unix.ParseUnixRights(&msgs[0])
		mask := binary.LittleEndian.Uint32(buf[:4])
		i := 0
		for fd := 0; fd < 10 && i < len(got); fd++ {
			if mask&(1<<fd) != 0 {
				fds[fd] = os.NewFile(uintptr(got[i]), fmt.Sprintf("client-fd%d", fd))
				i++
			}
		}
	}
	defer func() {
		for _, f := range fds {
			f.Close()
		}
	}()
	argv := strings.Split(strings.TrimSuffix(string(buf[4:n]), "\x00"), "\x00")
	var extra []*os.File
	if fds[3] != nil || fds[4] != nil {
		extra = []*os.File{fds[3], fds[4]}
	}
	status := int32(125 << 8) // exit 125: the launch failed
	w, err := launcher.Launch(context.Background(), launcher.Spec{
		Profile: prof, Path: argv[0], Args: argv, Env: workerEnv, Dir: "/",
		Stdin: fds[0], Stdout: fds[1], Stderr: fds[2], ExtraFiles: extra, CloseExtraFiles: true,
		Cgroup: launcher.CgroupOptions{Disable: true},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "thin server: launch:", err)
	}
	if err == nil {
		delete(fds, 3)
		delete(fds, 4)
		r := w.Wait()
		if rep := fds[5]; rep != nil {
			data, _ := json.Marshal(r)
			rep.Write(append(data, '\n'))
			rep.Close()
			delete(fds, 5)
		}
		switch {
		case r.ExitCode != nil:
			status = int32(*r.ExitCode << 8)
		case r.Signal > 0:
			status = int32(r.Signal)
		}
	}
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, status)
	c.Write(b.Bytes())
}

// supervisorCost is a process's CPU time in clock ticks (user + system, its own and its reaped
// children's) and its page faults (minor, its own and its reaped children's), from /proc/PID/stat.
func supervisorCost(pid int) (ticks, faults int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	field := func(i int) int64 {
		var v int64
		fmt.Sscan(f[i], &v)
		return v
	}
	// minflt cminflt (fields 10, 12), utime stime cutime cstime (fields 14-17)
	return field(11) + field(12) + field(13) + field(14), field(7) + field(8), nil
}
