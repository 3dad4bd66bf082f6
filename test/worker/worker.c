//go:build ignore

// The line above keeps the go tool from treating this C file as part of the Go test package here.

/*
 * vatrun-testworker: a misbehaving-on-command worker for vatrun's tests, demo and VM end-to-end tests.
 *
 * It speaks the same pipe protocol as agoric's xsnap worker: netstrings ("LEN:DATA,") are read from
 * fd 3, and exactly one netstring reply per command is written to fd 4 (commands that kill the worker,
 * spin forever or exit write none). It is C, not Go, so that it dies the way a real engine does:
 * stack growth hits RLIMIT_STACK, abort() raises SIGABRT, fork() is a plain fork.
 *
 * Build (static, so it runs in an empty mount namespace or an initramfs):
 *     gcc -O2 -Wall -Wextra -static -o bin/vatrun-testworker test/worker/worker.c
 *
 * Usage: vatrun-testworker [--exit-at-start N] [--abort-at-start] [--sleep-at-start MS] [--ready]
 * Start-up actions run in the order given, before fd 3 and fd 4 are checked; --ready writes a "ready"
 * netstring to fd 4 before the first command is read.
 *
 * Commands (ASCII, "verb" or "verb:arg") and replies:
 *   ping -> pong                     echo:TEXT -> TEXT
 *   add:N -> sum:S (int64 running sum) get -> sum:S
 *   exit:N -> exit(N), no reply      abort -> abort()
 *   spin -> busy loop forever        spin:MS -> MS ms of CPU, then "spun"
 *   spin-ignore-xcpu -> ignore SIGXCPU, busy loop forever
 *   alloc:BYTES -> mmap + touch every page, kept -> allocated:BYTES (errno:N if mmap fails)
 *   recurse -> unbounded recursion, 4 KiB frames (SIGSEGV under RLIMIT_STACK)
 *   syscall:socket|ptrace|mount|unshare|fork -> ok | errno:N (a mount that works is undone at once)
 *   deny:N:T -> T threads (T-1 new ones, 1..16) each call socket() N times -> denied:C errno:E (C calls
 *     failed, E the errno of the last); deny:0:T -> T-1 new threads call socket() until death -> storming
 *   deny-distinct:N -> syscall numbers 1000..1000+N-1 (none exists), once each -> denied:C errno:E
 *   forkbomb[:MAX] -> fork until fork fails (or MAX children), children pause() -> forks:N errno:E
 *   forkbomb-die[:MAX] -> the same, then abort()
 *   sleep:MS -> slept                stdout:TEXT, stderr:TEXT -> written | errno:N
 *   probe:pid -> pid:N   probe:ppid -> ppid:N   probe:procs -> procs:N (numeric /proc entries)
 *   probe:fds -> fds:0,1,2,3,4       probe:nnp -> nnp:N     probe:caps -> capeff:HEX
 *   selfkill:SIG, tgkill:SIG, killinit:SIG -> ok | errno:N (kill(self), tgkill(self), kill(1))
 *   sigqueueinit:SIG -> ok | errno:N (rt_sigqueueinfo to pid 1 with a forged si_pid of 0)
 *   setrlimit-cpu:SECONDS -> ok | errno:N (lowers its own RLIMIT_CPU)
 *   probe:tiocsti:FD -> ok | errno:N (TIOCSTI: push a byte into the terminal on fd FD)
 *   probe:capinh -> capinh:HEX      probe:capamb -> capamb:HEX   probe:session -> sid:S pid:P
 *   probe:seccomp -> seccomp:N       probe:uid -> uid:N euid:N   probe:hostname -> hostname:H
 *   probe:rlimit-raise -> ok | errno:N (RLIMIT_CPU hard + 100, or to infinity)
 *   probe:net -> ok | errno:N (TCP connect to 127.0.0.1:9)
 *   probe:rlimit:cpu|stack|nofile|core|fsize|nproc -> cur:X max:Y ("inf" for RLIM_INFINITY)
 *   probe:write:/PATH -> ok | errno:N (creates /PATH with O_EXCL, then removes it)
 *   probe:open:/PATH, probe:openrw:/PATH -> ok | errno:N (open read-only / read-write)
 *   probe:connect:/PATH -> ok | errno:N (connect to a pathname unix socket)
 *   args:... -> syscall arguments the seccomp filter must refuse (see cmd_args below)
 *   probe:status:FIELD -> FIELD:VALUE (its /proc/self/status line)
 *   probe:owner:/PATH -> uid:U gid:G (stat)
 *   probe:lease:/PATH -> ok | errno:N (F_SETLEASE F_WRLCK, released at once; creates PATH if missing)
 *   anything else -> error:unknown command; a bad argument -> error:bad argument
 * Children of forkbomb die with the worker (PR_SET_PDEATHSIG), so no cgroup is needed to clean up.
 * WARNING: outside a sandbox, an uncapped forkbomb runs until the host's pid limit (RLIMIT_NPROC does
 * not bind root); use forkbomb:MAX there.
 *
 * Protocol errors (a non-digit in the length, a length over 1 MiB, a missing ',', EOF inside a
 * netstring) print a message on stderr and exit(2). EOF on fd 3 between netstrings is exit(0). A failed
 * write of a reply is exit(2) as well (xsnap's "I/O error").
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CMD_FD 3
#define REPLY_FD 4
#define MAX_NETSTRING (1024 * 1024)
#define PROG "vatrun-testworker"

static int64_t sum;

/* ---------- small helpers ---------- */

