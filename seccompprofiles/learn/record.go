package learn

// Recording (`vatrun profile learn`): run a worker once under a seccomp filter that lets every
// syscall through but reports each one to vatrun first (SECCOMP_RET_USER_NOTIF, answered with
// SECCOMP_USER_NOTIF_FLAG_CONTINUE); Learn then writes a minimal allowlist profile from what it
// used.
//
// The filter has to be installed in the worker's own process, right before its execve, and its
// listener fd has to reach vatrun. The learn helper below does that: a C constructor (it runs
// before the Go runtime, so the process is single-threaded and makes no syscall of its own after
// the filter is loaded but execve), linked into every binary that imports this package (only
// cmd/vatrun does), started as
//
//	/proc/self/exe __vatrun_learn__ WORKER-PATH ARGV0 ARGS...
//
// with fds 0-4 as the worker gets them and one end of a socketpair as fd 5. It loads the filter
// with SECCOMP_FILTER_FLAG_NEW_LISTENER and sends the listener fd to vatrun over fd 5 with
// SCM_RIGHTS; the filter exempts exactly that sendmsg (fd 5, flags MSG_NOSIGNAL|MSG_CMSG_CLOEXEC,
// a combination no worker passes), since a notified sendmsg would wait for a listener nobody has
// yet. Then it execs the worker; the execve is the first notification. Every fd above 4 is
// close-on-exec (the listener always is), so the worker sees what `vatrun run` gives it.
//
// Learning runs without vatrun's sandbox (no namespaces, rlimits or cgroup): the syscalls a
// worker makes do not depend on them, and it keeps the core init stage (sandbox/stage.c) free of
// a mode that is only needed here. The learned profile then runs under the full sandbox.

