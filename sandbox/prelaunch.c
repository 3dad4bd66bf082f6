/*
 * The C-first launch of `vatrun run` (see prelaunch.h for the formats).
 *
 * `vatrun run` is a new Go process per worker, and the Go runtime's start alone costs more than a
 * whole bubblewrap run. So its constructor, before the Go runtime exists, forks an intermediate
 * process and goes on: that process looks this exact invocation up in the launch cache and, on a
 * verified hit, clones the init stage, which sets up the sandbox and waits at a gate while the Go
 * runtime starts. The Go side (prelaunch.go) computes the launch exactly as without the cache,
 * compares it byte for byte with the invocation that was started, and opens the gate only when
 * they are equal; otherwise it kills the waiting stage, which never forked a worker, and launches
 * the ordinary way. Supervision and the report are the Go side's, unchanged.
 *
 * The entry's name is the sha256 of everything the launch is computed from that this process can
 * see before Go starts: vatrun's own executable (device, inode, size, times), its ids, its working
 * directory, its argv up to the worker's path (arguments after `-- WORKER` are left out and taken
 * from the command line), its environment, the fds it inherited (and how each is open, and
 * whether fd 0 is a terminal), the boot, the user-namespace sysctls, its own id maps, capabilities,
 * seccomp state and cgroup. What it cannot see from here, the files the launch read (the worker's
 * closure, a profile file, mount sources), is listed in the entry with each file's identity and
 * re-checked with one stat each. The entry is used only when it is a regular file owned by this
 * euid in a directory owned by this euid, neither writable by anyone else, under ancestors nobody
 * else can write (or sticky ones), and its sha256 trailer matches. Anything else, or any error,
 * and vatrun takes the ordinary path: this code never refuses a launch.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "prelaunch.h"
#include "stage.h"

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

struct vr_prelaunch vr_pre;

/* The pipes between vatrun, the intermediate process and the stage. */
struct vr_pre_fds {
	int cfg[2], st[2], sync[2], gate[2], pid[2];
	int devnull;
};
int vr_stage_gate = -1;

static void vr_pre_refuse(const char *fmt, const char *arg)
{
	vr_pre.state = 3;
	snprintf(vr_pre.why, sizeof(vr_pre.why), fmt, arg);
}

/* Adds the contents of a small file (up to 4 KiB) to the key, or a marker for "unreadable". When
 * prefixes is set, only the lines starting with one of them. */
static void vr_key_file(struct vr_sha256 *s, const char *path, const char *const *prefixes)
{
	char buf[4096];
	ssize_t n = -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
	}
	vr_sha256_update(s, path, strlen(path) + 1);
	if (n < 0) {
		vr_sha256_update(s, "\x01", 1);
		return;
	}
	buf[n] = 0;
	if (prefixes == NULL) {
		vr_sha256_update(s, buf, (size_t)n);
		vr_sha256_update(s, "", 1);
		return;
	}
	for (char *line = buf, *end; *line; line = end) {
		end = strchr(line, '\n');
		end = end ? end + 1 : line + strlen(line);
		for (const char *const *p = prefixes; *p; p++)
			if (strncmp(line, *p, strlen(*p)) == 0)
				vr_sha256_update(s, line, (size_t)(end - line));
	}
	vr_sha256_update(s, "", 1);
}

static void vr_key_stat(struct vr_sha256 *s, const struct stat *st)
{
	int64_t v[7] = {(int64_t)st->st_dev, (int64_t)st->st_ino, (int64_t)st->st_size, st->st_mtim.tv_sec,
			st->st_mtim.tv_nsec, st->st_ctim.tv_sec, st->st_ctim.tv_nsec};
	vr_sha256_update(s, v, sizeof(v));
}