static void die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void die(int code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof msg - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof msg - 2)
		n = sizeof msg - 2;
	msg[n++] = '\n';
	fputs(PROG ": ", stderr);
	fwrite(msg, 1, (size_t)n, stderr);
	fflush(stderr);
	exit(code);
}

/* write_all writes all of buf to fd; returns 0 or an errno value. */
static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void reply_bytes(const char *data, size_t len)
{
	char *buf = malloc(len + 32);
	int n, err;

	if (buf == NULL)
		die(2, "out of memory building a %zu-byte reply", len);
	n = snprintf(buf, 32, "%zu:", len);
	memcpy(buf + n, data, len);
	buf[(size_t)n + len] = ',';
	err = write_all(REPLY_FD, buf, (size_t)n + len + 1);
	free(buf);
	if (err != 0)
		die(2, "writing a reply to fd %d: %s", REPLY_FD, strerror(err));
}

static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void reply(const char *fmt, ...)
{
	char buf[4096];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof buf)
		n = sizeof buf - 1;
	reply_bytes(buf, (size_t)n);
}

static void reply_errno(int err)
{
	reply("errno:%d", err);
}

/* parse_u64 parses a plain decimal number (no sign, no spaces). Returns 0 on success. */
static int parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (*s == '\0')
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

/* parse_i64 parses an optionally signed decimal int64. Returns 0 on success. */
static int parse_i64(const char *s, int64_t *out)
{
	int neg = 0;
	uint64_t v;

	if (*s == '-' || *s == '+') {
		neg = *s == '-';
		s++;
	}
	if (parse_u64(s, &v) != 0)
		return -1;
	if (neg) {
		if (v > (uint64_t)INT64_MAX + 1)
			return -1;
		*out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
	} else {
		if (v > (uint64_t)INT64_MAX)
			return -1;
		*out = (int64_t)v;
	}
	return 0;
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = { .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static double cpu_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static volatile uint64_t spin_counter;

static void spin_forever(void) __attribute__((noreturn));
static void spin_forever(void)
{
	for (;;)
		spin_counter++;
}

/* ---------- netstring input ---------- */

static char inbuf[65536];
static size_t inpos, inlen;

/* fill reads more input; returns 0 at EOF. */
static int fill(void)
{
	for (;;) {
		ssize_t n = read(CMD_FD, inbuf, sizeof inbuf);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die(2, "reading fd %d: %s", CMD_FD, strerror(errno));
		}
		inpos = 0;
		inlen = (size_t)n;
		return n > 0;
	}
}

static int getbyte(void)
{
	if (inpos == inlen && !fill())
		return EOF;
	return (unsigned char)inbuf[inpos++];
}

/* read_netstring returns a malloc'd, NUL-terminated copy of the next netstring's data and its length
 * in *lenp, or NULL on a clean EOF. Protocol errors exit(2). */
static char *read_netstring(size_t *lenp)
{
	size_t len = 0, got = 0;
	int digits = 0;
	char *data;
	int c = getbyte();

	if (c == EOF)
		return NULL;
	for (; c != ':'; c = getbyte()) {
		if (c == EOF)
			die(2, "malformed netstring: EOF inside the length");
		if (c < '0' || c > '9')
			die(2, "malformed netstring: byte 0x%02x in the length (want digits then ':')", c);
		len = len * 10 + (size_t)(c - '0');
		digits++;
		if (len > MAX_NETSTRING)
			die(2, "malformed netstring: length over the %d-byte limit", MAX_NETSTRING);
	}
	if (digits == 0)
		die(2, "malformed netstring: empty length");
	data = malloc(len + 1);
	if (data == NULL)
		die(2, "out of memory reading a %zu-byte netstring", len);
	while (got < len) {
		size_t n;

		if (inpos == inlen && !fill())
			die(2, "malformed netstring: EOF after %zu of %zu data bytes", got, len);
		n = inlen - inpos;
		if (n > len - got)
			n = len - got;
		memcpy(data + got, inbuf + inpos, n);
		inpos += n;
		got += n;
	}
	data[len] = '\0';
	c = getbyte();
	if (c != ',') {
		if (c == EOF)
			die(2, "malformed netstring: EOF where ',' was expected");
		die(2, "malformed netstring: byte 0x%02x where ',' was expected", c);
	}
	*lenp = len;
	return data;
}

/* ---------- commands that misbehave ---------- */

/* recurse_deep never returns: every frame holds a 4 KiB volatile buffer that is read after the
 * recursive call, so the compiler can neither drop the frame nor turn the recursion into a loop. */
static volatile uint64_t recurse_limit = UINT64_MAX;

static uint64_t recurse_deep(uint64_t depth) __attribute__((noinline));
static uint64_t recurse_deep(uint64_t depth)
{
	volatile char frame[4096];
	uint64_t r;

	frame[0] = (char)depth;
	frame[sizeof frame - 1] = (char)(depth >> 8);
	if (depth >= recurse_limit)
		return depth;
	r = recurse_deep(depth + 1);
	return r + (uint64_t)frame[0] + (uint64_t)frame[sizeof frame - 1];
}

static void cmd_alloc(const char *arg)
{
	uint64_t bytes;
	long page = sysconf(_SC_PAGESIZE);
	volatile char *p;
	uint64_t off;

	if (parse_u64(arg, &bytes) != 0 || bytes == 0 || bytes > (uint64_t)SIZE_MAX / 2) {
		reply("error:bad argument");
		return;
	}
	if (page <= 0)
		page = 4096;
	p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		reply_errno(errno);
		return;
	}
	for (off = 0; off < bytes; off += (uint64_t)page)
		p[off] = 1;
	p[bytes - 1] = 1;
	/* The mapping is kept on purpose: the memory stays charged to the worker. */
	reply("allocated:%" PRIu64, bytes);
}

