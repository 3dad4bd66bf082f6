/*
 * vatrun's init stage. It runs as a constructor, before the Go runtime starts, in the process the
 * supervisor cloned into the worker's namespaces (and cgroup). When argv[1] is not VR_MARKER it
 * returns at once and the Go program starts as usual.
 *
 * As the init stage it: reads its config, sets up the mount and uts namespaces, forks the worker
 * (so that the worker is not pid 1 of its pid namespace), and in the worker's process, between
 * fork and exec: parent-death signal, rlimits, capability drop, no_new_privs, close every fd
 * above the kept ones, the seccomp filter, execve. The init stage then forwards signals to the
 * worker, reaps every process of the namespace, and reports the worker's wait status and rusage
 * on the status fd before exiting; a thread of its own answers the seccomp listener, recording the
 * syscalls the filter refuses with an errno (vr_load_filter, vr_notifier). Nothing here runs on a
 * Go stack.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stage.h"
#include "prelaunch.h"

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

#ifndef SECCOMP_FILTER_FLAG_NEW_LISTENER
#define SECCOMP_FILTER_FLAG_NEW_LISTENER (1UL << 3)
#endif
#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif
#ifndef SECCOMP_RET_USER_NOTIF
#define SECCOMP_RET_USER_NOTIF 0x7fc00000U
#endif
#ifndef SECCOMP_RET_ACTION_FULL
#define SECCOMP_RET_ACTION_FULL 0xffff0000U
#endif
#if defined(__x86_64__)
#define VR_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define VR_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#define VR_AUDIT_ARCH 0
#endif

static volatile pid_t vr_child = 0;
static int vr_status_fd = -1;
/* Bit N: signal N was relayed to the worker while it was still alive (not yet a zombie). */
static volatile uint64_t vr_forwarded_mask = 0;

static const int vr_forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGWINCH};
#define VR_NFORWARDED (int)(sizeof(vr_forwarded) / sizeof(vr_forwarded[0]))

static int64_t vr_mono_nsec(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return 0;
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void vr_send(const struct vr_msg *m)
{
	const char *p = (const char *)m;
	size_t left = sizeof(*m);
	while (left > 0) {
		ssize_t n = write(vr_status_fd, p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* the supervisor is gone; nothing to tell */
		p += n;
		left -= (size_t)n;
	}
}

static void vr_fail(int err, const char *step) __attribute__((noreturn));
static void vr_fail(int err, const char *step)
{
	struct vr_msg m;
	memset(&m, 0, sizeof(m));
	m.type = VR_MSG_SETUP_FAILED;
	m.a = err;
	snprintf(m.text, sizeof(m.text), "%s", step);
	vr_send(&m);
	_exit(120);
}

static int vr_read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Relays a stop signal to the worker, but only one that came from outside the sandbox: with a pid
 * namespace a sender outside it shows as pid 0 (vatrun, an operator), while the worker
 * or its children show their own pids; without one, only our parent (vatrun) counts. A worker that
 * signals us cannot make its own death look like a stop from outside. A signal that arrives when
 * the worker is already dead (a zombie waiting to be reaped) is not relayed and not recorded, so a
 * late stop never becomes the cause of a death that had already happened. */
static void vr_forward(int sig, siginfo_t *info, void *uctx)
{
	(void)uctx;
	int saved = errno;
	pid_t child = vr_child;
	/* si_pid is the kernel's word only for SI_USER (kill, pidfd_send_signal): rt_sigqueueinfo lets
	 * the sender write it, so a queued signal (si_code < 0) could claim to come from outside. */
	if (child > 0 && info != NULL && info->si_code == SI_USER && (info->si_pid == 0 || info->si_pid == getppid())) {
		siginfo_t si;
		memset(&si, 0, sizeof(si));
		int dead = waitid(P_PID, (id_t)child, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == child;
		if (!dead && kill(child, sig) == 0 && sig > 0 && sig < 64)
			vr_forwarded_mask |= (uint64_t)1 << sig;
	}
	errno = saved;
}

/* Landlock, applied to the worker only (the init stage stays unconfined): the paths of
 * vr_ll_paths (vr_ll_len bytes of NUL-terminated absolute paths) may be read and executed, a
 * directory listed too, nothing else of the filesystem may be read, written or made; with ABI 4 no
 * TCP bind or connect; with ABI 6 the worker may not signal, nor connect to an abstract unix socket
 * of, any process outside its own Landlock domain (its parent, other workers, the supervisor).
 * Raw syscalls: this runs before any Go code, and the structs are spelled out so that older kernel
 * headers build it. Returns 0, or -1 with errno and step set. */
static const char *vr_ll_paths;
static uint32_t vr_ll_len;

struct vr_ll_ruleset_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net;
	uint64_t scoped;
};
struct vr_ll_path_beneath {
	uint64_t allowed_access;
	int32_t parent_fd;
} __attribute__((packed));

#define VR_LL_EXECUTE 0x1ULL
#define VR_LL_READ_FILE 0x4ULL
#define VR_LL_READ_DIR 0x8ULL
#define VR_LL_RULE_PATH_BENEATH 1

static int vr_landlock(uint32_t abi, char *step, size_t stepsz)
{
	struct vr_ll_ruleset_attr attr = {0, 0, 0};
	attr.handled_access_fs = (1ULL << 13) - 1; /* ABI 1: execute … make_sym */
	if (abi >= 2)
		attr.handled_access_fs |= 1ULL << 13; /* refer */
	if (abi >= 3)
		attr.handled_access_fs |= 1ULL << 14; /* truncate */
	if (abi >= 5)
		attr.handled_access_fs |= 1ULL << 15; /* ioctl_dev */
	if (abi >= 4)
		attr.handled_access_net = 0x3; /* bind_tcp, connect_tcp */
	if (abi >= 6)
		attr.scoped = 0x3; /* abstract_unix_socket, signal */
	/* The attribute grows with the ABI; an older kernel takes the size it knows. */
	size_t size = abi >= 6 ? sizeof(attr) : abi >= 4 ? 2 * sizeof(uint64_t) : sizeof(uint64_t);
	snprintf(step, stepsz, "landlock: create a ruleset (ABI %u)", abi);
	int rfd = (int)syscall(444 /* landlock_create_ruleset */, &attr, size, 0);
	if (rfd < 0)
		return -1;
	for (uint32_t off = 0; off < vr_ll_len;) {
		const char *p = vr_ll_paths + off;
		size_t n = strnlen(p, vr_ll_len - off);
		off += (uint32_t)n + 1;
		if (n == 0)
			continue;
		snprintf(step, stepsz, "landlock: allow reading %s", p);
		int fd = open(p, O_PATH | O_CLOEXEC);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) != 0) {
			int e = errno;
			if (fd >= 0)
				close(fd);
			close(rfd);
			errno = e;
			return -1;
		}
		struct vr_ll_path_beneath pb = {VR_LL_EXECUTE | VR_LL_READ_FILE, fd};
		if (S_ISDIR(st.st_mode))
			pb.allowed_access |= VR_LL_READ_DIR;
		long r = syscall(445 /* landlock_add_rule */, rfd, VR_LL_RULE_PATH_BENEATH, &pb, 0);
		int e = errno;
		close(fd);
		if (r != 0) {
			close(rfd);
			errno = e;
			return -1;
		}
	}
	snprintf(step, stepsz, "landlock: restrict the worker (ABI %u)", abi);
	long r = syscall(446 /* landlock_restrict_self */, rfd, 0);
	int e = errno;
	close(rfd);
	errno = e;
	return r == 0 ? 0 : -1;
}