/* The key of this invocation; 0 when it cannot be computed. */
static int vr_pre_key(int argc, char **argv, char **envp, uint8_t key[32])
{
	static const char *const status_lines[] = {"Cap", "Seccomp", "NoNewPrivs", NULL};
	struct vr_sha256 s;
	struct stat st;
	char cwd[4096];

	vr_sha256_init(&s);
	vr_sha256_update(&s, "vatrun launch key 1", 20);
	if (stat("/proc/self/exe", &st) != 0 || getcwd(cwd, sizeof(cwd)) == NULL)
		return 0;
	vr_key_stat(&s, &st);
	uint32_t ids[4] = {getuid(), geteuid(), getgid(), getegid()};
	vr_sha256_update(&s, ids, sizeof(ids));
	vr_sha256_update(&s, cwd, strlen(cwd) + 1);
	/* The worker's arguments (after `-- WORKER`) are left out when the entry can take them from
	 * the command line (vr_pre.args_from): a kernel restarts a worker with other arguments (a
	 * snapshot to load) but the same sandbox. */
	int upto = vr_pre.args_from >= 0 ? vr_pre.args_from : argc;
	uint32_t n = (uint32_t)upto;
	vr_sha256_update(&s, &n, sizeof(n));
	for (int i = 0; i < upto; i++)
		vr_sha256_update(&s, argv[i], strlen(argv[i]) + 1);
	vr_sha256_update(&s, vr_pre.args_from >= 0 ? "+args" : "", vr_pre.args_from >= 0 ? 6 : 1);
	for (n = 0; envp != NULL && envp[n] != NULL; n++)
		vr_sha256_update(&s, envp[n], strlen(envp[n]) + 1);
	vr_sha256_update(&s, &n, sizeof(n));
	for (int fd = 0; fd < VR_MAX_INHERITED_FD; fd++) {
		if (!(vr_inherited_fds & ((uint64_t)1 << fd)))
			continue;
		struct termios t;
		int32_t rec[3] = {fd, fcntl(fd, F_GETFL) & O_ACCMODE, fd == 0 && tcgetattr(0, &t) == 0};
		vr_sha256_update(&s, rec, sizeof(rec));
	}
	vr_key_file(&s, "/proc/sys/kernel/random/boot_id", NULL);
	vr_key_file(&s, "/proc/sys/kernel/unprivileged_userns_clone", NULL);
	vr_key_file(&s, "/proc/sys/user/max_user_namespaces", NULL);
	vr_key_file(&s, "/proc/sys/kernel/apparmor_restrict_unprivileged_userns", NULL);
	vr_key_file(&s, "/proc/self/uid_map", NULL);
	vr_key_file(&s, "/proc/self/gid_map", NULL);
	vr_key_file(&s, "/proc/self/cgroup", NULL);
	vr_key_file(&s, "/proc/self/status", status_lines);
	vr_sha256_final(&s, key);
	return 1;
}

static const char *vr_getenv(char **envp, const char *name)
{
	size_t l = strlen(name);
	for (int i = 0; envp != NULL && envp[i] != NULL; i++)
		if (strncmp(envp[i], name, l) == 0 && envp[i][l] == '=')
			return envp[i] + l + 1;
	return NULL;
}

/* vatrun's cache directory, as hostfacts.CacheBase finds it (TestCacheBaseAgrees): $VATRUN_CACHE_DIR
 * ("off": none), else $XDG_CACHE_HOME/vatrun, else $HOME/.cache/vatrun, else /var/cache/vatrun for
 * root; only an absolute path. 0 when there is none. */
int vr_cache_base(char **envp, unsigned euid, char *out, size_t outsz)
{
	const char *d = vr_getenv(envp, "VATRUN_CACHE_DIR"), *suffix = "";
	if (d != NULL && strcmp(d, "off") == 0)
		return 0;
	if (d == NULL || *d == 0) {
		d = vr_getenv(envp, "XDG_CACHE_HOME");
		suffix = "/vatrun";
		if (d == NULL || *d == 0) {
			d = vr_getenv(envp, "HOME");
			suffix = "/.cache/vatrun";
		}
		if ((d == NULL || *d == 0) && euid == 0)
			d = "/var/cache/vatrun", suffix = "";
	}
	if (d == NULL || d[0] != '/')
		return 0;
	int n = snprintf(out, outsz, "%s%s", d, suffix);
	return n > 0 && (size_t)n < outsz;
}