static void child_pause_forever(void) __attribute__((noreturn));
static void child_pause_forever(void)
{
	/* Die with the parent, so a forkbomb without a cgroup still cleans up after itself. */
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	close(CMD_FD);
	close(REPLY_FD);
	for (;;)
		pause();
}

/* forkbomb forks until fork fails (or max children when max > 0); returns the count, errno in *err. */
static uint64_t forkbomb(uint64_t max, int *err)
{
	uint64_t n = 0;
	pid_t self = getpid();

	*err = 0;
	while (max == 0 || n < max) {
		pid_t pid = fork();
		if (pid < 0) {
			*err = errno;
			break;
		}
		if (pid == 0) {
			if (getppid() != self)
				_exit(0); /* the parent is already gone */
			child_pause_forever();
		}
		n++;
	}
	return n;
}

/* deny: threads calling socket(), which the test profiles refuse with an errno. */
struct deny_arg {
	uint64_t n; /* 0: forever */
	uint64_t failed;
	int err;
};

static void *deny_loop(void *p)
{
	struct deny_arg *a = p;
	for (uint64_t i = 0; a->n == 0 || i < a->n; i++) {
		int r = socket(AF_INET, SOCK_STREAM, 0);
		if (r >= 0) {
			close(r);
			continue;
		}
		a->failed++;
		a->err = errno;
	}
	return NULL;
}

static void cmd_deny(const char *arg)
{
	static struct deny_arg args[16];
	pthread_t tids[16];
	uint64_t n, t;
	const char *colon = strchr(arg, ':');
	char nbuf[32];

	if (colon == NULL || (size_t)(colon - arg) >= sizeof(nbuf)) {
		reply("error:bad argument");
		return;
	}
	memcpy(nbuf, arg, (size_t)(colon - arg));
	nbuf[colon - arg] = 0;
	if (parse_u64(nbuf, &n) != 0 || parse_u64(colon + 1, &t) != 0 || t < 1 || t > 16) {
		reply("error:bad argument");
		return;
	}
	memset(args, 0, sizeof(args));
	for (uint64_t i = 1; i < t; i++) {
		args[i].n = n;
		int e = pthread_create(&tids[i], NULL, deny_loop, &args[i]);
		if (e != 0) {
			reply_errno(e);
			return;
		}
	}
	if (n == 0) {
		reply("storming");
		return;
	}
	args[0].n = n;
	deny_loop(&args[0]);
	uint64_t failed = args[0].failed;
	int err = args[0].err;
	for (uint64_t i = 1; i < t; i++) {
		pthread_join(tids[i], NULL);
		failed += args[i].failed;
		if (args[i].err != 0)
			err = args[i].err;
	}
	reply("denied:%" PRIu64 " errno:%d", failed, err);
}

static void cmd_deny_distinct(const char *arg)
{
	uint64_t n, failed = 0;
	int err = 0;
	if (parse_u64(arg, &n) != 0 || n > 1000) {
		reply("error:bad argument");
		return;
	}
	for (uint64_t i = 0; i < n; i++) {
		if (syscall(1000 + (long)i, 0, 0, 0, 0, 0, 0) < 0) {
			failed++;
			err = errno;
		}
	}
	reply("denied:%" PRIu64 " errno:%d", failed, err);
}