/* vr_bpf_eval runs a classic BPF seccomp program on one call's data (sandbox.go declares it for the tests). */
uint32_t vr_bpf_eval(const void *progp, uint32_t len, const void *datap, int *ok)
{
	const struct sock_filter *f = progp;
	const struct seccomp_data *d = datap;
	uint32_t A = 0, X = 0, M[BPF_MEMWORDS];
	uint32_t pc = 0;

	memset(M, 0, sizeof(M));
	*ok = 0;
	/* Classic BPF only jumps forward, so at most len instructions run. */
	while (pc < len) {
		const struct sock_filter *in = &f[pc++];
		uint32_t k = in->k;
		switch (in->code) {
		case BPF_LD | BPF_W | BPF_ABS:
			if (k > sizeof(*d) - 4 || (k & 3) != 0)
				return 0;
			memcpy(&A, (const char *)d + k, 4);
			break;
		case BPF_LD | BPF_W | BPF_LEN:
			A = sizeof(*d);
			break;
		case BPF_LDX | BPF_W | BPF_LEN:
			X = sizeof(*d);
			break;
		case BPF_LD | BPF_IMM:
			A = k;
			break;
		case BPF_LDX | BPF_IMM:
			X = k;
			break;
		case BPF_LD | BPF_MEM:
		case BPF_LDX | BPF_MEM:
		case BPF_ST:
		case BPF_STX:
			if (k >= BPF_MEMWORDS)
				return 0;
			if (in->code == (BPF_LD | BPF_MEM))
				A = M[k];
			else if (in->code == (BPF_LDX | BPF_MEM))
				X = M[k];
			else if (in->code == BPF_ST)
				M[k] = A;
			else
				M[k] = X;
			break;
		case BPF_ALU | BPF_NEG:
			A = -A;
			break;
		case BPF_MISC | BPF_TAX:
			X = A;
			break;
		case BPF_MISC | BPF_TXA:
			A = X;
			break;
		case BPF_JMP | BPF_JA:
			if (k >= len - pc)
				return 0;
			pc += k;
			break;
		case BPF_RET | BPF_K:
			*ok = 1;
			return k;
		case BPF_RET | BPF_A:
			*ok = 1;
			return A;
		default:
			if (BPF_CLASS(in->code) == BPF_ALU) {
				uint32_t v = BPF_SRC(in->code) == BPF_X ? X : k;
				switch (BPF_OP(in->code)) {
				case BPF_ADD: A += v; break;
				case BPF_SUB: A -= v; break;
				case BPF_MUL: A *= v; break;
				case BPF_DIV: if (v == 0) return 0; A /= v; break;
				case BPF_MOD: if (v == 0) return 0; A %= v; break;
				case BPF_AND: A &= v; break;
				case BPF_OR: A |= v; break;
				case BPF_XOR: A ^= v; break;
				case BPF_LSH: if (v >= 32) return 0; A <<= v; break;
				case BPF_RSH: if (v >= 32) return 0; A >>= v; break;
				default: return 0;
				}
				break;
			}
			if (BPF_CLASS(in->code) == BPF_JMP) {
				uint32_t v = BPF_SRC(in->code) == BPF_X ? X : k;
				int taken;
				switch (BPF_OP(in->code)) {
				case BPF_JEQ: taken = A == v; break;
				case BPF_JGT: taken = A > v; break;
				case BPF_JGE: taken = A >= v; break;
				case BPF_JSET: taken = (A & v) != 0; break;
				default: return 0;
				}
				uint32_t off = taken ? in->jt : in->jf;
				if (off >= len - pc)
					return 0;
				pc += off;
				break;
			}
			return 0;
		}
	}
	return 0;
}

/* The refused-syscall record, filled by the notifier thread, read by the main thread under vr_denied_mu. */
struct vr_denied {
	uint32_t arch;
	int32_t nr;
	int32_t err;
	uint64_t count;
	uint64_t args[6];
	uint64_t last; /* vr_denied_seq at its latest refusal */
};
static uint64_t vr_denied_seq; /* refused calls so far */
static pthread_mutex_t vr_denied_mu = PTHREAD_MUTEX_INITIALIZER;
static struct vr_denied vr_denied[VR_MAX_DENIED];
static uint32_t vr_ndenied;
static uint64_t vr_denied_over; /* refused calls whose (arch, nr) did not fit the table */

/* Written by the worker's side of the clone (shared memory), read by the init stage after it: why
 * the refused syscalls are not recorded, or "" when they are (or nothing is refused); and the
 * listener's fd number in the fd table the two share until the worker's execve. */
static char vr_record_why[120];
static int vr_listener = -1;

/* Would prog make the worker's side wait for a notification on this call (one it makes after loading
 * the filter and before its execve)? Then the listener is not used: nobody could answer yet. */
