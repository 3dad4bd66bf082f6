/*
 * vatrun-bench-thin: the client half of the long-lived-supervisor prototype (BENCHMARKS.md,
 * section 8). Not a product: it measures what a `vatrun run` would cost if it were a thin static
 * client of one long-lived Go supervisor instead of a Go process of its own.
 *
 *     vatrun-bench-thin SOCKET -- WORKER [ARGS...]
 *
 * It connects to the supervisor (`vatrun-bench -thin-server SOCKET`, bench/thin.go), sends the
 * worker's argv with its own fds 0-9 that are open (SCM_RIGHTS: the supervisor launches the
 * worker with them at the same numbers, and writes the report to fd 5 when it is open), and
 * waits for one reply: the worker's wait status, which it then mirrors (its exit code, or death
 * by the same signal).
 *
 * Build: gcc -O2 -Wall -Wextra -static -o bin/vatrun-bench-thin bench/csrc/thin.c
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 4 || strcmp(argv[2], "--") != 0) {
		fprintf(stderr, "usage: vatrun-bench-thin SOCKET -- WORKER [ARGS...]\n");
		return 125;
	}
	/* The fds to hand over, before the socket takes a number. */
	uint32_t mask = 0;
	int fds[10], nfds = 0;
	for (int fd = 0; fd < 10; fd++)
		if (fcntl(fd, F_GETFD) >= 0) {
			mask |= 1u << fd;
			fds[nfds++] = fd;
		}
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s >= 0 && s < 10) {
		int high = fcntl(s, F_DUPFD_CLOEXEC, 10);
		close(s);
		s = high;
	}
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", argv[1]);
	if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
		perror("vatrun-bench-thin: connect");
		return 125;
	}
	/* The message: a bitmap of the fds sent (u32), then the NUL-separated argv. */
	char buf[65536];
	size_t len = sizeof(mask);
	memcpy(buf, &mask, sizeof(mask));
	for (int i = 3; i < argc; i++) {
		size_t l = strlen(argv[i]) + 1;
		if (len + l > sizeof(buf))
			return 125;
		memcpy(buf + len, argv[i], l);
		len += l;
	}
	char cbuf[CMSG_SPACE(sizeof(fds))];
	memset(cbuf, 0, sizeof(cbuf));
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = CMSG_SPACE(nfds * sizeof(int))};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
	memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	if (sendmsg(s, &msg, 0) < 0) {
		perror("vatrun-bench-thin: sendmsg");
		return 125;
	}
	/* Our copies of the worker's fds must not keep its pipes open. */
	for (int i = 0; i < nfds; i++)
		if (fds[i] >= 3)
			close(fds[i]);
	int32_t st;
	if (read(s, &st, sizeof(st)) != sizeof(st)) {
		fprintf(stderr, "vatrun-bench-thin: no status from the supervisor\n");
		return 125;
	}
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st)) {
		signal(WTERMSIG(st), SIG_DFL);
		raise(WTERMSIG(st));
	}
	return 125;
}