static int vr_pre_dir(char **envp, char *out, size_t outsz)
{
	char base[512];
	if (!vr_cache_base(envp, geteuid(), base, sizeof(base)))
		return 0;
	int n = snprintf(out, outsz, "%s/launch", base);
	return n > 0 && (size_t)n < outsz;
}

/* Nobody but this euid (or root) can replace dir or anything above it: each ancestor is owned by
 * root or us and writable by nobody else unless sticky, and dir itself is ours and 0755 or
 * stricter. */
int vr_pre_trusted_dir(const char *dir)
{
	char p[512];
	struct stat st;
	uid_t me = geteuid();
	snprintf(p, sizeof(p), "%s", dir);
	if (lstat(p, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != me || (st.st_mode & 022))
		return 0;
	for (char *slash = strrchr(p, '/'); slash != NULL; slash = strrchr(p, '/')) {
		if (slash == p)
			slash[1] = 0;
		else
			*slash = 0;
		if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
			return 0;
		if (st.st_uid != 0 && st.st_uid != me)
			return 0;
		if ((st.st_mode & 022) && !(st.st_mode & S_ISVTX))
			return 0;
		if (slash == p)
			break;
	}
	return 1;
}

struct vr_cur {
	const uint8_t *p, *end;
	int ok;
};

static const uint8_t *vr_take(struct vr_cur *c, size_t n)
{
	if (!c->ok || (size_t)(c->end - c->p) < n) {
		c->ok = 0;
		return NULL;
	}
	const uint8_t *r = c->p;
	c->p += n;
	return r;
}

static uint32_t vr_u32(struct vr_cur *c)
{
	uint32_t v = 0;
	const uint8_t *p = vr_take(c, 4);
	if (p)
		memcpy(&v, p, 4);
	return v;
}

static uint64_t vr_u64(struct vr_cur *c)
{
	uint64_t v = 0;
	const uint8_t *p = vr_take(c, 8);
	if (p)
		memcpy(&v, p, 8);
	return v;
}

/* A str as a NUL-terminated copy (strings never hold NUL), or NULL. */
static char *vr_str(struct vr_cur *c, uint32_t *lenp)
{
	uint32_t n = vr_u32(c);
	const uint8_t *p = vr_take(c, n);
	if (p == NULL)
		return NULL;
	if (lenp == NULL && memchr(p, 0, n) != NULL) {
		c->ok = 0;
		return NULL;
	}
	char *s = malloc((size_t)n + 1);
	if (s == NULL) {
		c->ok = 0;
		return NULL;
	}
	memcpy(s, p, n);
	s[n] = 0;
	if (lenp)
		*lenp = n;
	return s;
}

static char **vr_strs(struct vr_cur *c, uint32_t *np, uint32_t max)
{
	uint32_t n = vr_u32(c);
	if (!c->ok || n > max) {
		c->ok = 0;
		return NULL;
	}
	char **v = calloc((size_t)n + 4, sizeof(char *));
	if (v == NULL) {
		c->ok = 0;
		return NULL;
	}
	for (uint32_t i = 0; i < n && c->ok; i++)
		v[i] = vr_str(c, NULL);
	*np = n;
	return c->ok ? v : NULL;
}

struct vr_inv {
	uint64_t flags;
	uint32_t setgroups_deny;
	char *uid_map, *gid_map, *dir, *config;
	uint32_t config_len, nfds, argc, envc, append_args;
	int32_t fds[VR_MAX_INHERITED_FD];
	char **argv, **envp;
};

static int vr_parse_inv(const uint8_t *p, uint32_t len, struct vr_inv *inv)
{
	struct vr_cur c = {p, p + len, 1};
	if (vr_u32(&c) != VR_INV_MAGIC || vr_u32(&c) != VR_INV_VERSION)
		return 0;
	inv->flags = vr_u64(&c);
	inv->setgroups_deny = vr_u32(&c);
	inv->uid_map = vr_str(&c, NULL);
	inv->gid_map = vr_str(&c, NULL);
	inv->nfds = vr_u32(&c);
	if (!c.ok || inv->nfds < 3 || inv->nfds > VR_MAX_INHERITED_FD - 2)
		return 0;
	for (uint32_t i = 0; i < inv->nfds; i++) {
		int32_t fd = (int32_t)vr_u32(&c);
		if (fd < VR_FD_CLOSED || fd >= VR_MAX_INHERITED_FD || (fd >= 0 && !(vr_inherited_fds & ((uint64_t)1 << fd))))
			return 0;
		inv->fds[i] = fd;
	}
	inv->dir = vr_str(&c, NULL);
	inv->config = vr_str(&c, &inv->config_len);
	inv->argv = vr_strs(&c, &inv->argc, 1 << 16);
	inv->append_args = vr_u32(&c);
	inv->envp = vr_strs(&c, &inv->envc, 1 << 16);
	if (!c.ok || c.p != c.end || inv->argc < 1 || inv->config_len > 60 * 1024)
		return 0;
	if (inv->append_args) {
		/* The entry's argv is the worker's path and argv[0]; its arguments are this command
		 * line's, after them (the Go side checks that they are the worker's). */
		if (vr_pre.args_from < 0 || inv->argc != 2)
			return 0;
		uint32_t extra = (uint32_t)(vr_pre.argc - vr_pre.args_from);
		char **all = calloc((size_t)inv->argc + extra + 1, sizeof(char *));
		if (all == NULL)
			return 0;
		memcpy(all, inv->argv, inv->argc * sizeof(char *));
		memcpy(all + inv->argc, vr_pre.argv + vr_pre.args_from, extra * sizeof(char *));
		inv->argv = all;
		inv->argc += extra;
	}
	return 1;
}

/* Reads and checks the entry; returns its invocation (malloc'd) or NULL with vr_pre.why set. */
static uint8_t *vr_pre_load(const uint8_t key[32], uint32_t *inv_len)
{
	int dfd = open(vr_pre.dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		vr_pre.state = 1;
		return NULL;
	}
	int fd = openat(dfd, vr_pre.key, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	close(dfd);
	if (fd < 0) {
		vr_pre.state = 1;
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022) ||
	    st.st_size < 40 || st.st_size > VR_LC_MAX) {
		close(fd);
		vr_pre_refuse("launch cache entry %s: not a regular file of ours that only we can write", vr_pre.key);
		return NULL;
	}
	if (!vr_pre_trusted_dir(vr_pre.dir)) {
		close(fd);
		vr_pre_refuse("launch cache %s: the directory or one above it can be written by another user", vr_pre.dir);
		return NULL;
	}
	size_t size = (size_t)st.st_size;
	uint8_t *buf = malloc(size);
	size_t got = 0;
	while (buf != NULL && got < size) {
		ssize_t r = read(fd, buf + got, size - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (buf == NULL || got != size) {
		free(buf);
		vr_pre_refuse("launch cache entry %s: short read", vr_pre.key);
		return NULL;
	}
	uint8_t sum[32];
	struct vr_sha256 s;
	vr_sha256_init(&s);
	vr_sha256_update(&s, buf, size - 32);
	vr_sha256_final(&s, sum);
	if (memcmp(sum, buf + size - 32, 32) != 0) {
		free(buf);
		vr_pre_refuse("launch cache entry %s: its sha256 does not match its contents", vr_pre.key);
		return NULL;
	}
	struct vr_cur c = {buf, buf + size - 32, 1};
	const uint8_t *k;
	if (vr_u32(&c) != VR_LC_MAGIC || vr_u32(&c) != VR_LC_VERSION || (k = vr_take(&c, 32)) == NULL || memcmp(k, key, 32) != 0) {
		free(buf);
		vr_pre_refuse("launch cache entry %s: not an entry of this vatrun for this invocation", vr_pre.key);
		return NULL;
	}
	uint32_t nverify = vr_u32(&c);
	for (uint32_t i = 0; c.ok && i < nverify; i++) {
		char *path = vr_str(&c, NULL);
		uint64_t want[7];
		for (int j = 0; j < 7; j++)
			want[j] = vr_u64(&c);
		if (!c.ok)
			break;
		struct stat fst;
		int same = stat(path, &fst) == 0;
		if (same) {
			uint64_t have[7] = {(uint64_t)fst.st_dev, (uint64_t)fst.st_ino, (uint64_t)fst.st_size,
					    (uint64_t)fst.st_mtim.tv_sec, (uint64_t)fst.st_mtim.tv_nsec,
					    (uint64_t)fst.st_ctim.tv_sec, (uint64_t)fst.st_ctim.tv_nsec};
			same = memcmp(have, want, sizeof(have)) == 0;
		}
		if (!same) {
			vr_pre_refuse("launch cache: %s changed since the entry was written", path);
			free(path);
			free(buf);
			return NULL;
		}
		free(path);
	}
	uint32_t n = vr_u32(&c);
	const uint8_t *inv = vr_take(&c, n);
	if (inv == NULL || c.p != c.end) {
		free(buf);
		vr_pre_refuse("launch cache entry %s: malformed", vr_pre.key);
		return NULL;
	}
	uint8_t *copy = malloc(n ? n : 1);
	if (copy == NULL) {
		free(buf);
		return NULL;
	}
	memcpy(copy, inv, n);
	free(buf);
	*inv_len = n;
	return copy;
}

/* The init stage's side of the clone: its fds as sandbox.Start would pass them, the gate just
 * above them, then the stage. */
static void vr_pre_child(const struct vr_inv *inv, int cfgfd, int statusfd, int devnull, int syncfd, int gatefd,
			 pid_t parent)
{
	int src[VR_MAX_INHERITED_FD + 3], n = (int)inv->nfds + 2, base = n + 8;
	char **argv;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (!(inv->flags & CLONE_NEWPID) && getppid() != parent)
		_exit(120);
	setpgid(0, 0);
	if (syncfd >= 0) {
		char b;
		if (read(syncfd, &b, 1) != 1)
			_exit(120);
		close(syncfd);
	}
	/* Copy every source above the targets first, so that no dup2 clobbers a source. */
	for (int i = 0; i <= n; i++) {
		int s = i < (int)inv->nfds ? inv->fds[i] : (i == n - 2 ? cfgfd : i == n - 1 ? statusfd : gatefd);
		if (s == VR_FD_DEVNULL)
			s = devnull;
		if (s == VR_FD_CLOSED) {
			src[i] = -1;
			continue;
		}
		if (i < (int)inv->nfds && s != devnull) {
			/* Go's os.File.Fd() puts a non-blocking descriptor in blocking mode before its
			 * StartProcess passes it: do the same, so the worker gets it as it would. */
			int fl = fcntl(s, F_GETFL);
			if (fl >= 0 && (fl & O_NONBLOCK))
				fcntl(s, F_SETFL, fl & ~O_NONBLOCK);
		}
		src[i] = fcntl(s, F_DUPFD_CLOEXEC, base);
		if (src[i] < 0)
			_exit(120);
	}
	for (int i = 0; i <= n; i++) {
		if (src[i] < 0)
			close(i);
		else if (dup2(src[i], i) < 0)
			_exit(120);
	}
	syscall(SYS_close_range, (unsigned)n + 1, ~0U, 0);
	fcntl(n, F_SETFD, FD_CLOEXEC);
	vr_stage_gate = n;
	if (inv->dir[0] != 0 && chdir(inv->dir) != 0)
		_exit(120);
	argv = calloc((size_t)inv->argc + 4, sizeof(char *));
	if (argv == NULL)
		_exit(120);
	char cfgarg[16];
	snprintf(cfgarg, sizeof(cfgarg), "%d", n - 2);
	argv[0] = "vatrun-init";
	argv[1] = VR_MARKER;
	argv[2] = cfgarg;
	memcpy(argv + 3, inv->argv, inv->argc * sizeof(char *));
	vr_stage_main((int)inv->argc + 3, argv, inv->envp);
	_exit(120);
}

static int vr_write_file(pid_t pid, const char *name, const char *data)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t w = write(fd, data, strlen(data));
	close(fd);
	return w == (ssize_t)strlen(data) ? 0 : -1;
}

static void vr_pre_send(int fd, const uint8_t *inv, uint32_t inv_len)
{
	struct vr_pre_msg m;
	memset(&m, 0, sizeof(m));
	m.state = vr_pre.state;
	m.pid = vr_pre.pid;
	m.err = vr_pre.err;
	m.why_len = vr_pre.state == 3 ? (uint32_t)strlen(vr_pre.why) : 0;
	m.inv_len = vr_pre.state == 2 ? inv_len : 0;
	memcpy(m.key, vr_pre.key, sizeof(m.key));
	struct iovec iov[3] = {{&m, sizeof(m)}, {vr_pre.why, m.why_len}, {(void *)inv, m.inv_len}};
	size_t want = sizeof(m) + m.why_len + m.inv_len, done = 0;
	while (done < want) {
		ssize_t w = writev(fd, iov, 3);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			_exit(121);
		done += (size_t)w;
		for (int i = 0; i < 3; i++) { /* advance past what was written */
			size_t take = (size_t)w < iov[i].iov_len ? (size_t)w : iov[i].iov_len;
			iov[i].iov_base = (char *)iov[i].iov_base + take;
			iov[i].iov_len -= take;
			w -= (ssize_t)take;
		}
	}
}

/* The stage's clone, in the intermediate process: it costs milliseconds (a network namespace alone
 * is hundreds of microseconds). The stage is cloned with CLONE_PARENT: it is vatrun's child (Go
 * waits for it), and its parent-death signal follows vatrun's main thread. Then its id maps (user
 * namespace). Sets vr_pre.state 2 (and pid) or 3. */
static void vr_pre_start(const struct vr_inv *inv, const struct vr_pre_fds *f, pid_t parent)
{
	if (write(f->cfg[1], inv->config, inv->config_len) != (ssize_t)inv->config_len) {
		vr_pre_refuse("launch cache: %s", "the config does not fit a pipe");
		return;
	}
	close(f->cfg[1]);
	long pid = syscall(SYS_clone, (unsigned long)(inv->flags | CLONE_PARENT), 0, 0, 0, 0);
	if (pid == 0)
		vr_pre_child(inv, f->cfg[0], f->st[1], f->devnull, (inv->flags & CLONE_NEWUSER) ? f->sync[0] : -1, f->gate[0], parent);
	if (pid < 0) {
		vr_pre.err = errno;
		vr_pre_refuse("launch cache: clone of the init stage: %s (the ordinary launch says why)", strerror(errno));
		return;
	}
	vr_pre.pid = (int32_t)pid;
	if (inv->flags & CLONE_NEWUSER) {
		int ok = vr_write_file((pid_t)pid, "uid_map", inv->uid_map) == 0 &&
			 (!inv->setgroups_deny || vr_write_file((pid_t)pid, "setgroups", "deny") == 0) &&
			 vr_write_file((pid_t)pid, "gid_map", inv->gid_map) == 0 && write(f->sync[1], "x", 1) == 1;
		if (!ok) {
			vr_pre.err = errno ? errno : EPERM;
			kill((pid_t)pid, SIGKILL); /* vatrun reaps it (its pid is in the message) */
			vr_pre_refuse("launch cache: %s", "writing the user namespace's id maps failed");
			return;
		}
	}
	vr_pre.state = 2;
}

/* The intermediate process, forked by the constructor so that vatrun's main thread goes on to
 * start the Go runtime at once: it computes the key, reads and checks the entry, starts the stage
 * on a hit, tells vatrun what it did, and exits (vatrun reaps it). */
static void vr_pre_mid(int argc, char **argv, char **envp, const struct vr_pre_fds *f, pid_t parent)
{
	uint8_t key[32];
	static const char hex[] = "0123456789abcdef";

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(120);
	close(f->st[0]), close(f->gate[1]), close(f->pid[0]);
	vr_pre.state = 3;
	if (!vr_pre_key(argc, argv, envp, key)) {
		snprintf(vr_pre.why, sizeof(vr_pre.why), "launch cache: the key cannot be computed (no /proc?)");
		vr_pre_send(f->pid[1], NULL, 0);
		_exit(0);
	}
	for (int i = 0; i < 32; i++) {
		vr_pre.key[2 * i] = hex[key[i] >> 4];
		vr_pre.key[2 * i + 1] = hex[key[i] & 15];
	}
	vr_pre.state = 1;
	uint32_t inv_len = 0;
	uint8_t *invb = vr_pre_load(key, &inv_len);
	struct vr_inv inv;
	memset(&inv, 0, sizeof(inv));
	if (invb != NULL && !vr_parse_inv(invb, inv_len, &inv))
		vr_pre_refuse("launch cache entry %s: malformed invocation", vr_pre.key);
	else if (invb != NULL)
		vr_pre_start(&inv, f, parent);
	vr_pre_send(f->pid[1], invb, inv_len);
	_exit(0);
}

void vr_prelaunch(int argc, char **argv, char **envp)
{
	struct vr_pre_fds f = {{-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}, -1};
	int *all[] = {&f.cfg[0], &f.cfg[1], &f.st[0], &f.st[1], &f.sync[0], &f.sync[1], &f.gate[0], &f.gate[1], &f.pid[0], &f.pid[1], &f.devnull};

	vr_pre.status_fd = -1;
	vr_pre.gate_fd = -1;
	vr_pre.pid_fd = -1;
	vr_pre.args_from = -1;
	if (argc < 2 || strcmp(argv[1], "run") != 0)
		return;
	vr_pre.argc = argc;
	vr_pre.argv = argv;
	for (int i = 2; i + 1 < argc; i++)
		if (strcmp(argv[i], "--") == 0) {
			vr_pre.args_from = i + 2; /* after `-- WORKER` */
			break;
		}
	const char *mode = vr_getenv(envp, "VATRUN_PRELAUNCH");
	if (mode != NULL && strcmp(mode, "off") == 0) {
		vr_pre.state = 4; /* nothing at all: the ordinary path pays nothing here */
		return;
	}
	if (!vr_pre_dir(envp, vr_pre.dir, sizeof(vr_pre.dir)))
		return;
	int saved = errno;
	pid_t parent = getpid(), mid = -1;
	if (pipe2(f.cfg, O_CLOEXEC) == 0 && pipe2(f.st, O_CLOEXEC) == 0 && pipe2(f.gate, O_CLOEXEC) == 0 &&
	    pipe2(f.pid, O_CLOEXEC) == 0 && pipe2(f.sync, O_CLOEXEC) == 0 &&
	    (f.devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0) {
		/* A plain fork of a process that is still single-threaded (no Go runtime yet). */
		mid = (pid_t)syscall(SYS_clone, (unsigned long)SIGCHLD, 0, 0, 0, 0);
		if (mid == 0)
			vr_pre_mid(argc, argv, envp, &f, parent);
	}
	/* Keep only what vatrun needs: the status pipe's read end, the gate, the pid pipe. */
	int keep[] = {f.st[0], f.gate[1], f.pid[0]};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		int fd = *all[i], kept = 0;
		for (size_t j = 0; mid > 0 && j < 3; j++)
			kept |= fd == keep[j];
		if (fd >= 0 && !kept)
			close(fd);
	}
	if (mid > 0) {
		vr_pre.state = 5;
		vr_pre.mid = (int)mid;
		vr_pre.pid_fd = f.pid[0];
		vr_pre.status_fd = f.st[0];
		vr_pre.gate_fd = f.gate[1];
	}
	errno = saved;
}