static void cmd_syscall(const char *name)
{
	int r;

	if (strcmp(name, "socket") == 0) {
		r = socket(AF_INET, SOCK_STREAM, 0);
		if (r >= 0)
			close(r);
	} else if (strcmp(name, "ptrace") == 0) {
		r = (int)ptrace(PTRACE_TRACEME, 0, NULL, NULL);
	} else if (strcmp(name, "mount") == 0) {
		r = mount("none", "/tmp", "tmpfs", 0, NULL);
		/* Undo a mount that worked, so the probe is harmless when run unsandboxed as root
		 * (it would otherwise hide the host's /tmp). */
		if (r == 0)
			umount2("/tmp", MNT_DETACH);
	} else if (strcmp(name, "unshare") == 0) {
		r = unshare(CLONE_NEWNS);
	} else if (strcmp(name, "fork") == 0) {
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		if (pid > 0) {
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
			r = 0;
		} else {
			r = -1;
		}
	} else {
		reply("error:unknown syscall");
		return;
	}
	if (r < 0)
		reply_errno(errno);
	else
		reply("ok");
}

static void cmd_write_fd(int fd, const char *text, size_t len)
{
	char *buf = malloc(len + 1);
	int err;

	if (buf == NULL) {
		reply_errno(ENOMEM);
		return;
	}
	memcpy(buf, text, len);
	buf[len] = '\n';
	err = write_all(fd, buf, len + 1);
	free(buf);
	if (err != 0)
		reply_errno(err);
	else
		reply("written");
}

/* ---------- probes ---------- */

static int is_number(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

static void probe_procs(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	unsigned long n = 0;

	if (d == NULL) {
		reply_errno(errno);
		return;
	}
	while ((e = readdir(d)) != NULL)
		if (is_number(e->d_name))
			n++;
	closedir(d);
	reply("procs:%lu", n);
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

static void probe_fds(void)
{
	/* fcntl, not /proc/self/fd: the xsnap profiles allow no getdents. */
	int fds[1024];
	size_t n = 0, i, off;
	char out[4096];

	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			fds[n++] = fd;
	qsort(fds, n, sizeof fds[0], cmp_int);
	off = (size_t)snprintf(out, sizeof out, "fds:");
	for (i = 0; i < n && off < sizeof out - 16; i++)
		off += (size_t)snprintf(out + off, sizeof out - off, "%s%d", i ? "," : "", fds[i]);
	reply_bytes(out, off);
}

/* status_field replies PREFIX:VALUE for the "Field:" line of /proc/self/status. */
static void probe_status(const char *field, const char *prefix)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[512];
	size_t flen = strlen(field);

	if (f == NULL) {
		reply_errno(errno);
		return;
	}
	while (fgets(line, sizeof line, f) != NULL) {
		if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
			char *v = line + flen + 1;
			size_t l;

			while (*v == ' ' || *v == '\t')
				v++;
			l = strcspn(v, "\r\n");
			v[l] = '\0';
			fclose(f);
			reply("%s:%s", prefix, v);
			return;
		}
	}
	fclose(f);
	reply("error:no %s line in /proc/self/status", field);
}

static void probe_rlimit_raise(void)
{
	struct rlimit r;

	if (getrlimit(RLIMIT_CPU, &r) != 0) {
		reply_errno(errno);
		return;
	}
	if (r.rlim_max != RLIM_INFINITY && r.rlim_max < RLIM_INFINITY - 100)
		r.rlim_max += 100;
	else
		r.rlim_max = RLIM_INFINITY;
	if (setrlimit(RLIMIT_CPU, &r) != 0)
		reply_errno(errno);
	else
		reply("ok");
}

static void probe_net(void)
{
	struct sockaddr_in sa;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (s < 0) {
		reply_errno(errno);
		return;
	}
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons(9);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(s, (struct sockaddr *)&sa, sizeof sa) != 0) {
		int err = errno;

		close(s);
		reply_errno(err);
		return;
	}
	close(s);
	reply("ok");
}

static void format_rlim(char *buf, size_t size, rlim_t v)
{
	if (v == RLIM_INFINITY)
		snprintf(buf, size, "inf");
	else
		snprintf(buf, size, "%llu", (unsigned long long)v);
}

static void probe_rlimit(const char *name)
{
	static const struct {
		const char *name;
		int resource;
	} names[] = {
		{ "cpu", RLIMIT_CPU },     { "stack", RLIMIT_STACK }, { "nofile", RLIMIT_NOFILE },
		{ "core", RLIMIT_CORE },   { "fsize", RLIMIT_FSIZE }, { "nproc", RLIMIT_NPROC },
	};
	size_t i;

	for (i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (strcmp(name, names[i].name) == 0) {
			struct rlimit r;
			char cur[32], max[32];

			if (getrlimit(names[i].resource, &r) != 0) {
				reply_errno(errno);
				return;
			}
			format_rlim(cur, sizeof cur, r.rlim_cur);
			format_rlim(max, sizeof max, r.rlim_max);
			reply("cur:%s max:%s", cur, max);
			return;
		}
	}
	reply("error:unknown rlimit");
}