static int vr_would_notify(const struct sock_fprog *prog, long nr, uint64_t a0, uint64_t a1, uint64_t a2)
{
	struct seccomp_data d;
	int ok;
	memset(&d, 0, sizeof(d));
	d.nr = (int)nr;
	d.arch = VR_AUDIT_ARCH;
	d.args[0] = a0;
	d.args[1] = a1;
	d.args[2] = a2;
	uint32_t act = vr_bpf_eval(prog->filter, prog->len, &d, &ok);
	return !ok || (act & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_ERRNO;
}

/* Loads prog in the worker's side, recording refused calls when asked and possible: the ERRNO
 * returns become USER_NOTIF in a copy (nprog, prepared by the init stage), whose listener lands in
 * the fd table the worker's side shares with the init stage until its execve (close-on-exec, so the
 * worker never holds it), and the original program stays with the init stage to find each errno.
 * Falls back to prog itself (plain ERRNO) with the reason in vr_record_why. Returns 0, or -1 with
 * errno set and step filled when the load failed. */
static int vr_load_filter(struct sock_fprog *prog, struct sock_fprog *nprog, int errfd, char *path, char **argv,
			  char **envp, char *step, size_t stepsz)
{
	if (nprog != NULL) {
		/* Every call made between the load and the execve: execve, and on failure write and
		 * exit_group, each with these arguments (execve is a raw syscall whose unused arguments
		 * are 0; only write's buffer address is not the real one). A refused one would wait for
		 * an answer from the init stage, which waits for the execve. */
		if (vr_would_notify(prog, SYS_execve, (uint64_t)(uintptr_t)path, (uint64_t)(uintptr_t)argv, (uint64_t)(uintptr_t)envp) ||
		    vr_would_notify(prog, SYS_write, (uint64_t)errfd, 0, sizeof(struct vr_msg)) ||
		    vr_would_notify(prog, SYS_exit_group, 127, 0, 0)) {
			snprintf(vr_record_why, sizeof(vr_record_why),
				 "refused syscalls are not recorded: the filter refuses execve, write or exit_group");
		} else {
			int lfd = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
					       SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, nprog);
			if (lfd >= 0) {
				vr_listener = lfd;
				return 0;
			}
			snprintf(vr_record_why, sizeof(vr_record_why),
				 "refused syscalls are not recorded: the kernel refused a seccomp listener (%s)", strerror(errno));
		}
	}
	snprintf(step, stepsz, "load the seccomp filter (%u instructions)", prog->len);
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog, 0, 0);
}

/* The notifier thread: answers each notification with the errno of the original program, after
 * recording it. It blocks only in poll and in the listener's ioctls; the main thread only takes
 * vr_denied_mu, held for a table update, so it never waits on the worker through this path. */
struct vr_notifier_arg {
	int fd;
	struct sock_fprog prog; /* the original program */
};

static void *vr_notifier(void *argp)
{
	struct vr_notifier_arg *arg = argp;
	struct seccomp_notif_sizes sizes = {0, 0, 0};
	if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) != 0) {
		sizes.seccomp_notif = sizeof(struct seccomp_notif);
		sizes.seccomp_notif_resp = sizeof(struct seccomp_notif_resp);
	}
	size_t nsz = sizes.seccomp_notif > sizeof(struct seccomp_notif) ? sizes.seccomp_notif : sizeof(struct seccomp_notif);
	size_t rsz = sizes.seccomp_notif_resp > sizeof(struct seccomp_notif_resp) ? sizes.seccomp_notif_resp
										  : sizeof(struct seccomp_notif_resp);
	struct seccomp_notif *req = calloc(1, nsz);
	struct seccomp_notif_resp *resp = calloc(1, rsz);
	if (req == NULL || resp == NULL)
		return NULL; /* refused calls then wait until the worker dies: never happens in practice */
	/* Linux 6.6+: the refused task and this thread hand the CPU to each other (as gVisor does);
	 * older kernels refuse the flag and wake as usual. */
	(void)ioctl(arg->fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, 0);
	for (;;) {
		/* Blocks until a refused call, or until no task uses the filter any more (ENOENT). */
		memset(req, 0, nsz);
		if (ioctl(arg->fd, SECCOMP_IOCTL_NOTIF_RECV, req) != 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOENT) {
				/* The caller went away before we read it, or no task uses the filter any
				 * more (POLLHUP): then there is nothing left to answer. */
				struct pollfd pfd = {.fd = arg->fd, .events = POLLIN, .revents = 0};
				if (poll(&pfd, 1, 0) >= 0 && (pfd.revents & POLLHUP))
					return NULL;
				continue;
			}
			return NULL;
		}
		int ok;
		uint32_t act = vr_bpf_eval(arg->prog.filter, arg->prog.len, &req->data, &ok);
		int err = EPERM; /* unreachable: only the original's ERRNO returns notify */
		if (ok && (act & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_ERRNO) {
			err = (int)(act & SECCOMP_RET_DATA);
			if (err > 4095) /* the kernel's MAX_ERRNO clamp */
				err = 4095;
		}
		/* Record before answering: a worker that dies right after the answer is reported with it. */
		pthread_mutex_lock(&vr_denied_mu);
		vr_denied_seq++;
		uint32_t i;
		for (i = 0; i < vr_ndenied; i++)
			if (vr_denied[i].nr == req->data.nr && vr_denied[i].arch == req->data.arch)
				break;
		if (i < vr_ndenied) {
			vr_denied[i].count++;
			vr_denied[i].last = vr_denied_seq;
		} else if (vr_ndenied < VR_MAX_DENIED) {
			struct vr_denied *e = &vr_denied[vr_ndenied++];
			e->arch = req->data.arch;
			e->nr = req->data.nr;
			e->err = err;
			e->count = 1;
			e->last = vr_denied_seq;
			memcpy(e->args, req->data.args, sizeof(e->args));
		} else {
			vr_denied_over++;
		}
		pthread_mutex_unlock(&vr_denied_mu);
		memset(resp, 0, rsz);
		resp->id = req->id;
		resp->error = -err;
		resp->val = 0;
		resp->flags = 0; /* never CONTINUE: the worker gets exactly the errno it would have got */
		if (ioctl(arg->fd, SECCOMP_IOCTL_NOTIF_SEND, resp) != 0) {
			/* ENOENT: the caller was interrupted or died meanwhile; nothing to answer. */
		}
	}
}