/*
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

#define VL_MARKER "__vatrun_learn__"
#define VL_SOCK 5
#define VL_MAGIC_FLAGS (MSG_NOSIGNAL | MSG_CMSG_CLOEXEC)

#if defined(__x86_64__)
#define VL_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define VL_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#define VL_AUDIT_ARCH 0
#endif

#ifndef SECCOMP_FILTER_FLAG_NEW_LISTENER
#define SECCOMP_FILTER_FLAG_NEW_LISTENER (1UL << 3)
#endif
#ifndef SECCOMP_RET_USER_NOTIF
#define SECCOMP_RET_USER_NOTIF 0x7fc00000U
#endif

// One message from the helper to vatrun: err 0 and the listener fd attached, or the errno
// of the step that failed.
struct vl_hello {
	int32_t err;
	char text[124];
};

static int vl_send(int err, const char *text, int fd)
{
	struct vl_hello h;
	memset(&h, 0, sizeof(h));
	h.err = err;
	snprintf(h.text, sizeof(h.text), "%s", text);
	struct iovec iov = {.iov_base = &h, .iov_len = sizeof(h)};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr msg;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (fd >= 0) {
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	return sendmsg(VL_SOCK, &msg, VL_MAGIC_FLAGS) < 0 ? -1 : 0;
}

static void vl_fail(const char *step) __attribute__((noreturn));
static void vl_fail(const char *step)
{
	vl_send(errno, step, -1);
	_exit(121);
}

__attribute__((constructor)) static void vl_learn_constructor(int argc, char **argv, char **envp)
{
	if (argc < 4 || strcmp(argv[1], VL_MARKER) != 0)
		return;
	if (VL_AUDIT_ARCH == 0) {
		errno = ENOSYS;
		vl_fail("vatrun profile learn supports x86_64 and aarch64 only");
	}
	if (fcntl(VL_SOCK, F_SETFD, FD_CLOEXEC) != 0)
		_exit(121);
	if (syscall(SYS_close_range, 5U, ~0U, 4U) != 0) // CLOSE_RANGE_CLOEXEC
		vl_fail("close_range CLOEXEC from fd 5");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		vl_fail("set no_new_privs");

	struct sock_filter insns[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, VL_AUDIT_ARCH, 0, 7),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_sendmsg, 0, 5),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, VL_SOCK, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, VL_MAGIC_FLAGS, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
	};
	struct sock_fprog prog = {.len = sizeof(insns) / sizeof(insns[0]), .filter = insns};
	long listener = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
	if (listener < 0)
		vl_fail("load the notifying seccomp filter");
	if (vl_send(0, "ok", (int)listener) != 0)
		_exit(121); // every further syscall waits for vatrun, which died: exit_group is one
	// From here on every syscall is reported to vatrun (and continued).
	execve(argv[2], argv + 3, envp);
	int err = errno;
	dprintf(2, "vatrun profile learn: execve %s: %s\n", argv[2], strerror(err));
	_exit(err == ENOENT ? 127 : 126);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"github.com/vatrun/vatrun/sandbox"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
	"unsafe"

	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// Marker is argv[1] of the learn helper: a binary importing this package and started as
// `SELF Marker WORKER-PATH ARGV0 ARGS...` becomes the helper in its C constructor.
const Marker = C.VL_MARKER

// Worker is the worker to learn from and the files it gets.
type Worker struct {
	// Path is the resolved executable, Argv its argv (Argv[0] included).
	Path string
	Argv []string
	// Stdin, Stdout, Stderr are fds 0-2; Fd3 and Fd4 are fds 3 and 4 (nil: left closed).
	Stdin, Stdout, Stderr *os.File
	Fd3, Fd4              *os.File
}

// Run runs the worker under the learn helper, answers every notification with "continue",
// and returns the syscalls seen and the worker's wait status.
func Run(w Worker) (*Usage, syscall.WaitStatus, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, 0, fmt.Errorf("find vatrun's own executable: %w", err)
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("socketpair: %w", err)
	}
	mine := os.NewFile(uintptr(pair[0]), "learn-sock")
	theirs := os.NewFile(uintptr(pair[1]), "learn-sock-helper")
	defer mine.Close()

	cmd := exec.Command(self, append([]string{Marker, w.Path}, w.Argv...)...)
	cmd.Args[0] = "vatrun-learn"
	cmd.Env = os.Environ()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = w.Stdin, w.Stdout, w.Stderr
	cmd.ExtraFiles = []*os.File{w.Fd3, w.Fd4, theirs}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// Stop signals reach the worker, not us, while it runs.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		theirs.Close()
		return nil, 0, fmt.Errorf("start the learn helper: %w", err)
	}
	theirs.Close()
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	go func() {
		for {
			select {
			case s := <-sigs:
				cmd.Process.Signal(s)
			case <-exited:
				return
			}
		}
	}()
	status := func() syscall.WaitStatus {
		<-exited
		return cmd.ProcessState.Sys().(syscall.WaitStatus)
	}

	listener, err := receiveListener(mine, exited)
	if err != nil {
		cmd.Process.Kill()
		ws := status()
		return nil, ws, fmt.Errorf("learn helper (%s): %w", sandbox.DescribeStatus(unix.WaitStatus(ws)), err)
	}
	defer unix.Close(listener)

	usage := &Usage{}
	fds := []unix.PollFd{{Fd: int32(listener), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 100)
		if err != nil && !errors.Is(err, unix.EINTR) {
			cmd.Process.Kill()
			return nil, status(), fmt.Errorf("poll the seccomp listener: %w", err)
		}
		if n > 0 && fds[0].Revents&unix.POLLIN != 0 {
			req, err := libseccomp.NotifReceive(libseccomp.ScmpFd(listener))
			if err != nil {
				continue // the caller died before we read it (ENOENT)
			}
			usage.Record(req.Data.Arch, req.Data.Syscall)
			// An error here means the caller is gone: nothing to answer.
			_ = libseccomp.NotifRespond(libseccomp.ScmpFd(listener), &libseccomp.ScmpNotifResp{
				ID: req.ID, Flags: libseccomp.NotifRespFlagContinue,
			})
			continue
		}
		if n > 0 && fds[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0 {
			break // no process uses the filter any more
		}
		select {
		case <-exited:
		default:
			continue
		}
		break
	}
	return usage, status(), nil
}

// receiveListener reads the helper's one message: the listener fd, or why it could not make one.
func receiveListener(sock *os.File, exited <-chan struct{}) (int, error) {
	var hello C.struct_vl_hello
	buf := make([]byte, unsafe.Sizeof(hello))
	oob := make([]byte, unix.CmsgSpace(4))
	type result struct {
		n, oobn int
		err     error
	}
	done := make(chan result, 1)
	go func() {
		n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
		done <- result{n, oobn, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		return -1, errors.New("no seccomp listener from the helper after 10 s")
	}
	if r.err != nil {
		return -1, fmt.Errorf("receive the seccomp listener: %w", r.err)
	}
	if r.n != len(buf) {
		select {
		case <-exited:
		case <-time.After(time.Second):
		}
		return -1, errors.New("the helper exited before it sent the seccomp listener")
	}
	C.memcpy(unsafe.Pointer(&hello), unsafe.Pointer(&buf[0]), C.size_t(len(buf)))
	if hello.err != 0 {
		text := C.GoString(&hello.text[0])
		return -1, fmt.Errorf("%s: %w", text, syscall.Errno(hello.err))
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:r.oobn])
	if err != nil || len(msgs) != 1 {
		return -1, fmt.Errorf("no seccomp listener in the helper's message (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return -1, fmt.Errorf("no seccomp listener in the helper's message (%v)", err)
	}
	return fds[0], nil
}