static void probe_write(const char *path)
{
	/* O_EXCL: the probe only reports "ok" for a file it created itself, then removes it. */
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd < 0) {
		reply_errno(errno);
		return;
	}
	close(fd);
	unlink(path);
	reply("ok");
}

static void cmd_probe(const char *what)
{
	if (strcmp(what, "pid") == 0) {
		reply("pid:%ld", (long)getpid());
	} else if (strcmp(what, "ppid") == 0) {
		reply("ppid:%ld", (long)getppid());
	} else if (strcmp(what, "procs") == 0) {
		probe_procs();
	} else if (strcmp(what, "fds") == 0) {
		probe_fds();
	} else if (strcmp(what, "nnp") == 0) {
		int r = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
		if (r < 0)
			reply_errno(errno);
		else
			reply("nnp:%d", r);
	} else if (strcmp(what, "caps") == 0) {
		probe_status("CapEff", "capeff");
	} else if (strcmp(what, "capinh") == 0) {
		probe_status("CapInh", "capinh");
	} else if (strcmp(what, "capamb") == 0) {
		probe_status("CapAmb", "capamb");
	} else if (strncmp(what, "tiocsti:", 8) == 0) {
		/* Push a character into the input of the terminal on fd N (terminal injection). */
		char c = '#';
		if (ioctl(atoi(what + 8), TIOCSTI, &c) != 0)
			reply_errno(errno);
		else
			reply("ok");
	} else if (strcmp(what, "session") == 0) {
		reply("sid:%d pid:%d", (int)getsid(0), (int)getpid());
	} else if (strcmp(what, "seccomp") == 0) {
		probe_status("Seccomp", "seccomp");
	} else if (strcmp(what, "rlimit-raise") == 0) {
		probe_rlimit_raise();
	} else if (strcmp(what, "net") == 0) {
		probe_net();
	} else if (strncmp(what, "rlimit:", 7) == 0) {
		probe_rlimit(what + 7);
	} else if (strcmp(what, "hostname") == 0) {
		char h[256];
		if (gethostname(h, sizeof h - 1) != 0) {
			reply_errno(errno);
			return;
		}
		h[sizeof h - 1] = '\0';
		reply("hostname:%s", h);
	} else if (strncmp(what, "write:", 6) == 0) {
		probe_write(what + 6);
	} else if (strncmp(what, "open:", 5) == 0 || strncmp(what, "openrw:", 7) == 0) {
		/* Can the worker open a host file or device? (read-only, or read-write) */
		int rw = what[4] == 'r';
		int fd = open(what + (rw ? 7 : 5), (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
		if (fd < 0) {
			reply_errno(errno);
			return;
		}
		close(fd);
		reply("ok");
	} else if (strncmp(what, "connect:", 8) == 0) {
		/* Can the worker reach a host pathname unix socket? */
		struct sockaddr_un sun;
		memset(&sun, 0, sizeof sun);
		sun.sun_family = AF_UNIX;
		snprintf(sun.sun_path, sizeof sun.sun_path, "%s", what + 8);
		socklen_t sunlen = sizeof sun;
		if (sun.sun_path[0] == '@') { /* an abstract socket: "@name" */
			sun.sun_path[0] = '\0';
			sunlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(what + 8));
		}
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			reply_errno(errno);
			return;
		}
		if (connect(fd, (struct sockaddr *)&sun, sunlen) != 0) {
			reply_errno(errno);
			close(fd);
			return;
		}
		close(fd);
		reply("ok");
	} else if (strncmp(what, "killpid:", 8) == 0) {
		/* Can the worker signal another process (a sibling worker)? SIGWINCH: harmless. */
		if (kill((pid_t)atol(what + 8), SIGWINCH) != 0)
			reply_errno(errno);
		else
			reply("ok");
	} else if (strncmp(what, "killppid:", 9) == 0) {
		/* Can the worker signal its parent (the init stage, outside its Landlock domain)? */
		if (kill(getppid(), atoi(what + 9)) != 0)
			reply_errno(errno);
		else
			reply("ok");
	} else if (strcmp(what, "uid") == 0) {
		reply("uid:%ld euid:%ld", (long)getuid(), (long)geteuid());
	} else if (strncmp(what, "status:", 7) == 0) {
		probe_status(what + 7, what + 7);
	} else if (strncmp(what, "owner:", 6) == 0) {
		struct stat st;
		if (stat(what + 6, &st) != 0) {
			reply_errno(errno);
			return;
		}
		reply("uid:%ld gid:%ld", (long)st.st_uid, (long)st.st_gid);
	} else if (strncmp(what, "lease:", 6) == 0) {
		/* A write lease stalls every other open of the file for lease-break-time: released at once. */
		int fd = open(what + 6, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0600);
		if (fd < 0) {
			reply_errno(errno);
			return;
		}
		if (fcntl(fd, F_SETLEASE, F_WRLCK) != 0) {
			reply_errno(errno);
			close(fd);
			return;
		}
		fcntl(fd, F_SETLEASE, F_UNLCK);
		close(fd);
		reply("ok");
	} else {
		reply("error:unknown command");
	}
}