/* The worker's side of the fork: everything between fork and exec. On failure the step and errno
 * go to errfd (close-on-exec), so the init stage can tell the supervisor. */
static void vr_child_exec(const struct vr_config *cfg, struct sock_fprog *prog, struct sock_fprog *nprog,
			  int errfd, pid_t initpid, char *path, char **argv, char **envp) __attribute__((noreturn));
static void vr_child_exec(const struct vr_config *cfg, struct sock_fprog *prog, struct sock_fprog *nprog,
			  int errfd, pid_t initpid, char *path, char **argv, char **envp)
{
	char step[160];
	int err;
	sigset_t none;
	struct sigaction dfl;

	snprintf(step, sizeof(step), "set parent-death signal");
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
		goto fail;
	if (getppid() != initpid)
		_exit(121); /* the init stage already died */

	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	for (int i = 0; i < VR_NFORWARDED; i++)
		sigaction(vr_forwarded[i], &dfl, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

#ifdef VR_TESTHOOKS
	/* Fault injection, compiled only into the tests' bin/vatrun-hooks (build tag vatrun_testhooks,
	 * sandbox/testhooks.go): with VATRUN_TEST_PAUSE=in-setup in the worker's environment, stop
	 * here, between fork and exec, for at most 30 s, so a test can SIGKILL vatrun while the
	 * sandbox is being set up. */
	for (char **e = envp; *e != NULL; e++) {
		if (strcmp(*e, "VATRUN_TEST_PAUSE=in-setup") == 0) {
			static const char msg[] = "vatrun-test-pause in-setup\n";
			ssize_t n = write(2, msg, sizeof(msg) - 1);
			(void)n;
			sleep(30);
			break;
		}
	}
#endif

	for (uint32_t i = 0; i < cfg->nrlimits; i++) {
		struct rlimit rl = {.rlim_cur = cfg->rlimits[i].cur, .rlim_max = cfg->rlimits[i].max};
		if (setrlimit(cfg->rlimits[i].resource, &rl) != 0) {
			snprintf(step, sizeof(step), "setrlimit resource %d to %llu/%llu", cfg->rlimits[i].resource,
				 (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
			goto fail;
		}
	}

	if (cfg->flags & VR_FLAG_DROPCAPS) {
		snprintf(step, sizeof(step), "clear the ambient capability set");
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
			goto fail;
		/* Dropping from the bounding set needs CAP_SETPCAP. A process that holds no capability
		 * at all (an unprivileged user without a user namespace: the no-namespace mode) cannot
		 * drop them, and needs not: with no_new_privs (below) and empty permitted, inheritable
		 * and ambient sets, nothing it execs can gain one. */
		struct {
			uint32_t version;
			int pid;
		} chdr = {0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0};
		struct {
			uint32_t effective, permitted, inheritable;
		} cdata[2];
		snprintf(step, sizeof(step), "read the capability sets");
		if (syscall(SYS_capget, &chdr, cdata) != 0)
			goto fail;
		int holds = (cdata[0].permitted | cdata[1].permitted | cdata[0].inheritable | cdata[1].inheritable) != 0;
		for (int cap = 0; holds && cap < 64; cap++) {
			if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) {
				snprintf(step, sizeof(step), "drop capability %d from the bounding set", cap);
				goto fail;
			}
		}
	}

	/* Empty the inheritable set too: it survives execve, and with ambient capabilities (systemd
	 * AmbientCapabilities=, setpriv --inh-caps) it is how capabilities would reach the worker. */
	if (cfg->flags & VR_FLAG_DROPCAPS) {
		struct vr_cap_header {
			uint32_t version;
			int pid;
		} hdr = {0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0};
		struct vr_cap_data {
			uint32_t effective, permitted, inheritable;
		} data[2];
		snprintf(step, sizeof(step), "clear the inheritable capability set");
		if (syscall(SYS_capget, &hdr, data) != 0)
			goto fail;
		data[0].inheritable = data[1].inheritable = 0;
		if (syscall(SYS_capset, &hdr, data) != 0)
			goto fail;
	}

	/* A root vatrun: the worker becomes an id that owns nothing on the host (docs/worker-identity.md),
	 * after the capability drops above (they need CAP_SETPCAP). The switch clears our parent-death
	 * signal (the kernel does on every credential change): set it again and look again. */
	if (cfg->flags & VR_FLAG_SETIDS) {
		snprintf(step, sizeof(step), "switch the worker to uid %u gid %u (setgroups, setresgid, setresuid)",
			 cfg->worker_uid, cfg->worker_gid);
		if (setgroups(0, NULL) != 0 || setresgid(cfg->worker_gid, cfg->worker_gid, cfg->worker_gid) != 0 ||
		    setresuid(cfg->worker_uid, cfg->worker_uid, cfg->worker_uid) != 0)
			goto fail;
		snprintf(step, sizeof(step), "set parent-death signal");
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
			goto fail;
		if (getppid() != initpid)
			_exit(121);
		if (access(path, X_OK) != 0) {
			snprintf(step, sizeof(step), "execve %.72s: uid %u may not execute it (chmod o+rx it, o+x its directories)",
				 path, cfg->worker_uid);
			goto fail;
		}
	}

	/* A session of its own: no controlling terminal, so no TIOCSTI into the caller's shell and no
	 * terminal signals from the caller's session. */
	snprintf(step, sizeof(step), "start a new session (setsid)");
	if (setsid() < 0)
		goto fail;

	snprintf(step, sizeof(step), "set no_new_privs");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		goto fail;

	/* Mark every fd above the kept ones close-on-exec (errfd must survive until execve). */
	snprintf(step, sizeof(step), "close_range fds from %d", cfg->keep_fds);
	if (syscall(SYS_close_range, (unsigned)cfg->keep_fds, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
		goto fail;

	if (cfg->landlock_abi > 0 && vr_landlock(cfg->landlock_abi, step, sizeof(step)) != 0)
		goto fail;

	if (prog != NULL && vr_load_filter(prog, nprog, errfd, path, argv, envp, step, sizeof(step)) != 0)
		goto fail;

	/* A raw execve: its unused arguments are 0, as vr_load_filter assumed. */
	syscall(SYS_execve, path, argv, envp, 0, 0, 0);
	snprintf(step, sizeof(step), "execve %s", path);
fail:
	err = errno;
	{
		struct vr_msg m;
		memset(&m, 0, sizeof(m));
		m.type = VR_MSG_SETUP_FAILED;
		m.a = err;
		snprintf(m.text, sizeof(m.text), "%s", step);
		ssize_t n = write(errfd, &m, sizeof(m));
		(void)n;
	}
	_exit(127);
}

/* Starts the worker's side as vfork does (CLONE_VM | CLONE_VFORK): it shares our memory until its
 * execve, so nothing is copied (no page tables, no copy-on-write faults, measured at ~10% of a
 * whole `vatrun run` on a VM), and we are suspended until then. It also shares our fd table
 * (CLONE_FILES) until the execve, which gives it a copy without the close-on-exec fds: the seccomp
 * listener it creates is then ours, and never the worker's. It runs on a stack of its own (as
 * posix_spawn does), only makes system calls and writes its own stack frames, errno, vr_listener,
 * vr_record_why and a failure record; its signal handlers, rlimits and credentials are its own. */
struct vr_spawn_arg {
	const struct vr_config *cfg;
	struct sock_fprog *prog, *nprog;
	int errfd;
	pid_t initpid;
	char *path;
	char **argv, **envp;
};

static int vr_spawned(void *p)
{
	struct vr_spawn_arg *a = p;
	vr_child_exec(a->cfg, a->prog, a->nprog, a->errfd, a->initpid, a->path, a->argv, a->envp);
}

static pid_t vr_spawn(const struct vr_config *cfg, struct sock_fprog *prog, struct sock_fprog *nprog, int errpipe[2],
		      pid_t initpid, char *path, char **argv, char **envp)
{
	const size_t stacksz = 256 * 1024;
	struct vr_spawn_arg a = {cfg, prog, nprog, errpipe[1], initpid, path, argv, envp};
	char *stack = mmap(NULL, stacksz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (stack == MAP_FAILED)
		return -1;
	pid_t child = clone(vr_spawned, stack + stacksz, CLONE_VM | CLONE_VFORK | CLONE_FILES | SIGCHLD, &a);
	int err = errno;
	munmap(stack, stacksz);
	errno = err;
	return child;
}

/* mkdir -p for path's parents (and path itself when dir), in the new root. */
static int vr_mkdirs(const char *path, int dir)
{
	char buf[4096];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (dir && mkdir(buf, 0755) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Creates target (an empty file or a directory, like source) and binds source over it. */
static void vr_bind(const char *src, const char *dst, unsigned long extra)
{
	char step[160];
	struct stat st;
	if (stat(src, &st) != 0) {
		snprintf(step, sizeof(step), "minimal root: %.120s does not exist", src);
		vr_fail(errno, step);
	}
	int err = vr_mkdirs(dst, S_ISDIR(st.st_mode));
	if (err == 0 && !S_ISDIR(st.st_mode)) {
		int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0 && errno != EEXIST)
			err = -errno;
		if (fd >= 0)
			close(fd);
	}
	if (err != 0) {
		snprintf(step, sizeof(step), "minimal root: create %.120s", dst);
		vr_fail(-err, step);
	}
	if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) != 0) {
		snprintf(step, sizeof(step), "minimal root: bind %.60s at %.60s", src, dst);
		vr_fail(errno, step);
	}
	/* Keep the source mount's own restrictions: in a user namespace they are locked, and a
	 * remount that dropped one (a noexec or nodev source) would be refused. */
	struct statvfs sv;
	if (statvfs(src, &sv) == 0) {
		if (sv.f_flag & ST_RDONLY)
			extra |= MS_RDONLY;
		if (sv.f_flag & ST_NODEV)
			extra |= MS_NODEV;
		if (sv.f_flag & ST_NOEXEC)
			extra |= MS_NOEXEC;
		if (sv.f_flag & ST_NOATIME)
			extra |= MS_NOATIME;
		if (sv.f_flag & ST_NODIRATIME)
			extra |= MS_NODIRATIME;
		if (sv.f_flag & ST_RELATIME)
			extra |= MS_RELATIME;
	}
	if (mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_NOSUID | extra, NULL) != 0) {
		snprintf(step, sizeof(step), "minimal root: make %.120s nosuid%s", dst, (extra & MS_RDONLY) ? ", read-only" : "");
		vr_fail(errno, step);
	}
}

/* runc's masked and read-only paths of /proc (libcontainer/specconv defaults), plus the kernel log
 * and the kernel's symbol and page tables. */
static const char *const vr_proc_masked[] = {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
					     "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
					     "/proc/sched_debug", "/proc/scsi", "/proc/interrupts", "/proc/kmsg",
					     "/proc/kallsyms", "/proc/kpagecount", "/proc/kpageflags", "/proc/kpagecgroup"};
static const char *const vr_proc_readonly[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
					       "/proc/sysrq-trigger"};

static void vr_mask(const char *path)
{
	struct stat st;
	char step[160];
	if (lstat(path, &st) != 0)
		return; /* not on this kernel */
	int rc = S_ISDIR(st.st_mode) ? mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0")
				      : mount("/dev/null", path, NULL, MS_BIND, NULL);
	if (rc != 0) {
		snprintf(step, sizeof(step), "minimal root: mask %.120s", path);
		vr_fail(errno, step);
	}
}

static void vr_readonly(const char *path)
{
	char step[160];
	if (access(path, F_OK) != 0)
		return;
	if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) != 0 ||
	    mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) {
		snprintf(step, sizeof(step), "minimal root: make %.120s read-only", path);
		vr_fail(errno, step);
	}
}

/* The bubblewrap/nsjail model: the worker's root is a small tmpfs holding only what the mount table
 * names, a private /dev and a fresh /proc; the host's root is detached, never visible. */
static void vr_setup_mounts(const struct vr_config *cfg, const char *table)
{
	static const char *const devs[] = {"null", "zero", "full", "random", "urandom"};
	char src[4200], step[160];

	/* The directories made on the way to each bind are 0755 whatever vatrun's umask: a worker that
	 * runs under another uid (VR_FLAG_SETIDS) must be able to walk them. */
	mode_t umask_was = umask(022);
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		vr_fail(errno, "make the mount namespace private (mount --make-rprivate /)");
	/* The new root: a tmpfs on /tmp, then pivot_root with the old root at /oldroot, whence the
	 * sources are bound (bubblewrap's way: /tmp is only the mount point). */
	if (mount("vatrun-root", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") != 0)
		vr_fail(errno, "minimal root: mount a tmpfs for the new root (on /tmp)");
	if (mkdir("/tmp/oldroot", 0700) != 0)
		vr_fail(errno, "minimal root: mkdir /oldroot");
	if (syscall(SYS_pivot_root, "/tmp", "/tmp/oldroot") != 0)
		vr_fail(errno, "minimal root: pivot_root (the current root must be an ordinary mount; an initramfs's rootfs cannot be pivoted away: switch_root first)");
	if (chdir("/") != 0)
		vr_fail(errno, "minimal root: chdir /");

	for (const char *p = table; p < table + cfg->mounts_len;) {
		char kind = *p++;
		const char *from = p;
		p += strlen(p) + 1;
		const char *to = p;
		p += strlen(p) + 1;
		switch (kind) {
		case VR_MOUNT_RO:
		case VR_MOUNT_RW:
			snprintf(src, sizeof(src), "/oldroot%s", from);
			vr_bind(src, to, MS_NODEV | (kind == VR_MOUNT_RO ? MS_RDONLY : 0));
			break;
		case VR_MOUNT_SYMLINK: {
			int err = vr_mkdirs(to, 0);
			if (err != 0 || symlink(from, to) != 0) {
				snprintf(step, sizeof(step), "minimal root: symlink %.120s", to);
				vr_fail(err ? -err : errno, step);
			}
			break;
		}
		case VR_MOUNT_TMPFS: {
			char opts[64];
			snprintf(opts, sizeof(opts), "mode=1777,size=%s", from);
			int err = vr_mkdirs(to, 1);
			if (err != 0 || mount("vatrun-tmp", to, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) != 0) {
				snprintf(step, sizeof(step), "minimal root: tmpfs at %.120s", to);
				vr_fail(err ? -err : errno, step);
			}
			break;
		}
		default:
			vr_fail(EINVAL, "minimal root: bad mount table");
		}
	}

	/* A private /dev: the five harmless nodes, bound from the host's, and the fd links. */
	if (vr_mkdirs("/dev", 1) != 0 || mount("vatrun-dev", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") != 0)
		vr_fail(errno, "minimal root: mount a tmpfs on /dev");
	for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++) {
		char to[64];
		snprintf(src, sizeof(src), "/oldroot/dev/%s", devs[i]);
		snprintf(to, sizeof(to), "/dev/%s", devs[i]);
		vr_bind(src, to, MS_NOEXEC);
	}
	if (symlink("/proc/self/fd", "/dev/fd") != 0 || symlink("/proc/self/fd/0", "/dev/stdin") != 0 ||
	    symlink("/proc/self/fd/1", "/dev/stdout") != 0 || symlink("/proc/self/fd/2", "/dev/stderr") != 0)
		vr_fail(errno, "minimal root: /dev/fd links");
	if (mount(NULL, "/dev", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL) != 0)
		vr_fail(errno, "minimal root: make /dev read-only");

	/* A fresh /proc for the pid namespace, with runc's masks. Without a pid namespace, no /proc. */
	if (cfg->flags & VR_FLAG_PIDNS) {
		if (vr_mkdirs("/proc", 1) != 0 || mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
			vr_fail(errno, "mount a fresh /proc for the pid namespace");
		for (size_t i = 0; i < sizeof(vr_proc_masked) / sizeof(vr_proc_masked[0]); i++)
			vr_mask(vr_proc_masked[i]);
		for (size_t i = 0; i < sizeof(vr_proc_readonly) / sizeof(vr_proc_readonly[0]); i++)
			vr_readonly(vr_proc_readonly[i]);
	}

	if (umount2("/oldroot", MNT_DETACH) != 0)
		vr_fail(errno, "minimal root: detach the host's root");
	if (rmdir("/oldroot") != 0)
		vr_fail(errno, "minimal root: rmdir /oldroot");
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
		vr_fail(errno, "minimal root: make / read-only, nodev, nosuid, noexec");
	if (chdir("/") != 0)
		vr_fail(errno, "minimal root: chdir /");
	umask(umask_was);
}

void vr_stage_main(int argc, char **argv, char **envp)
{
	struct vr_config cfg;
	struct sock_filter *filter = NULL;
	struct sock_fprog prog, *progp = NULL;
	int cfgfd, errpipe[2], rc;
	sigset_t block, old;
	struct sigaction sa;
	pid_t self = getpid();

	if (argc < 5 || strcmp(argv[1], VR_MARKER) != 0)
		return;

	/* The stage must receive the stop signals to relay them, whatever mask its parent had. */
	{
		sigset_t stops;
		sigemptyset(&stops);
		for (int i = 0; i < VR_NFORWARDED; i++)
			sigaddset(&stops, vr_forwarded[i]);
		sigprocmask(SIG_UNBLOCK, &stops, NULL);
	}
	cfgfd = atoi(argv[2]);
	rc = vr_read_full(cfgfd, &cfg, sizeof(cfg));
	if (rc != 0 || cfg.magic != VR_MAGIC || cfg.version != VR_VERSION) {
		fprintf(stderr, "vatrun init: bad or missing config on fd %d (run vatrun, not this stage)\n", cfgfd);
		_exit(120);
	}
	vr_status_fd = cfg.status_fd;
	fcntl(vr_status_fd, F_SETFD, FD_CLOEXEC);
	/* No window for orphans: the parent-death signal was set between clone and exec, but a
	 * supervisor that died before that went unnoticed (Go's own check compares getppid(), which
	 * is 0 in a new pid namespace). Set it again and look: the supervisor holds the only read end
	 * of the status pipe, so POLLERR on our write end means it is gone. From here on its death
	 * kills us (and, as pid 1, the whole namespace). */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	{
		struct pollfd pfd = {.fd = vr_status_fd, .events = POLLOUT, .revents = 0};
		if (poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLERR | POLLHUP | POLLNVAL)))
			_exit(120);
	}
	if (cfg.nrlimits > VR_MAX_RLIMITS)
		vr_fail(EINVAL, "config: too many rlimits");
	if (cfg.bpf_len > VR_MAX_BPF)
		vr_fail(E2BIG, "config: seccomp program longer than 4096 instructions");
	if (cfg.bpf_len > 0) {
		filter = calloc(cfg.bpf_len, sizeof(*filter));
		if (filter == NULL)
			vr_fail(ENOMEM, "allocate the seccomp program");
		rc = vr_read_full(cfgfd, filter, cfg.bpf_len * sizeof(*filter));
		if (rc != 0)
			vr_fail(-rc, "read the seccomp program");
		prog.len = (unsigned short)cfg.bpf_len;
		prog.filter = filter;
		progp = &prog;
	}
	char *mounts = NULL;
	if (cfg.mounts_len > 1 << 20)
		vr_fail(E2BIG, "config: mount table over 1 MiB");
	if (cfg.mounts_len > 0) {
		mounts = calloc(1, cfg.mounts_len + 1);
		if (mounts == NULL)
			vr_fail(ENOMEM, "allocate the mount table");
		rc = vr_read_full(cfgfd, mounts, cfg.mounts_len);
		if (rc != 0)
			vr_fail(-rc, "read the mount table");
	}
	if (cfg.landlock_len > 1 << 20)
		vr_fail(E2BIG, "config: landlock path list over 1 MiB");
	if (cfg.landlock_len > 0) {
		char *ll = calloc(1, cfg.landlock_len + 1);
		if (ll == NULL)
			vr_fail(ENOMEM, "allocate the landlock path list");
		rc = vr_read_full(cfgfd, ll, cfg.landlock_len);
		if (rc != 0)
			vr_fail(-rc, "read the landlock path list");
		vr_ll_paths = ll;
		vr_ll_len = cfg.landlock_len;
	}
	close(cfgfd);

	if (cfg.flags & VR_FLAG_MOUNTNS)
		vr_setup_mounts(&cfg, mounts != NULL ? mounts : "");
	if (cfg.flags & VR_FLAG_UTSNS) {
		cfg.hostname[sizeof(cfg.hostname) - 1] = 0;
		if (sethostname(cfg.hostname, strlen(cfg.hostname)) != 0)
			vr_fail(errno, "set the hostname in the uts namespace");
	}
	if (!(cfg.flags & VR_FLAG_PIDNS)) {
		/* Without a pid namespace, orphans of the worker come back to us to be reaped. */
		prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	}

	/* Forwarded signals stay blocked until the worker's pid is known. */
	sigemptyset(&block);
	for (int i = 0; i < VR_NFORWARDED; i++)
		sigaddset(&block, vr_forwarded[i]);
	sigprocmask(SIG_BLOCK, &block, &old);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = vr_forward;
	sa.sa_flags = SA_RESTART | SA_SIGINFO;
	sigfillset(&sa.sa_mask);
	for (int i = 0; i < VR_NFORWARDED; i++)
		sigaction(vr_forwarded[i], &sa, NULL);

	if (pipe2(errpipe, O_CLOEXEC) != 0)
		vr_fail(errno, "create the exec error pipe");

	/* Recording refused syscalls: a copy of the program whose ERRNO returns notify instead. Not
	 * when nothing is refused with ERRNO, or the program returns its accumulator (never from
	 * libseccomp), or the architecture is one vr_load_filter cannot check. */
	struct sock_fprog nprog, *nprogp = NULL;
	if ((cfg.flags & VR_FLAG_RECORD_DENIED) && progp != NULL) {
		int errnos = 0, retA = 0;
		for (uint32_t i = 0; i < prog.len; i++) {
			if (filter[i].code == (BPF_RET | BPF_A))
				retA = 1;
			if (filter[i].code == (BPF_RET | BPF_K) && (filter[i].k & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_ERRNO)
				errnos++;
		}
		if (errnos > 0 && (retA || VR_AUDIT_ARCH == 0)) {
			snprintf(vr_record_why, sizeof(vr_record_why), "refused syscalls are not recorded: %s",
				 retA ? "the program returns its accumulator" : "not supported on this architecture");
		} else if (errnos > 0) {
			struct sock_filter *copy = calloc(prog.len, sizeof(*copy));
			if (copy == NULL)
				vr_fail(ENOMEM, "allocate the recording seccomp program");
			memcpy(copy, filter, prog.len * sizeof(*copy));
			for (uint32_t i = 0; i < prog.len; i++)
				if (copy[i].code == (BPF_RET | BPF_K) && (copy[i].k & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_ERRNO)
					copy[i].k = SECCOMP_RET_USER_NOTIF;
			nprog.len = prog.len;
			nprog.filter = copy;
			nprogp = &nprog;
		}
	}

	/* Started by the C-first launch (prelaunch.c): the sandbox is ready, but the worker runs only
	 * once the supervisor has computed the launch itself and found it identical to this one. */
	if (vr_stage_gate >= 0) {
		char go = 0;
		ssize_t r;
		while ((r = read(vr_stage_gate, &go, 1)) < 0 && errno == EINTR)
			;
		if (r != 1 || go != 'g')
			_exit(120); /* refused (or the supervisor is gone): no worker ever ran */
		close(vr_stage_gate);
		vr_stage_gate = -1;
	}
	pid_t child = vr_spawn(&cfg, progp, nprogp, errpipe, self, argv[3], &argv[4], envp);
	if (child < 0)
		vr_fail(errno, "fork the worker");
	vr_child = child;
	close(errpipe[1]);
	int lfd = vr_listener;
	/* The worker has exec'd (vr_spawn returns only then) or failed: the fds meant for it (stdio and
	 * the kernel's pipes) are no business of ours any more. Holding them would keep the kernel's
	 * pipes open after the worker died: a write to fd 3 would still succeed and then turn into
	 * ECONNRESET when we exit, where without vatrun it fails with EPIPE at once, and fd 4 would
	 * read EOF only after we reported. */
	for (int fd = 0; fd < cfg.keep_fds; fd++)
		if (fd != vr_status_fd && fd != errpipe[0] && fd != lfd)
			close(fd);
	sigprocmask(SIG_SETMASK, &old, NULL);

	/* EOF on the error pipe means execve succeeded (close-on-exec); a record means it did not. */
	struct vr_msg m;
	memset(&m, 0, sizeof(m));
	rc = vr_read_full(errpipe[0], &m, sizeof(m));
	close(errpipe[0]);
	if (rc == 0 && m.type == VR_MSG_SETUP_FAILED) {
		vr_send(&m);
		int st;
		while (waitpid(child, &st, 0) < 0 && errno == EINTR)
			;
		_exit(120);
	}
	memset(&m, 0, sizeof(m));
	m.type = VR_MSG_EXEC_OK;
	m.a = child;
	m.mono_nsec = vr_mono_nsec();
	if (lfd >= 0) {
		/* The notifier runs with every signal blocked: the stop signals stay the main thread's. */
		static struct vr_notifier_arg narg;
		pthread_t tid;
		pthread_attr_t attr;
		sigset_t all, prev;
		narg.fd = lfd;
		narg.prog = prog;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &prev);
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&attr, 64 * 1024);
		rc = pthread_create(&tid, &attr, vr_notifier, &narg);
		pthread_sigmask(SIG_SETMASK, &prev, NULL);
		if (rc == 0) {
			m.flags = VR_EXEC_RECORDING;
		} else {
			/* Nobody can answer: the worker's refused calls would wait forever. */
			kill(child, SIGKILL);
			errno = rc;
			snprintf(m.text, sizeof(m.text), "start the thread that records refused syscalls");
			m.type = VR_MSG_SETUP_FAILED;
			m.a = rc;
			vr_send(&m);
			int st;
			while (waitpid(child, &st, 0) < 0 && errno == EINTR)
				;
			_exit(120);
		}
	} else if (nprogp != NULL && vr_record_why[0] == 0) {
		snprintf(vr_record_why, sizeof(vr_record_why), "the seccomp listener did not reach the init stage: refused syscalls are not recorded");
	}
	snprintf(m.text, sizeof(m.text), "%s", vr_record_why);
	vr_send(&m);

	/* Reap everything; report when the worker itself is reaped. */
	for (;;) {
		int st;
		struct rusage ru;
		siginfo_t si;
		int64_t cpu_nsec = -1;
		/* Peek first: while the worker is a zombie its process CPU clocks can still be read. */
		memset(&si, 0, sizeof(si));
		if (waitid(P_ALL, 0, &si, WEXITED | WNOWAIT) < 0) {
			if (errno == EINTR)
				continue;
			vr_fail(errno, "wait for the worker");
		}
		if (si.si_pid == child) {
			/* The process's PROF clock (raw, tick-sampled user+system time): RLIMIT_CPU is
			 * checked against exactly this, while clock_getcpuclockid's SCHED clock and
			 * rusage are the precise runtime, which under load trails it by tenths. */
			clockid_t cid = (clockid_t)((~(unsigned)child) << 3); /* CPUCLOCK_PROF = 0 */
			struct timespec ts;
			if (clock_gettime(cid, &ts) == 0)
				cpu_nsec = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
		}
		int64_t died = vr_mono_nsec();
		pid_t p = wait4(si.si_pid, &st, 0, &ru);
		if (p < 0) {
			if (errno == EINTR)
				continue;
			vr_fail(errno, "wait for the worker");
		}
		if (p != child)
			continue;
		/* The refused syscalls, before the death: the worker is gone, so the table only changes
		 * if one of its children (sharing the filter) is still refused something. */
		uint64_t over;
		pthread_mutex_lock(&vr_denied_mu);
		uint32_t nd = vr_ndenied;
		struct vr_denied snap[VR_MAX_DENIED];
		memcpy(snap, vr_denied, sizeof(snap));
		over = vr_denied_over;
		pthread_mutex_unlock(&vr_denied_mu);
		for (uint32_t i = 0; i < nd; i++) {
			memset(&m, 0, sizeof(m));
			m.type = VR_MSG_DENIED;
			m.a = snap[i].nr;
			m.arch = snap[i].arch;
			m.err = snap[i].err;
			m.count = snap[i].count;
			m.last = snap[i].last;
			memcpy(m.args, snap[i].args, sizeof(m.args));
			vr_send(&m);
		}
		memset(&m, 0, sizeof(m));
		m.count = over;
		m.cpu_nsec = cpu_nsec;
		m.type = VR_MSG_EXITED;
		m.a = st;
		m.utime_usec = (int64_t)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec;
		m.stime_usec = (int64_t)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec;
		m.maxrss_kb = ru.ru_maxrss;
		m.forwarded = vr_forwarded_mask;
		m.mono_nsec = died;
		vr_send(&m);
		/* As pid 1 our exit takes the rest of the namespace with it; otherwise the cgroup
		 * (or the worker's own parent-death signals) does. */
		_exit(0);
	}
}

void vr_die_by_signal(int sig)
{
	struct rlimit none = {0, 0};
	struct sigaction dfl;
	sigset_t set;

	/* No core file of vatrun: the worker's death is what is being mirrored, not a crash of ours. */
	setrlimit(RLIMIT_CORE, &none);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	if (sig > 0 && sig < 65 && sig != SIGSTOP && sig != SIGTSTP && sig != SIGTTIN && sig != SIGTTOU) {
		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		sigaction(sig, &dfl, NULL);
		sigemptyset(&set);
		sigaddset(&set, sig);
		pthread_sigmask(SIG_UNBLOCK, &set, NULL);
		syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), sig);
		/* A terminating signal ends the whole process before tgkill returns to user space on
		 * most kernels; give it a moment on the others. */
		struct timespec ts = {0, 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	_exit(128 + sig);
}

/* Which of fds 0..63 were open when the process started, before the Go runtime could open any fd
 * of its own (it may reuse a low fd number that was closed). vatrun run passes an fd through to
 * the worker only if it was really inherited. */
uint64_t vr_inherited_fds;

__attribute__((constructor)) static void vr_init_constructor(int argc, char **argv, char **envp)
{
	vr_stage_main(argc, argv, envp);
	for (int fd = 0; fd < VR_MAX_INHERITED_FD; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			vr_inherited_fds |= (uint64_t)1 << fd;
	/* `vatrun run` only: start the sandbox now from a verified launch-cache entry (prelaunch.c);
	 * after the fd scan, which must not see the pipes this opens. */
	vr_prelaunch(argc, argv, envp);
}
