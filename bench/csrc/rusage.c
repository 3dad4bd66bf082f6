/* vatrun-bench-rusage LAUNCHER ARGS...: runs LAUNCHER with this process's fds and environment,
 * waits for it, and writes on its fd 3 (which the launcher does not get): wall_ns user_us sys_us minflt majflt maxrss_kib, from
 * wait4's rusage (the launcher and every descendant reaped inside its tree). A tiny static
 * parent, so the child's max RSS is not inflated by a big parent's pages (a vfork child's mm is
 * its parent's until exec, and the kernel records its high-water mark at exec). Exits with the
 * launcher's exit status (128+signal when killed). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: vatrun-bench-rusage LAUNCHER [ARGS...]\n");
		return 2;
	}
	FILE *out = fdopen(3, "w");
	if (out == NULL || fcntl(3, F_SETFD, FD_CLOEXEC) < 0) {
		perror("fd 3");
		return 2;
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 125;
	}
	if (pid == 0) {
		execve(argv[1], argv + 1, environ);
		perror("execve");
		_exit(127);
	}
	int st;
	struct rusage ru;
	if (wait4(pid, &st, 0, &ru) < 0) {
		perror("wait4");
		return 125;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long long wall = (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
	fprintf(out, "%lld %ld %ld %ld %ld %ld\n", wall,
	       (long)(ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec),
	       (long)(ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec),
	       ru.ru_minflt, ru.ru_majflt, ru.ru_maxrss);
	if (fclose(out) != 0) {
		perror("fd 3");
		return 125;
	}
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 128 + WTERMSIG(st);
}