/* ---------- args: syscall arguments the filter must refuse (docs/seccomp-arguments.md) ----------
 * Each one lets the worker make the kernel signal, block or charge someone on its behalf.
 *   args:fasync:FD:SIG -> F_SETOWN(self), F_SETSIG(SIG) (none if SIG is 0), F_SETFL|O_ASYNC on FD:
 *                         armed | refused:STEP:errno:N (the kernel then signals the worker on I/O)
 *   args:lease:PATH -> F_SETLEASE F_WRLCK on PATH opened read-only -> ok | errno:N (open: open-errno:N)
 *   args:lock:setlk|setlkw|ofd:PATH -> a read lock on PATH -> ok | errno:N (open: open-errno:N)
 *   args:notify -> F_NOTIFY (DN_MODIFY|DN_MULTISHOT) on / -> ok | errno:N
 *   args:pipesz -> F_SETPIPE_SZ 1 MiB on fd 3 -> ok | errno:N
 *   args:mmap-shared-anon -> mmap MAP_SHARED|MAP_ANONYMOUS -> ok | errno:N
 *   args:mmap-devzero -> mmap /dev/zero MAP_SHARED -> ok | errno:N (open: open-errno:N)
 *   args:int80:NR -> i386 syscall NR (no arguments) via int $0x80 -> ret:R (R = -errno on failure)
 *   args:x32:NR -> x32 syscall NR (no arguments) -> ret:R
 *   args:clonesig:SIG -> clone with exit signal SIG, the child exits at once; the worker waits for
 *                        it -> ok | errno:N
 */
static void args_fasync(const char *arg)
{
	int fd, sig, fl;
	if (sscanf(arg, "%d:%d", &fd, &sig) != 2) {
		reply("error:bad argument");
		return;
	}
	if (fcntl(fd, F_SETOWN, getpid()) != 0) {
		reply("refused:setown:errno:%d", errno);
		return;
	}
	if (sig != 0 && fcntl(fd, F_SETSIG, sig) != 0) {
		reply("refused:setsig:errno:%d", errno);
		return;
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_ASYNC) != 0) {
		reply("refused:setfl:errno:%d", errno);
		return;
	}
	reply("armed");
}

static int args_open(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);
	if (fd < 0)
		reply("open-errno:%d", errno);
	return fd;
}

static void args_reply_rc(long rc)
{
	if (rc < 0)
		reply_errno(errno);
	else
		reply("ok");
}

static long args_raw_int80(long nr)
{
#if defined(__x86_64__)
	long ret;
	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr) : "memory");
	return (int)ret; /* eax, sign-extended */
#else
	(void)nr;
	return -ENOSYS;
#endif
}

static void cmd_args(const char *what)
{
	int fd;
	if (strncmp(what, "fasync:", 7) == 0) {
		args_fasync(what + 7);
	} else if (strncmp(what, "lease:", 6) == 0) {
		if ((fd = args_open(what + 6, O_RDONLY)) < 0)
			return;
		args_reply_rc(fcntl(fd, F_SETLEASE, F_WRLCK));
		close(fd);
	} else if (strncmp(what, "lock:", 5) == 0) {
		const char *kind = what + 5, *path = strchr(kind, ':');
		int cmd;
		struct flock fl;
		if (path == NULL) {
			reply("error:bad argument");
			return;
		}
		if (strncmp(kind, "setlk:", 6) == 0)
			cmd = F_SETLK;
		else if (strncmp(kind, "setlkw:", 7) == 0)
			cmd = F_SETLKW;
		else if (strncmp(kind, "ofd:", 4) == 0)
			cmd = F_OFD_SETLK;
		else {
			reply("error:bad argument");
			return;
		}
		if ((fd = args_open(path + 1, O_RDONLY)) < 0)
			return;
		memset(&fl, 0, sizeof(fl));
		fl.l_type = F_RDLCK;
		fl.l_whence = SEEK_SET;
		args_reply_rc(fcntl(fd, cmd, &fl));
		close(fd);
	} else if (strcmp(what, "notify") == 0) {
		if ((fd = args_open("/", O_RDONLY | O_DIRECTORY)) < 0)
			return;
		args_reply_rc(fcntl(fd, F_NOTIFY, DN_MODIFY | DN_MULTISHOT));
		close(fd);
	} else if (strcmp(what, "pipesz") == 0) {
		args_reply_rc(fcntl(CMD_FD, F_SETPIPE_SZ, 1 << 20));
	} else if (strcmp(what, "mmap-shared-anon") == 0) {
		void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		args_reply_rc(p == MAP_FAILED ? -1 : 0);
		if (p != MAP_FAILED)
			munmap(p, 4096);
	} else if (strcmp(what, "mmap-devzero") == 0) {
		if ((fd = args_open("/dev/zero", O_RDWR)) < 0)
			return;
		void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		args_reply_rc(p == MAP_FAILED ? -1 : 0);
		if (p != MAP_FAILED)
			munmap(p, 4096);
		close(fd);
	} else if (strncmp(what, "int80:", 6) == 0) {
		reply("ret:%ld", args_raw_int80(atol(what + 6)));
	} else if (strncmp(what, "x32:", 4) == 0) {
		long r = syscall(0x40000000L | atol(what + 4));
		reply("ret:%ld", r < 0 ? -(long)errno : r);
	} else if (strncmp(what, "clonesig:", 9) == 0) {
		long pid = syscall(SYS_clone, (unsigned long)atoi(what + 9), NULL, NULL, NULL, NULL);
		if (pid == 0)
			_exit(0);
		if (pid < 0) {
			reply_errno(errno);
			return;
		}
		int st;
		while (waitpid((pid_t)pid, &st, __WALL) < 0 && errno == EINTR)
			;
		sleep_ms(100); /* a signal sent at the child's exit has landed by now */
		reply("ok");
	} else {
		reply("error:unknown command");
	}
}
/* ---------- limits commands (issue 22: stand-ins, phase) ----------
 *   mmapshared:BYTES -> mmap(MAP_SHARED|MAP_ANONYMOUS) + touch every page, kept -> mapped:BYTES
 *                       (errno:N if mmap fails): memory RLIMIT_DATA does not count
 *   q -> exit(0), no reply (xsnap's quit command)
 * Returns 0 when msg is none of these. */
static int limits_command(const char *msg, const char *arg)
{
	if (arg && strcmp(msg, "mmapshared") == 0) {
		uint64_t bytes, off;
		long page = sysconf(_SC_PAGESIZE);
		volatile char *p;

		if (parse_u64(arg, &bytes) != 0 || bytes == 0 || bytes > (uint64_t)SIZE_MAX / 2) {
			reply("error:bad argument");
			return 1;
		}
		if (page <= 0)
			page = 4096;
		p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			reply_errno(errno);
			return 1;
		}
		for (off = 0; off < bytes; off += (uint64_t)page)
			p[off] = 1;
		p[bytes - 1] = 1;
		reply("mapped:%" PRIu64, bytes);
		return 1;
	}
	if (!arg && strcmp(msg, "q") == 0)
		exit(0);
	return 0;
}
/* ---------- end of limits commands ---------- */

/* ---------- dispatch ---------- */

static void handle(char *msg, size_t len)
{
	char *colon = memchr(msg, ':', len);
	const char *arg = colon ? colon + 1 : NULL;
	size_t arglen = colon ? len - (size_t)(colon - msg) - 1 : 0;
	uint64_t u;
	int64_t i;

	if (colon)
		*colon = '\0'; /* msg is now the verb, NUL-terminated; arg is NUL-terminated too */
	if (strlen(msg) != (colon ? (size_t)(colon - msg) : len)) {
		reply("error:unknown command"); /* a NUL byte inside the verb */
		return;
	}

	if (!arg && strcmp(msg, "ping") == 0) {
		reply("pong");
	} else if (arg && strcmp(msg, "echo") == 0) {
		reply_bytes(arg, arglen);
	} else if (arg && strcmp(msg, "add") == 0) {
		if (parse_i64(arg, &i) != 0) {
			reply("error:bad argument");
			return;
		}
		sum = (int64_t)((uint64_t)sum + (uint64_t)i); /* wraps, never undefined */
		reply("sum:%" PRId64, sum);
	} else if (!arg && strcmp(msg, "get") == 0) {
		reply("sum:%" PRId64, sum);
	} else if (arg && strcmp(msg, "exit") == 0) {
		if (parse_u64(arg, &u) != 0 || u > 255) {
			reply("error:bad argument");
			return;
		}
		exit((int)u);
	} else if (arg && (strcmp(msg, "selfkill") == 0 || strcmp(msg, "killinit") == 0 || strcmp(msg, "tgkill") == 0 ||
			   strcmp(msg, "sigqueueinit") == 0)) {
		/* A worker trying to choose how its own death is classified: kill(self), kill(pid 1 = the
		 * init stage), tgkill(self). Replies ok (then, for a fatal signal, it is dead) or errno:N. */
		if (parse_u64(arg, &u) != 0 || u == 0 || u > 64) {
			reply("error:bad argument");
			return;
		}
		long r;
		if (strcmp(msg, "selfkill") == 0)
			r = kill(getpid(), (int)u);
		else if (strcmp(msg, "killinit") == 0)
			r = kill(1, (int)u);
		else if (strcmp(msg, "sigqueueinit") == 0) {
			/* rt_sigqueueinfo lets the sender write si_pid: claim 0, i.e. "from outside the pid
			 * namespace", hoping the init stage relays it as a stop from outside. */
			siginfo_t si;
			memset(&si, 0, sizeof si);
			si.si_signo = (int)u;
			si.si_code = SI_QUEUE;
			si.si_pid = 0;
			si.si_uid = 0;
			r = syscall(SYS_rt_sigqueueinfo, 1, (int)u, &si);
		}
		else
			r = syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), (int)u);
		if (r != 0)
			reply_errno(errno);
		else
			reply("ok");
	} else if (arg && strcmp(msg, "setrlimit-cpu") == 0) {
		/* Lowering its own RLIMIT_CPU would make SIGXCPU (cpu-limit) the worker's own choice. */
		if (parse_u64(arg, &u) != 0) {
			reply("error:bad argument");
			return;
		}
		struct rlimit rl = {.rlim_cur = (rlim_t)u, .rlim_max = (rlim_t)u + 1};
		if (setrlimit(RLIMIT_CPU, &rl) != 0)
			reply_errno(errno);
		else
			reply("ok");
	} else if (strcmp(msg, "spin") == 0) {
		double end;

		if (!arg)
			spin_forever();
		if (parse_u64(arg, &u) != 0) {
			reply("error:bad argument");
			return;
		}
		end = cpu_seconds() + (double)u / 1000.0;
		while (cpu_seconds() < end)
			spin_counter++;
		reply("spun");
	} else if (!arg && strcmp(msg, "spin-ignore-xcpu") == 0) {
		signal(SIGXCPU, SIG_IGN);
		spin_forever();
	} else if (arg && strcmp(msg, "alloc") == 0) {
		cmd_alloc(arg);
	} else if (!arg && strcmp(msg, "recurse") == 0) {
		recurse_deep(0);
		reply("error:recursion returned");
	} else if (!arg && strcmp(msg, "abort") == 0) {
		abort();
	} else if (arg && strcmp(msg, "syscall") == 0) {
		cmd_syscall(arg);
	} else if (arg && strcmp(msg, "deny") == 0) {
		cmd_deny(arg);
	} else if (arg && strcmp(msg, "deny-distinct") == 0) {
		cmd_deny_distinct(arg);
	} else if (strcmp(msg, "forkbomb") == 0 || strcmp(msg, "forkbomb-die") == 0) {
		int err;
		uint64_t n, max = 0;

		/* Optional cap (forkbomb:MAX), for hosts without a pids limit. */
		if (arg && parse_u64(arg, &max) != 0) {
			reply("error:bad argument");
			return;
		}
		n = forkbomb(max, &err);
		if (strcmp(msg, "forkbomb-die") == 0)
			abort();
		reply("forks:%" PRIu64 " errno:%d", n, err);
	} else if (arg && strcmp(msg, "sleep") == 0) {
		if (parse_u64(arg, &u) != 0) {
			reply("error:bad argument");
			return;
		}
		sleep_ms(u);
		reply("slept");
	} else if (arg && strcmp(msg, "stdout") == 0) {
		cmd_write_fd(1, arg, arglen);
	} else if (arg && strcmp(msg, "stderr") == 0) {
		cmd_write_fd(2, arg, arglen);
	} else if (arg && strcmp(msg, "probe") == 0) {
		cmd_probe(arg);
	} else if (arg && strcmp(msg, "args") == 0) {
		cmd_args(arg);
	} else if (!limits_command(msg, arg)) {
		reply("error:unknown command");
	}
}

static void usage(void) __attribute__((noreturn));
static void usage(void)
{
	fputs("usage: " PROG " [--exit-at-start N] [--abort-at-start] [--sleep-at-start MS] [--ready]\n"
	      "Reads netstring commands on fd 3 and writes one netstring reply per command on fd 4.\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	int ready = 0, pass, i;
	uint64_t u;

	/* Pass 0 validates every flag; pass 1 runs the start-up actions in the order given. */
	for (pass = 0; pass < 2; pass++) {
		for (i = 1; i < argc; i++) {
			const char *a = argv[i];

			if (strcmp(a, "--exit-at-start") == 0 || strcmp(a, "--sleep-at-start") == 0) {
				if (i + 1 >= argc || parse_u64(argv[i + 1], &u) != 0)
					die(2, "%s needs a non-negative number", a);
				i++;
				if (pass == 0)
					continue;
				if (a[2] == 'e')
					exit((int)(u & 0xff));
				sleep_ms(u);
			} else if (strcmp(a, "--abort-at-start") == 0) {
				if (pass == 1)
					abort();
			} else if (strcmp(a, "--ready") == 0) {
				ready = 1;
			} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
				usage();
			} else {
				fprintf(stderr, PROG ": unknown flag %s\n", a);
				usage();
			}
		}
	}

	if (fcntl(CMD_FD, F_GETFD) < 0)
		die(2, "fd %d (commands in) is not open: start me with the command pipe as fd 3", CMD_FD);
	if (fcntl(REPLY_FD, F_GETFD) < 0)
		die(2, "fd %d (replies out) is not open: start me with the reply pipe as fd 4", REPLY_FD);

	if (ready)
		reply("ready");

	for (;;) {
		size_t len;
		char *msg = read_netstring(&len);

		if (msg == NULL)
			exit(0);
		handle(msg, len);
		free(msg);
	}
}
